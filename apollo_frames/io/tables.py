"""Files as Excel, Outlook and Google Sheets write them, read as the rest of the toolkit reads a clean CSV.

:func:`read_table` (notebooks) and the command line (:func:`clean_input`)
share one path: the file's encoding (a byte-order mark, else UTF-8 if it
decodes, else charset-normalizer's guess: cp1252 from Excel and Outlook,
UTF-16 from Excel's "Unicode text"), its separator (``,`` ``;`` tab ``|``, by
counting on the first lines), its header row (the first of the first lines
with most of the widest line's cells filled: title lines above it are
skipped), the trailing columns with no header and no value and the rows with
no value after the last data row (Sheets writes both; an empty row between
data rows stays a row); and for a workbook, the sheet whose columns are
recognised. A file that needs none of this is read as it is; any
other is first copied, a line at a time, as a clean UTF-8 CSV, so rows,
missing values and ragged lines (``invalid`` rows naming their line) are
those of a clean file. Each guess can be overridden; :class:`Detected` says
what was found, in one line.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import io
import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from apollo_frames.core.columns import ORGS, PEOPLE, resolve
from apollo_frames.core.errors import ColumnMappingError, InputError
from apollo_frames.io.files import cell_text, openpyxl_module, read_frame

__all__ = ["Detected", "clean_input", "read_table"]

#: bytes looked at to guess the encoding and the separator; lines looked at for the header
_HEAD_BYTES, _HEAD_LINES = 64 << 10, 30
_SEPARATORS = (",", ";", "\t", "|")
#: single-byte Latin code pages charset-normalizer may name for what Excel and Outlook write as cp1252
_LATIN = frozenset({"cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_1", "iso8859_2", "iso8859_9",
                    "iso8859_13", "iso8859_15", "iso8859_16", "mac_latin2", "mac_roman", "cp850", "cp437"})
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclasses.dataclass
class Detected:
    """What was found (or given) about an input file, and whether it was read through a clean copy."""

    name: str
    encoding: str | None = None
    sep: str | None = None
    #: 1-based line (or sheet row) of the header
    header_row: int = 1
    sheet: str | None = None
    sheets: tuple[str, ...] = ()
    dropped_columns: int = 0
    copied: bool = False

    def line(self) -> str:
        """One line for the start of a run: ``read leads.csv: encoding cp1252, separator ';', header on line 3``."""
        parts = []
        if self.sheet is not None:
            parts.append(f"sheet {self.sheet!r} of {len(self.sheets)}")
        if self.encoding is not None:
            parts.append(f"encoding {self.encoding}")
        if self.sep is not None:
            parts.append(f"separator {_shown_sep(self.sep)}")
        parts.append(f"header on {'row' if self.sheet is not None else 'line'} {self.header_row}")
        if self.dropped_columns:
            parts.append(f"{self.dropped_columns} empty trailing column(s) dropped")
        return f"read {self.name}: " + ", ".join(parts)


def _shown_sep(sep: str) -> str:
    return "tab" if sep == "\t" else repr(sep)


# -- guesses ------------------------------------------------------------------------------------------


def detect_encoding(head: bytes) -> str:
    """The encoding of a file starting with ``head``: its byte-order mark, UTF-8 when it decodes, else
    charset-normalizer's best guess (cp1252 when it has none)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(head).best()
    guess = best.encoding if best is not None else "cp1252"
    if guess in _LATIN and _decodes(head, "cp1252"):
        return "cp1252"  # a few accented names cannot tell the Latin code pages apart: Excel's is the likeliest
    return guess


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def detect_sep(lines: list[str]) -> str:
    """The separator that splits the first lines into the same number (>1) of cells most often; ``,`` if none."""
    best, score = ",", (0, 0)
    for sep in _SEPARATORS:
        widths = [len(row) for row in csv.reader(lines, delimiter=sep) if any(c.strip() for c in row)]
        if not widths:
            continue
        common = max(set(widths), key=widths.count)
        candidate = (widths.count(common), common) if common > 1 else (0, 0)
        if candidate > score:
            best, score = sep, candidate
    return best


def detect_header(rows: list[list[str]]) -> int:
    """The 0-based index of the header among the first rows: the first with at least half the widest row's
    cells filled (a title line fills one, a blank line none)."""
    filled = [sum(1 for c in row if c.strip()) for row in rows]
    widest = max(filled, default=0)
    return next((i for i, n in enumerate(filled) if n >= max(widest / 2, min(widest, 2))), 0)


