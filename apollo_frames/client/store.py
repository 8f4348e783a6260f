"""The answer store: one entry per normalised input record, in a SQLite file of our own (plain ``sqlite3``).

Keys and values are those of :mod:`apollo_frames.core.entries` (JSON, never unpickled or evaluated); no setting
is read from the database, and triggers this code did not make are dropped when it opens. An entry that does not
parse, carries another key or schema version, or is dated in the future is a miss: quarantined (deleted, recorded
in the ``Quarantine`` table, counted in :attr:`AnswerStore.quarantined`) and asked again. A cached miss is ``None``.

Reads take one SQL query per block of keys; writes one transaction per batch. Claims (:meth:`AnswerStore.claim`)
tell processes sharing the folder which records are in flight; a claim holds while its owner's file in
``owners/`` is locked (``flock``) and its lease has not expired. Folder 0700, files 0600; a database file that is
not a plain file (a FIFO, a symlink) is set aside, never opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import html
import os
import re
import sqlite3
import stat
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from apollo_frames.client.flat import FLAT_TABLES, FLAT_TRIGGERS, Stamp, drop_stale_blocks
from apollo_frames.client.spills import sweep_spills
from apollo_frames.client.storage import (
    database_files,
    private_dir,
    private_file,
    sql_blocks,
    sql_marks,
    storage_errors,
    tighten,
    wal_mode,
)
from apollo_frames.client.suppression import SuppressionList
from apollo_frames.core.clock import SYSTEM_CLOCK, Clock
from apollo_frames.core.entries import BadEntry, decode_entry, encode_entry, entry_key, entry_keys
from apollo_frames.core.errors import StorageError, warn
from apollo_frames.core.suppress import named_identifiers

try:
    import fcntl
except ImportError:  # not POSIX: a claim is believed until its lease expires
    fcntl = None  # type: ignore[assignment]

#: an entry stored more than this after the store's clock reads now is not trusted (a far-future date
#: would outlive every refresh)
FUTURE_SLACK_S = 86400.0
#: a lease longer than this from now (none this code takes) is taken as expired
MAX_LEASE_S = 7 * 86400.0
_TABLES = (
    """CREATE TABLE IF NOT EXISTS Answers (
        key TEXT PRIMARY KEY, stored_at REAL NOT NULL, expires_at REAL, value BLOB)""",
    """CREATE TABLE IF NOT EXISTS Quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, key, reason TEXT NOT NULL, size INTEGER)""",
    """CREATE TABLE IF NOT EXISTS Claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)""",
    # one row per erasure (``forget``): a store object that sees a new one checks what it writes from then on
    """CREATE TABLE IF NOT EXISTS Erasures (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL)""",
    *FLAT_TABLES,
    # the answers replaced (by a refresh or max_age), a few per key, so a run can say what changed
    """CREATE TABLE IF NOT EXISTS Previous (
        key TEXT NOT NULL, replaced_at REAL NOT NULL, stored_at REAL, value BLOB, PRIMARY KEY (key, replaced_at))""",
)
#: previous versions kept per key (the newest)
PREVIOUS_KEPT = 3
#: the triggers that keep a replaced answer in ``Previous`` (every write path replaces through an UPDATE; a
#: trigger's own ``OR REPLACE`` would yield to the upsert's conflict clause, hence the DELETE first)
HISTORY_TRIGGERS = (
    f"""CREATE TRIGGER Previous_on_update BEFORE UPDATE OF value ON Answers
        BEGIN DELETE FROM Previous WHERE key = OLD.key AND replaced_at = NEW.stored_at;
        INSERT INTO Previous (key, replaced_at, stored_at, value) VALUES (OLD.key, NEW.stored_at, OLD.stored_at,
            OLD.value);
        DELETE FROM Previous WHERE key = OLD.key AND replaced_at NOT IN
            (SELECT replaced_at FROM Previous WHERE key = OLD.key ORDER BY replaced_at DESC LIMIT {PREVIOUS_KEPT});
        END""",
    # whatever deletes an answer (forget, retention, quarantine) deletes its previous versions with it
    """CREATE TRIGGER Previous_on_delete AFTER DELETE ON Answers
        BEGIN DELETE FROM Previous WHERE key = OLD.key; END""",
)
_TRIGGERS = (*FLAT_TRIGGERS, *HISTORY_TRIGGERS)
SELECT_ROWS = "SELECT rowid, key, value, stored_at, expires_at FROM Answers"
_UPSERT = (
    "INSERT INTO Answers (key, stored_at, expires_at, value) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
    "stored_at = excluded.stored_at, expires_at = excluded.expires_at, value = excluded.value"
)
#: a store written by diskcache (before this module was plain sqlite3): its inline entries are moved over
_OLD_ENTRIES = (
    "INSERT OR IGNORE INTO Answers (key, stored_at, expires_at, value) SELECT key, store_time, expire_time, value "
    "FROM Cache WHERE raw = 1 AND typeof(key) = 'text' AND typeof(value) = 'blob' AND typeof(store_time) = 'real'"
)
_OLD_TABLES = ("Cache", "Settings", "Flat", "FlatBlock")
_CORRUPT_REMEDY = "run `apollo-frames cache verify` (it sets the file aside and keeps what is readable) or remove it"
_OWNER = re.compile(r"[0-9a-f]{16}")


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

    def __str__(self) -> str:
        def when(t: float | None) -> str:
            return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

        return "\n".join([
            f"store       {self.path}",
            f"entries     {self.entries:,}",
            f"size        {self.size_bytes / 2**20:,.1f} MiB",
            f"oldest      {when(self.oldest)}",
            f"newest      {when(self.newest)}",
            f"quarantined {self.quarantined:,} (this session: {self.quarantined_this_session:,})",
            f"leases      {self.leases:,}",
        ])

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


@dataclasses.dataclass
class Lease:
    """Who holds a claim on a key, until when (POSIX seconds)."""

    owner: str
    expires: float


class Claimed(NamedTuple):
    """The outcome of :meth:`AnswerStore.claim`: keys now ours, and keys another live lease holds."""

    claimed: list[str]
    held_by_others: dict[str, Lease]


@dataclasses.dataclass
class Waited:
    """The outcome of :meth:`AnswerStore.wait_for`: answers that arrived, keys still held, keys free to claim."""

    found: dict[str, Any]
    still_held: list[str]
    free: list[str]


def set_aside(db: Path) -> Path:
    """Move a database and its side files into ``quarantine/`` beside it (kept, never deleted); returns the new path."""
    folder = private_dir(db.parent / "quarantine")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"
    target = folder / f"{db.name}.{stamp}"
    for source in database_files(db):
        if source.is_symlink() or source.exists():
            os.replace(source, folder / (target.name + source.name[len(db.name) :]))
    return target


# -- claim owners: a file each, locked while the owner lives ------------------------------------


class Holders:
    """The owner files of one store folder: ``hold`` one per owner; an owner is ``alive`` while its file is locked
    (``flock`` locks go with the process: a kill -9 frees them). A file found unlocked is removed by whoever finds
    it, so files of killed processes do not pile up."""

    def __init__(self, folder: Path):
        self.folder = folder
        #: owner -> the descriptor of its locked file (this process's owners; a dict's get, set and pop are atomic)
        self.held: dict[str, int] = {}

    def hold(self, owner: str) -> None:
        """Create and lock ``owner``'s file (where files cannot be locked its claims live by their lease alone)."""
        if fcntl is None:
            return
        with contextlib.suppress(OSError):
            path = private_dir(self.folder) / owner
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                    break  # (else a sweep removed it between our open and our lock: make it again)
                os.close(fd)
            self.held[owner] = fd

    def let_go(self, owner: str) -> None:
        """Remove and unlock ``owner``'s file: its claims are free."""
        fd = self.held.pop(owner, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                (self.folder / owner).unlink()
            os.close(fd)

    def alive(self, owner: Any) -> bool:
        """Whether ``owner`` runs: its file is locked (or cannot be looked at: then it is believed)."""
        if fcntl is None:
            return True
        if not isinstance(owner, str) or _OWNER.fullmatch(owner) is None:
            return False  # not an owner this code makes
        try:
            fd = os.open(self.folder / owner, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:  # a symlink is not an owner's file; another user's may be: believed
            return exc.errno != errno.ELOOP
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # (else not an owner's file)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                with contextlib.suppress(OSError):
                    (self.folder / owner).unlink()  # dead: its file goes
            return False
        except OSError:  # locked: it runs (or locks cannot be taken here: believed)
            return True
        finally:
            os.close(fd)

    def sweep(self) -> None:
        """Remove the files of owners that are gone (killed before they could remove their own)."""
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                if _OWNER.fullmatch(path.name) and path.name not in self.held:
                    self.alive(path.name)


def _not_ours(db: Path) -> str | None:
    """Why ``db`` holds nothing of ours, else None: it or a side file (SQLite opens them with it) is not a plain file
    (``lstat``: a FIFO would hang an open, a symlink leads outside), or SQLite, opening it read-only, says it is not
    a database. Never opened as a plain file: that would drop this process's locks on it (see ``private_file``)."""
    for path in reversed(database_files(db)):
        with contextlib.suppress(FileNotFoundError):
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                return "a symlink" if stat.S_ISLNK(mode) else "not a plain file"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=5.0)) as con:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.Error as exc:
        return "not a SQLite database" if "not a database" in str(exc).lower() else None
    return None


