"""Files in and out: .csv, .xlsx and .parquet read as Arrow record batches; .parquet, .csv and .xlsx written atomically.

Every command reads its input here, so enrich, push and estimate see the same
rows and the same missing values: Parquet as the file declares it, CSV and
Excel with every column as text and pandas' list of missing-value markers.
Excel needs the optional extra ``apollo_frames[excel]`` (openpyxl).

Written .csv/.xlsx cells that a spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return, from the input or from a server) get a leading ``'`` as OWASP recommends
(``formulas="keep"`` writes them raw); Parquet is written as is. Every file written is ``0600`` whatever the umask:
outputs hold personal data.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from collections import deque
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
#: the extra column of a CSV's record batches: why a line that did not fit the header is a row of its own
LINE_ERROR = "__apollo_frames_line_error__"
INPUT_SUFFIXES = (".csv", ".txt", ".parquet", ".xlsx")
OUTPUT_SUFFIXES = (".parquet", ".csv", ".xlsx")
EXCEL_EXTRA = "Excel files need openpyxl: pip install 'apollo_frames[excel]'"
#: how written .csv/.xlsx cells that look like formulas are handled: "escape" (a leading ') or "keep"
FORMULAS = ("escape", "keep")
#: text a spreadsheet would run as a formula (OWASP CSV injection), unless it is only a signed number
_FORMULA = r"^[=+\-@\t\r]"
_NUMBER = re.compile(r"[+-]?[0-9.]*[0-9][0-9.]*")
#: CSV rows end in CRLF (RFC 4180): the csv module then quotes every cell holding a CR or an LF, so a cell's line
#: break (a CR that a spreadsheet would read as a new row, starting with what follows) never splits its row
CSV_LINE_END = "\r\n"
#: the mode of every file written, whatever the umask (outputs hold personal data)
FILE_MODE = 0o600


def check_chunk_rows(chunk_rows: Any) -> int:
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return chunk_rows


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                return row
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not UTF-8 text (save it as 'CSV UTF-8'): {exc.reason}") from exc
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


class _LineNumbers:
    """Record number (pyarrow's: blank lines not counted) -> the line an editor shows, read only when asked.

    One pass at most over the file, opened at the first bad line: bad lines come in order.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file: Any = None
        self.reader: Any = None
        self.records = 0

    def line_of(self, record: int) -> int:
        if self.reader is None:
            self.file = open(self.path, newline="", encoding="utf-8-sig", errors="replace")  # noqa: SIM115
            self.reader = csv.reader(self.file)
        for row in self.reader:
            self.records += 1 if row else 0
            if self.records >= record:
                break
        return int(self.reader.line_num)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = self.reader = None


class _BadLines:
    """CSV lines that do not fit the header (ragged lines, an export's footer), put back among the rows in file order.

    pyarrow skips them and hands each to :meth:`__call__` with its row number
    (header = 1); :meth:`merge` puts each back where it was, as a row with its
    cells by position and :data:`LINE_ERROR` saying why. A run makes it an
    ``invalid`` row with that reason; it is never sent.
    """

    def __init__(self, names: list[str], path: Path):
        self.names = names
        self.lines = _LineNumbers(path)
        self.pending: deque[Any] = deque()
        self.placed = 0

    def __call__(self, row: Any) -> str:
        self.pending.append(row)
        return "skip"

    def _good_before(self, row: Any) -> int:
        """How many good rows come before ``row`` (numbered among the records, the header being 1)."""
        return (row.number or 0) - 2 - self.placed

    def _row(self, row: Any, schema: pa.Schema) -> pa.RecordBatch:
        self.placed += 1
        cells: list[str | None] = list(next(csv.reader([row.text or ""]), [])[: len(self.names)])
        cells += [None] * (len(self.names) - len(cells))
        where = f"line {self.lines.line_of(row.number)}" if row.number else "a line"
        reason = f"{where}: expected {row.expected_columns} columns, got {row.actual_columns}"
        values = [[None if c is None or c.strip() in CSV_NULLS else c] for c in cells] + [[reason]]
        return pa.RecordBatch.from_arrays([pa.array(v, pa.string()) for v in values], schema=schema)

    def merge(self, batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        good = 0
        for parsed in batches:
            batch = pa.RecordBatch.from_arrays([*parsed.columns, pa.nulls(parsed.num_rows, pa.string())], schema=schema)
            while self.pending and self._good_before(self.pending[0]) <= good + batch.num_rows:
                cut = max(self._good_before(self.pending[0]) - good, 0)
                if cut:
                    yield batch.slice(0, cut)
                    good, batch = good + cut, batch.slice(cut)
                yield from self._rows(schema, 1)
            if batch.num_rows:
                good += batch.num_rows
                yield batch
        yield from self._rows(schema, len(self.pending))

    def _rows(self, schema: pa.Schema, n: int) -> Iterator[pa.RecordBatch]:
        for _ in range(n):
            yield self._row(self.pending.popleft(), schema)


def _open_csv(path: Path) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """The header's columns as text; lines that do not fit it come back as rows naming their line (see _BadLines).

    The record batches carry one more column than the schema returned, :data:`LINE_ERROR`.
    """
    names = _csv_header(path)
    if len(set(names)) != len(names):
        raise InputError(f"{path.name}: the header repeats a column name")
    schema = pa.schema([pa.field(n, pa.string()) for n in names])
    bad = _BadLines(names, path)
    try:
        reader = pacsv.open_csv(
            path,
            # one thread: pyarrow then numbers the lines it skips
            read_options=pacsv.ReadOptions(block_size=8 << 20, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=bad, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=CSV_NULLS
            ),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name}: {exc}") from exc
    full = schema.append(pa.field(LINE_ERROR, pa.string()))

    def close() -> None:
        reader.close()
        bad.lines.close()

    return schema, None, _guarded(path, bad.merge(reader, full), full, close)


def openpyxl_module() -> Any:
    try:
        import openpyxl
    except ImportError as exc:
        raise InputError(EXCEL_EXTRA) from exc
    return openpyxl


def cell_text(value: Any) -> str | None:
    """An Excel cell as the text a CSV export would hold (whole numbers without ".0", dates in ISO form)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = str(value)
    return None if text.strip() in CSV_NULLS else text


def _open_xlsx(path: Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """The first sheet of a workbook, every cell as text (read with openpyxl in read-only mode)."""
    openpyxl = openpyxl_module()
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001  (openpyxl raises many kinds for a file that is not a workbook)
        raise InputError(f"{path.name} is not a readable .xlsx workbook: {type(exc).__name__}") from exc
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = next(rows, None)
    if not header:
        book.close()
        raise InputError(f"{path.name} is empty: the first sheet needs a header row")
    names = [str(h).strip() if h is not None else f"column_{i + 1}" for i, h in enumerate(header)]
    if len(set(names)) != len(names):
        book.close()
        raise InputError(f"{path.name}: the header repeats a column name")
    schema = pa.schema([pa.field(n, pa.string()) for n in names])

    def batches() -> Iterator[pa.RecordBatch]:
        held: list[list[str | None]] = []
        blank = 0  # blank rows are rows, unless nothing follows them (a sheet's formatted but empty tail)
        for row in rows:
            cells = [cell_text(v) for v in row][: len(names)]
            if not any(c is not None for c in cells):
                blank += 1
                continue
            empty: list[str | None] = [None] * len(names)
            held += [list(empty) for _ in range(blank)] + [cells + empty[len(cells):]]
            blank = 0
            if len(held) >= chunk_rows:
                yield pa.RecordBatch.from_pylist([dict(zip(names, r, strict=True)) for r in held], schema=schema)
                held = []
        if held:
            yield pa.RecordBatch.from_pylist([dict(zip(names, r, strict=True)) for r in held], schema=schema)

    return schema, None, _guarded(path, batches(), schema, book.close)


def open_input(src: str | Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """(input schema, row count if known, record batches) for a .parquet, .csv or .xlsx file, read lazily."""
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _open_parquet(path, chunk_rows)
    if suffix in (".csv", ".txt"):
        return _open_csv(path)
    if suffix == ".xlsx":
        return _open_xlsx(path, chunk_rows)
    raise InputError(f"input must be .csv, .xlsx or .parquet, got {path.name}")


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
    """A whole (small) input file as a frame, read as :func:`open_input` reads it (a CSV's bad lines as blank rows)."""
    schema, _, batches = open_input(src, 65_536)
    read = list(batches)
    table = pa.Table.from_batches(read) if read else schema.empty_table()
    return table.select(schema.names).to_pandas()


def approximate_rows(src: str | Path) -> int | None:
    """About how many rows a .csv holds (its lines less the header; a cell holding a line break counts twice),
    counted at disk speed; None for other files. Used for a progress bar's ETA, never for results."""
    path = Path(src)
    if path.suffix.lower() not in (".csv", ".txt"):
        return None
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return max(lines + (last != b"\n") - 1, 0)


def pop_line_errors(frame: pd.DataFrame) -> pd.Series | None:
    """Take the :data:`LINE_ERROR` column out of a chunk read from a CSV; None when no line was bad."""
    if LINE_ERROR not in frame.columns:
        return None
    errors = frame.pop(LINE_ERROR)
    return errors if errors.notna().any() else None


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
        raise InputError(f"output must be a .parquet file, got {path.name}")
    return path


def _private_partial(dst: Path) -> Path:
    """``dst.partial``, made anew (a file or link left there is removed first) and empty with mode
    :data:`FILE_MODE` whatever the umask (writers keep an existing file's mode), so the output is never readable
    by others, not even while it is written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return partial


@contextlib.contextmanager
def partial_output(dst: Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter on ``dst.partial``, renamed to ``dst`` when the block ends normally, deleted otherwise."""
    partial = _private_partial(dst)
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


def output_path(dst: str | Path) -> Path:
    """``dst`` as a Path, refused early unless it names a .parquet, .csv or .xlsx file (the extra checked for .xlsx)."""
    path = Path(dst)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError(f"output must be a .parquet, .csv or .xlsx file, got {path.name}")
    if suffix == ".xlsx":
        openpyxl_module()
    return path


def check_formulas(formulas: Any) -> str:
    if formulas not in FORMULAS:
        raise InputError(f"formulas must be one of {', '.join(FORMULAS)}, got {formulas!r}")
    return str(formulas)


def _neutral(value: Any) -> Any:
    """One label or cell made inert: text a spreadsheet would run as a formula gets a leading '."""
    if isinstance(value, str) and re.match(_FORMULA, value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _escape_column(column: pd.Series) -> pd.Series:
    """A text column with its formula-like cells escaped (vectorised; numbers, times and missing cells untouched)."""
    text = column.astype(object)
    try:
        starts = text.str.match(_FORMULA, na=False).astype(bool)
    except AttributeError:  # no text in the column at all (numbers, None, dicts): nothing to escape
        return column
    if not starts.any():
        return column
    risky = starts & ~text.str.fullmatch(_NUMBER.pattern, na=False).astype(bool)
    return text.where(~risky, "'" + text.where(risky, ""))


def _escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every formula-like text cell, column name and index label escaped (see the module doc)."""
    out = frame.copy(deep=False)
    for n in range(out.shape[1]):
        column = out.iloc[:, n]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            out.isetitem(n, _escape_column(column))
    out.columns = out.columns.map(_neutral)
    if out.index.dtype == object:
        out.index = out.index.map(_neutral)
    return out


def _plain(frame: pd.DataFrame, naive_times: bool, formulas: str = "escape") -> pd.DataFrame:
    """Cells a CSV or a spreadsheet holds: lists and dicts as JSON text, times without a zone when asked,
    formula-like text escaped unless ``formulas="keep"``."""
    out = frame.copy(deep=False)
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype) and naive_times:
            out[name] = column.dt.tz_convert("UTC").dt.tz_localize(None)
        elif column.dtype == object and column.map(lambda v: isinstance(v, (list, dict, tuple))).any():
            out[name] = column.map(
                lambda v: json.dumps(v.tolist() if hasattr(v, "tolist") else v, ensure_ascii=False, default=str)
                if isinstance(v, (list, dict, tuple)) else v
            )
    return _escaped(out) if formulas == "escape" else out


@contextlib.contextmanager
def _atomic(dst: Path) -> Iterator[Path]:
    """A temporary path beside ``dst``, moved onto ``dst`` when the block ends normally, deleted otherwise."""
    partial = _private_partial(dst)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, dst)


def write_frame(frame: pd.DataFrame, dst: str | Path, *, formulas: str = "escape") -> Path:
    """Write ``frame`` to ``dst`` by its suffix, atomically, mode 0600: .parquet as is; .csv in UTF-8 with a header
    row (the form CRMs re-import: one row per line, lists as JSON text, times in ISO 8601); .xlsx one sheet.

    The index is written only when it is a saved one (not a plain 0..n-1 range). ``formulas``: "escape" (default)
    prefixes ' to .csv/.xlsx text a spreadsheet would run as a formula; "keep" writes it raw.
    """
    formulas = check_formulas(formulas)
    path = output_path(dst)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return write_parquet(frame, path)
    index = not isinstance(frame.index, pd.RangeIndex)
    with _atomic(path) as partial:
        if suffix == ".csv":
            _plain(frame, False, formulas).to_csv(partial, index=index, encoding="utf-8",
                                                  lineterminator=CSV_LINE_END)
        else:
            _plain(frame, True, formulas).to_excel(partial, index=index, engine="openpyxl")
    return path


def convert_parquet(src: Path, dst: str | Path, *, formulas: str = "escape") -> Path:
    """Rewrite the Parquet file ``src`` as ``dst`` (.csv a batch at a time; .xlsx whole), then remove ``src``
    (``formulas``: as :func:`write_frame`)."""
    formulas = check_formulas(formulas)
    path = output_path(dst)
    if path.suffix.lower() == ".xlsx":
        write_frame(pd.read_parquet(src), path, formulas=formulas)
    elif path.suffix.lower() == ".csv":
        with _atomic(path) as partial, open(partial, "w", encoding="utf-8", newline="") as fh:
            pf = pq.ParquetFile(src)
            for i, batch in enumerate(pf.iter_batches(batch_size=65_536)):
                frame = _plain(batch.to_pandas(), False, formulas)
                frame.to_csv(fh, index=False, header=i == 0, lineterminator=CSV_LINE_END)
            if pf.metadata.num_rows == 0:
                names = [_neutral(n) if formulas == "escape" else n for n in pf.schema_arrow.names]
                csv.writer(fh, lineterminator=CSV_LINE_END).writerow(names)
            pf.close()
    else:
        os.replace(src, path)
        return path
    src.unlink(missing_ok=True)
    return path
