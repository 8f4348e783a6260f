"""Per-row records kept as columns, made into dicts only when one is read.

A frame prepared a column at a time has its records as Arrow columns already;
a fully cached re-run never sends them, so building one dict per row (and the
garbage collector's walks over them) would be work for nothing. A
:class:`ColumnRecords` reads like the list of dicts it stands for: a row's
record holds the fields whose column is not null in that row. A row may be
set (a streaming run marks a malformed CSV line invalid with ``None``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from typing import Any, SupportsIndex, overload

import pyarrow as pa


class ColumnRecords(MutableSequence[dict | None]):
    """A fixed-length sequence of records read from ``columns`` (field -> one Arrow value per row)."""

    def __init__(self, columns: Mapping[str, pa.Array], rows: int | None = None):
        self.columns = dict(columns)
        self._len = len(next(iter(self.columns.values()))) if self.columns else int(rows or 0)
        #: rows set since: row -> its record (None: invalid)
        self.set_rows: dict[int, dict | None] = {}

    def __len__(self) -> int:
        return self._len

    def _index(self, i: SupportsIndex) -> int:
        j = operator.index(i)
        j = j + self._len if j < 0 else j
        if not 0 <= j < self._len:
            raise IndexError("record index out of range")
        return j

    @overload
    def __getitem__(self, i: SupportsIndex) -> dict | None: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict | None]: ...

    def __getitem__(self, i: SupportsIndex | slice) -> dict | None | list[dict | None]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        j = self._index(i)
        if j in self.set_rows:
            return self.set_rows[j]
        return {f: v for f, col in self.columns.items() if (v := col[j].as_py()) is not None}

    def __iter__(self) -> Iterator[dict | None]:
        names = list(self.columns)
        values = [col.to_pylist() for col in self.columns.values()]
        for j, row in enumerate(zip(*values, strict=True) if values else [()] * self._len):
            if j in self.set_rows:
                yield self.set_rows[j]
            else:
                yield {f: v for f, v in zip(names, row, strict=True) if v is not None}

    @overload
    def __setitem__(self, i: SupportsIndex, value: dict | None) -> None: ...

    @overload
    def __setitem__(self, i: slice, value: Iterable[dict | None]) -> None: ...

    def __setitem__(self, i: SupportsIndex | slice, value: Any) -> None:
        if isinstance(i, slice):
            for j, v in zip(range(*i.indices(self._len)), value, strict=True):
                self.set_rows[j] = v
            return
        self.set_rows[self._index(i)] = value

    def __delitem__(self, i: SupportsIndex | slice) -> None:
        raise TypeError("records are one per input row: set a row to None instead of deleting it")

    def insert(self, index: int, value: dict | None) -> None:
        raise TypeError("records are one per input row: they cannot be added to")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == self._len and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnRecords({self._len:,} rows, fields {list(self.columns)})"

    def none_rows(self) -> list[int]:
        """The rows set to None (invalid since prepare)."""
        return [j for j, v in self.set_rows.items() if v is None]

    def pick(self, rows: Sequence[int]) -> ColumnRecords:
        """The records of ``rows``, in that order (still columns)."""
        take = pa.array(rows, pa.int64())
        out = ColumnRecords({f: col.take(take) for f, col in self.columns.items()}, len(rows))
        if self.set_rows:
            out.set_rows = {k: self.set_rows[j] for k, j in enumerate(rows) if j in self.set_rows}
        return out


def pick(records: Sequence[dict | None], rows: Sequence[int]) -> Sequence[dict | None]:
    """The records of ``rows``, in that order: still columns when ``records`` are (:meth:`ColumnRecords.pick`)."""
    if isinstance(records, ColumnRecords):
        return records.pick(rows)
    return [records[j] for j in rows]
