"""Declared output columns for people and organizations, and fast flattening.

Each output column is declared once, as module data: ``(name, key path, arrow
type)``. People columns are prefixed ``person.``, organization columns
``org.``; nested keys are joined with ``.`` (``person.organization.name`` is
``record["organization"]["name"]``). The same columns come out whatever the
records hold, in declaration order, with the same types, so two runs over
different data give frames with identical dtypes and identical Parquet schemas.

Types and their Parquet form:

* text -> ``string``; counts and years -> ``int64``; money and confidence ->
  ``double``; flags -> ``bool``.
* lists of scalars (departments, keywords, languages, technology_names,
  personal_emails, industries, ...) -> **JSON text** too: the value as Apollo
  sent it (normally an array of strings), encoded as below. A real ``list<string>`` would be nicer, but a pandas frame holding
  ``ArrowDtype(list)`` columns writes Parquet that ``pd.read_parquet`` cannot
  read back (pandas-dev/pandas#53011, #57411), and object columns of lists
  change type when a batch is all null; JSON text is stable and readable
  everywhere.
* lists of objects and nested objects (employment_history, phone_numbers,
  funding_events, current_technologies, departmental_head_count) -> **JSON
  text** in a ``string`` column, written as
  ``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``;
  read it back with ``json.loads``. Their inner shapes vary between records and
  API versions, so a struct type would not be stable.
* ``person.extra`` / ``org.extra`` -> JSON text (same form) of everything in the
  record that no declared column covers: unknown top-level keys, and
  undeclared keys of declared nested objects under their parent key (e.g.
  ``{"organization": {"blog_url": ...}}``). Null when nothing is left over.
  Nothing in a record is ever dropped.

Values of the wrong type never raise: a value that converts without loss is
converted (``"12"`` -> 12 for an int column, ``12`` -> ``"12"`` for a text
column, ``1.0`` -> 1, ``"true"`` -> True); anything else becomes null in its
column and is kept, unchanged, in ``extra`` at its key path.

:func:`to_pandas` maps Arrow types to pandas dtypes by a fixed table: string ->
``StringDtype("pyarrow")``, int64 -> ``Int64``, float64 -> ``Float64``, bool ->
``boolean``; any other type -> ``ArrowDtype`` (none is declared today).
"""

from __future__ import annotations

import json
import marshal
import math
import re
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "Column",
    "PERSON_COLUMNS",
    "ORG_COLUMNS",
    "PERSON_SCHEMA",
    "ORG_SCHEMA",
    "SCHEMAS",
    "column_names",
    "flatten",
    "flatten_people",
    "flatten_orgs",
    "to_pandas",
    "empty_frame",
    "json_text",
]

STR = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
JSON = "json"  # declared kind: stored as JSON text in a string column


class Column(NamedTuple):
    name: str  # output column, e.g. "person.organization.name"
    path: tuple[str, ...]  # keys into the record, e.g. ("organization", "name")
    type: pa.DataType  # Arrow type of the column
    kind: str  # "str", "int", "float", "bool", "json", "extra"


_KINDS = {STR: "str", INT: "int", FLOAT: "float", BOOL: "bool"}


def _declare(prefix: str, spec: Sequence[tuple[str, Any]]) -> tuple[Column, ...]:
    cols = []
    for key, typ in spec:
        kind = "json" if typ == JSON else _KINDS[typ]
        cols.append(Column(f"{prefix}.{key}", tuple(key.split(".")), STR if typ == JSON else typ, kind))
    cols.append(Column(f"{prefix}.extra", (), STR, "extra"))
    return tuple(cols)


