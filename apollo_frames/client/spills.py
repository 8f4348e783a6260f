"""The answer store's spill folders: where a file run puts the stored rows it reads ahead, so the store can find
them and delete them.

A run's spill is ``responses/spill/<owner>/`` in the store's own folder, ``<owner>`` a claim owner of its own
(:meth:`AnswerStore.begin_run`): the folder is live while that owner's file is locked (:class:`Holders`, the one
way the store tells a live process from a dead one), so a folder a killed run left (``kill -9``) is deleted by the
next store opened on the folder, by the next file run, and by :func:`~apollo_frames.client.erase.erase` (which
deletes live runs' spills too: they read the store instead). Folders 0700, files 0600, every name opened
relative to a descriptor of its folder, never through a link: a link (or a file, or another user's folder) in
place of ``spill/`` or of a run's folder is not followed and not deleted, and nothing is spilled through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from apollo_frames.client.storage import DIR_MODE, FILE_MODE

__all__ = ["SPILL", "SpillFolder", "sweep_spills"]

#: the folder of spills in the store's folder (``responses/``)
SPILL = "spill"
#: a run's folder: its claim owner's name
_RUN = re.compile(r"[0-9a-f]{16}")
#: the name of a spilled file (chunk.batch.arrow): only such files are deleted from a run's folder
SPILLED = re.compile(r"[0-9]{9,}\.[0-9]{6,}\.arrow")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_dir(name: str | Path, dir_fd: int | None = None) -> int | None:
    """A descriptor of the folder ``name`` when it is a real folder of this user (not a link: not followed); else
    None."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == getattr(os, "getuid", lambda: info.st_uid)():
        return fd
    os.close(fd)
    return None


def _root(directory: Path, create: bool) -> int | None:
    """A descriptor of ``directory/spill`` (made 0700 when ``create``), or None when it is missing or not ours."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory / SPILL, DIR_MODE)
    return _open_dir(directory / SPILL)


def _clear(root: int, name: str) -> bool:
    """Delete run folder ``name`` in ``root``: its spilled files, then itself (what is not a spill in it stays, and
    so does the folder). Returns whether nothing is left there."""
    fd = _open_dir(name, root)
    if fd is None:
        return False
    try:
        for file in os.listdir(fd):
            if SPILLED.fullmatch(file):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=root)
        return True
    return False


def sweep_spills(directory: Path, alive: Callable[[str], bool] | None) -> int:
    """Delete the spill folders in the store folder ``directory`` whose run is not ``alive`` (None: every one, an
    erasure's); returns how many went."""
    root = _root(directory, create=False)
    if root is None:
        return 0
    try:
        return sum(_clear(root, name) for name in os.listdir(root)
                   if _RUN.fullmatch(name) and (alive is None or not alive(name)))
    finally:
        os.close(root)


class SpillFolder:
    """One run's spill folder (made 0700 anew): files created, read and deleted by name inside it, never through a
    link."""

    def __init__(self, directory: Path, owner: str):
        """``directory``: the store's folder; ``owner``: the run's claim owner (held while the run lives). OSError
        when the folder cannot be made (a link or a file in the way, a disk that cannot hold it)."""
        self.path = directory / SPILL / owner
        self.name = owner
        root = _root(directory, create=True)
        if root is None:
            raise NotADirectoryError(f"{directory / SPILL} is not a folder of this user")
        try:
            os.fchmod(root, DIR_MODE)
            os.mkdir(owner, DIR_MODE, dir_fd=root)
            fd = _open_dir(owner, root)
            if fd is None:
                raise NotADirectoryError(f"{self.path} is not a folder of this user")
            os.fchmod(fd, DIR_MODE)
        except OSError:
            os.close(root)
            raise
        self._root, self._fd = root, fd

    def create(self, name: str) -> int:
        """A descriptor of the new file ``name`` (0600), open for writing."""
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE, dir_fd=self._dir())

    def open(self, name: str) -> int:
        """A descriptor of the spilled file ``name``, open for reading."""
        return os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=self._dir())

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self._dir())

    _fd: int | None

    def _dir(self) -> int:
        if self._fd is None:
            raise FileNotFoundError(f"{self.path} was deleted")
        return self._fd

    def remove(self) -> None:
        """Delete the folder and its spilled files (idempotent)."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with contextlib.suppress(OSError):
            _clear(self._root, self.name)
        os.close(self._root)

