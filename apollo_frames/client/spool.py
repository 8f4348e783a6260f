"""The answer spool: answers appended to a file of their own before the store has them.

A worker that received a batch appends its answers here (one ``os.write`` of
one line) and goes on sending; the answer writer's thread stores them in the
SQLite store, many batches per transaction, off the workers' path. The spool
is what keeps a kill -9 from costing more than the batches in flight: what a
killed process appended and never stored is replayed into the store by the
next process that opens it (:func:`replay`), or that takes over the killed
process's claims.

One spool file per writer, ``responses/spool/<host>-<pid>-<random>.jsonl``,
0600, locked with ``flock`` while its writer lives (it is created under
another name and renamed once locked, so it is never seen unlocked): a file
nobody holds belongs to a writer that is gone. A line is the byte ``\x1e``
then ``{"t": stored_at, "e": expires_at or null, "entries": [entry, ...]}`` where
each entry is the store's own entry ``{"v": SCHEMA_VERSION, "k": key, "d": answer}``.
What is read back is data only, and checked (by the store, like a stored
entry) before anything of its line is taken; a line that is not ours is
counted and skipped, never trusted. A file is rotated past
:data:`ROTATE_BYTES` and removed once every answer in it is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from apollo_frames.client.storage import FILE_MODE, private_dir
from apollo_frames.core import jsontext

try:
    import fcntl
except ImportError:  # not POSIX: no spool, workers store directly
    fcntl = None  # type: ignore[assignment]

#: a spool file is replaced by a new one past this size, and removed once its answers are stored
ROTATE_BYTES = 32 * 2**20
#: a line longer than this is not one of ours (a line is one batch: ten answers)
LINE_LIMIT = 64 * 2**20
#: entries written to the store per transaction while a spool file is replayed
REPLAY_BLOCK = 1_000
#: what every spool line starts with: a byte JSON text never holds unescaped (the record separator), so a line
#: appended onto one a full disk cut short is found by it, and nothing inside an answer can pass for a line
_START = b"\x1e"
_NAME = re.compile(r"[A-Za-z0-9_.-]+-[0-9]+-[0-9a-f]{8}\.jsonl")
#: a file being made (locked, not yet named): left by a kill between the two, it is empty
_MAKING = re.compile(r"\.[0-9a-f]{8}\.new")
#: (device, inode) of the spool files this process's writers hold: where flock is emulated by POSIX locks
#: (NFS) a process does not see its own locks, so its replays skip these by identity
_LIVE: set[tuple[int, int]] = set()
_LIVE_LOCK = threading.Lock()

#: (key, answer, stored_at, expires_at) -> what the store writes, and the entry's bytes
Entry = tuple[str, Any, float, "float | None"]
#: an entry as read -> (key, answer, its bytes to store); raises when it is not a current entry of ours
Check = Callable[[Any], tuple[str, Any, bytes]]


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def spool_line(blobs: dict[str, bytes], stored_at: float, expires_at: float | None) -> bytes:
    """One spool line for the encoded entries ``blobs`` (key -> the store's entry bytes); an expiry that is not
    finite (an infinite TTL) is written as none."""
    expire = repr(float(expires_at)) if expires_at is not None and math.isfinite(expires_at) else "null"
    return b"".join((_START, f'{{"t":{float(stored_at)!r},"e":{expire},"entries":['.encode(),
                     b",".join(blobs.values()), b"]}\n"))


@dataclasses.dataclass
class _File:
    path: Path
    fd: int
    identity: tuple[int, int]
    #: lines appended and not stored yet
    pending: int = 0
    size: int = 0
    #: appends under way (its descriptor is closed only once there are none)
    writing: int = 0
    closed: bool = False


class Spool:
    """This writer's spool files: :meth:`append` from any thread, :meth:`stored` from the writer's."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._files: dict[int, _File] = {}
        self._gen = -1
        self._open_next()

    @classmethod
    def open(cls, folder: Path) -> Spool | None:
        """A spool in ``folder`` (created 0700), or None where files cannot be locked (the workers store directly)."""
        if fcntl is None:
            return None
        try:
            return cls(private_dir(folder))
        except OSError:
            return None

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r}, files={len(self._files)})"

    def _open_next(self) -> None:
        """A new file, locked before it has the name a replay looks for."""
        rand = uuid.uuid4().hex[:8]
        making = self.folder / f".{rand}.new"
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        identity = _identity(os.fstat(fd))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with _LIVE_LOCK:
                _LIVE.add(identity)
            path = self.folder / f"{_host()}-{os.getpid()}-{rand}.jsonl"
            os.rename(making, path)
        except OSError:
            with _LIVE_LOCK:
                _LIVE.discard(identity)
            os.close(fd)
            making.unlink(missing_ok=True)
            raise
        self._gen += 1
        self._files[self._gen] = _File(path, fd, identity)

    def append(self, line: bytes) -> int:
        """Append one line (a kill -9 after this returns loses nothing of it); returns its file's number for
        :meth:`stored`. Raises OSError when it cannot be written whole (the caller stores directly)."""
        with self._lock:
            if self._gen not in self._files:
                raise OSError(9, "the answer spool is closed")
            gen = self._gen
            file = self._files[gen]
            file.pending += 1
            file.size += len(line)
            file.writing += 1
        try:
            # O_APPEND: one line whole, whatever other threads append meanwhile. A line cut short (a full disk)
            # is left as it is: a line appended after it is found by its start byte (see ``_read``)
            if os.write(file.fd, line) != len(line):
                raise OSError(28, "the answer spool could not take a whole line (disk full?)")
        except OSError:
            with self._lock:
                file.pending -= 1
            raise
        finally:
            with self._lock:
                file.writing -= 1
                if file.closed and not file.writing:
                    os.close(file.fd)
        return gen

    def stored(self, gen: int) -> None:
        """A line of file ``gen`` is in the store now; a full file is rotated, a finished old one removed."""
        with self._lock:
            file = self._files.get(gen)
            if file is None:  # closed meanwhile
                return
            file.pending -= 1
            if self._files[self._gen].size >= ROTATE_BYTES:
                with contextlib.suppress(OSError):  # no new file (disk full): the current one grows
                    self._open_next()
            for old in [g for g, f in self._files.items() if g != self._gen and f.pending == 0]:
                _remove(self._files.pop(old))

    def close(self, *, keep: bool = False) -> None:
        """Close every file; remove those whose lines are all stored (``keep``: leave every file for a replay).

        A file with lines not stored is closed, unlocked, and left: the next store opened replays it.
        """
        with self._lock:
            files, self._files = list(self._files.values()), {}
            for file in files:
                _remove(file, unlink=not (keep or file.pending))