#: Person object (people/match, bulk_match matches, search items). Search
#: teaser items fill id, first_name, last_name_obfuscated, title and
#: organization.name; their has_* flags land in person.extra.
PERSON_COLUMNS = _declare("person", [
    ("id", STR), ("first_name", STR), ("last_name", STR), ("last_name_obfuscated", STR), ("name", STR),
    ("title", STR), ("headline", STR), ("email", STR), ("email_status", STR), ("linkedin_url", STR),
    ("twitter_url", STR), ("github_url", STR), ("facebook_url", STR), ("photo_url", STR), ("seniority", STR),
    ("departments", JSON), ("subdepartments", JSON), ("functions", JSON),
    ("city", STR), ("state", STR), ("country", STR), ("organization_id", STR),
    ("organization.id", STR), ("organization.name", STR), ("organization.primary_domain", STR),
    ("organization.website_url", STR), ("organization.industry", STR), ("organization.estimated_num_employees", INT),
    ("organization.linkedin_url", STR), ("organization.city", STR), ("organization.country", STR),
    ("organization.founded_year", INT), ("organization.annual_revenue", FLOAT),
    ("extrapolated_email_confidence", FLOAT), ("revealed_for_current_team", BOOL),
    ("employment_history", JSON), ("phone_numbers", JSON), ("personal_emails", JSON),
])  # fmt: skip

#: Organization object (organizations/enrich, bulk_enrich, company search items).
ORG_COLUMNS = _declare("org", [
    ("id", STR), ("name", STR), ("primary_domain", STR), ("website_url", STR), ("linkedin_url", STR),
    ("twitter_url", STR), ("facebook_url", STR), ("phone", STR),
    ("primary_phone.number", STR), ("primary_phone.sanitized_number", STR),
    ("industry", STR), ("industries", JSON), ("keywords", JSON),
    ("estimated_num_employees", INT), ("founded_year", INT),
    ("annual_revenue", FLOAT), ("annual_revenue_printed", STR), ("total_funding", FLOAT),
    ("latest_funding_stage", STR), ("latest_funding_round_date", STR),
    ("raw_address", STR), ("city", STR), ("state", STR), ("postal_code", STR), ("country", STR),
    ("short_description", STR), ("languages", JSON), ("technology_names", JSON), ("logo_url", STR),
    ("funding_events", JSON), ("current_technologies", JSON), ("departmental_head_count", JSON),
])  # fmt: skip

PERSON_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in PERSON_COLUMNS])
ORG_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in ORG_COLUMNS])
SCHEMAS = {"person": PERSON_SCHEMA, "org": ORG_SCHEMA}
_COLUMNS = {"person": PERSON_COLUMNS, "org": ORG_COLUMNS}


def column_names(kind: str) -> list[str]:
    """Output column names for ``"person"`` or ``"org"``, in order."""
    return [c.name for c in _COLUMNS[kind]]


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def json_text(value: Any) -> str:
    """The canonical JSON text form used for JSON columns and ``extra``:
    ``json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))``
    (objects JSON cannot express are written as ``str(obj)``)."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):  # keys of mixed types cannot be sorted; circular data
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr, check_circular=False)


# ------------------------------------------------------------------ memoised JSON text
# Flattening spends most of its time writing JSON text, and much of that text
# repeats: people at one company carry the same organization object, and list
# columns such as departments hold a few distinct values. _Memo remembers the
# text of values already written in this flatten() call, keyed by their exact
# content: ``marshal.dumps(value, 2)`` accepts only built-in types (dict, list,
# str, int, float, bool, None, ...; no subclasses), keeps int/float/bool apart
# (1, 1.0 and True compare equal but are written differently) and writes the
# same bytes only for the same content in the same key order. Text is only
# remembered when writing it needed no ``default=str`` fallback, so every
# remembered value is plain JSON data and equal bytes mean equal text.


class _Defaulted(Exception):
    """Raised by the memo's encoder: the value needs ``default=str`` (not plain JSON data)."""


def _refuse(obj: Any) -> Any:
    raise _Defaulted


_STRICT = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_refuse)


