"""``result.apollo.changes()``: per row whose answer a refresh (``max_age``, ``refresh``) replaced with a
different one, the fields that differ (old -> new) and what kind of change the row shows (issue 24 §3).

Kinds, the first that applies: ``left`` (the new answer names no current employer), ``job_change`` (the
organization differs), ``title_change``, ``email_change``, ``phone_change``, ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from apollo_frames.core.errors import InputError

#: the columns of the frame :func:`changes` returns
COLUMNS = ("row", "change_kind", "field", "old", "new")
#: the fields that name a person's employer
_EMPLOYER = ("person.organization.id", "person.organization_id", "person.organization.name")


def change_kind(fields: Mapping[str, Any]) -> str:
    """The kind of one row's change, from ``field -> new value`` of the fields that differ."""
    if "person.id" in fields and fields["person.id"] is None:
        return "other"  # no longer found: nothing to say about the person
    employer = [f for f in _EMPLOYER if f in fields]
    if employer and all(fields[f] is None for f in employer):
        return "left"
    if employer:
        return "job_change"
    for kind, hit in (("title_change", lambda f: f == "person.title"),
                      ("email_change", lambda f: f in ("person.email", "org.email")),
                      ("phone_change", lambda f: "phone" in f and "organization" not in f)):
        if any(hit(f) for f in fields):
            return kind
    return "other"


def kinds_by_row(rows: Sequence[Any], fields: Sequence[str], new: Sequence[Any]) -> dict[Any, str]:
    """Row -> its :func:`change_kind` (the change list holds the rows' fields one per line)."""
    by_row: dict[Any, dict[str, Any]] = {}
    for row, field, value in zip(rows, fields, new, strict=True):
        by_row.setdefault(row, {})[field] = value
    return {row: change_kind(found) for row, found in by_row.items()}


def change_frame(listed: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """The change list (``attrs["apollo"]["changes"]``: rows by label; a file run's ``changes``: rows by
    position in the file) as a frame of :data:`COLUMNS`."""
    rows, fields, new = listed["row"], listed["field"], listed["new"]
    kinds = kinds_by_row(rows, fields, new)
    return pd.DataFrame({
        "row": list(rows),
        "change_kind": pd.array([kinds[r] for r in rows], dtype="string"),
        "field": pd.array(list(fields), dtype="string"),
        "old": pd.Series(list(listed["old"]), dtype=object),
        "new": pd.Series(list(new), dtype=object),
    }, columns=list(COLUMNS))


def as_text(found: pd.DataFrame) -> pd.DataFrame:
    """A change frame with ``old`` and ``new`` as text (null stays null), for a file: one type per column."""
    text = {c: pd.array([None if v is None else str(v) for v in found[c]], dtype="string") for c in ("old", "new")}
    return found.assign(**text)


def changes(frame: pd.DataFrame) -> pd.DataFrame:
    """What changed in the answers this enrichment run replaced: one line per row and field that differs
    (``row`` is the row's label; ``change_kind`` is that row's kind, on each of its lines; ``old`` and ``new``
    the values). Empty when the run replaced nothing, or nothing it replaced had changed."""
    listed = frame.attrs.get("apollo", {}).get("changes") if isinstance(frame, pd.DataFrame) else None
    if listed is None:
        raise InputError("changes() reads the result of enrich_people or enrich_orgs (its attrs['apollo']); this "
                         "frame is not one (or lost its attrs)")
    return change_frame(listed)
