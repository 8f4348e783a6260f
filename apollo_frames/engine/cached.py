"""Reading the answer store for a plan: flattened copies first, raw answers (flattened once, kept) for the rest.

Whatever the frame (the one that stored the answers, a shuffled copy, a subset, a frame enriched after
others), the keys with a copy are read as columnar work (:meth:`FlatCopies.take`: blocks decoded, keys
matched by one hash lookup, rows taken in order): no JSON is decoded and nothing is flattened again. Keys
without a current copy are read as raw JSON answers, flattened, and their copy saved as one new block (best
effort: a read-only store just reads the raw answers each time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from apollo_frames.client.flat import STORED_AT, FlatCopies, Stamp, fingerprint
from apollo_frames.client.storage import sql_blocks, sql_marks
from apollo_frames.core.entries import SCHEMA_VERSION
from apollo_frames.core.schema import FLATTEN_VERSION

V = TypeVar("V")


class Hits(MutableMapping[int, V]):
    """unique index -> value (a plan's hits), held as two arrays until read or changed by key: a re-run of
    100,000 cached rows reads them by array (:func:`hit_arrays`) and never builds a dict of them."""

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self._arrays: tuple[np.ndarray, np.ndarray] | None = (keys, values)
        self._dict: dict[int, V] = {}

    def _as_dict(self) -> dict[int, V]:
        if self._arrays is not None:
            keys, values = self._arrays
            self._dict, self._arrays = dict(zip(keys.tolist(), values.tolist(), strict=True)), None
        return self._dict

    def __getitem__(self, j: int) -> V:
        return self._as_dict()[j]

    def __setitem__(self, j: int, value: V) -> None:
        self._as_dict()[j] = value

    def __delitem__(self, j: int) -> None:
        del self._as_dict()[j]

    def __iter__(self) -> Iterator[int]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self._arrays[0]) if self._arrays is not None else len(self._dict)

    def __repr__(self) -> str:
        return f"Hits({self._as_dict()!r})"


def hit_arrays(hits: Mapping[int, Any], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(keys, values) of ``hits`` as arrays, in its order (no Python per entry for :class:`Hits` as read)."""
    if isinstance(hits, Hits) and hits._arrays is not None:
        return hits._arrays
    return np.fromiter(hits, np.int64, len(hits)), np.fromiter(hits.values(), dtype, len(hits))


class CachedRead:
    """The cache hits of one plan as arrays: unique indices, whether each is a match, and (when flattening) their
    rows in one table, hit i in row i (no per-row Python: a hit's row is its position)."""

    def __init__(self) -> None:
        self._indices: list[np.ndarray] = [np.zeros(0, np.int64)]
        self._hits: list[np.ndarray] = [np.zeros(0, bool)]
        self.pieces: list[pa.Table] = []

    def add(self, piece: pa.Table | None, js: Sequence[int] | np.ndarray, hits: Sequence[bool] | np.ndarray) -> None:
        """Unique index ``js[i]`` is a hit, a match when ``hits[i]``, its row ``piece`` row i (when flattening)."""
        self._indices.append(np.asarray(js, np.int64))
        self._hits.append(np.asarray(hits, bool))
        if piece is not None:
            self.pieces.append(piece)

    @property
    def indices(self) -> np.ndarray:
        """The unique indices read, in the order of the table's rows."""
        return np.concatenate(self._indices)

    @property
    def hits(self) -> np.ndarray:
        """Per index read, whether its answer is a match (False: a cached no-match)."""
        return np.concatenate(self._hits)

    @property
    def cached(self) -> Hits[bool]:
        """unique index -> matched (the plan's :attr:`~apollo_frames.engine.runner.Plan.cached`)."""
        return Hits(self.indices, self.hits)

    @property
    def rows(self) -> Hits[int]:
        """unique index -> its row in :meth:`table` (empty when read without flattening)."""
        indices = self.indices if self.pieces else np.zeros(0, np.int64)
        return Hits(indices, np.arange(len(indices), dtype=np.int64))

    def table(self) -> pa.Table | None:
        """The rows read, one table; a column with no value is one chunk of nulls (not a chunk per block read:
        converting 64 such columns of 100 chunks each to pandas cost 16 ms per 100,000 rows)."""
        if not self.pieces:
            return None
        table = pa.concat_tables(self.pieces)
        nulls: dict[pa.DataType, pa.Array] = {}  # (one per type, shared: arrays are immutable)
        for c in table.columns:
            if c.type not in nulls and c.num_chunks > 1 and c.null_count == len(c):
                nulls[c.type] = pa.nulls(len(c), c.type)
        return pa.Table.from_arrays([nulls[c.type] if c.num_chunks > 1 and c.null_count == len(c) else c
                                     for c in table.columns], schema=table.schema)


def copies_for(op: Any, cache: Any) -> FlatCopies:
    """The flattened copies ``op``'s answers are read from (fingerprinted by versions and declared schema)."""
    schema = op.flatten([]).schema
    return FlatCopies(cache, fingerprint(SCHEMA_VERSION, FLATTEN_VERSION, op.endpoint, schema=schema), schema)


#: what reads the flattened copies of keys (the signature of :meth:`FlatCopies.take`)
Take = Callable[..., tuple[np.ndarray, np.ndarray, "pa.Table | None"]]


def read_cached(keys: Sequence[str], op: Any, cache: Any, *, flatten: bool = True, block_size: int = 1_000,
                take: Take | None = None) -> CachedRead:
    """Look ``keys`` up; ``flatten``: also gather their rows in the declared schema (raw answers flattened and
    their copies saved ``block_size`` at a time). ``take``: reads the copies instead of :meth:`FlatCopies.take`
    (a file run's rows read ahead); the keys it does not give are read raw, as always."""
    out = CachedRead()
    copies = copies_for(op, cache)
    found, hits, table = (take or copies.take)(keys, rows=flatten)
    out.add(table, found, hits)
    left = np.ones(len(keys), bool)
    left[found] = False
    missing = [(j, keys[j]) for j in np.flatnonzero(left).tolist()]
    for start in range(0, len(missing), block_size):
        _read_raw(out, copies, op, missing[start:start + block_size], flatten=flatten)
    return out


def _read_raw(out: CachedRead, copies: FlatCopies, op: Any, missing: list[tuple[int, str]], *, flatten: bool) -> None:
    """Read raw answers of keys without a copy; flatten them and save their copy when ``flatten``."""
    stamps: dict[str, Stamp] = {}
    found = copies.store.get_many([key for _, key in missing], stamps=stamps)
    present = [(j, key) for j, key in missing if key in found]
    hits = [found[key] is not None for _, key in present]
    table = op.flatten([found[key] for _, key in present]) if flatten and present else None
    if table is not None:
        copies.save([key for _, key in present], stamps, hits, table)
        table = with_stored_at(table, [key for _, key in present], stamps)
    out.add(table, [j for j, _ in present], hits)


def with_stored_at(table: pa.Table, keys: Sequence[str], stamps: dict[str, Stamp]) -> pa.Table:
    """``table`` (row i: ``keys[i]``'s answer) with :data:`STORED_AT`: when each answer was stored (null: not)."""
    stored = [stamps[key][0] if key in stamps else None for key in keys]
    return table.append_column(STORED_AT, pa.array(stored, pa.float64()))


def save_answered(cache: Any, op: Any, keys: Sequence[str], hits: Sequence[bool], table: pa.Table,
                  block_size: int = 1_000) -> np.ndarray:
    """Keep flattened copies of answers just received and stored (row i of ``table`` is ``keys[i]``'s answer).

    Each copy is tied to the stamp its raw answer was written with; an answer not in the store
    (a storage failure) gets no copy. Returns per row when its raw answer was stored (NaN: not in the store).
    The stamps are read and let go of a block at a time: 100,000 keys' stamps held at once as Python objects
    raised a cold run's peak (issue 27).
    """
    copies = copies_for(op, cache)
    stored = np.full(len(keys), np.nan)
    for start in range(0, len(keys), block_size):
        block = list(keys[start:start + block_size])
        stamps = _stamps(cache, block)
        rows = [i for i, key in enumerate(block, start) if key in stamps]
        if rows:
            stored[rows] = [stamps[keys[i]][0] for i in rows]
            piece = table.slice(start, len(block)) if len(rows) == len(block) else table.take(pa.array(rows))
            copies.save([keys[i] for i in rows], stamps, [hits[i] for i in rows], piece)
    return stored


def _stamps(cache: Any, keys: Sequence[str]) -> dict[str, Stamp]:
    """key -> (stored at, expires at) of the raw answers present for ``keys``."""
    return {key: (stored, expires) for block in sql_blocks(keys)
            for key, stored, expires in cache.query("SELECT key, stored_at, expires_at FROM Answers WHERE key IN "
                                                    f"({sql_marks(len(block))})", block)}
