"""What the answer store and the credit ledger share: private files, typed storage errors, SQL parameter blocks.

Both hold personal data or spend records, so folders are 0700 and files 0600 whatever the umask. Any SQLite or OS
failure that is about the disk (full, read-only, corrupt) leaves as :class:`StorageError` naming the file and what
to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from apollo_frames.core.errors import StorageError

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Keys per SQL statement (SQLite allows 32,766 variables; a block of 900 keeps every version happy).
SQL_BLOCK = 900

#: (reason, what SQLite's message says then)
_MESSAGES = (
    ("full", ("database or disk is full",)),
    ("io", ("disk i/o error",)),
    ("read_only", ("readonly database", "unable to open database file", "read-only file system")),
    ("corrupt", ("file is not a database", "malformed", "file is encrypted", "database corrupt")),
)
_ERRNO_REASON = {**dict.fromkeys((errno.ENOSPC, errno.EFBIG, errno.EDQUOT), "full"),
                 **dict.fromkeys((errno.EACCES, errno.EPERM, errno.EROFS), "read_only")}


def private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create ``path`` and any missing parents 0700 (``mkdir(parents=True)`` would give the parents the umask's
    mode); an existing ``path`` is made 0700 too when asked."""
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            folder.mkdir(mode=DIR_MODE, exist_ok=True)
            _chmod(folder, DIR_MODE)
    if tighten_existing:
        _chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it is missing (an empty file is an empty SQLite database); else make it 0600.

    An existing file is never opened here: closing any descriptor of a database drops every POSIX lock this process
    holds on it, so its connections would go on unlocked while others write (SQLite's "How To Corrupt" 2.2).
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _chmod(path, FILE_MODE)  # (the umask may have taken bits off)
    return path


def tighten(paths: Iterable[Path]) -> None:
    """Make existing files 0600 (SQLite creates its side files with the umask)."""
    for path in paths:
        _chmod(path, FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    # Missing, not ours (another user's shared folder) or a read-only mount: reading can still work.
    with contextlib.suppress(OSError):  # a symlink is never followed (its target is not ours to change)
        if not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)


def sql_blocks(items: Sequence[Any], size: int = SQL_BLOCK) -> Iterator[Sequence[Any]]:
    """``items`` a block of ``size`` at a time: one SQL statement's parameters each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sql_marks(n: int) -> str:
    return ",".join("?" * n)


def database_files(db: Path) -> list[Path]:
    """The database and its SQLite side files (WAL mode's, and the rollback journal)."""
    return [db] + [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def reason_of(exc: BaseException) -> str | None:
    """``"full"``, ``"read_only"``, ``"corrupt"``, ``"failed"`` for a storage failure; None if it is not one."""
    if isinstance(exc, OSError):
        return _ERRNO_REASON.get(exc.errno or 0, "failed")
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(
        exc, (sqlite3.ProgrammingError, sqlite3.IntegrityError)
    ):
        return None
    text = str(exc).lower()
    for reason, needles in _MESSAGES:
        if any(needle in text for needle in needles):
            return reason
    if type(exc) is sqlite3.DatabaseError:
        return "corrupt"
    return "failed" if "locked" not in text else None


_ADVICE = {  # reason -> (what it is called, what to do about it)
    "full": ("disk full",
             "free some space on that disk (or point the cache folder elsewhere: APOLLO_FRAMES_CACHE_DIR)"),
    "read_only": ("read-only",
                  "make the folder writable by this user, or point APOLLO_FRAMES_CACHE_DIR at a writable folder"),
    "corrupt": ("corrupt or not a database", "move {path} aside (or remove it) and run again"),
    "io": ("write failed", "the disk may be full, over a quota or failing: free some space and run again"),
    "failed": ("storage failure", "check the disk and the folder's permissions"),
    "busy": ("locked", "another process kept it locked too long; run again when it is done"),
}


def storage_error(exc: BaseException, path: Path, what: str, reason: str, remedy: str = "") -> StorageError:
    """A :class:`StorageError` for ``exc`` on ``path``, with what to do about it (``remedy`` for a corrupt file)."""
    label, advice = _ADVICE[reason]
    advice = remedy if remedy and reason == "corrupt" else advice.format(path=path)
    return StorageError(f"{what} {path}: {label} ({exc}); {advice}", path=str(path), reason=reason)


@contextlib.contextmanager
def storage_errors(path: Path, what: str, remedy: str = "") -> Iterator[None]:
    """Turn disk-level failures inside the block into :class:`StorageError` (other errors pass through)."""
    try:
        yield
    except (sqlite3.DatabaseError, OSError) as exc:
        reason = reason_of(exc)
        if reason is None:
            raise
        raise storage_error(exc, path, what, reason, remedy) from exc


def wal_mode(con: sqlite3.Connection) -> str:
    """Put the database in WAL mode (once per file) and return the mode it is in.

    Switching takes a lock the busy handler does not cover (two connections opening a new file at the same
    moment: "database is locked" at once), so the switch is tried again briefly; a file already in WAL mode is
    only read (no lock)."""
    mode = str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    for attempt in range(0 if mode == "wal" else 50):
        try:
            return str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05)
    return mode
