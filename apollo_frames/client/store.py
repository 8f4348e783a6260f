"""The answer store: one entry per normalised input record, on disk (diskcache's SQLite schema).

What goes in and out is ours: every value is JSON bytes ``{"v": SCHEMA_VERSION,
"k": key, "d": answer}`` stored raw; nothing read from disk is ever unpickled
or evaluated (:class:`SafeDisk` refuses diskcache's pickle mode, the settings
table cannot run pragmas). An entry that does not parse, carries another key or
another schema version is a miss: it is quarantined (deleted, recorded in the
``Quarantine`` table), counted in :attr:`ResponseCache.quarantined`, and asked
again. A cached miss is ``None``; an absent key is absent.

Keys are a SHA-256 of (schema version, namespace, endpoint, normalised input,
options that change the answer). The API key is never part of a key or a value.
Reads take one SQL query per block of keys; writes one transaction per batch.
Leases (:meth:`ResponseCache.claim`) let processes sharing the folder tell each
other which records are in flight. Folder 0700, files 0600.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import (
    DEFAULT_SETTINGS,
    ENOVAL,
    METADATA,
    MODE_BINARY,
    MODE_RAW,
    UNKNOWN,
)

from apollo_frames.client.flat import FLAT_TABLES
from apollo_frames.client.spool import replay
from apollo_frames.client.storage import (
    database_files,
    private_dir,
    private_file,
    storage_errors,
    tighten,
)
from apollo_frames.core import jsontext
from apollo_frames.core.clock import SYSTEM_CLOCK, Clock
from apollo_frames.core.errors import StorageError, warn

try:
    import fcntl
except ImportError:  # not POSIX: a namesake's leases are believed until they expire
    fcntl = None  # type: ignore[assignment]

#: Bump when the meaning or format of stored values changes: old entries are then never looked up
#: (the version is part of every key) and ``cache verify`` / ``prune`` clear them. 1 was pickled values.
SCHEMA_VERSION = 2
#: Values up to this size stay inline in SQLite (read in one query); larger ones go to a file beside it.
INLINE_LIMIT = 2**24
#: Keys per SQL statement (SQLite allows 32,766 variables; a block of 900 keeps every version happy).
SQL_BLOCK = 900
#: What the settings table may hold; anything else found there is ignored (never becomes a PRAGMA).
_KNOWN_SETTINGS = frozenset(DEFAULT_SETTINGS) | frozenset(METADATA)
#: diskcache settings we always pass, so none is taken from a (possibly tampered) database.
_SETTINGS: dict[str, Any] = {
    "statistics": 0,
    "tag_index": 0,
    # No size-based eviction: an evicted answer would be paid for again. TTLs bound the age.
    "eviction_policy": "none",
    "size_limit": 2**62,
    "cull_limit": 0,
    "sqlite_auto_vacuum": 1,
    "sqlite_cache_size": 2**13,
    "sqlite_journal_mode": "wal",
    "sqlite_mmap_size": 0,
    "sqlite_synchronous": 1,
    "disk_min_file_size": INLINE_LIMIT,
    "disk_pickle_protocol": 0,
}
_VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_TABLES = (
    """CREATE TABLE IF NOT EXISTS Quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, key, reason TEXT NOT NULL,
        mode INTEGER, size INTEGER)""",
    """CREATE TABLE IF NOT EXISTS Claims (
        key TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER, host TEXT, expires REAL NOT NULL)""",
    *FLAT_TABLES,
)
_SELECT = "SELECT rowid, key, raw, mode, filename, value, store_time, expire_time FROM Cache"
_UPSERT_ROW = "(?, 1, ?, ?, ?, 0, NULL, ?, ?, NULL, ?)"
#: rows per upsert statement: one statement is one step (one round trip out of Python), within SQLite's
#: oldest limit of 999 variables per statement
_UPSERT_ROWS = 999 // _UPSERT_ROW.count("?")
#: claims per insert statement (five variables each)
_CLAIM_ROWS = 999 // 5


def _upsert(rows: int, newer_only: bool = False) -> str:
    """The statement that stores ``rows`` entries (``newer_only``: an entry stored more recently is kept)."""
    return (
        "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, "
        f"filename, value) VALUES {','.join([_UPSERT_ROW] * rows)} "
        "ON CONFLICT(key, raw) DO UPDATE SET store_time = excluded.store_time, expire_time = excluded.expire_time, "
        "access_time = excluded.access_time, size = excluded.size, mode = excluded.mode, filename = NULL, "
        "value = excluded.value" + (" WHERE excluded.store_time > Cache.store_time" if newer_only else "")
    )


_CORRUPT_REMEDY = "run `apollo-frames cache verify` (it sets the file aside and keeps what is readable) or remove it"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_key(namespace: str, endpoint: str, record: Any, options: Mapping[str, Any] | None = None) -> str:
    """The store's key of one answer (what :meth:`ResponseCache.key` gives), without opening a store."""
    text = canonical_json([SCHEMA_VERSION, namespace, endpoint, record, dict(options or {})])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class BadEntry(ValueError):
    """A stored entry that is not ours: wrong mode, not JSON, another key or schema version."""