class _Memo:
    """JSON text of values seen before in one flatten() call (see above).

    It gives up after ``probe`` lookups that found less than one repeat in
    ten (a column of unique values, such as employment_history), so unique
    data costs little more than before.
    """

    __slots__ = ("texts", "lookups", "hits", "active", "probe")

    def __init__(self, probe: int = 2000):
        self.texts: dict[bytes, str] = {}
        self.lookups = self.hits = 0
        self.active = True
        self.probe = probe

    def key(self, value: Any) -> bytes | None:
        if not self.active:
            return None
        try:
            key = marshal.dumps(value, 2)
        except (ValueError, RecursionError):  # not built-in data, or too deep
            return None
        self.lookups += 1
        if self.lookups == self.probe and self.hits * 10 < self.lookups:
            self.active = False
            self.texts.clear()
        return key

    def text(self, value: Any) -> str:
        """``json_text(value)``, from the memo when the same content was written before."""
        key = self.key(value)
        if key is None:
            return json_text(value)
        text = self.texts.get(key)
        if text is not None:
            self.hits += 1
            return text
        try:
            text = _STRICT.encode(value)
        except (_Defaulted, TypeError, ValueError, RecursionError):
            return json_text(value)
        if self.active:
            self.texts[key] = text
        return text


class _Raw:
    """The finished JSON text of the leftovers of one nested object, placed in a row's ``extra``.

    ``obj``/``covered`` rebuild the leftovers when the row's ``extra`` has to be
    written the slow way.
    """

    __slots__ = ("text", "obj", "covered")

    def __init__(self, text: str, obj: dict, covered: frozenset):
        self.text, self.obj, self.covered = text, obj, covered

    def value(self) -> dict:
        return _leftovers(self.obj, self.covered)


def _leftovers(obj: dict, covered: frozenset) -> dict:
    """The keys of ``obj`` that no column covers (a new dict, in ``obj``'s order)."""
    if len(covered) < len(obj) // 2:  # mostly leftovers: copy, then drop the covered keys
        left = obj.copy()
        for key in covered:
            left.pop(key, None)
        return left
    return {key: obj[key] for key in obj.keys() - covered}


def _extra_text(extra: dict) -> str:
    """``json_text(extra)`` for a row's leftovers whose top-level values may be :class:`_Raw` text.

    Written piece by piece, exactly as the encoder would (keys sorted, the
    same separators); anything unusual (keys that are not all text, a value
    that cannot be written) takes the ordinary path on the rebuilt dict.
    """
    if all(type(k) is str for k in extra):
        try:
            return "{" + ",".join(
                _ENCODER.encode(k) + ":" + (v.text if type(v) is _Raw else _ENCODER.encode(v))
                for k, v in sorted(extra.items(), key=_first)
            ) + "}"
        except (TypeError, ValueError, RecursionError):
            pass
    return json_text({k: v.value() if type(v) is _Raw else v for k, v in extra.items()})


def _first(item: tuple) -> Any:
    return item[0]


# ------------------------------------------------------------------ coercion
_BAD = object()  # "cannot convert without loss": null in the column, original kept in extra
_NONE = type(None)
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_TRUE = frozenset(("true", "t", "yes", "y", "1"))
_FALSE = frozenset(("false", "f", "no", "n", "0"))
_INT64 = (-(2**63), 2**63 - 1)


def _to_str(v: Any) -> Any:
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            return _BAD
        return str(int(f)) if f.is_integer() else repr(f)
    return _BAD


def _to_int(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, np.integer)):
        i = int(v)
    elif isinstance(v, (float, np.floating)):
        if not (math.isfinite(v) and float(v).is_integer()):
            return _BAD
        i = int(v)
    elif isinstance(v, str):
        s = v.strip()
        if _INT_TEXT.match(s):
            i = int(s)
        else:
            f = _to_float(s)
            if f is _BAD or not f.is_integer():
                return _BAD
            i = int(f)
    else:
        return _BAD
    return i if _INT64[0] <= i <= _INT64[1] else _BAD


