"""Files in and out: .csv and .parquet read lazily as Arrow record batches, Parquet written atomically.

Every command reads its input here, so enrich, push and estimate see the same
rows and the same missing values: Parquet as the file declares it, CSV with
every column as text and pandas' list of missing-value markers.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from apollo_frames.core.errors import InputError
from apollo_frames.core.schema import to_pandas
from apollo_frames.engine.assemble import kept_columns

#: cells read as missing, as ``pandas.read_csv`` reads them (pyarrow's own list lacks "None" and "<NA>")
CSV_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
INPUT_SUFFIXES = (".csv", ".txt", ".parquet")


def check_chunk_rows(chunk_rows: Any) -> int:
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return chunk_rows


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            return row
    raise InputError(f"{path.name} is empty: a CSV input needs a header line")


def _guarded(path: Path, batches: Iterator[pa.RecordBatch], schema: pa.Schema,
             close: Any) -> Iterator[pa.RecordBatch]:
    """``batches`` in ``schema``; a malformed file is an :class:`InputError` naming it; the reader closed at the end."""
    try:
        for batch in batches:
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name}: {exc}") from exc
    finally:
        close()


def _open_parquet(path: Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name} is not a readable Parquet file: {exc}") from exc
    schema = pf.schema_arrow  # its pandas metadata gives each chunk's frame the saved index and dtypes
    batches = pf.iter_batches(batch_size=chunk_rows, use_pandas_metadata=False)
    return schema, pf.metadata.num_rows, _guarded(path, batches, schema, pf.close)


def _open_csv(path: Path) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    names = _csv_header(path)
    if len(set(names)) != len(names):
        raise InputError(f"{path.name}: the header repeats a column name")
    schema = pa.schema([pa.field(n, pa.string()) for n in names])
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=CSV_NULLS
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name}: {exc}") from exc
    return schema, None, _guarded(path, reader, schema, reader.close)


def open_input(src: str | Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """(input schema, row count if known, record batches) for a .parquet or .csv file, read lazily."""
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _open_parquet(path, chunk_rows)
    if suffix in (".csv", ".txt"):
        return _open_csv(path)
    raise InputError(f"input must be .csv or .parquet, got {path.name}")


def rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one may be shorter), in order."""
    held: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - n, batch.num_rows)
            held.append(batch.slice(0, take))
            n += take
            batch = batch.slice(take)
            if n == rows:
                yield pa.Table.from_batches(held)
                held, n = [], 0
    if n:
        yield pa.Table.from_batches(held)


def read_chunks(src: str | Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.Table]]:
    """(input schema, row count if known, tables of ``chunk_rows`` rows): the file as every command streams it."""
    schema, total, batches = open_input(src, check_chunk_rows(chunk_rows))
    return schema, total, rechunk(batches, chunk_rows)


def read_frame(src: str | Path) -> pd.DataFrame:
    """A whole (small) input file as a frame, read as :func:`open_input` reads it."""
    schema, _, batches = open_input(src, 65_536)
    return pa.Table.from_batches(list(batches), schema=schema).to_pandas()


# -- writing ---------------------------------------------------------------------------------------


def output_schema(input_schema: pa.Schema, new: pa.Schema, replaces: Collection[str] = ()) -> pa.Schema:
    """Input columns (minus those the new ones replace), then the ``new`` columns.

    The schema carries pandas metadata built from the schema alone, so
    ``pd.read_parquet`` gives the new columns the dtypes the in-memory
    functions give them, whatever the chunks held.
    """
    names = set(kept_columns(input_schema.names, new.names, replaces))
    kept = [f for f in input_schema if f.name in names]
    # The input's pandas metadata (if any) restores its dtypes and a saved index such as an id column.
    head = pa.schema(kept, metadata=input_schema.metadata).empty_table().to_pandas()
    tail = to_pandas(new.empty_table())
    tail.index = head.index
    frame = pd.concat([head, tail], axis=1)
    saved_index = not isinstance(head.index, pd.RangeIndex)
    meta = pa.Schema.from_pandas(frame, preserve_index=saved_index).metadata
    return pa.schema(kept + list(new)).with_metadata(meta)


def parquet_output(dst: str | Path) -> Path:
    """``dst`` as a Path, refused early unless it names a .parquet file."""
    path = Path(dst)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"output must be a .parquet file, got {path.name}")
    return path


@contextlib.contextmanager
def partial_output(dst: Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter on ``dst.partial``, renamed to ``dst`` when the block ends normally, deleted otherwise."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    writer = pq.ParquetWriter(partial, schema)
    try:
        yield writer
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, dst)


def write_parquet(frame: pd.DataFrame, dst: str | Path) -> Path:
    """Write ``frame`` to the Parquet file ``dst`` atomically: whole, or not at all (a crash leaves no half file)."""
    path = parquet_output(dst)
    table = pa.Table.from_pandas(frame)
    with partial_output(path, table.schema) as writer:
        writer.write_table(table)
    return path