def _remove(file: _File, *, unlink: bool = True) -> None:
    """Remove the file (``unlink``) and close it, or mark it to be closed by the last append under way."""
    if unlink:
        with contextlib.suppress(OSError):
            file.path.unlink()
    file.closed = True
    with _LIVE_LOCK:  # no writer of this process holds it any more: a replay may take it
        _LIVE.discard(file.identity)
    if not file.writing:
        os.close(file.fd)


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


@dataclasses.dataclass
class Replayed:
    """What :func:`replay` did: entries handed to the store, files removed, bad lines (reasons)."""

    entries: int = 0
    files: int = 0
    bad: list[str] = dataclasses.field(default_factory=list)


def replay(folder: Path, write: Callable[[list[Entry], dict[str, bytes]], Any], check: Check) -> Replayed:
    """Hand every entry of the spool files no writer holds to ``write``, a block at a time, then remove them.

    ``check`` reads one entry (see :data:`Check`); a line is taken whole or not at all. A file is removed
    only once ``write`` took all of it; a file another writer holds, or that is not a plain file, is left alone.
    """
    done = Replayed()
    if fcntl is None or not folder.is_dir():
        return done
    for path in sorted(folder.iterdir()):
        making = _MAKING.fullmatch(path.name) is not None
        if not making and _NAME.fullmatch(path.name) is None:
            continue
        with _orphan(path) as handle:
            if handle is None:
                continue
            if not making:  # (a file left while it was being made is empty)
                for block in _blocks(_read(handle, done.bad, check)):  # a file of any size, a block in memory
                    latest = _latest(block)
                    write([entry for entry, _ in latest.values()], {key: blob for key, (_, blob) in latest.items()})
                    done.entries += len(latest)
                done.files += 1
            path.unlink(missing_ok=True)
    return done