def _to_float(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return _BAD
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return _BAD
        return f if math.isfinite(f) else _BAD  # "nan", "inf" are words, not numbers
    else:
        return _BAD
    return f  # NaN becomes null below; +-inf is a float like any other


def _to_bool(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return _BAD


_SCALAR = {"str": _to_str, "int": _to_int, "float": _to_float, "bool": _to_bool}
_FAST_TYPES = {"str": {str, _NONE}, "int": {int, _NONE}, "float": {float, int, _NONE}, "bool": {bool, _NONE}}


_ARROW = {"str": STR, "int": INT, "float": FLOAT, "bool": BOOL, "json": STR}


def _coerce(values: list[Any], kind: str) -> tuple[pa.Array, list[int]]:
    """(Arrow array of the column, indices whose original could not be converted)."""
    if kind == "json":
        text = _Memo().text
        return pa.array([None if v is None else text(v) for v in values], type=STR), []
    types = set(map(type, values))
    fast = _FAST_TYPES.get(kind)
    if fast is not None and types <= fast:
        if kind == "float" and float in types:  # NaN means null here
            values = [None if v != v else v for v in values]
        try:
            return pa.array(values, type=_ARROW[kind]), []
        except (OverflowError, pa.ArrowInvalid):  # ints beyond int64: take the slow path
            pass
    fn = _SCALAR[kind]
    out: list[Any] = []
    bad: list[int] = []
    for i, v in enumerate(values):
        if v is None or (type(v) is float and v != v):  # NaN is a missing value, nothing to keep
            out.append(None)
            continue
        c = fn(v)
        if c is _BAD:
            bad.append(i)
            out.append(None)
        elif kind == "float" and c != c:
            out.append(None)
        else:
            out.append(c)
    return pa.array(out, type=_ARROW[kind]), bad


def _put(extra: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nxt = extra.get(key)
        if not isinstance(nxt, dict):
            nxt = extra[key] = {}
        extra = nxt
    extra[path[-1]] = value


def _merge(extra: dict, path: tuple[str, ...], left: dict) -> None:
    """Put ``left`` at ``path`` inside ``extra``, merging with what is already there."""
    for key in path[:-1]:
        nxt = extra.get(key)
        if not isinstance(nxt, dict):
            nxt = extra[key] = {}
        extra = nxt
    have = extra.get(path[-1])
    if isinstance(have, dict):
        have.update(left)
    else:
        extra[path[-1]] = left


class _Plan(NamedTuple):
    columns: tuple[Column, ...]
    schema: pa.Schema
    parents: tuple[tuple[str, ...], ...]  # nested object paths, parents before children
    declared: dict[tuple[str, ...], frozenset[str]]  # object path -> keys covered by columns
    memoised: frozenset[tuple[str, ...]]  # top-level objects with no declared object inside: leftovers memoised


def _plan(columns: tuple[Column, ...], schema: pa.Schema) -> _Plan:
    declared: dict[tuple[str, ...], set[str]] = {(): set()}
    for col in columns:
        for depth in range(len(col.path)):
            declared.setdefault(col.path[:depth], set()).add(col.path[depth])
    parents = tuple(sorted((p for p in declared if p), key=len))
    memoised = frozenset(p for p in parents if len(p) == 1 and not any(q[:1] == p for q in parents if len(q) > 1))
    return _Plan(columns, schema, parents, {p: frozenset(k) for p, k in declared.items()}, memoised)


_PLANS = {"person": _plan(PERSON_COLUMNS, PERSON_SCHEMA), "org": _plan(ORG_COLUMNS, ORG_SCHEMA)}
_EMPTY: dict = {}


def flatten(records: Sequence[Mapping | None], kind: str) -> pa.Table:
    """One row per record (``kind`` is ``"person"`` or ``"org"``); None and non-dicts give all-null rows."""
    plan = _PLANS[kind]
    rows = [r if type(r) is dict else (dict(r) if isinstance(r, Mapping) else _EMPTY) for r in records]
    n = len(rows)
    extras: dict[int, dict] = {}  # row -> leftovers, only for rows that have some

    def keep(i: int, path: tuple[str, ...], value: Any) -> None:
        _put(extras.setdefault(i, {}), path, value)

    objects: dict[tuple[str, ...], list[dict]] = {(): rows}
    for path in plan.parents:
        values = list(map(dict.get, objects[path[:-1]], repeat(path[-1], n), repeat(_EMPTY, n)))
        if not set(map(type, values)) <= {dict}:
            for i, v in enumerate(values):
                if type(v) is not dict:
                    if isinstance(v, Mapping):
                        values[i] = dict(v)
                    else:
                        if v is not None:
                            keep(i, path, v)
                        values[i] = _EMPTY
        objects[path] = values

    arrays = []
    for col in plan.columns:
        if col.kind == "extra":
            continue
        values = list(map(dict.get, objects[col.path[:-1]], repeat(col.path[-1], n)))
        array, bad = _coerce(values, col.kind)
        for i in bad:
            keep(i, col.path, objects[col.path[:-1]][i][col.path[-1]])
        arrays.append(array)

    # Leftovers: keys of each declared object that no column covers, merged under their path.
    # A top-level nested object with no declared objects inside it (person.organization) is
    # written once per distinct content and placed as finished text (_Raw), unless the row
    # already keeps something under its key (a value that did not convert).
    raw_rows: set[int] = set()
    for path, covered in sorted(plan.declared.items(), key=lambda item: len(item[0])):
        memo = _Memo() if path in plan.memoised else None
        for i, obj in enumerate(objects[path]):
            if obj and not obj.keys() <= covered:
                if memo is not None:
                    have = extras.get(i)
                    if have is None or path[0] not in have:
                        key = memo.key(obj)
                        text = None if key is None else memo.texts.get(key)
                        if text is not None:
                            memo.hits += 1
                        else:
                            left = _leftovers(obj, covered)
                            try:
                                text = _STRICT.encode(left)
                            except (_Defaulted, TypeError, ValueError, RecursionError):
                                text = None
                            if text is None:
                                _merge(extras.setdefault(i, {}), path, left)
                                continue
                            if key is not None and memo.active:
                                memo.texts[key] = text
                        (extras[i] if have is not None else extras.setdefault(i, {}))[path[0]] = _Raw(text, obj, covered)
                        raw_rows.add(i)
                        continue
                left = _leftovers(obj, covered)
                if not path:
                    have = extras.get(i)
                    extras[i] = left if have is None else {**left, **have}
                else:
                    _merge(extras.setdefault(i, {}), path, left)
    extra: list[str | None] = [None] * n
    for i, leftovers in extras.items():
        extra[i] = _extra_text(leftovers) if i in raw_rows else json_text(leftovers)
    arrays.append(pa.array(extra, type=STR))
    return pa.Table.from_arrays(arrays, schema=plan.schema)


def flatten_people(records: Sequence[Mapping | None]) -> pa.Table:
    """Person objects -> a table with :data:`PERSON_SCHEMA`, one row per record."""
    return flatten(records, "person")


def flatten_orgs(records: Sequence[Mapping | None]) -> pa.Table:
    """Organization objects -> a table with :data:`ORG_SCHEMA`, one row per record."""
    return flatten(records, "org")


_DTYPES = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _dtype(t: pa.DataType):
    return _DTYPES.get(t) or pd.ArrowDtype(t)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a DataFrame whose dtypes depend only on the Arrow schema (see the module doc)."""
    return table.to_pandas(types_mapper=_dtype)


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """A zero-row frame with the columns and dtypes :func:`to_pandas` gives for ``schema``."""
    return to_pandas(schema.empty_table())
