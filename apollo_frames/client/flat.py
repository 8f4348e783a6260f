"""Flattened copies of stored answers, so a cached re-run reads rows in the declared schema instead of JSON.

The raw JSON answer in :class:`~apollo_frames.client.store.AnswerStore` stays the source of truth. Beside it,
answers flattened into an operation's declared schema are kept as Arrow IPC blocks (table ``FlatBlocks``), each
row with its key, whether it is a match and when its raw answer expires. Any set of keys is read as columnar
work: blocks decoded, keys matched by one hash lookup, the rows used taken out. Table ``FlatRows`` (key ->
block) says which rows are live: a copy is written only for the raw answer it was made from, and triggers on the
raw table delete its ``FlatRows`` entry when that answer is rewritten, deleted or touched in any way (by this
code or a hand edit). A block of another fingerprint (store schema version, flatten version, declared schema),
one that does not parse or holds another schema, is never used: its rows are flattened again from the raw
answers. Arrow IPC is data: reading it runs no code."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.client.storage import SQL_BLOCK, sql_blocks, sql_marks
from apollo_frames.core.columnwise import side_by_side, take_rows
from apollo_frames.core.errors import StorageError

if TYPE_CHECKING:
    from apollo_frames.client.store import AnswerStore

#: the tables of the flattened copies (created with the store's own tables)
FLAT_TABLES = (
    """CREATE TABLE IF NOT EXISTS FlatBlocks (
        id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS FlatBlocks_by_fingerprint ON FlatBlocks (fingerprint, rows)",
    "CREATE TABLE IF NOT EXISTS FlatRows (key TEXT PRIMARY KEY, block INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS FlatRows_by_block ON FlatRows (block)",
)
#: the triggers that keep the copies in step with the raw answers (the store drops any other trigger)
FLAT_TRIGGERS = (
    """CREATE TRIGGER FlatRows_on_insert AFTER INSERT ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = NEW.key; END""",
    """CREATE TRIGGER FlatRows_on_update
        AFTER UPDATE OF key, stored_at, expires_at, value ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = OLD.key OR key = NEW.key; END""",
    """CREATE TRIGGER FlatRows_on_delete AFTER DELETE ON Answers
        BEGIN DELETE FROM FlatRows WHERE key = OLD.key; END""",
)
#: what each stored row carries beside the declared columns
META = pa.schema([("_key", pa.string()), ("_hit", pa.bool_()), ("_expires_at", pa.float64()),
                  ("_stored_at", pa.float64())])
#: the column a read adds beside the declared ones: when each row's raw answer was stored (POSIX seconds)
STORED_AT = "_stored_at"
#: the keys are looked up in ``FlatRows`` (to read only their blocks) when this many times their number is
#: still fewer than the rows stored: a lookup costs about what decoding this many rows does
_LOOKUP_FACTOR = 4
#: stored bytes decoded at a time when the blocks hold over _LOOKUP_FACTOR x the rows asked (else all at once)
_BATCH_BYTES = 16 << 20
# A copy is only written for the raw answer it was made from (checked in the writing transaction).
_PUT = (
    "INSERT OR REPLACE INTO FlatRows (key, block) SELECT ?, ? WHERE EXISTS "
    "(SELECT 1 FROM Answers WHERE key = ? AND stored_at = ? AND expires_at IS ?)"
)

#: a raw answer's (stored at, expires at or None)
Stamp = tuple[float, "float | None"]


def fingerprint(*parts: object, schema: pa.Schema) -> str:
    """What a flattened copy must match to be used: the given version parts and the declared schema."""
    text = "\x1f".join([*map(str, parts), schema.to_string(show_schema_metadata=False)])
    return hashlib.sha256(text.encode()).hexdigest()