#: one answer to store: (key, answer, stored_at, expires_at or None)
Entry = tuple[str, Any, float, "float | None"]
#: store file -> answers this process received but could not store there (full disk), until a read writes them
_UNSTORED: dict[str, dict[str, Entry]] = {}


class AnswerStore:
    """The answer store: block reads, batch writes, quarantine, claims across processes."""

    def __init__(self, directory: str | Path, *, namespace: str = "", clock: Clock = SYSTEM_CLOCK,
                 timeout: float = 60.0, retention: float | None = None):
        self.directory = Path(directory).expanduser() / "responses"
        #: seconds an answer may be kept (None: no limit): older ones are never served and deleted at open
        self.retention = retention
        #: the suppressed hashes this object checks writes by once it saw an erasure (``_erasures_seen``: the newest)
        self._erased: frozenset[str] = frozenset()
        self.path = self.directory / "cache.db"
        self.namespace = namespace
        self.clock = clock
        self.timeout = timeout
        #: entries found bad and set aside by this object (for the run summary)
        self.quarantined = 0
        self.quarantine_reasons: Counter[str] = Counter()
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        #: held through each write transaction: this object's threads wait for one another here rather than in
        #: SQLite's busy handler, which sleeps a millisecond or more each time
        self._writing = threading.RLock()
        #: (key, answer, stored_at, expires_at) a run could not store (a full disk): written before the next read
        #: of this store by any store object of this process (a notebook makes a client per call)
        self.unstored = _UNSTORED.setdefault(str(self.path), {})
        self.holders = Holders(self.directory / "owners")
        with storage_errors(self.directory, "the answer store"):
            private_dir(self.directory)
            if (why := _not_ours(self.path)) is not None:  # nothing of ours: moved aside (kept), counted, and on
                target = set_aside(self.path)
                self.quarantined += 1
                self.quarantine_reasons[f"database {why}"] += 1
                warn(f"the answer store {self.path} was {why}: moved to {target}; its answers will be asked again")
            private_file(self.path)
        with self.transaction() as con:
            self._setup(con)
            self._erasures_seen = self.latest_erasure()
        tighten(database_files(self.path))
        self.holders.sweep()
        sweep_spills(self.directory, self.holders.alive)  # rows a killed file run spilled
        self.owner = self.begin_run()
        #: answers deleted at open for being past the retention (their bytes leave at the next compaction)
        self.purged = 0
        with contextlib.suppress(StorageError):  # a read-only store: its old answers are still never served
            self.purged = self.purge_retention()

    def __repr__(self) -> str:
        return f"AnswerStore({str(self.directory)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def _setup(self, con: sqlite3.Connection) -> None:
        """Our tables; triggers we did not make dropped; a diskcache-era store's entries moved over."""
        if {row[1] for row in con.execute("PRAGMA table_info(FlatRows)")} - {"key", "block"}:
            con.execute("DROP TABLE FlatRows")  # flattened copies of another layout: rebuilt from the raw answers
            con.execute("DROP TABLE IF EXISTS FlatBlocks")
        for statement in _TABLES:
            con.execute(statement)
        ours = {" ".join(sql.split()) for sql in _TRIGGERS}
        for name, sql in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall():
            if " ".join(str(sql).replace("IF NOT EXISTS ", "").split()) not in ours:
                con.execute(f'DROP TRIGGER "{str(name).replace(chr(34), chr(34) * 2)}"')
        for statement in _TRIGGERS:
            con.execute(statement.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1))
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "Cache" in tables and "raw" in {row[1] for row in con.execute("PRAGMA table_info(Cache)")}:
            con.execute(_OLD_ENTRIES)
        for table in tables & set(_OLD_TABLES):
            con.execute(f"DROP TABLE {table}")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        wal_mode(con)
        for pragma in ("synchronous=NORMAL", "trusted_schema=OFF", "wal_autocheckpoint=0"):  # (see :meth:`checkpoint`)
            con.execute(f"PRAGMA {pragma}")
        return con

    def _con(self) -> sqlite3.Connection:
        """This thread's connection (SQLite reads side by side in WAL mode; writes take ``_writing``)."""
        con = getattr(self._local, "con", None)
        if con is None:
            with storage_errors(self.path, "the answer store", _CORRUPT_REMEDY):
                con = self._local.con = self._connect()
            with self._writing:  # (the connections of threads that ended, such as an earlier run's workers, close)
                ended = [c for thread, c in self._connections if not thread.is_alive()]
                self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
                self._connections.append((threading.current_thread(), con))
            for old in ended:
                old.close()
        return con

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of one read-only statement on the store's database."""
        with storage_errors(self.path, "reading the answer store", _CORRUPT_REMEDY):
            return self._con().execute(sql, tuple(params)).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested ones join it), storage failures as :class:`StorageError`."""
        with self._writing, storage_errors(self.path, "writing the answer store", _CORRUPT_REMEDY):
            con = self._con()
            if con.in_transaction:
                yield con
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.execute("COMMIT")

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database (SQLite's automatic checkpoint is off, so that it never
        runs inside a worker's commit). Never fatal: a busy or read-only store just checkpoints later."""
        with contextlib.suppress(sqlite3.Error, StorageError):
            self.query("PRAGMA wal_checkpoint(PASSIVE)")

    # -- keys, reads, writes -------------------------------------------------------------------

    def key(self, endpoint: str, record: Any, options: Mapping[str, Any] | None = None) -> str:
        return entry_key(self.namespace, endpoint, record, options)

    def keys(self, endpoint: str, record_texts: Iterable[str], options: Mapping[str, Any] | None = None) -> list[str]:
        """:meth:`key` of many records given as their :func:`canonical_json` texts (the same keys, cheaper)."""
        return entry_keys(self.namespace, endpoint, record_texts, options)

    def get_many(self, keys: Iterable[str], *, stamps: dict[str, Stamp] | None = None) -> dict[str, Any]:
        """The stored answers of those keys that are present (a cached miss is ``None``), one query per block, then
        those a full disk left in memory (a re-run does not pay for them again). ``stamps``: filled with each
        answer's (stored at, expires at), which a flattened copy is tied to."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        bad: list[tuple[int, Any, str]] = []
        now = self.clock.time()
        since = -float("inf") if self.retention is None else now - self.retention  # (older: past the retention)
        in_memory = self.unstored if self._store_unstored() else {}
        for block in sql_blocks(wanted):
            rows = self.query(f"{SELECT_ROWS} WHERE key IN ({sql_marks(len(block))}) AND (expires_at IS NULL OR "
                              "expires_at > ?) AND stored_at >= ?", [*block, now, since])
            if stamps is not None:
                stamps.update((row[1], (row[3], row[4])) for row in rows)
            self.decode_rows(rows, found, bad, now)
        if bad:
            self.quarantine(bad)
        kept = [in_memory.get(key) for key in wanted if key not in found] if in_memory else []
        for key, data, stored_at, expires in filter(None, kept):
            if (expires is None or expires > now) and stored_at >= since:
                found[key] = data
                if stamps is not None:
                    stamps[key] = (stored_at, expires)
        return found

    @staticmethod
    def decode_rows(rows: list[tuple], found: dict[str, Any], bad: list, now: float) -> None:
        """Decode (rowid, key, value, stored_at, expires_at) rows into ``found``; the bad ones go to ``bad``."""
        for rowid, key, value, stored_at, _ in rows:
            try:
                if not isinstance(stored_at, (int, float)) or stored_at > now + FUTURE_SLACK_S:
                    raise BadEntry("dated in the future")
                found[key] = decode_entry(key, value)
            except BadEntry as exc:
                bad.append((rowid, key, str(exc)))

    def _store_unstored(self) -> bool:
        """Write what a run could not store (paid answers kept in memory) once the store takes writes again; returns
        whether those left in memory were checked and may be served. Each is first checked against the whole
        suppression list (a ``forget`` may have run after it was received, before this object opened): one naming a
        suppressed identifier is let go of."""
        if not self.unstored:
            return True
        try:
            digests = SuppressionList(self.directory.parent, clock=self.clock).digests()
            for key in self._suppressed(list(self.unstored.values()), digests):
                self.unstored.pop(key, None)
        except (StorageError, sqlite3.Error, OSError):
            return False  # (the list unreadable: none written, none served)
        entries = list(self.unstored.values())
        with contextlib.suppress(StorageError, sqlite3.Error):
            self.write_entries(entries, newer_only=True)
            for key, *_ in entries:
                self.unstored.pop(key, None)
        return True

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None, release: Sequence[str] = ()) -> None:
        """Store answers (a JSON object, or None for a miss) in one transaction; ``ttl`` seconds (None: no expiry);
        ``release``: this object's leases to drop in the same transaction (:meth:`release`)."""
        now = self.clock.time()
        expire = None if ttl is None else now + ttl
        self.write_entries([(key, data, now, expire) for key, data in items.items()], release=release)

    def write_entries(self, entries: Sequence[Entry], *, newer_only: bool = False, release: Sequence[str] = (),
                      owner: str | None = None) -> int:
        """Store entries in one transaction; returns how many were written. ``newer_only``: an entry already stored
        more recently is kept (import). ``release``: claims of ``owner`` (this object's by default) to drop in it."""
        texts: dict[int, bytes] = {}
        rows = [(key, stored_at, self._kept_until(stored_at, expire), encode_entry(key, data, texts))
                for key, data, stored_at, expire in entries]
        if not rows and not release:
            return 0
        sql = _UPSERT + (" WHERE excluded.stored_at > Answers.stored_at" if newer_only else "")
        with self.transaction() as con:
            if self.saw_erasure():
                refused = self._suppressed(entries, self._erased)
                rows = [row for row in rows if row[0] not in refused]
            before = con.total_changes
            con.executemany(sql, rows)
            written = con.total_changes - before
            self.release(release, owner=owner)
        return written

    def _kept_until(self, stored_at: float, expire: float | None) -> float | None:
        """An entry's expiry, never later than the retention allows."""
        if self.retention is None:
            return expire
        limit = stored_at + self.retention
        return limit if expire is None else min(expire, limit)

    # -- erasure and retention -----------------------------------------------------------------

    def latest_erasure(self) -> int:
        """The id of the newest erasure (``forget``) recorded, 0 for none (read in the caller's transaction, if any):
        a reader holding rows read earlier compares it to know they may name a person forgotten since."""
        ((latest,),) = self.query("SELECT COALESCE(MAX(id), 0) FROM Erasures")
        return int(latest)

    def saw_erasure(self) -> bool:
        """Whether writes must be checked against the suppression list: a ``forget`` ran since this object opened
        (read in the writing transaction, so a write racing a ``forget`` is either erased by it or checked)."""
        latest = self.latest_erasure()
        if latest != self._erasures_seen:
            self._erased = SuppressionList(self.directory.parent, clock=self.clock).digests()
            self._erasures_seen = latest
        return bool(self._erased)

    def _suppressed(self, entries: Iterable[Entry], digests: frozenset[str]) -> set[str]:
        """Keys of ``entries`` whose answer names an identifier of ``digests`` (suppressed): never kept."""
        book = SuppressionList(self.directory.parent, clock=self.clock)
        return {key for key, data, *_ in entries if digests and book.listed(named_identifiers(data), digests)}

    def note_erasure(self) -> None:
        """Mark an erasure: every store object writing from now on checks its answers against the list."""
        with self.transaction() as con:
            con.execute("INSERT INTO Erasures (time) VALUES (?)", (self.clock.time(),))

    def erase(self, keys: Sequence[str]) -> tuple[int, int, int]:
        """Delete the answers of ``keys``, their quarantine records and claims, and every flattened block
        holding a row no longer live (one transaction); returns (answers, quarantined, blocks) removed."""
        answers = quarantined = 0
        with self.transaction() as con:
            for block in sql_blocks(list(dict.fromkeys(keys))):
                marks = sql_marks(len(block))
                answers += con.execute(f"DELETE FROM Answers WHERE key IN ({marks})", tuple(block)).rowcount
                quarantined += con.execute(f"DELETE FROM Quarantine WHERE key IN ({marks})", tuple(block)).rowcount
                con.execute(f"DELETE FROM Claims WHERE key IN ({marks})", tuple(block))
            blocks = drop_stale_blocks(con)
        return answers, quarantined, blocks

    def purge_retention(self, now: float | None = None) -> int:
        """Delete what was stored longer ago than the retention (answers, their flattened rows, quarantine
        records) and cap every other entry's expiry at its retention; returns how many answers went."""
        if self.retention is None:
            return 0
        now = self.clock.time() if now is None else now
        cutoff = now - self.retention
        with self.transaction() as con:
            removed = con.execute("DELETE FROM Answers WHERE stored_at < ?", (cutoff,)).rowcount
            con.execute("UPDATE Answers SET expires_at = stored_at + ? WHERE expires_at IS NULL OR "
                        "expires_at > stored_at + ?", (self.retention, self.retention))
            con.execute("DELETE FROM Quarantine WHERE time < ?", (cutoff,))
            con.execute("DELETE FROM Previous WHERE replaced_at < ?", (cutoff,))  # replaced versions age too
            drop_stale_blocks(con)
        return int(removed)

    def compact(self) -> bool:
        """Rewrite the database without the space deleted rows held and empty its write-ahead log (``VACUUM``, then a
        truncating checkpoint), so removed bytes leave every file; False when another connection's read kept part
        of the log (run again when it is done)."""
        with self._writing, storage_errors(self.path, "compacting the answer store", _CORRUPT_REMEDY):
            con = self._con()
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.execute("VACUUM")
            except sqlite3.OperationalError as exc:  # another process held the database past the busy timeout
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            ((busy, _, _),) = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return not busy

    def previous_many(self, keys: Iterable[str], since: float) -> dict[str, Any]:
        """key -> the answer that was replaced at or after ``since`` (the latest such), for those of ``keys`` whose
        answer was replaced then; an entry that does not decode is left out (never trusted)."""
        found = {}
        for block in sql_blocks(list(dict.fromkeys(keys))):  # (SQLite takes a bare column from the row of the MAX)
            for key, value, _ in self.query(
                    f"SELECT key, value, MAX(replaced_at) FROM Previous WHERE key IN ({sql_marks(len(block))}) "
                    "AND replaced_at >= ? GROUP BY key", [*block, since]):
                with contextlib.suppress(BadEntry):
                    found[key] = decode_entry(key, value)
        return found

    def __contains__(self, key: str) -> bool:
        return key in self.get_many([key])

    def __len__(self) -> int:
        ((count,),) = self.query("SELECT COUNT(*) FROM Answers")
        return int(count)

    def clear(self) -> None:
        with self.transaction() as con:
            for table in ("Answers", "FlatRows", "FlatBlocks", "Previous"):
                con.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        self.checkpoint()
        for owner in list(self.holders.held):
            self.holders.let_go(owner)
        with self._writing:
            connections, self._connections = self._connections, []
        for _, con in connections:
            con.close()
        self._local = threading.local()

    def begin_run(self) -> str:
        """A claim owner of its own for one run: two runs sharing this store (threads sharing a client) keep
        apart as two processes do. Claims of a run ended (:meth:`end_run`) without releasing them are free."""
        owner = uuid.uuid4().hex[:16]
        self.holders.hold(owner)
        return owner

    def end_run(self, owner: str) -> None:
        self.holders.let_go(owner)

    def __enter__(self) -> AnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- quarantine ----------------------------------------------------------------------------

    def quarantine(self, bad: list[tuple[int, Any, str]], *, quiet: bool = False) -> None:
        """Delete bad rows (recording key, reason, size); never fatal: a read-only store just counts them."""
        self.quarantined += len(bad)
        self.quarantine_reasons.update(reason for _, _, reason in bad)
        now = self.clock.time()
        try:
            with self.transaction() as con:
                con.executemany("INSERT INTO Quarantine (time, key, reason, size) "
                                "SELECT ?, key, ?, length(value) FROM Answers WHERE rowid = ?",
                                [(now, reason, rowid) for rowid, _, reason in bad])
                con.executemany("DELETE FROM Answers WHERE rowid = ?", [(rowid,) for rowid, *_ in bad])
        except (StorageError, sqlite3.Error, OSError, ValueError):
            pass  # they stay on disk, and stay misses: nothing read from them is trusted
        if quiet:
            return
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(r for _, _, r in bad).most_common())
        warn(f"{len(bad)} stored answer(s) in {self.path} could not be trusted ({reasons}): set aside and "
             "treated as not cached; `apollo-frames cache verify` checks the whole store")

    def stats(self) -> StoreStats:
        """Entries, size on disk, oldest/newest entry, quarantined (ever / by this object), live leases."""
        ((entries, oldest, newest),) = self.query("SELECT COUNT(*), MIN(stored_at), MAX(stored_at) FROM Answers")
        ((quarantined,),) = self.query("SELECT COUNT(*) FROM Quarantine")
        ((leases,),) = self.query("SELECT COUNT(*) FROM Claims WHERE expires > ?", [self.clock.time()])
        size = sum(os.lstat(f).st_size for f in database_files(self.path) if os.path.lexists(f))
        return StoreStats(str(self.directory), int(entries), size, oldest, newest, int(quarantined),
                          self.quarantined, int(leases))

    # -- claims across processes ---------------------------------------------------------------

    def _held(self, keys: Sequence[str], owner: str | None) -> dict[str, Lease]:
        """Those of ``keys`` another owner than ``owner`` (this object's by default) holds: lease not expired (nor
        longer than any this code takes) and owner alive, each owner looked at once."""
        now = self.clock.time()
        alive = functools.cache(self.holders.alive)
        rows = (row for block in sql_blocks(keys) for row in self.query(
            f"SELECT key, owner, expires FROM Claims WHERE owner != ? AND key IN ({sql_marks(len(block))})",
            [owner or self.owner, *block]))
        return {key: Lease(other, float(expires)) for key, other, expires in rows
                if isinstance(expires, (int, float)) and now < expires <= now + MAX_LEASE_S and alive(other)}

    def claim(self, keys: Iterable[str], lease_s: float, *, owner: str | None = None) -> Claimed:
        """Take a lease of ``lease_s`` seconds on each key no other live owner holds (one transaction); ``owner``:
        whose leases (a run's, from :meth:`begin_run`), this store's by default."""
        wanted = list(dict.fromkeys(keys))
        with self.transaction() as con:
            held = self._held(wanted, owner)
            mine = [k for k in wanted if k not in held]
            expires = self.clock.time() + lease_s
            con.executemany("INSERT OR REPLACE INTO Claims (key, owner, expires) VALUES (?, ?, ?)",
                            [(k, owner or self.owner, expires) for k in mine])
        return Claimed(mine, held)

    def release(self, keys: Iterable[str], *, owner: str | None = None) -> None:
        """Drop this object's (or ``owner``'s) leases on ``keys`` (others' leases are left alone)."""
        with self.transaction() as con:
            con.executemany("DELETE FROM Claims WHERE owner = ? AND key = ?", [(owner or self.owner, k) for k in keys])

    def held_by_others(self, keys: Iterable[str], *, owner: str | None = None) -> list[str]:
        """Those of ``keys`` another owner than this object (or ``owner``) holds a live lease on."""
        wanted = list(dict.fromkeys(keys))
        held = self._held(wanted, owner)
        return [k for k in wanted if k in held]

    def wait_for(
        self, keys: Iterable[str], timeout: float, *, poll: float = 0.05, sleep: Callable[[float], None] | None = None,
        stored_after: float | None = None, owner: str | None = None,
    ) -> Waited:
        """Wait until every key has an answer or is no longer held by a live lease of another owner.

        Time is the store's clock's and waits go to its ``sleep`` (or the one given): a ``FakeClock`` never waits for
        real. Keys whose lease expired or was released without an answer come back in ``free``, to claim and send.
        ``stored_after``: only answers stored after then count (not the old answer another process is replacing).
        """
        sleep = sleep or self.clock.sleep
        pending = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        deadline = self.clock.time() + timeout
        while True:
            stamps: dict[str, Stamp] = {}
            got = self.get_many(pending, stamps=stamps)
            found.update((k, v) for k, v in got.items() if stored_after is None or stamps[k][0] >= stored_after)
            pending = [k for k in pending if k not in found]
            held = self.held_by_others(pending, owner=owner)
            if not held or self.clock.time() >= deadline:
                return Waited(found, held, [k for k in pending if k not in set(held)])
            sleep(poll)