#: a key that JSON quotes as it is (every key the store makes: a sha256 hex digest)
_PLAIN_KEY = re.compile(r"[0-9A-Za-z_.:-]*")
#: the keys the store makes: a sha256 hex digest
_STORE_KEY = re.compile(r"[0-9a-f]{64}")


def encode_entry(key: str, data: Any, data_json: bytes | None = None) -> bytes:
    """The stored bytes of one answer (``data`` is a JSON object or None for a cached miss).

    ``data_json``: ``data`` already encoded (an answer stored under several keys is encoded once).
    """
    if data_json is None:
        data_json = jsontext.dumps(data)
    # the bytes of json.dumps({"v": SCHEMA_VERSION, "k": key, "d": data}), with ``data`` encoded once
    plain = isinstance(key, str) and _PLAIN_KEY.fullmatch(key) is not None
    quoted = f'"{key}"' if plain else json.dumps(key, ensure_ascii=False)
    return b"".join((f'{{"v":{SCHEMA_VERSION},"k":{quoted},"d":'.encode(), data_json, b"}"))


def decode_entry(key: Any, blob: Any) -> dict | None:
    """The answer in ``blob`` if it is a current entry for ``key``; else :class:`BadEntry` saying why."""
    if not isinstance(blob, (bytes, str)):
        raise BadEntry(f"value of type {type(blob).__name__}")
    try:
        entry = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        raise BadEntry("not JSON") from None
    except RecursionError:
        raise BadEntry("nested too deeply") from None
    if not isinstance(entry, dict) or "d" not in entry:
        raise BadEntry("not an entry")
    if entry.get("v") != SCHEMA_VERSION:
        raise BadEntry(f"schema version {entry.get('v')!r}")
    if entry.get("k") != key:
        raise BadEntry("carries another key")
    data = entry["d"]
    if data is not None and not isinstance(data, dict):
        raise BadEntry(f"answer of type {type(data).__name__}")
    return data


def spooled_entry(item: Any) -> tuple[str, Any, bytes]:
    """(key, answer, the bytes to store) of an entry read from the answer spool, checked like a stored entry;
    ValueError saying why when it is not a current entry of ours."""
    if not isinstance(item, dict) or set(item) != {"v", "k", "d"}:
        raise ValueError("with an entry that is not one")
    if item["v"] != SCHEMA_VERSION:
        raise ValueError(f"of schema version {item['v']!r}")
    key = item["k"]
    if not isinstance(key, str) or not _STORE_KEY.fullmatch(key):
        raise ValueError("with a key that is not a store key")
    blob = encode_entry(key, item["d"])
    return key, decode_entry(key, blob), blob  # the answer as a read will see it (an object or null)


