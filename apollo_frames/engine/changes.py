"""What changed when a run replaced stored answers (``max_age`` or ``refresh``): old and new value per field.

The store keeps each replaced answer (``Previous``, :meth:`~apollo_frames.client.store.AnswerStore.previous_many`);
after a run, the answers it replaced are flattened beside the ones that replaced them and compared a column at a
time, so Python only touches the values that differ. The result is columnar and JSON-able (it rides in
``attrs["apollo"]["changes"]``): row position, field, old, new. What kind of change each row shows is the
operation layer's to say (:mod:`apollo_frames.ops.changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.core.errors import StorageError

#: the columns of a change list
FIELDS = ("row", "field", "old", "new")


def empty() -> dict[str, list]:
    return {name: [] for name in FIELDS}


def replaced_answers(plan: Any, op: Any, outcome: Sequence[str | None], cache: Any, since: float) -> dict[str, list]:
    """Per input row whose answer this run replaced with a different one: each field that differs (row
    positions in the plan's frame, fields in the declared order). The new answers are the plan's rows
    (flattened as they came: ``runner.flatten_answered``)."""
    answered = [j for j in plan.to_fetch if outcome[j] in ("matched", "no_match")]
    try:
        previous = cache.previous_many([plan.cache_keys[j] for j in answered], since) if answered else {}
    except StorageError:  # the store cannot be read now: the run's rows stand, the list is empty
        previous = {}
    js = [j for j in answered if plan.cache_keys[j] in previous]
    if not js:
        return empty()
    old = op.flatten([previous[plan.cache_keys[j]] for j in js])
    new = plan.cached_table.take(pa.array([plan.cached_rows[j] for j in js], type=pa.int64()))
    found = empty()
    per_unique: list[list[tuple[str, Any, Any]]] = [[] for _ in js]
    for name in old.column_names:
        for i, before, after in _differences(old.column(name), new.column(name)):
            per_unique[i].append((name, before, after))
    rows = _rows_of(plan.row_unique, js)
    for i, fields in enumerate(per_unique):
        for row in rows[i] if fields else ():
            for name, before, after in fields:
                found["row"].append(row)
                found["field"].append(name)
                found["old"].append(before)
                found["new"].append(after)
    return _by_row(found)


def _differences(old: pa.ChunkedArray, new: pa.ChunkedArray) -> list[tuple[int, Any, Any]]:
    """(index, old, new) where the two columns differ (a null differs from a value, two nulls do not)."""
    same = pc.or_(pc.fill_null(pc.equal(old, new), False), pc.and_(pc.is_null(old), pc.is_null(new)))
    at = pc.indices_nonzero(pc.invert(same))
    if not len(at):
        return []
    return list(zip(at.to_pylist(), pc.take(old, at).to_pylist(), pc.take(new, at).to_pylist(), strict=True))


def _rows_of(row_unique: Sequence[int], js: Sequence[int]) -> list[list[int]]:
    """Per unique index in ``js``, the input rows holding it."""
    unique = np.asarray(row_unique, dtype=np.int64)
    wanted = np.full(int(unique.max(initial=-1)) + 2, -1, dtype=np.int64)
    wanted[np.asarray(js, dtype=np.int64)] = np.arange(len(js))
    where = wanted[unique]  # (an invalid row's -1 reads the last slot: -1)
    rows = np.flatnonzero(where >= 0)
    out: list[list[int]] = [[] for _ in js]
    for row, i in zip(rows.tolist(), where[rows].tolist(), strict=True):
        out[i].append(row)
    return out


def _by_row(found: dict[str, list]) -> dict[str, list]:
    """The change list in row order (fields in their declared order within a row)."""
    order = sorted(range(len(found["row"])), key=found["row"].__getitem__)
    return {name: [values[i] for i in order] for name, values in found.items()}


def shifted(changes: dict[str, list], offset: int) -> dict[str, list]:
    """``changes`` of a chunk, with row positions counted from the file's first row."""
    return dict(changes, row=[row + offset for row in changes["row"]])


def extend(into: dict[str, list], more: dict[str, list]) -> None:
    for name in FIELDS:
        into[name].extend(more[name])