#: LZ4 frames: a fraction of the bytes to write, and decoded faster than the disk would give them
_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
#: one block decodes faster on one thread than shared out column by column (blocks decode side by side)
_IPC_READ = pa.ipc.IpcReadOptions(use_threads=False)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: object, schema: pa.Schema, rows: object) -> pa.Table | None:
    """The table in ``data`` if it is Arrow IPC with exactly ``schema`` and ``rows`` rows; else None."""
    if not isinstance(data, (bytes, memoryview)):
        return None
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data), options=_IPC_READ).read_all()
    except (pa.ArrowException, ValueError, OSError):
        return None
    return table if table.num_rows == rows and table.schema.equals(schema, check_metadata=False) else None


def _taken(tables: list[pa.Table], at: np.ndarray, names: list[str]) -> pa.Table:
    """Columns ``names`` of rows ``at`` of ``tables`` end to end: every row in order as they are; in order, a block
    used whole as it is; else one take over them all (a column is selected once, not once per block, but for
    the blocks of rows in order)."""
    if len(at) > 1 and not bool(np.all(at[1:] > at[:-1])):
        return take_rows(pa.concat_tables(tables).select(names), at)
    if len(at) == sum(t.num_rows for t in tables):
        return pa.concat_tables(tables).select(names)
    starts = np.cumsum([0] + [t.num_rows for t in tables])
    cuts = np.searchsorted(at, starts)
    return pa.concat_tables([tables[0].select(names).slice(0, 0)] + [
        t.select(names) if end - cut == t.num_rows else take_rows(t.select(names), at[cut:end] - start)
        for t, start, cut, end in zip(tables, starts, cuts, cuts[1:], strict=False) if end > cut])