def _kept_width(header: list[str]) -> int:
    """The header's width without its trailing unnamed columns."""
    width = len(header)
    while width > 1 and not header[width - 1].strip():
        width -= 1
    return width


def _trim(row: list[str], width: int) -> list[str]:
    """A row cut to ``width`` cells when the cells past it are empty (else kept whole: a ragged line)."""
    return row[:width] if not any(c.strip() for c in row[width:]) else row


def _recognised(labels: list[str]) -> int:
    """How many columns enrichment would read, of people or organisations (0 when none)."""
    best = 0
    for table in (PEOPLE, ORGS):
        with contextlib.suppress(ColumnMappingError):
            best = max(best, len(resolve(labels, table).choices))
    return best


# -- CSV ----------------------------------------------------------------------------------------------


def _text_lines(path: Path, encoding: str) -> Iterator[str]:
    with open(path, encoding=encoding, newline="") as fh:
        yield from fh


def _csv_detect(path: Path, encoding: str | None, sep: str | None, header_row: int | None) -> Detected:
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    enc = encoding or detect_encoding(head)
    try:
        text = head.decode(enc, errors="strict") if len(head) < _HEAD_BYTES else head.decode(enc, errors="ignore")
    except (UnicodeDecodeError, LookupError) as exc:
        raise InputError(f"{path.name} cannot be read as {enc}: {exc}; give the encoding with --encoding") from exc
    lines = io.StringIO(text, newline=None).read().splitlines()[:_HEAD_LINES]
    if not any(line.strip() for line in lines):
        raise InputError(f"{path.name} is empty: a CSV input needs a header line")
    found_sep = sep or detect_sep(lines)
    rows = list(csv.reader(lines, delimiter=found_sep))
    header = header_row - 1 if header_row is not None else detect_header(rows)
    detected = Detected(path.name, enc, found_sep, header + 1)
    names = rows[header] if header < len(rows) else []
    detected.dropped_columns = len(names) - _kept_width(names) if names else 0
    clean = enc in ("utf-8", "utf-8-sig", "ascii") and found_sep == "," and header == 0
    detected.copied = not clean or detected.dropped_columns > 0
    return detected


def _data(rows: Iterable[list[str]], width: int) -> Iterator[list[str]]:
    """Data rows cut to ``width`` (see :func:`_trim`); rows with no value are kept only when a row with values
    follows (a sheet's empty tail is not data; an empty row inside the data stays a row, never lost)."""
    blank: list[list[str]] = []
    for row in rows:
        if not any(c.strip() for c in row):
            blank.append(_trim(row, width))  # a blank line stays blank (not a row), cells stay empty cells
            continue
        yield from blank
        blank = []
        yield _trim(row, width)


def _csv_rows(path: Path, detected: Detected) -> Iterator[list[str]]:
    """The file's rows from its header on, trailing unnamed columns cut, its empty tail left out."""
    assert detected.encoding is not None and detected.sep is not None
    reader = csv.reader(_text_lines(path, detected.encoding), delimiter=detected.sep)
    for _ in range(detected.header_row - 1):
        next(reader, None)
    header = next(reader, [])
    width = _kept_width(header) if header else 1
    yield [c.replace("\ufeff", "") for c in header[:width]]
    yield from _data(reader, width)


# -- Excel --------------------------------------------------------------------------------------------


def _cells(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[str]]:
    """Sheet rows as the text a CSV export would hold ("" for an empty cell)."""
    for row in rows:
        yield ["" if v is None else (cell_text(v) or "") for v in row]


def _open_book(path: Path) -> Any:
    openpyxl = openpyxl_module()
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001  (openpyxl raises many kinds for a file that is not a workbook)
        raise InputError(f"{path.name} is not a readable .xlsx workbook: {type(exc).__name__}") from exc


def _xlsx_pick(book: Any, path: Path, sheet: str | None, header_row: int | None) -> Detected:
    """The sheet named, else the one whose header row (among its first lines) has the most recognised columns."""
    names = tuple(book.sheetnames)
    if sheet is not None and sheet not in names:
        raise InputError(f"{path.name} has no sheet {sheet!r}; its sheets: {', '.join(map(repr, names))}")
    candidates = []
    for name in [sheet] if sheet is not None else names:
        head = list(_cells(itertools.islice(book[name].iter_rows(values_only=True), _HEAD_LINES)))
        header = header_row - 1 if header_row is not None else detect_header(head)
        labels = head[header] if header < len(head) else []
        candidates.append((_recognised(labels), name, header))
    score, name, header = max(candidates, key=lambda c: c[0])  # the first of equals
    if not score and sheet is None:
        raise InputError(f"{path.name}: no sheet has columns enrichment recognises (sheets seen: "
                         f"{', '.join(map(repr, names))}); name the sheet with --sheet / sheet=")
    return Detected(path.name, header_row=header + 1, sheet=name, sheets=names, copied=True)


