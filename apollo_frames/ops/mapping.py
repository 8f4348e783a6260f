"""The column mapping an operation would use for a frame, shown before anything is prepared or sent.

``apollo_frames.columns(frame, operation="enrich_people")`` answers "which of my columns
does this read, as which Apollo field, in which priority, and what does it
ignore?" with the very :class:`~apollo_frames.core.columns.ColumnMapping` the
operation itself resolves (same tables, same overrides, same errors), so the
preview cannot drift from the run. Nothing is normalised, read from the cache or
sent: only the column labels are looked at, the first values of columns no
header names (to recognise them by content, as the run does), and for a push,
the values of the id columns recognised by name (another system's ids there are ignored, with the
reason, as the push ignores them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from apollo_frames.core import filters as flt
from apollo_frames.core.columns import ORGS, PEOPLE, ColumnMapping, Columns, resolve
from apollo_frames.core.errors import InputError
from apollo_frames.ops import registry
from apollo_frames.ops.push import ACCOUNTS, CONTACTS, push_mapping
from apollo_frames.ops.search import search_kind_of

__all__ = ["columns"]

Overrides = Columns
#: (the frame, or its column labels; overrides; options) -> the mapping
Mapper = Callable[[Any, Overrides, dict[str, Any]], ColumnMapping]

#: Options a call takes besides its operation's own (accepted, and ignored: they do not change the mapping).
_CALL_OPTIONS = frozenset(registry.RUN_OPTIONS) | {"progress", "client"}
#: Shorthands for the per-row search of one kind.
_SEARCH_KINDS = {"search_people": "people", "search_orgs": "orgs"}


def _people(frame: Any, overrides: Overrides, options: dict[str, Any]) -> ColumnMapping:
    return resolve(_labels(frame), PEOPLE, overrides, sample=_frame_or_none(frame))


def _orgs(frame: Any, overrides: Overrides, options: dict[str, Any]) -> ColumnMapping:
    return resolve(_labels(frame), ORGS, overrides, sample=_frame_or_none(frame))


def _search(frame: Any, overrides: Overrides, options: dict[str, Any]) -> ColumnMapping:
    """Per-row filters: constant filters (keyword arguments) take their filter away from the columns."""
    filters = {k: v for k, v in options.items() if k not in _CALL_OPTIONS and k != "max_results_per_row"}
    kind = search_kind_of(filters.pop("kind", "people"))
    constant = flt.validate_filters(kind, filters)
    return flt.filter_columns(kind, _labels(frame), overrides, constant=constant)


def _contacts(frame: Any, overrides: Overrides, options: dict[str, Any]) -> ColumnMapping:
    return push_mapping(_frame_or_labels(frame), CONTACTS, overrides, options.get("mode", "upsert"))


def _accounts(frame: Any, overrides: Overrides, options: dict[str, Any]) -> ColumnMapping:
    return push_mapping(_frame_or_labels(frame), ACCOUNTS, overrides, options.get("mode", "upsert"))


_MAPPERS: dict[str, Mapper] = {
    "enrich_people": _people,
    "enrich_orgs": _orgs,
    "search": _search,
    "push_contacts": _contacts,
    "push_accounts": _accounts,
}


def _labels(frame: Any) -> list[Any]:
    """A frame's column labels; a list of labels (a file's header) is taken as it is."""
    if isinstance(frame, pd.DataFrame):
        return list(frame.columns)
    if isinstance(frame, (str, bytes)) or not isinstance(frame, Iterable):
        raise TypeError(f"columns() needs a pandas DataFrame or a list of column names, got {type(frame).__name__}")
    return list(frame)


def _frame_or_none(frame: Any) -> pd.DataFrame | None:
    """A DataFrame (its first values let columns be recognised by content); None for a list of labels."""
    return frame if isinstance(frame, pd.DataFrame) else None


def _frame_or_labels(frame: Any) -> Any:
    """A DataFrame as it is (a push looks at its id columns' values), anything else as its labels."""
    return frame if isinstance(frame, pd.DataFrame) else _labels(frame)


def _operation(operation: Any, options: dict[str, Any]) -> str:
    """The registered name of ``operation`` ('enrich-people' too; 'search_people' is search with kind='people')."""
    name = operation.replace("-", "_") if isinstance(operation, str) else operation
    if name in _SEARCH_KINDS:
        options.setdefault("kind", _SEARCH_KINDS[name])
        name = "search"
    spec = registry.get(name)
    if spec.name not in _MAPPERS:
        raise InputError(f"no column mapping for operation {spec.name!r}; known: {', '.join(_MAPPERS)}")
    if spec.kind != "search":
        unknown = sorted(set(options) - set(spec.options) - _CALL_OPTIONS)
        if unknown:
            raise TypeError(f"{spec.name} takes no option {', '.join(map(repr, unknown))}")
    return spec.name


def columns(frame: Any, *, operation: str = "enrich_people", columns: Columns = None, **options: Any) -> ColumnMapping:
    """The column mapping ``operation`` would use for ``frame``: input column -> Apollo field, in priority order.

    ``operation`` is one of ``enrich_people``, ``enrich_orgs``, ``search`` (with
    ``kind="people"`` or ``"orgs"``; ``search_people`` / ``search_orgs`` for
    short), ``push_contacts``, ``push_accounts``. ``columns`` and ``options``
    are those the operation takes (a search's keyword filters are constant for
    every row, so no column is used for them); options that do not change the
    mapping are accepted and ignored. ``frame`` may also be a list of column
    names. Raises what the operation would raise for these columns
    (:class:`~apollo_frames.core.columns.ColumnMappingError`, ``FilterError``).

    The result shows as a table in a notebook; ``.to_frame()`` is that table as a
    DataFrame (column, field, priority, how chosen or why ignored),
    ``.to_dict()`` is what an enrichment records in ``attrs["apollo"]["columns"]``.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> af.columns(pd.DataFrame(columns=["E-mail", "Company", "Notes"])).to_dict()
    {'email': ['E-mail'], 'organization_name': ['Company']}
    """
    options = dict(options)
    name = _operation(operation, options)
    return _MAPPERS[name](frame, columns, options)
