"""Flattened copies of stored answers, so a cached re-run reads rows in the declared schema instead of JSON.

The raw JSON answer in :class:`~apollo_frames.client.store.AnswerStore` stays the source of truth.
Beside it, answers flattened into an operation's declared schema are kept a block at a time as Arrow
IPC bytes (table ``FlatBlocks``), and every key points at its row (table ``FlatRows``: key, fingerprint,
the raw entry's store and expiry times, block, row, whether it is a match). A copy is written only
for the raw answer it was made from, and triggers on the raw table delete it when that answer is
rewritten, deleted or touched in any way (by this code or a hand edit); it is used only
until the raw answer expires and while its fingerprint (store schema version, flatten version, the
declared schema) is the reader's. Anything
else (no copy, a block that does not parse or holds another schema) is a miss of the copy: the row
is flattened again from the raw answer and its copy rewritten. Arrow IPC is data: reading it runs
no code (nothing is unpickled; the schema is checked before a block is used).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from apollo_frames.core.errors import StorageError

if TYPE_CHECKING:
    from apollo_frames.client.store import AnswerStore

#: the tables of the flattened copies (created with the store's own tables)
FLAT_TABLES = (
    """CREATE TABLE IF NOT EXISTS FlatBlocks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS FlatRows (
        key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, stored_at REAL NOT NULL, expires_at REAL,
        block INTEGER NOT NULL, row INTEGER NOT NULL, hit INTEGER NOT NULL) WITHOUT ROWID""",
    # covers the read of a whole block's rows (the key, primary key, is in every index entry)
    "CREATE INDEX IF NOT EXISTS FlatRows_by_block ON FlatRows (block, expires_at, row, hit, stored_at)",
)
#: the triggers that keep the copies in step with the raw answers (the store drops any other trigger)
FLAT_TRIGGERS = (
    # Any change to a raw answer through SQLite (a rewrite, a delete, expiry, quarantine, a hand edit)
    # drops its copy, so a copy is never read in place of a raw entry that would not be trusted.
    """CREATE TRIGGER FlatRows_on_insert AFTER INSERT ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = NEW.key; END""",
    """CREATE TRIGGER FlatRows_on_update
        AFTER UPDATE OF key, stored_at, expires_at, value ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = OLD.key OR key = NEW.key; END""",
    """CREATE TRIGGER FlatRows_on_delete AFTER DELETE ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = OLD.key; END""",
)
#: keys per SQL statement (as the store's own reads)
_SQL_BLOCK = 900
# The triggers keep FlatRows in step with Answers, so a lookup reads FlatRows alone. (A row of another
# fingerprint is found too: its block's fingerprint is checked when the block is read.)
_FIND = (
    "SELECT key, block, row, hit, stored_at, expires_at FROM FlatRows WHERE key IN ({marks}) "
    "AND (expires_at IS NULL OR expires_at > ?)"
)
_BY_BLOCK = (
    "SELECT key, row, hit, stored_at, expires_at FROM FlatRows WHERE block = ? "
    "AND (expires_at IS NULL OR expires_at > ?)"
)
# Whether the live rows of one block are the keys asked for, row for row (a re-run of the frame that saved it
# asks for exactly these): the keys, all of one length L, come as one blob, key i at bytes [i*L, (i+1)*L).
# Keys are unique, so n rows each holding the key at its own row are those n keys in that order.
_BLOCK_CHECK = (
    "SELECT count(*), sum(CAST(substr(?1, row * ?2 + 1, ?2) AS TEXT) = key), sum(hit = 1), sum(hit = 0) "
    "FROM FlatRows WHERE block = ?3 AND (expires_at IS NULL OR expires_at > ?4)"
)
_NO_MATCH_ROWS = "SELECT row FROM FlatRows WHERE block = ? AND hit = 0 AND (expires_at IS NULL OR expires_at > ?)"
# A copy is only written for the raw answer it was made from (checked in the writing transaction).
_PUT = (
    "INSERT OR REPLACE INTO FlatRows (key, fingerprint, stored_at, expires_at, block, row, hit) "
    "SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM Answers WHERE key = ? AND stored_at = ? AND expires_at IS ?)"
)

#: a raw answer's (store time, expiry time or None)
Stamp = tuple[float, "float | None"]
#: (block id, row in the block, whether the answer is a match, the raw answer's stamp)
Ref = tuple[int, int, bool, Stamp]


def fingerprint(*parts: object, schema: pa.Schema) -> str:
    """What a flattened copy must match to be used: the given version parts and the declared schema."""
    text = "\x1f".join([*map(str, parts), schema.to_string(show_schema_metadata=False)])
    return hashlib.sha256(text.encode()).hexdigest()


#: LZ4 frames: about a ninth of the bytes to write, and a block of 1,000 people decodes in about a millisecond
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
#: one block decodes faster on one thread than shared out column by column
_IPC_READ = pa.ipc.IpcReadOptions(use_threads=False)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: object, schema: pa.Schema, rows: int) -> pa.Table | None:
    """The table in ``data`` if it is Arrow IPC with exactly ``schema`` and ``rows`` rows; else None."""
    if not isinstance(data, (bytes, memoryview)):
        return None
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data), options=_IPC_READ).read_all()
    except (pa.ArrowException, ValueError, OSError):
        return None
    if table.num_rows != rows or not table.schema.equals(schema, check_metadata=False):
        return None
    return table


#: threads that decode blocks side by side
_DECODERS = max(1, min(4, os.cpu_count() or 1))


def _decode_all(rows: Sequence[tuple], fp: str, schema: pa.Schema) -> list[pa.Table | None]:
    """The tables of (id, fingerprint, rows, data) block rows: None for one of another fingerprint or unreadable."""

    def decode(row: tuple) -> pa.Table | None:
        return from_ipc(row[3], schema, row[2]) if row[1] == fp else None

    if len(rows) < 2 or _DECODERS == 1:
        return [decode(row) for row in rows]
    with ThreadPoolExecutor(_DECODERS, thread_name_prefix="apollo-flat") as pool:
        return list(pool.map(decode, rows))


class FlatCopies:
    """The flattened copies one reader uses: find rows by key, load blocks once, save new blocks."""

    def __init__(self, store: AnswerStore, fingerprint: str, schema: pa.Schema):
        self.store, self.fingerprint, self.schema = store, fingerprint, schema
        #: block id -> its table (None: unreadable or not ours, never used)
        self.blocks: dict[int, pa.Table | None] = {}
        #: False once a write failed (a read-only store): the run goes on without saving copies
        self.writable = True
        #: rows in the blocks read so far
        self.loaded_rows = 0

    def find(self, keys: Sequence[str]) -> dict[str, Ref]:
        """The keys that have a copy (not expired): key -> (block, row, hit, stamp).

        A re-run of a frame asks for the keys of a block together: the block of the first key is
        read whole (one range of the block index), and only the keys it does not hold are looked
        up one by one.
        """
        now = self.store.clock.time()
        found = self._lookup(keys[:1], now)
        if found:
            ((block_id, *_),) = found.values()
            wanted = set(keys)
            for key, row, hit, stored, expires in self.store.query(_BY_BLOCK, [block_id, now]):
                if key in wanted and type(row) is int and row >= 0:
                    found[key] = (block_id, row, bool(hit), (stored, expires))
        rest = [key for key in keys if key not in found]
        if rest:
            found.update(self._lookup(rest, now))
        return found

    def whole_blocks(self, groups: Sequence[Sequence[str]]) -> list[tuple[pa.Table, list[bool]] | None]:
        """Per group of keys: when they are, in this order, every row of one readable block (a re-run of the
        frame that saved it), that block's table and whether each answer is a match; else None (:meth:`find`
        finds them). The blocks are read together (decoded side by side)."""
        now = self.store.clock.time()
        found = [self._block_of(keys, now) for keys in groups]
        self.load([f[0] for f in found if f is not None])
        out: list[tuple[pa.Table, list[bool]] | None] = []
        for keys, f in zip(groups, found, strict=True):
            table = self.blocks.get(f[0]) if f is not None else None
            out.append((table, f[1]) if f is not None and table is not None and table.num_rows == len(keys) else None)
        return out

    def _block_of(self, keys: Sequence[str], now: float) -> tuple[int, list[bool]] | None:
        """(block, hits) when ``keys`` are all the live rows of one block, in row order."""
        first = self._lookup(keys[:1], now)
        width, joined = (len(keys[0]) if keys else 0), "".join(keys)
        if not first or not joined.isascii() or not all(len(key) == width for key in keys):
            return None
        ((block_id, *_),) = first.values()
        ((rows, in_place, hits, misses),) = self.store.query(_BLOCK_CHECK, [joined.encode(), width, block_id, now])
        n = len(keys)
        if rows != n or in_place != n or (hits or 0) + (misses or 0) != n:
            return None
        matched = [True] * n
        for (row,) in self.store.query(_NO_MATCH_ROWS, [block_id, now]) if misses else ():
            if type(row) is not int:
                return None
            matched[row] = False
        return block_id, matched

    def _lookup(self, keys: Sequence[str], now: float) -> dict[str, Ref]:
        found: dict[str, Ref] = {}
        for start in range(0, len(keys), _SQL_BLOCK):
            block = keys[start:start + _SQL_BLOCK]
            sql = _FIND.format(marks=",".join("?" * len(block)))
            for key, block_id, row, hit, stored, expires in self.store.query(sql, [*block, now]):
                if type(block_id) is int and type(row) is int and row >= 0:  # anything else: no copy
                    found[key] = (block_id, row, bool(hit), (stored, expires))
        return found

    def stamps(self, keys: Sequence[str]) -> dict[str, Stamp]:
        """key -> stamp of the raw answers present for ``keys``."""
        stamps: dict[str, Stamp] = {}
        for start in range(0, len(keys), _SQL_BLOCK):
            block = keys[start:start + _SQL_BLOCK]
            marks = ",".join("?" * len(block))
            sql = f"SELECT key, stored_at, expires_at FROM Answers WHERE key IN ({marks})"
            for key, stored, expires in self.store.query(sql, block):
                stamps[key] = (stored, expires)
        return stamps

    def load(self, ids: Iterable[int]) -> None:
        """Read the blocks not read yet; a block that does not parse or fit is dropped (its rows are rebuilt).

        Several blocks are decoded side by side (Arrow decodes without holding the GIL)."""
        wanted = sorted(set(ids) - set(self.blocks))
        for start in range(0, len(wanted), _SQL_BLOCK):
            block = wanted[start:start + _SQL_BLOCK]
            self.blocks.update(dict.fromkeys(block))
            rows = self.store.query(
                f"SELECT id, fingerprint, rows, data FROM FlatBlocks WHERE id IN ({','.join('?' * len(block))})", block
            )
            for block_id, table in zip([r[0] for r in rows], _decode_all(rows, self.fingerprint, self.schema),
                                       strict=True):
                self.blocks[block_id] = table
                self.loaded_rows += table.num_rows if table is not None else 0
        bad = [i for i in wanted if self.blocks[i] is None]
        if bad:
            self._write(self._drop, bad)

    def table(self, block_id: int) -> pa.Table | None:
        return self.blocks.get(block_id)

    def usable(self, refs: dict[str, Ref]) -> dict[str, Ref]:
        """Those of ``refs`` whose block was read and holds their row."""
        out = {}
        for key, ref in refs.items():
            table = self.blocks.get(ref[0])
            if table is not None and ref[1] < table.num_rows:
                out[key] = ref
        return out

    def save(self, keys: Sequence[str], stamps: Mapping[str, Stamp], hits: Sequence[bool], table: pa.Table) -> None:
        """Keep ``table`` (row i: the answer of ``keys[i]``, read with ``stamps[key]``) as one block."""
        if self.writable and keys:
            self._write(self._save, keys, stamps, hits, table)

    def _write(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except StorageError:
            self.writable = False  # copies are an optimisation: a read-only or busy store runs without them

    def _save(self, keys: Sequence[str], stamps: Mapping[str, Stamp], hits: Sequence[bool], table: pa.Table) -> None:
        data = to_ipc(table)
        with self.store.transaction() as con:
            cursor = con.execute("INSERT INTO FlatBlocks (fingerprint, rows, data) VALUES (?, ?, ?)",
                                 (self.fingerprint, table.num_rows, data))
            block_id = cursor.lastrowid
            con.executemany(_PUT, [
                (key, self.fingerprint, *stamps[key], block_id, row, int(hit), key, *stamps[key])
                for row, (key, hit) in enumerate(zip(keys, hits, strict=True))
            ])
            drop_unused(con)
        self.blocks[int(block_id or 0)] = table

    def _drop(self, ids: Sequence[int]) -> None:
        with self.store.transaction() as con:
            marks = ",".join("?" * len(ids))
            con.execute(f"DELETE FROM FlatRows WHERE block IN ({marks})", list(ids))
            con.execute(f"DELETE FROM FlatBlocks WHERE id IN ({marks})", list(ids))


def drop_unused(con: sqlite3.Connection) -> None:
    """Delete the blocks no key points at any more (their rows were rewritten, expired or set aside)."""
    con.execute("DELETE FROM FlatBlocks WHERE NOT EXISTS (SELECT 1 FROM FlatRows WHERE FlatRows.block = FlatBlocks.id)")
