"""Rows of Arrow tables taken by position: the one take a cached re-run's rows go through (a shuffled frame, a
subset, a frame's rows put back in input order).

A take of text is a gather of every value's characters, memory-bound: a permutation of 100,000 flattened 5 KB
answers (375 MB) costs about 0.26 s of CPU, more than ``read_parquet`` of them. Each column's chunks are
combined first (a take over 100 chunks cost 1.4x as much) and the columns are taken on threads of their own
(Arrow's kernel releases the GIL), so a second core halves the wait; a column holding no value is made as nulls.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

#: threads that take columns side by side (the decoding of stored blocks uses as many)
THREADS = max(1, min(4, os.cpu_count() or 1))


def take_columns(columns: list[pa.ChunkedArray | None], at: np.ndarray) -> list[pa.Array]:
    """Rows ``at`` of each of ``columns``. ``columns`` is emptied as they are taken: when the caller keeps no
    other reference, a column's rows are let go of once taken (a large result is not held twice)."""
    indices, n = pa.array(at, pa.int64()), len(at)

    def one(i: int) -> pa.Array:
        column, columns[i] = columns[i], None
        assert column is not None
        if column.null_count == len(column):  # (answers leave most declared columns empty)
            return pa.nulls(n, column.type)
        whole = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        del column
        return whole.take(indices)

    with ThreadPoolExecutor(max(1, min(THREADS, len(columns))), thread_name_prefix="apollo-take") as pool:
        return list(pool.map(one, range(len(columns))))


def take_rows(table: pa.Table, at: np.ndarray) -> pa.Table:
    """Rows ``at`` of ``table`` (:func:`take_columns`), in its schema."""
    return pa.Table.from_arrays(take_columns(list(table.columns), at), schema=table.schema)
