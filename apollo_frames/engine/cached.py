"""Reading the answer store for a plan: flattened copies first, raw answers (flattened once, kept) for the rest.

A fully cached re-run reads each block of keys with one query for its row
references, one for the Arrow blocks they point into (each loaded once per
run), and takes the rows it needs: no JSON is decoded and nothing is
flattened again. Keys without a current copy are read as raw JSON answers,
flattened, and their copy saved as one new block (best effort: a read-only
store just reads the raw answers each time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from apollo_frames.client.flat import FlatCopies, Ref, Stamp, fingerprint
from apollo_frames.client.store import SCHEMA_VERSION
from apollo_frames.core.schema import FLATTEN_VERSION

#: rows read from blocks holding more than this many times the rows used are saved again, together
_SCATTER = 4


class CachedRead:
    """The cache hits of one plan: key index -> matched, and (when flattening) their rows in one table."""

    def __init__(self) -> None:
        self.cached: dict[int, bool] = {}
        self.rows: dict[int, int] = {}
        self.pieces: list[pa.Table] = []
        self.height = 0

    def add(self, piece: pa.Table, js: Sequence[int]) -> None:
        """``piece`` row i is the answer of unique index ``js[i]``."""
        self.rows.update(zip(js, range(self.height, self.height + len(js)), strict=True))
        self.pieces.append(piece)
        self.height += len(js)

    def add_block(self, start: int, table: pa.Table, hits: Sequence[bool]) -> None:
        """``table`` row i is the answer of unique index ``start + i``, a match when ``hits[i]``."""
        self.cached.update(zip(range(start, start + len(hits)), hits, strict=True))
        self.add(table, range(start, start + len(hits)))

    def table(self) -> pa.Table | None:
        return pa.concat_tables(self.pieces) if self.pieces else None


def copies_for(op: Any, cache: Any) -> FlatCopies:
    """The flattened copies ``op``'s answers are read from (fingerprinted by versions and declared schema)."""
    schema = op.flatten([]).schema
    return FlatCopies(cache, fingerprint(SCHEMA_VERSION, FLATTEN_VERSION, op.endpoint, schema=schema), schema)


def read_cached(
    keys: Sequence[str], op: Any, cache: Any, *, flatten: bool = True, block_size: int = 1_000
) -> CachedRead:
    """Look ``keys`` up ``block_size`` at a time; ``flatten``: also gather their rows in the declared schema.

    When the rows used are a small part of the blocks read for them (a frame that picks a few
    answers out of a large store), they are saved again, a block per ``block_size`` keys, so the
    next run of the same frame reads only those.
    """
    out = CachedRead()
    copies = copies_for(op, cache)
    found: list[list[tuple[int, str, Ref]]] = []  # per block of keys read key by key: those with a copy
    used = 0
    starts = range(0, len(keys), block_size)
    wholes = copies.whole_blocks([keys[s:s + block_size] for s in starts]) if flatten else [None] * len(starts)
    for start, whole in zip(starts, wholes, strict=True):
        block = keys[start:start + block_size]
        if whole is not None:  # the common re-run: one stored block, row for row
            out.add_block(start, *whole)
            used += len(block)
        else:
            found.append(_read_block(out, copies, op, block, start, flatten=flatten))
    refs = [ref for group in found for ref in group]
    if flatten and refs:
        _take_copies(out, copies, refs)
        used += len(refs)
        if copies.loaded_rows > _SCATTER * used:
            _save_together(out, copies, found)
    return out


def _read_block(out: CachedRead, copies: FlatCopies, op: Any, block: Sequence[str], start: int, *,
                flatten: bool) -> list[tuple[int, str, Ref]]:
    """One block of keys found key by key: (unique index, key, copy) of those with a copy (their rows are taken
    later, all blocks together); raw answers read for the rest."""
    refs = copies.find(block)
    if flatten:
        copies.load({ref[0] for ref in refs.values()})
        refs = copies.usable(refs)
    with_copy = [(j, key, refs[key]) for j, key in enumerate(block, start) if key in refs]
    out.cached.update((j, ref[2]) for j, _, ref in with_copy)
    _read_raw(out, copies, op, [(j, key) for j, key in enumerate(block, start) if key not in refs], flatten=flatten)
    return with_copy


def _take_copies(out: CachedRead, copies: FlatCopies, refs: list[tuple[int, str, Ref]]) -> None:
    """Add the rows ``refs`` point at: one piece per stored block, its rows in block order (a block used whole is
    added as it is, without a copy)."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for j, _, ref in refs:
        groups.setdefault(ref[0], []).append((ref[1], j))
    for block_id, pairs in groups.items():
        table = copies.table(block_id)
        assert table is not None  # refs keep loaded blocks only
        pairs.sort()
        rows = [row for row, _ in pairs]
        whole = len(rows) == table.num_rows and rows == list(range(len(rows)))
        out.add(table if whole else table.take(pa.array(rows, type=pa.int64())), [j for _, j in pairs])


def _save_together(out: CachedRead, copies: FlatCopies, found: list[list[tuple[int, str, Ref]]]) -> None:
    """Save the rows read from copies again, a block per block of keys, in key order (the next run of the same
    frame reads them as whole blocks)."""
    table = out.table()
    assert table is not None
    for group in found:
        if group:
            keys = [key for _, key, _ in group]
            piece = table.take(pa.array([out.rows[j] for j, _, _ in group], type=pa.int64())).combine_chunks()
            copies.save(keys, {key: ref[3] for _, key, ref in group}, [ref[2] for _, _, ref in group], piece)


def _read_raw(out: CachedRead, copies: FlatCopies, op: Any, missing: list[tuple[int, str]], *, flatten: bool) -> None:
    """Read raw answers of keys without a copy; flatten them and save their copy when ``flatten``."""
    if not missing:
        return
    stamps: dict[str, Stamp] = {}
    hits = copies.store.get_many([key for _, key in missing], stamps=stamps)
    present = [(j, key) for j, key in missing if key in hits]
    for j, key in present:
        out.cached[j] = hits[key] is not None
    if not flatten or not present:
        return
    table = op.flatten([hits[key] for _, key in present])
    out.add(table, [j for j, _ in present])
    keys = [key for _, key in present]
    copies.save(keys, stamps, [hits[key] is not None for key in keys], table)


def save_answered(cache: Any, op: Any, keys: Sequence[str], hits: Sequence[bool], table: pa.Table,
                  block_size: int = 1_000) -> None:
    """Keep flattened copies of answers just received and stored (row i of ``table`` is ``keys[i]``'s answer).

    Each copy is tied to the stamp its raw answer was written with; an answer not in the store
    (a storage failure) gets no copy.
    """
    copies = copies_for(op, cache)
    for start in range(0, len(keys), block_size):
        block = list(keys[start:start + block_size])
        stamps = copies.stamps(block)
        rows = [i for i, key in enumerate(block, start) if key in stamps]
        if rows:
            piece = table.slice(start, len(block)) if len(rows) == len(block) else table.take(pa.array(rows))
            copies.save([keys[i] for i in rows], stamps, [hits[i] for i in rows], piece)