def _latest(block: list[tuple[Entry, bytes]]) -> dict[str, tuple[Entry, bytes]]:
    """Per key, its entry stored last (one key may be in a block twice)."""
    latest: dict[str, tuple[Entry, bytes]] = {}
    for entry, blob in block:
        seen = latest.get(entry[0])
        if seen is None or entry[2] >= seen[0][2]:
            latest[entry[0]] = (entry, blob)
    return latest


@contextlib.contextmanager
def _orphan(path: Path) -> Iterator[Any]:
    """The file opened for reading and locked when it is a plain file no writer holds, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        yield None
        return
    held = os.fstat(fd)
    with _LIVE_LOCK:
        live = _identity(held) in _LIVE
    if live or not stat.S_ISREG(held.st_mode):  # a writer of this process holds it; a folder, a FIFO, a device
        os.close(fd)
        yield None
        return
    with os.fdopen(fd, "rb") as handle:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.stat(path, follow_symlinks=False)
        except OSError:  # held by its writer (or locks do not work here), or removed meanwhile
            yield None
            return
        # removed (and perhaps made anew) by another replay between our open and our lock: not this file any more
        yield handle if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev) else None


def _blocks(items: Iterator[Any], size: int = REPLAY_BLOCK) -> Iterator[list[Any]]:
    block: list[Any] = []
    for item in items:
        block.append(item)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def _read(handle: Any, bad: list[str], check: Check) -> Iterator[tuple[Entry, bytes]]:
    """The entries of a spool file, line by line; a line that is not ours adds a reason to ``bad``."""
    while True:
        line = handle.readline(LINE_LIMIT)
        if not line:
            return
        if not line.endswith(b"\n"):
            if len(line) >= LINE_LIMIT:
                bad.append("spool line too long")
                while line and not line.endswith(b"\n"):  # skip the rest of it
                    line = handle.readline(LINE_LIMIT)
                continue
            return  # the last line, cut by a kill while it was written: its batch was still in flight
        # a line a full disk cut short may have had another appended to it: the last start begins the whole one
        start = line.rfind(_START)
        try:
            yield from _entries(memoryview(line)[start + 1:] if start >= 0 else b"", check)
        except Exception as exc:  # anything at all: the line is not trusted, the replay goes on
            bad.append(f"spool line {exc}" if isinstance(exc, ValueError) else f"spool line ({type(exc).__name__})")


def _entries(line: bytes | memoryview, check: Check) -> list[tuple[Entry, bytes]]:
    """The entries of one spool line (after its start byte), all checked before any is taken (ValueError: why
    the line is not ours)."""
    if not line:
        raise ValueError("without its start")
    try:
        record = jsontext.loads(line, max_depth=jsontext.MAX_DEPTH + 3)  # the line wraps each answer 3 levels deep
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("entries"), list):
        raise ValueError("not a spool line")
    stored_at, expires = record.get("t"), record.get("e")
    if not _finite(stored_at) or not (expires is None or _finite(expires)):
        raise ValueError("with bad times")
    out = []
    for item in record["entries"]:
        key, data, blob = check(item)
        out.append(((key, data, float(stored_at), None if expires is None else float(expires)), blob))
    return out


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
