"""The suppression list beside the answer store: identifiers never to enrich, push or keep.

``<cache_dir>/suppression.sqlite`` holds keyed hashes, never the values: each
identifier (:mod:`apollo_frames.core.suppress`) is stored as HMAC-SHA256 under
a secret of this cache folder (``suppression.key``, 32 random bytes, 0600), so
the list can say "this one is suppressed" without holding the address, and a
copy of the file alone cannot be checked against a list of guesses. The reason
is kept beside each hash, in clear: write reasons, not names.

Every run on the folder reads the whole list once (:meth:`SuppressionList.digests`)
and checks rows and answers in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from apollo_frames.client.storage import private_dir, private_file, storage_errors
from apollo_frames.core.clock import SYSTEM_CLOCK, Clock
from apollo_frames.core.errors import InputError, StorageError

KEY_FILE = "suppression.key"
LIST_FILE = "suppression.sqlite"
_KEY_BYTES = 32
_SCHEMA = """CREATE TABLE IF NOT EXISTS suppressed (
    digest TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT, added_at REAL NOT NULL)"""


class SuppressionList:
    """The keyed hashes of suppressed identifiers in one cache folder."""

    def __init__(self, folder: str | os.PathLike[str], *, clock: Clock = SYSTEM_CLOCK):
        self.folder = Path(folder)
        self.clock = clock
        self._secret: bytes | None = None

    # -- hashing --------------------------------------------------------------------------------------

    def secret(self) -> bytes:
        """This folder's key, made on first use (0600; a key of the wrong size is a StorageError, never replaced:
        replacing it would silently empty the list)."""
        if self._secret is None:
            path = self.folder / KEY_FILE
            with storage_errors(path, "the suppression list's key"):
                private_dir(self.folder, tighten_existing=False)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                except FileExistsError:
                    key = _read_key(path)
                else:
                    key = secrets.token_bytes(_KEY_BYTES)
                    with os.fdopen(fd, "wb") as out:
                        out.write(key)
                        out.flush()
                        os.fsync(out.fileno())
            self._secret = key
        return self._secret

    def digest(self, kind: str, value: str) -> str:
        """The keyed hash of one normalised identifier."""
        return hmac.new(self.secret(), f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def listed(self, pairs: Iterable[tuple[str, str]], digests: frozenset[str]) -> str | None:
        """The kind of the first of ``pairs`` whose keyed hash is in ``digests`` (the list as read), else None."""
        for kind, value in pairs:
            if self.digest(kind, value) in digests:
                return kind
        return None

    # -- the list -------------------------------------------------------------------------------------

    def add(self, pairs: Iterable[tuple[str, str]], reason: str | None = None) -> int:
        """Suppress each ``(kind, value)``; returns how many were not suppressed before."""
        rows = [(self.digest(k, v), k, reason, self.clock.time()) for k, v in pairs]
        with self._connect() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO suppressed VALUES (?, ?, ?, ?)", rows)
            return con.total_changes - before

    def remove(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Lift the suppression of each ``(kind, value)``; returns how many were suppressed."""
        digests = [(self.digest(k, v),) for k, v in pairs]
        with self._connect() as con:
            before = con.total_changes
            con.executemany("DELETE FROM suppressed WHERE digest = ?", digests)
            return con.total_changes - before

    def digests(self) -> frozenset[str]:
        """Every suppressed hash (read once per run; empty without a list file)."""
        if not (self.folder / LIST_FILE).exists():
            return frozenset()
        with self._connect() as con:
            return frozenset(row[0] for row in con.execute("SELECT digest FROM suppressed"))

    def summary(self) -> pd.DataFrame:
        """Counts by kind and reason, with when the first and last were added (UTC); never the values."""
        columns = ["kind", "reason", "count", "first_added", "last_added"]
        if not (self.folder / LIST_FILE).exists():
            return pd.DataFrame(columns=columns)
        with self._connect() as con:
            rows = con.execute("SELECT kind, reason, COUNT(*), MIN(added_at), MAX(added_at) FROM suppressed "
                               "GROUP BY kind, reason ORDER BY kind, reason").fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("first_added", "last_added"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True).dt.floor("s")
        return frame

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        path = self.folder / LIST_FILE
        with storage_errors(path, "the suppression list"):
            private_dir(self.folder, tighten_existing=False)
            private_file(path)
            con = sqlite3.connect(path, timeout=30)
            try:
                with con:
                    con.execute(_SCHEMA)
                    yield con
            finally:
                con.close()


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src:
        key = src.read(_KEY_BYTES + 1)
    if len(key) != _KEY_BYTES:
        raise StorageError(f"{path} is not a suppression key ({len(key)} bytes, expected {_KEY_BYTES}): restore it "
                           "from a backup; a new key would make every suppressed identifier unrecognisable",
                           path=path, reason="corrupt")
    return key


def suppression_values(values: Any) -> list[Any]:
    """The raw values of any supported source: a path (``Path``, or text naming an existing file), a frame,
    a Series, or any other iterable; a single text value is one value."""
    if isinstance(values, (str, os.PathLike)) and _is_file(values):
        with open(values, encoding="utf-8-sig", errors="replace") as lines:
            return [line for line in lines]
    if isinstance(values, Path):
        raise InputError(f"no such file: {values}")
    if isinstance(values, pd.DataFrame):
        return values.to_numpy().ravel().tolist()
    if isinstance(values, str):
        return [values]
    if isinstance(values, pd.Series):
        return values.tolist()
    if isinstance(values, Iterable):
        return list(values)
    raise InputError(f"suppression values must be a list, set, Series, frame or file path, got {type(values).__name__}")


def _is_file(value: str | os.PathLike[str]) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False
