"""The answer spool: answers appended to a file of their own before the store has them.

A worker that received a batch appends its answers here (one ``os.write`` of
one line) and goes on sending; the answer writer's thread stores them in the
SQLite store, many batches per transaction, off the workers' path. The spool
is what keeps a kill -9 from costing more than the batches in flight: what a
killed process appended and never stored is replayed into the store by the
next process that opens it (:func:`replay`), or that takes over the killed
process's claims.

One spool file per writer, ``responses/spool/<host>-<pid>-<random>.jsonl``,
0600, locked with ``flock`` while its writer lives: a file nobody holds
belongs to a process that is gone. A line is
``{"t": stored_at, "e": expires_at or null, "entries": [entry, ...]}`` where
each entry is the store's own entry ``{"v": SCHEMA_VERSION, "k": key, "d": answer}``.
What is read back is data only (JSON, checked like a stored entry: version,
a store key, an object or null); a line that is not is counted as quarantined
and skipped, never trusted. A file is rotated past :data:`ROTATE_BYTES` and
removed once every answer in it is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

from apollo_frames.client.storage import FILE_MODE, private_dir

try:
    import fcntl
except ImportError:  # not POSIX: no spool, workers store directly
    fcntl = None  # type: ignore[assignment]

#: a spool file is replaced by a new one past this size, and removed once its answers are stored
ROTATE_BYTES = 32 * 2**20
#: a line longer than this is not one of ours
LINE_LIMIT = 256 * 2**20
_KEY = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+-[0-9]+-[0-9a-f]{8}\.jsonl")


def spool_line(blobs: Mapping[str, bytes], stored_at: float, expires_at: float | None) -> bytes:
    """One spool line for the encoded entries ``blobs`` (key -> the store's entry bytes)."""
    expire = "null" if expires_at is None else repr(float(expires_at))
    return b"".join((f'{{"t":{float(stored_at)!r},"e":{expire},"entries":['.encode(), b",".join(blobs.values()),
                     b"]}\n"))


@dataclasses.dataclass
class _File:
    path: Path
    fd: int
    #: lines appended and not stored yet
    pending: int = 0
    size: int = 0
    #: appends under way (its descriptor is closed only once there are none)
    writing: int = 0
    closed: bool = False


class Spool:
    """This writer's spool files: :meth:`append` from any thread, :meth:`stored` from the writer's."""

    def __init__(self, folder: Path, owner: str):
        self.folder = folder
        self.owner = re.sub(r"[^A-Za-z0-9_.-]", "_", owner)
        self._lock = threading.Lock()
        self._files: dict[int, _File] = {}
        self._gen = -1
        self._open_next()

    @classmethod
    def open(cls, folder: Path, owner: str) -> Spool | None:
        """A spool in ``folder`` (created 0700), or None where files cannot be locked (the workers store directly)."""
        if fcntl is None:
            return None
        try:
            return cls(private_dir(folder), owner)
        except OSError:
            return None

    def __repr__(self) -> str:
        return f"Spool({str(self.folder)!r}, files={len(self._files)})"

    def _open_next(self) -> None:
        path = self.folder / f"{self.owner}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._gen += 1
        self._files[self._gen] = _File(path, fd)

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
            written = os.write(file.fd, line)  # O_APPEND: one line whole, whatever other threads append meanwhile
        finally:
            with self._lock:
                file.writing -= 1
                if file.closed and not file.writing:
                    os.close(file.fd)
        if written != len(line):
            raise OSError(28, "the answer spool could not take a whole line (disk full?)")
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

        A file with lines not stored is closed, unlocked, and left: the next process to open the store replays it.
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
    if not file.writing:
        os.close(file.fd)


@dataclasses.dataclass
class Replayed:
    """What :func:`replay` did: entries handed to the store, files removed, bad lines (reasons)."""

    entries: int = 0
    files: int = 0
    bad: list[str] = dataclasses.field(default_factory=list)


def replay(folder: Path, write: Callable[[list[tuple[str, Any, float, float | None]]], Any], version: int) -> Replayed:
    """Hand every entry of the spool files nobody holds (their writer is gone) to ``write``, then remove them.

    ``write`` takes (key, answer, stored_at, expires_at) entries (the store's ``write_entries``); a file is removed
    only once ``write`` returned. A file another process holds, or that cannot be locked, is left alone. Entries
    of another schema ``version`` than the store's are bad lines.
    """
    done = Replayed()
    if fcntl is None or not folder.is_dir():
        return done
    for path in sorted(folder.iterdir()):
        if not _NAME.fullmatch(path.name):
            continue
        with _orphan(path) as handle:
            if handle is None:
                continue
            entries = list(_read(handle, done.bad, version))
            if entries:
                write(entries)
            done.entries += len(entries)
            done.files += 1
            path.unlink(missing_ok=True)
    return done


@contextlib.contextmanager
def _orphan(path: Path) -> Iterator[Any]:
    """The file opened for reading and locked when no live writer holds it, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        yield None
        return
    with os.fdopen(fd, "rb") as handle:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by its writer (or locks do not work here): not ours to replay
            yield None
            return
        yield handle


def _read(handle: Any, bad: list[str], version: int) -> Iterator[tuple[str, Any, float, float | None]]:
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
        try:
            yield from _entries(line, version)
        except ValueError as exc:
            bad.append(f"spool line {exc}")


def _entries(line: bytes, version: int) -> list[tuple[str, Any, float, float | None]]:
    """The entries of one spool line, all checked before any is taken (ValueError: why the line is not ours)."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("entries"), list):
        raise ValueError("not a spool line")
    stored_at, expires = record.get("t"), record.get("e")
    if not _finite(stored_at) or not (expires is None or _finite(expires)):
        raise ValueError("with bad times")
    return [(*_entry(item, version), float(stored_at), None if expires is None else float(expires))
            for item in record["entries"]]


def _entry(item: Any, version: int) -> tuple[str, Any]:
    if not isinstance(item, dict) or set(item) != {"v", "k", "d"}:
        raise ValueError("with an entry that is not one")
    if item["v"] != version:
        raise ValueError(f"of schema version {item['v']!r}")
    key, data = item["k"], item["d"]
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("with a key that is not a store key")
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"with an answer of type {type(data).__name__}")
    return key, data


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__: Sequence[str] = ("ROTATE_BYTES", "Replayed", "Spool", "replay", "spool_line")