class SafeDisk(diskcache.Disk):
    """diskcache serialisation for bytes and text keys only: pickle is never written nor read."""

    def __init__(self, directory: str, min_file_size: int = INLINE_LIMIT, pickle_protocol: int = 0, **_ignored: Any):
        # Unknown disk_* settings found in a tampered database arrive here: ignored.
        super().__init__(directory, min_file_size=INLINE_LIMIT, pickle_protocol=0)

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"store keys are text, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise BadEntry("pickled key")
        return bytes(key) if isinstance(key, (bytes, memoryview)) else key

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        if read or type(value) is not bytes:
            raise TypeError("the answer store keeps bytes only")
        if len(value) < self.min_file_size:
            return 0, MODE_RAW, None, sqlite3.Binary(value)
        filename, full_path = self.filename(key, value)
        private_dir(Path(full_path).parent)
        fd = os.open(full_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        return len(value), MODE_BINARY, filename, None

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> bytes:
        if mode == MODE_RAW and isinstance(value, (bytes, str)):
            return bytes(value) if not isinstance(value, str) else value.encode()
        if mode == MODE_BINARY and not read and self._own_file(filename):
            with open(os.path.join(self._directory, str(filename)), "rb") as reader:
                return reader.read()
        raise BadEntry(f"stored in mode {mode}" if mode != MODE_BINARY else "value file outside the store")

    def remove(self, file_path: str) -> None:
        # A filename read from the database is only ever one of ours: never a path elsewhere.
        if self._own_file(file_path):
            super().remove(file_path)

    @staticmethod
    def _own_file(filename: Any) -> bool:
        return isinstance(filename, str) and _VALUE_FILE.fullmatch(filename.replace(os.sep, "/")) is not None


class _SafeCache(diskcache.Cache):
    """``diskcache.Cache`` that ignores settings it does not know (no PRAGMA is built from the database)."""

    def reset(self, key: str, value: Any = ENOVAL, update: bool = True) -> Any:
        if key not in _KNOWN_SETTINGS:
            return value
        return super().reset(key, value, update)


@dataclasses.dataclass
class StoreStats:
    """What the store holds (``apollo-frames cache info``)."""

    path: str
    entries: int
    size_bytes: int
    oldest: float | None
    newest: float | None
    quarantined: int
    quarantined_this_session: int
    leases: int

    def lines(self) -> list[str]:
        def when(t: float | None) -> str:
            return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

        return [
            f"store       {self.path}",
            f"entries     {self.entries:,}",
            f"size        {self.size_bytes / 2**20:,.1f} MiB",
            f"oldest      {when(self.oldest)}",
            f"newest      {when(self.newest)}",
            f"quarantined {self.quarantined:,} (this session: {self.quarantined_this_session:,})",
            f"leases      {self.leases:,}",
        ]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in (line.split(None, 1) for line in self.lines()))
        return f"<table>{rows}</table>"


@dataclasses.dataclass
class Lease:
    """Who holds a claim on a key, until when (POSIX seconds)."""

    owner: str
    pid: int | None
    host: str | None
    expires: float


@dataclasses.dataclass
class Claimed:
    """The outcome of :meth:`ResponseCache.claim`: keys now ours, and keys another live lease holds."""

    claimed: list[str]
    held_by_others: dict[str, Lease]


@dataclasses.dataclass
class Waited:
    """The outcome of :meth:`ResponseCache.wait_for`: answers that arrived, keys still held, keys free to claim."""

    found: dict[str, Any]
    still_held: list[str]
    free: list[str]


def set_aside(db: Path) -> Path:
    """Move a database and its side files into ``quarantine/`` beside it (kept, never deleted); returns the new path."""
    folder = private_dir(db.parent / "quarantine")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    target = folder / f"{db.name}.{stamp}"
    for source in database_files(db):
        if source.exists():
            os.replace(source, folder / (target.name + source.name[len(db.name) :]))
    return target


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


#: the owners of this process that may hold leases now: open stores, and the runs they began
_LIVE_OWNERS: set[str] = set()
#: tells this process from another with the same host name and pid (containers sharing a host's network)
_TOKEN = uuid.uuid4().hex[:8]


def _this_process() -> str:
    """How the lease owners of this process begin (the pid read now: a forked child is another process)."""
    return f"{_hostname()}:{os.getpid()}:{_TOKEN}:"


#: per store folder, this process's presence file, locked while the process lives (never closed: that would
#: drop the lock). A lease of another process with this host name and pid (a container restarted as pid 1, or
#: one sharing the host's network) is alive while its presence file is locked
_PRESENCE: dict[str, int] = {}
_TOKEN_IN_OWNER = re.compile(r"[^:]*:[0-9]+:(?P<token>[0-9a-f]{8}):.*")