def matched(table: pa.Table, wanted: pa.Array, now: float, pointed: pa.ChunkedArray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into ``wanted`` whose key has a live row in ``table`` (stored columns), those rows, whether each is
    a match). A row is live when unexpired at ``now`` and, given ``pointed`` (per row), still pointed at."""
    at = pc.index_in(wanted, value_set=table["_key"].combine_chunks())
    found = pc.indices_nonzero(pc.is_valid(at))
    at = pc.take(at, found)
    live = pc.fill_null(pc.greater(pc.take(table["_expires_at"], at), now), True)
    if pointed is not None:
        live = pc.and_(pc.take(pointed, at), live)
    found, at = pc.filter(found, live), pc.filter(at, live)
    hits = np.asarray(pc.take(table["_hit"], at).to_numpy(), bool)
    return found.to_numpy().astype(np.int64), at.to_numpy().astype(np.int64), hits


class FlatCopies:
    """The flattened copies of one fingerprint: :meth:`take` rows by key, :meth:`save` new blocks."""

    def __init__(self, store: AnswerStore, fingerprint: str, schema: pa.Schema):
        self.store, self.fingerprint, self.schema = store, fingerprint, schema
        self.stored_schema = pa.unify_schemas([schema, META])
        #: what :meth:`take` returns: the declared columns and :data:`STORED_AT`
        self.read_schema = pa.unify_schemas([schema, pa.schema([(STORED_AT, pa.float64())])])
        #: False once a write failed (a read-only store): the run goes on without saving copies
        self.writable = True

    def take(self, keys: Sequence[str], rows: bool = True) -> tuple[np.ndarray, np.ndarray, pa.Table | None]:
        """(indices into ``keys`` with a live copy, ascending within a batch of blocks; whether each is a match; with
        ``rows``, their rows in that order: the declared columns and :data:`STORED_AT`), taken out of each batch
        decoded (none copied when in order already, as for the frame that wrote them)."""
        wanted, now = pa.array(keys, pa.string()), self.store.clock.time()
        js, pieces, hits = [np.zeros(0, np.int64)], [self.read_schema.empty_table()], [np.zeros(0, bool)]
        blocks = self._blocks(keys)
        whole = sum(b[1] for b in blocks) <= len(keys) * _LOOKUP_FACTOR
        for tables, live in self._read(blocks, float("inf") if whole else _BATCH_BYTES):
            found, at, hit = matched(pa.concat_tables(tables), wanted, now, live)
            js.append(found)
            hits.append(hit)
            if rows:
                pieces.append(_taken(tables, at, self.read_schema.names))
        return np.concatenate(js), np.concatenate(hits), pa.concat_tables(pieces) if rows else None

    def block_rows(self, keys: Sequence[str]) -> int:
        """Rows stored in the blocks a :meth:`take` of ``keys`` would decode (keys scattered over many blocks: many
        more rows than keys)."""
        return sum(rows for _, rows, _ in self._blocks(keys))

    def scan(self, batch_bytes: int = _BATCH_BYTES) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Every block of this fingerprint once, in order, ``batch_bytes`` (stored) at a time: (their rows, :data:`META`
        included; whether each row is live and unexpired), for a reader routing rows to many places in one pass."""
        now = self.store.clock.time()
        for tables, pointed in self._read(self._all(), batch_bytes):
            table = pa.concat_tables(tables)
            live = pc.fill_null(pc.greater(table["_expires_at"], now), True)
            live = live if pointed is None else pc.and_(pointed, live)
            yield table, np.asarray(live.to_numpy(), bool)

    def _all(self) -> list[tuple[int, int, int]]:
        """(id, rows, bytes) of every block, in order."""
        return self.store.query("SELECT id, rows, length(data) FROM FlatBlocks WHERE fingerprint = ? ORDER BY id",
                                [self.fingerprint])

    def _blocks(self, keys: Sequence[str]) -> list[tuple[int, int, int]]:
        """(id, rows, bytes) of the blocks to read, in order: all, when ``keys`` would cost as much to look up in
        ``FlatRows`` as to decode them all; else those they point at."""
        every = self._all()
        if sum(b[1] for b in every) <= len(keys) * _LOOKUP_FACTOR:
            return every
        ids: set[Any] = set()
        for chunk in sql_blocks(keys):
            ids.update(b for (b,) in self.store.query(
                f"SELECT DISTINCT block FROM FlatRows WHERE key IN ({sql_marks(len(chunk))})", chunk))
        found = []
        for chunk in sql_blocks(sorted(i for i in ids if type(i) is int)):
            found += self.store.query("SELECT id, rows, length(data) FROM FlatBlocks WHERE fingerprint = ? AND id IN "
                                      f"({sql_marks(len(chunk))}) ORDER BY id", [self.fingerprint, *chunk])
        return found

    def _read(self, blocks: list[tuple[int, int, int]], budget: float
              ) -> Iterator[tuple[list[pa.Table], pa.ChunkedArray | None]]:
        """``blocks`` decoded ``budget`` stored bytes at a time: (their tables, :meth:`_live` of them)."""
        for batch in self._batches(blocks, budget):
            tables = self._decode(batch)
            if tables:
                yield tables, self._live(batch, tables)

    def _batches(self, blocks: list[tuple[int, int, int]], budget: float) -> Iterator[list[tuple[int, int, bytes]]]:
        """(id, rows, data) of ``blocks``, read ``budget`` stored bytes at a time (sorted here: an ORDER BY would copy
        the blobs into SQLite's sorter)."""
        batch, size = list[int](), 0
        for block_id, _, length in blocks:
            batch, size = [*batch, block_id], size + (length or 0)
            if size >= budget or len(batch) == SQL_BLOCK or block_id == blocks[-1][0]:
                yield sorted(self.store.query(f"SELECT id, rows, data FROM FlatBlocks WHERE fingerprint = ? AND id IN "
                                              f"({sql_marks(len(batch))})", [self.fingerprint, *batch]))
                batch, size = [], 0

    def _decode(self, blocks: list[tuple[int, int, bytes]]) -> list[pa.Table]:
        """The blocks' tables, decoded side by side; a block that does not parse or fit is dropped."""
        tables = side_by_side(lambda block: from_ipc(block[2], self.stored_schema, block[1]), blocks)
        bad = [b[0] for b, t in zip(blocks, tables, strict=True) if t is None]
        if bad:
            self._write(self._drop, bad)
            blocks[:] = [b for b, t in zip(blocks, tables, strict=True) if t is not None]
        return [t for t in tables if t is not None]

    def _live(self, blocks: list[tuple[int, int, bytes]], tables: list[pa.Table]) -> pa.ChunkedArray | None:
        """Per row of the blocks, whether ``FlatRows`` still points at it (None: at every row): counted per block,
        looked at key by key only in a block some of whose answers changed since."""
        counts: dict[Any, int] = {}
        for chunk in sql_blocks([b[0] for b in blocks]):
            counts.update(self.store.query(f"SELECT block, count(*) FROM FlatRows WHERE block IN "
                                           f"({sql_marks(len(chunk))}) GROUP BY block", chunk))
        if all(counts.get(block_id, 0) == rows for block_id, rows, _ in blocks):
            return None
        masks = []
        for (block_id, rows, _), table in zip(blocks, tables, strict=True):
            keys = None if counts.get(block_id, 0) == rows else pa.array([k for (k,) in self.store.query(
                "SELECT key FROM FlatRows WHERE block = ?", [block_id])], pa.string())
            masks.append(pa.array(np.ones(rows, bool)) if keys is None else
                         pc.is_in(table["_key"].combine_chunks(), value_set=keys))
        return pa.chunked_array(masks, pa.bool_())

    def save(self, keys: Sequence[str], stamps: Mapping[str, Stamp], hits: Sequence[bool], table: pa.Table) -> None:
        """Keep ``table`` (row i: the answer of ``keys[i]``, read with ``stamps[key]``) as one block."""
        if self.writable and keys:
            self._write(self._save, keys, stamps, hits, table)

    def _write(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except StorageError:
            self.writable = False  # copies are an optimisation: a read-only or busy store runs without them

    def _save(self, keys: Sequence[str], stamps: Mapping[str, Stamp], hits: Sequence[bool], table: pa.Table) -> None:
        meta = [pa.array(keys, pa.string()), pa.array(hits, pa.bool_()),
                pa.array([stamps[k][1] for k in keys], pa.float64()),
                pa.array([stamps[k][0] for k in keys], pa.float64())]
        block = pa.Table.from_arrays([*table.select(self.schema.names).columns, *meta], schema=self.stored_schema)
        with self.store.transaction() as con:
            cursor = con.execute("INSERT INTO FlatBlocks (fingerprint, rows, data) VALUES (?, ?, ?)",
                                 (self.fingerprint, block.num_rows, to_ipc(block)))
            con.executemany(_PUT, [(key, cursor.lastrowid, key, *stamps[key]) for key in keys])
            # the blocks no key points at any more go (their rows were rewritten, expired or set aside)
            con.execute("DELETE FROM FlatBlocks WHERE NOT EXISTS (SELECT 1 FROM FlatRows WHERE block = FlatBlocks.id)")
            if self.store.saw_erasure():  # a row of a person forgotten since it was read must not stay
                drop_stale_blocks(con)
        self.store.checkpoint()

    def _drop(self, ids: Sequence[int]) -> None:
        with self.store.transaction() as con:
            marks = sql_marks(len(ids))
            con.execute(f"DELETE FROM FlatRows WHERE block IN ({marks})", list(ids))
            con.execute(f"DELETE FROM FlatBlocks WHERE id IN ({marks})", list(ids))


def drop_stale_blocks(con: Any) -> int:
    """Delete every block holding a row no key points at any more (erasure, retention): a block is never
    rewritten, so a dead row's bytes go only with its whole block; the live rows in it are flattened again from
    their raw answers. Returns how many blocks went."""
    dropped = con.execute("DELETE FROM FlatBlocks WHERE rows > "
                          "(SELECT COUNT(*) FROM FlatRows WHERE FlatRows.block = FlatBlocks.id)").rowcount
    con.execute("DELETE FROM FlatRows WHERE block NOT IN (SELECT id FROM FlatBlocks)")
    return int(dropped)