def _xlsx_rows(book: Any, detected: Detected) -> Iterator[list[str]]:
    """The chosen sheet's rows from its header on, read lazily (as :func:`_csv_rows` reads a CSV)."""
    rows = _cells(book[detected.sheet].iter_rows(values_only=True))
    for _ in range(detected.header_row - 1):
        next(rows, None)
    header = next(rows, [])
    width = _kept_width(header) if header else 1
    detected.dropped_columns = len(header) - width
    yield [c or f"column_{i + 1}" for i, c in enumerate(header[:width])]
    yield from _data(rows, width)


# -- the entry points ---------------------------------------------------------------------------------


def _write(rows: Iterable[list[str]], dst: Path) -> None:
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


@contextlib.contextmanager
def clean_input(
    src: str | Path, *, encoding: str | None = None, sep: str | None = None, sheet: str | None = None,
    header_row: int | None = None,
) -> Iterator[tuple[Path, Detected | None]]:
    """(the path to read, what was detected): ``src`` itself when it needs nothing, else a clean UTF-8 CSV copy
    in a temporary folder removed on exit. Parquet files are taken as they are (detected None)."""
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if header_row is not None and (not isinstance(header_row, int) or header_row < 1):
        raise InputError(f"header_row is the 1-based line of the header, got {header_row!r}")
    if suffix == ".parquet":
        yield path, None
        return
    with contextlib.ExitStack() as stack:
        if suffix == ".xlsx":
            book = _open_book(path)
            stack.callback(book.close)
            detected = _xlsx_pick(book, path, sheet, header_row)
            rows: Iterable[list[str]] = _xlsx_rows(book, detected)
        elif suffix in (".csv", ".txt", ".tsv"):
            detected = _csv_detect(path, encoding, sep, header_row)
            rows = _csv_rows(path, detected)
        else:
            raise InputError(f"input must be .csv, .tsv, .txt, .xlsx or .parquet, got {path.name}")
        if not detected.copied:
            yield path, detected
            return
        yield _copy(path, rows, detected, stack)


def _copy(path: Path, rows: Iterable[list[str]], detected: Detected,
          stack: contextlib.ExitStack) -> tuple[Path, Detected]:
    """``rows`` written as a clean UTF-8 CSV in a temporary folder ``stack`` removes."""
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="apollo-frames-input-"))
    copy = Path(tmp) / (path.stem + ".csv")
    try:
        _write(rows, copy)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name} is not {detected.encoding} throughout ({exc.reason} at byte "
                         f"{exc.start}); give the encoding with --encoding / encoding=") from exc
    return copy, detected


def read_table(
    path: str | Path, *, encoding: str | None = None, sep: str | None = None, sheet: str | None = None,
    header_row: int | None = None,
) -> pd.DataFrame:
    """A .csv, .tsv, .txt, .xlsx or .parquet file as a frame of text, as Excel, Outlook and Sheets write them.

    Args:
        path: the file.
        encoding: e.g. ``"cp1252"``; detected when None (byte-order mark, UTF-8, else charset-normalizer).
        sep: ``","``, ``";"``, ``"\\t"`` or ``"|"``; detected when None.
        sheet: a workbook's sheet; when None, the one whose columns enrichment recognises.
        header_row: the 1-based line (sheet row) of the header; when None, the first line that looks like one
            (title lines above it are skipped).

    Trailing columns with no header and no value and the empty rows after the
    last data row are left out; every cell is text (ids and zip codes keep their leading
    zeros), empty cells missing. What was detected is in
    ``frame.attrs["apollo_input"]``. Raises :class:`~apollo_frames.InputError`
    for a file it cannot read, saying which override to give.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> pd.DataFrame({"Name": ["Ann"], "Email": ["ann@acme.example"]}).to_csv("leads.csv", sep=";", index=False)
    >>> af.read_table("leads.csv").to_dict("list")
    {'Name': ['Ann'], 'Email': ['ann@acme.example']}
    """
    with clean_input(path, encoding=encoding, sep=sep, sheet=sheet, header_row=header_row) as (src, detected):
        frame = read_frame(src)
    if detected is not None:
        frame.attrs["apollo_input"] = dataclasses.asdict(detected)
    return frame
