"""Column-wise Arrow work on threads of their own, and the one take of rows by position.

Arrow's kernels release the GIL, so steps made of independent column work (decoding stored blocks, a take of
every column, normalising each input column, the match flags' rule families) take about half the wall time on
a second core; on one core they cost what they did.

A take of text is a gather of every value's characters, memory-bound: a permutation of 100,000 flattened 5 KB
answers (375 MB) costs about 0.26 s of CPU, more than ``read_parquet`` of them. Each column's chunks are
combined first (a take over 100 chunks cost 1.4x as much); a column holding no value is made as nulls.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa

T = TypeVar("T")
R = TypeVar("R")
#: threads that work side by side
THREADS = max(1, min(4, os.cpu_count() or 1))


def side_by_side(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``fn`` of each item, in order, on up to :data:`THREADS` threads (one item: on this thread)."""
    items = list(items)
    if len(items) < 2 or THREADS == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(THREADS, len(items)), thread_name_prefix="apollo-columns") as pool:
        return list(pool.map(fn, items))


def take_columns(columns: list[pa.ChunkedArray | None], at: np.ndarray) -> list[pa.Array]:
    """Rows ``at`` of each of ``columns``, side by side. ``columns`` is emptied as they are taken: when the caller
    keeps no other reference, a column's rows are let go of once taken (a large result is not held twice)."""
    indices, n = pa.array(at, pa.int64()), len(at)

    def one(i: int) -> pa.Array:
        column, columns[i] = columns[i], None
        assert column is not None
        if column.null_count == len(column):  # (answers leave most declared columns empty)
            return pa.nulls(n, column.type)
        whole = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        del column
        return whole.take(indices)

    return side_by_side(one, range(len(columns)))


def take_rows(table: pa.Table, at: np.ndarray) -> pa.Table:
    """Rows ``at`` of ``table`` (:func:`take_columns`), in its schema."""
    return pa.Table.from_arrays(take_columns(list(table.columns), at), schema=table.schema)