def _announce(folder: Path) -> None:
    """Lock this process's presence file in ``folder`` (once per folder); where that cannot be done, namesakes
    are believed alive until their leases expire."""
    if fcntl is None or str(folder) in _PRESENCE:
        return
    with contextlib.suppress(OSError):
        fd = os.open(private_dir(folder) / _TOKEN, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        _PRESENCE[str(folder)] = fd


def _namesake_alive(folder: Path, owner: Any) -> bool:
    """Whether the process behind ``owner``, with this process's host name and pid, still runs: its presence
    file in ``folder`` is locked (or cannot be looked at: then it is believed)."""
    found = _TOKEN_IN_OWNER.fullmatch(owner) if isinstance(owner, str) else None
    if fcntl is None or found is None:
        return True
    try:
        fd = os.open(folder / found["token"], os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: it runs
        return True
    finally:
        os.close(fd)
    return False


def _alive(pid: Any, host: Any, owner: Any = None, folder: Path | None = None) -> bool:
    """False for a lease of a process on this host that no longer runs (killed): its claims are free at once;
    also for a lease of this very process whose run has ended (it failed before releasing them).

    A lease from another host is believed until it expires (its process cannot be seen from here).
    """
    if isinstance(owner, str) and owner.startswith(_this_process()):
        return owner in _LIVE_OWNERS
    if host == _hostname() and pid == os.getpid():  # another process with our name: see ``_PRESENCE``
        return folder is None or _namesake_alive(folder, owner)
    if os.name != "posix" or host != _hostname() or not isinstance(pid, int) or pid <= 0:
        return True  # (elsewhere os.kill(pid, 0) would not just look)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def _opens_as_sqlite(db: Path) -> bool:
    """Whether SQLite reads ``db`` as a database (a corrupt one too: that is for ``cache verify``)."""
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return True  # cannot look (permissions): the store's own open reports it
    try:
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as exc:
        return "not a database" not in str(exc).lower()
    finally:
        con.close()
    return True


def _blocks(items: Sequence[Any], size: int = SQL_BLOCK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class ResponseCache:
    """The answer store over diskcache's SQLite file: block reads, batch writes, quarantine, leases."""

    def __init__(
        self,
        directory: str | Path,
        *,
        namespace: str = "",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 60.0,
    ):
        self.directory = Path(directory).expanduser() / "responses"
        self.path = self.directory / "cache.db"
        self.namespace = namespace
        self.clock = clock
        #: entries found bad and set aside by this object (for the run summary)
        self.quarantined = 0
        self.quarantine_reasons: Counter[str] = Counter()
        self.owner = f"{_this_process()}{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(self.owner)
        self._owners_dir = self.directory / "owners"
        #: held through each write transaction: this object's threads (each with its own connection) wait for
        #: one another here rather than in SQLite's busy handler, which sleeps a millisecond or more each time
        self._writing = threading.RLock()
        with storage_errors(self.directory, "the answer store"):
            private_dir(self.directory)
            self._set_aside_garbage()
            private_file(self.path)
        with storage_errors(self.path, "the answer store", _CORRUPT_REMEDY):
            self._cache = _SafeCache(str(self.directory), disk=SafeDisk, timeout=timeout, **_SETTINGS)
        with self.transaction() as con:
            for statement in _TABLES:
                con.execute(statement)
        tighten(database_files(self.path))
        _announce(self._owners_dir)
        self.replay_spool()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        # diskcache's own thread-local connection, so our statements join its transactions.
        return self._cache._con

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read-only statement on the store's database."""
        with storage_errors(self.path, "reading the answer store", _CORRUPT_REMEDY):
            return self._con().execute(sql, tuple(params)).fetchall()

    _rows = query

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (diskcache's), storage failures as :class:`StorageError`."""
        with self._writing, storage_errors(self.path, "writing the answer store", _CORRUPT_REMEDY), \
                self._cache.transact():
            yield self._con()

    @property
    def disk(self) -> SafeDisk:
        return self._cache.disk

    def _set_aside_garbage(self) -> None:
        """A cache.db that is not SQLite at all holds nothing of ours: move it aside (kept), count it, go on.

        SQLite looks first: the file itself is opened only when SQLite refuses it, since closing a
        plain descriptor of a database drops this process's locks on it (see ``private_file``).
        """
        if not self.path.exists() or _opens_as_sqlite(self.path):
            return
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        if not head or head == _SQLITE_MAGIC:
            return
        target = set_aside(self.path)
        self.quarantined += 1
        self.quarantine_reasons["database not a SQLite database"] += 1
        warn(
            f"the answer store {self.path} was not a SQLite database: moved to {target}; "
            "its answers will be asked again"
        )

    # -- keys, reads, writes -------------------------------------------------------------------

    def key(self, endpoint: str, record: Any, options: Mapping[str, Any] | None = None) -> str:
        return entry_key(self.namespace, endpoint, record, options)

    def keys(self, endpoint: str, record_texts: Iterable[str], options: Mapping[str, Any] | None = None) -> list[str]:
        """:meth:`key` of many records given as their :func:`canonical_json` texts (the same keys, cheaper)."""
        head = f"[{SCHEMA_VERSION},{canonical_json(self.namespace)},{canonical_json(endpoint)},"
        tail = f",{canonical_json(dict(options or {}))}]"
        sha = hashlib.sha256
        return [sha(f"{head}{text}{tail}".encode()).hexdigest() for text in record_texts]

    def get_many(
        self, keys: Iterable[str], *, stamps: dict[str, tuple[float, float | None]] | None = None
    ) -> dict[str, Any]:
        """The stored answers of those keys that are present (a cached miss is ``None``): one query per block.

        ``stamps``: filled with each answer's (store time, expiry time), which a flattened copy is tied to.
        """
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        bad: list[tuple[int, Any, str, int | None]] = []
        now = self.clock.time()
        for block in _blocks(wanted):
            rows = self._rows(
                f"{_SELECT} WHERE key IN ({_marks(len(block))}) AND (expire_time IS NULL OR expire_time > ?)",
                [*block, now],
            )
            if stamps is not None:
                stamps.update((row[1], (row[6], row[7])) for row in rows)
            self.decode_rows([row[:6] for row in rows], found, bad)
        if bad:
            self.quarantine(bad)
        return found

    def decode_rows(self, rows: list[tuple], found: dict[str, Any], bad: list) -> None:
        """Decode (rowid, key, raw, mode, filename, value) rows into ``found``; the bad ones go to ``bad``."""
        disk = self._cache.disk
        for rowid, key, raw, mode, filename, value in rows:
            try:
                if raw != 1 or not isinstance(key, str):
                    raise BadEntry("pickled key")
                found[key] = decode_entry(key, disk.fetch(mode, filename, value, False))
            except (BadEntry, OSError) as exc:
                bad.append((rowid, key, str(exc) or type(exc).__name__, mode))

    def get(self, key: str, default: Any = None) -> Any:
        return self.get_many([key]).get(key, default)

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None, release: Sequence[str] = ()) -> None:
        """Store answers (a JSON object, or None for a miss), one transaction; ``ttl`` seconds, None = no expiry.

        ``release``: this object's leases to drop in the same transaction (:meth:`release`).
        """
        now = self.clock.time()
        expire = None if ttl is None else now + ttl
        self.write_entries([(key, data, now, expire) for key, data in items.items()], release=release)

    @staticmethod
    def encode(items: Mapping[str, Any]) -> dict[str, bytes]:
        """The stored bytes of each (key, answer): what :meth:`write_entries` takes as ``blobs``.

        An answer under several keys (aliases) is encoded to JSON once.
        """
        encoded: dict[int, bytes] = {}
        blobs = {}
        for key, data in items.items():
            text = encoded.get(id(data))
            if text is None:
                text = encoded[id(data)] = jsontext.dumps(data)
            blobs[key] = encode_entry(key, data, text)
        return blobs

    def write_entries(
        self, entries: Sequence[tuple[str, Any, float, float | None]], *, newer_only: bool = False,
        release: Sequence[str] = (), blobs: Mapping[str, bytes] | None = None, owner: str | None = None,
    ) -> int:
        """Store (key, answer, stored_at, expires_at) entries in one transaction; returns how many were written.

        ``newer_only``: an entry already stored more recently is kept (import). ``release``: as in :meth:`set_many`.
        ``blobs``: entries already encoded (:meth:`encode`), by key. ``owner``: whose leases ``release`` drops.
        """
        rows = []
        disk = self._cache.disk
        given = blobs or {}
        blobs = {**given, **self.encode({key: data for key, data, _, _ in entries if key not in given})}
        for key, _, stored_at, expire in entries:
            size, mode, _, value = disk.store(blobs[key], False, key=key)
            rows.append((key, stored_at, expire, stored_at, size, mode, value))
        if not rows and not release:
            return 0
        if len(rows) <= _UPSERT_ROWS and not release:  # one statement is a transaction of its own
            with self._writing, storage_errors(self.path, "writing the answer store", _CORRUPT_REMEDY):
                return self._upsert(self._con(), rows, newer_only)
        with self.transaction() as con:
            written = self._upsert(con, rows, newer_only)
            self._release(con, release, owner)
        return written

    @staticmethod
    def _upsert(con: sqlite3.Connection, rows: Sequence[tuple], newer_only: bool) -> int:
        written = 0
        for block in _blocks(rows, _UPSERT_ROWS):
            params = [value for row in block for value in row]
            written += max(con.execute(_upsert(len(block), newer_only), params).rowcount, 0)
        return written

    def __contains__(self, key: str) -> bool:
        return key in self.get_many([key])

    def __len__(self) -> int:
        ((count,),) = self._rows("SELECT COUNT(*) FROM Cache")
        return int(count)

    def clear(self) -> None:
        with self.transaction() as con:
            for table in ("Cache", "Flat", "FlatBlock"):
                con.execute(f"DELETE FROM {table}")
        with contextlib.suppress(OSError):  # what gone processes spooled goes too
            replay(self.spool_dir, lambda entries, blobs: None, spooled_entry)

    # -- the spool ----------------------------------------------------------------------------

    @property
    def spool_dir(self) -> Path:
        """Where answer writers append answers before storing them (see :mod:`apollo_frames.client.spool`)."""
        return self.directory / "spool"

    def replay_spool(self) -> int:
        """Store what writers of processes now gone spooled and never stored; returns the entries replayed.

        Never fatal: a store that cannot be written leaves the files for a later run. Lines that are not
        ours are counted as quarantined (with a warning) and skipped.
        """
        try:
            done = replay(self.spool_dir, lambda entries, blobs: self.write_entries(entries, newer_only=True,
                                                                                    blobs=blobs), spooled_entry)
        except (StorageError, sqlite3.Error, OSError):
            return 0  # the files stay for a run that can write the store
        except Exception as exc:  # never keeps the store from opening
            warn(f"the answer spool in {self.spool_dir} could not be replayed ({type(exc).__name__}: {exc}); "
                 "its files are left there")
            return 0
        if done.bad:
            self.quarantined += len(done.bad)
            self.quarantine_reasons.update(done.bad)
            warn(f"{len(done.bad)} line(s) of the answer spool in {self.spool_dir} could not be trusted "
                 f"({', '.join(sorted(set(done.bad)))}): skipped")
        return done.entries

    def close(self) -> None:
        _LIVE_OWNERS.discard(self.owner)
        self._cache.close()

    def begin_run(self) -> str:
        """A lease owner of its own for one run: two runs sharing this store (threads sharing a client) keep
        apart as two processes do. Leases of a run ended (:meth:`end_run`) without releasing them are free."""
        owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        _LIVE_OWNERS.add(owner)
        return owner

    def end_run(self, owner: str) -> None:
        _LIVE_OWNERS.discard(owner)

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- quarantine ----------------------------------------------------------------------------

    def quarantine(self, bad: list[tuple[int, Any, str, int | None]], *, quiet: bool = False) -> None:
        """Delete bad rows (recording key, reason, mode, size); never fatal: a read-only store just counts them."""
        self.quarantined += len(bad)
        self.quarantine_reasons.update(reason for _, _, reason, _ in bad)
        now = self.clock.time()
        try:
            with self._writing, self._cache.transact():
                con = self._con()
                con.executemany(
                    "INSERT INTO Quarantine (time, key, reason, mode, size) "
                    "SELECT ?, key, ?, mode, length(value) FROM Cache WHERE rowid = ?",
                    [(now, reason, rowid) for rowid, _, reason, _ in bad],
                )
                con.executemany("DELETE FROM Cache WHERE rowid = ?", [(rowid,) for rowid, *_ in bad])
        except (sqlite3.Error, OSError, diskcache.Timeout):
            pass  # they stay on disk, and stay misses: nothing read from them is trusted
        if quiet:
            return
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(r for _, _, r, _ in bad).most_common())
        warn(
            f"{len(bad)} stored answer(s) in {self.path} could not be trusted ({reasons}): set aside and "
            "treated as not cached; `apollo-frames cache verify` checks the whole store"
        )

    def stats(self) -> StoreStats:
        """Entries, size on disk, oldest/newest entry, quarantined (ever / by this object), live leases."""
        ((entries, oldest, newest),) = self._rows("SELECT COUNT(*), MIN(store_time), MAX(store_time) FROM Cache")
        ((quarantined,),) = self._rows("SELECT COUNT(*) FROM Quarantine")
        ((leases,),) = self._rows("SELECT COUNT(*) FROM Claims WHERE expires > ?", [self.clock.time()])
        size = sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file() and "quarantine" not in f.parts)
        return StoreStats(
            str(self.directory), int(entries), size, oldest, newest, int(quarantined), self.quarantined, int(leases)
        )

    # -- leases across processes ---------------------------------------------------------------

    def claim(self, keys: Iterable[str], lease_s: float, *, owner: str | None = None) -> Claimed:
        """Take a lease of ``lease_s`` seconds on each key no other live lease holds (one transaction).

        ``owner``: whose leases (a run's, from :meth:`begin_run`); this store's by default.
        """
        owner = owner or self.owner
        wanted = list(dict.fromkeys(keys))
        now = self.clock.time()
        held: dict[str, Lease] = {}
        taken_over = False
        pid, host = os.getpid(), _hostname()
        with self.transaction() as con:
            for block in _blocks(wanted):
                for key, other, opid, ohost, expires in con.execute(
                    f"SELECT key, owner, pid, host, expires FROM Claims WHERE key IN ({_marks(len(block))}) "
                    "AND owner != ?",
                    (*block, owner),
                ):
                    if expires > now and _alive(opid, ohost, other, self._owners_dir):
                        held[key] = Lease(other, opid, ohost, expires)
                    else:
                        taken_over = True
            mine = [k for k in wanted if k not in held]
            for block in _blocks(mine, _CLAIM_ROWS):  # one statement per block: one step each, not one per key
                con.execute(
                    f"INSERT OR REPLACE INTO Claims (key, owner, pid, host, expires) VALUES "
                    f"{','.join(['(?, ?, ?, ?, ?)'] * len(block))}",
                    [value for k in block for value in (k, owner, pid, host, now + lease_s)],
                )
        if taken_over:  # its process may be gone with answers spooled and not stored: they are stored first
            self.replay_spool()
        return Claimed(mine, held)

    def release(self, keys: Iterable[str], *, owner: str | None = None) -> None:
        """Drop this object's (or ``owner``'s) leases on ``keys`` (others' leases are left alone)."""
        with self.transaction() as con:
            self._release(con, keys, owner)

    def _release(self, con: sqlite3.Connection, keys: Iterable[str], owner: str | None = None) -> None:
        for block in _blocks(list(dict.fromkeys(keys))):
            con.execute(f"DELETE FROM Claims WHERE owner = ? AND key IN ({_marks(len(block))})",
                        (owner or self.owner, *block))

    def held_by_others(self, keys: Iterable[str], *, owner: str | None = None) -> list[str]:
        """Those of ``keys`` another owner than this object (or ``owner``) holds a live lease on."""
        wanted = list(dict.fromkeys(keys))
        now = self.clock.time()
        held: set[str] = set()
        for block in _blocks(wanted):
            rows = self._rows(
                f"SELECT key, owner, pid, host FROM Claims WHERE key IN ({_marks(len(block))}) AND owner != ? "
                "AND expires > ?",
                [*block, owner or self.owner, now],
            )
            held.update(key for key, other, pid, host in rows if _alive(pid, host, other, self._owners_dir))
        return [k for k in wanted if k in held]

    def wait_for(
        self, keys: Iterable[str], timeout: float, *, poll: float = 0.05, sleep: Callable[[float], None] | None = None,
        stored_after: float | None = None, owner: str | None = None,
    ) -> Waited:
        """Wait until every key has an answer or is no longer held by a live lease of another owner.

        Time is read from the store's clock and waits go to its ``sleep`` (or the
        ``sleep`` given), so a test with a ``FakeClock`` never waits for real. Keys whose lease expired or was released
        without an answer come back in ``free``: the caller claims and sends them. ``stored_after``: only answers
        stored after that time count (a refresh does not take the old answer the other process is replacing).
        ``owner``: the waiting run's lease owner (see :meth:`claim`).
        """
        sleep = sleep or self.clock.sleep
        pending = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        deadline = self.clock.time() + timeout
        while True:
            stamps: dict[str, tuple[float, float | None]] = {}
            got = self.get_many(pending, stamps=stamps)
            found.update((k, v) for k, v in got.items() if stored_after is None or stamps[k][0] >= stored_after)
            pending = [k for k in pending if k not in found]
            held = self.held_by_others(pending, owner=owner)
            if not held or self.clock.time() >= deadline:
                return Waited(found, held, [k for k in pending if k not in set(held)])
            sleep(poll)
