"""The one assembler of row-aligned results, for in-memory and streaming runs alike.

A result is the input's columns (minus those the run replaces), then the
run's own text columns (``apollo_status``, ``apollo_error``, ...), then the
declared schema columns, one row per input row in input order. The new
columns are built once, in Arrow (:func:`new_columns`); a streaming run
writes them beside the Arrow chunk as read (:func:`assemble_table`), an
in-memory run converts them to pandas once, at the edge, beside the caller's
frame as given (:func:`assemble_frame`): the input's own columns never make
a round trip through Arrow, so their dtypes and the index stay the caller's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.core.schema import handed_to_pandas

#: what an enrichment row costs in this run: its share of its batch's credits (0 from the store or a duplicate)
CREDITS_COLUMN = "apollo_credits"
#: when a row's answer was stored (UTC; the stored answer's time for a row from the store, null: never answered)
FETCHED_COLUMN = "apollo_fetched_at"
FETCHED_TYPE = pa.timestamp("us", tz="UTC")
#: each reason's stable code (:data:`apollo_frames.core.reasons.CODES`), beside its text in ``apollo_error``
ERROR_CODE_COLUMN = "apollo_error_code"
STATUS_COLUMNS = ("apollo_status", "apollo_error", ERROR_CODE_COLUMN, CREDITS_COLUMN, FETCHED_COLUMN)
#: the run's own columns that are not text
_TYPED = {CREDITS_COLUMN: pa.float64(), FETCHED_COLUMN: FETCHED_TYPE}


def text_schema(names: Iterable[str], declared: pa.Schema | None = None) -> pa.Schema:
    """The new columns' schema: ``names`` as text (but the typed run columns, :data:`_TYPED`), then the
    ``declared`` columns."""
    fields = [pa.field(name, _TYPED.get(name, pa.string())) for name in names]
    return pa.schema(fields + (list(declared) if declared is not None else []))


def fetched_at(seconds: pa.Array | pa.ChunkedArray) -> pa.Array:
    """POSIX seconds (float, null: never answered) as the :data:`FETCHED_COLUMN` timestamps, column-wise."""
    micros = pc.cast(pc.round(pc.multiply(seconds, 1_000_000.0)), pa.int64())
    out = micros.cast(FETCHED_TYPE)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def new_columns(head: Mapping[str, Sequence[Any] | pa.Array], flat: pa.Table | None = None) -> pa.Table:
    """The columns a run adds, in order: ``head`` (text from Python lists; an Arrow array as it is), then the
    columns of ``flat``."""
    names = list(head)
    arrays: list[Any] = [v if isinstance(v, pa.Array) else _text(v) for v in head.values()]
    if flat is not None:
        names += flat.column_names
        arrays += flat.columns
    return pa.Table.from_arrays(arrays, names=names)


def _text(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(list(values), type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # a stray non-text value is written as its text, never lost
        return pa.array([None if v is None or v is pd.NA else str(v) for v in values], type=pa.string())


def kept_columns(names: Iterable[Any], new: Iterable[str], replaces: Collection[str] = ()) -> list[Any]:
    """The input's columns that stay: all but those named like a new column (or listed in ``replaces``)."""
    ours = set(new) | set(replaces)
    return [name for name in names if name not in ours]


def assemble_table(chunk: pa.Table, new: pa.Table, schema: pa.Schema) -> pa.Table:
    """One streamed chunk's output in ``schema`` (kept input columns, then ``new``): Arrow in, Arrow out."""
    ours = set(new.column_names)
    arrays = []
    for field in schema:
        column = new.column(field.name) if field.name in ours else chunk.column(field.name)
        arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def assemble_frame(frame: pd.DataFrame, new: pa.Table | list[pa.Table], replaces: Collection[str] = ()
                   ) -> pd.DataFrame:
    """An in-memory result: ``frame``'s kept columns as given, then ``new`` converted once; ``frame``'s index.

    ``new`` as a one-table list is handed over (emptied): its text columns are let go of as they are converted
    (:func:`~apollo_frames.core.schema.handed_to_pandas`).
    """
    tables = new if isinstance(new, list) else [new]
    kept = set(kept_columns(frame.columns, tables[0].column_names, replaces))
    drop = [c for c in frame.columns if c not in kept]
    base = frame.drop(columns=drop) if drop else frame
    out = pd.concat([base.reset_index(drop=True), handed_to_pandas(tables)], axis=1)
    out.index = frame.index
    return out
