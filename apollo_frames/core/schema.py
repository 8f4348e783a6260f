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
  sent it (normally an array of strings), encoded as below. A real
  ``list<string>`` would be nicer, but a pandas frame holding
  ``ArrowDtype(list)`` columns writes Parquet that ``pd.read_parquet`` cannot
  read back (pandas-dev/pandas#53011, #57411), and object columns of lists
  change type when a batch is all null; JSON text is stable and readable
  everywhere.
* lists of objects and nested objects (employment_history, phone_numbers,
  funding_events, current_technologies, departmental_head_count) -> **JSON
  text** in a ``string`` column, written once per value by orjson
  (:func:`apollo_frames.core.jsontext.stable`: compact, keys sorted, non-ASCII as
  it is; NaN and infinities null, objects JSON cannot express as ``str(obj)``);
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

import functools
import marshal
import math
import re
from collections.abc import Collection, Mapping, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from apollo_frames.core import jsontext
from apollo_frames.core.normalize import LOCKED_EMAIL, is_locked_email

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


def _declare(prefix: str, spec: Sequence[tuple[Any, ...]]) -> tuple[Column, ...]:
    """Columns from ``(key, type)`` pairs; a third item is the record key when it differs from the column's name."""
    cols = []
    for key, typ, *path in spec:
        kind = "json" if typ == JSON else _KINDS[typ]
        cols.append(Column(f"{prefix}.{key}", tuple((path[0] if path else key).split(".")), STR if typ == JSON else typ,
                           kind))
    cols.append(Column(f"{prefix}.extra", (), STR, "extra"))
    return tuple(cols)


#: The key company search puts on each of its items (``apollo_frames.core.paginate``): "account" (a company
#: saved in the team's CRM, from ``accounts[]``) or "organization". Not an Apollo key: an account's own
#: ``source`` ("api", "crm"...) stays where it is, in ``org.extra``.
SOURCE_KEY = "_source"

#: An organization object's fields (Apollo's own names), declared for ``org.*`` and for ``person.organization.*``.
#: Growth figures are fractions (``0.12`` = +12 %); ``market_cap`` is Apollo's text (``"2.5B"``).
_ORG_FIELDS: list[tuple[Any, ...]] = [
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
    # 2025-2026 answers (issue 21)
    ("total_funding_printed", STR), ("organization_headcount_six_month_growth", FLOAT),
    ("organization_headcount_twelve_month_growth", FLOAT), ("organization_headcount_twenty_four_month_growth", FLOAT),
    ("market_cap", STR), ("publicly_traded_symbol", STR), ("publicly_traded_exchange", STR),
    ("street_address", STR), ("primary_phone.source", STR), ("sanitized_phone", STR),
    ("blog_url", STR), ("angellist_url", STR), ("crunchbase_url", STR), ("linkedin_uid", STR), ("alexa_ranking", INT),
    ("seo_description", STR), ("secondary_industries", JSON), ("owned_by_organization_id", STR),
    ("num_suborganizations", INT), ("retail_location_count", INT), ("intent_strength", STR), ("show_intent", BOOL),
    ("has_intent_signal_account", BOOL), ("intent_signal_account", JSON), ("sic_codes", JSON), ("naics_codes", JSON),
]  # fmt: skip

#: A saved account's own fields (company search's ``accounts[]``; null on other rows). Its ``source`` ("api",
#: "crm"...) stays in ``org.extra``: ``org.source`` says which list the row came from.
_ACCOUNT_FIELDS: list[tuple[Any, ...]] = [
    ("account_stage_id", STR), ("owner_id", STR), ("creator_id", STR), ("team_id", STR), ("crm_owner_id", STR),
    ("hubspot_id", STR), ("salesforce_id", STR), ("parent_account_id", STR), ("label_ids", JSON),
    ("typed_custom_fields", JSON), ("created_at", STR), ("phone_status", STR), ("original_source", STR),
    ("source_display_name", STR), ("existence_level", STR), ("modality", STR),
]  # fmt: skip

#: The organization fields a person's columns had first, in their order (the others follow in _ORG_FIELDS order).
_PERSON_ORG_FIRST = ("id", "name", "primary_domain", "website_url", "industry", "estimated_num_employees",
                     "linkedin_url", "city", "country", "founded_year", "annual_revenue")


def _person_org_fields() -> list[tuple[Any, ...]]:
    """``_ORG_FIELDS`` under ``organization.``; the primary phone object as one JSON column (a person's
    columns go one object deep: see the fast path)."""
    types = dict(_ORG_FIELDS)
    rest = [(k, t) for k, t in [*_ORG_FIELDS, ("account_id", STR)]
            if k not in _PERSON_ORG_FIRST and not k.startswith("primary_phone.")]
    ordered = [(k, types[k]) for k in _PERSON_ORG_FIRST] + rest
    ordered.insert(ordered.index(("phone", STR)) + 1, ("primary_phone", JSON))
    return [(f"organization.{k}", t) for k, t in ordered]


#: Person object (people/match, bulk_match matches, search items). Search
#: teaser items fill id, first_name, last_name_obfuscated, title and
#: organization.name; their has_* flags land in person.extra. ``contact_id`` /
#: ``account_id`` link a person to records already in the team's Apollo.
PERSON_COLUMNS = _declare("person", [
    ("id", STR), ("first_name", STR), ("last_name", STR), ("last_name_obfuscated", STR), ("name", STR),
    ("title", STR), ("headline", STR), ("email", STR), ("email_status", STR), ("linkedin_url", STR),
    ("twitter_url", STR), ("github_url", STR), ("facebook_url", STR), ("photo_url", STR), ("seniority", STR),
    ("departments", JSON), ("subdepartments", JSON), ("functions", JSON),
    ("city", STR), ("state", STR), ("country", STR), ("organization_id", STR),
    *_person_org_fields(),
    ("extrapolated_email_confidence", FLOAT), ("revealed_for_current_team", BOOL),
    ("employment_history", JSON), ("phone_numbers", JSON), ("mobile_phone", STR), ("personal_emails", JSON),
    ("match_confidence", STR),
    # 2025-2026 answers (issue 21)
    ("email_domain_catchall", BOOL), ("intent_strength", STR), ("show_intent", BOOL), ("is_likely_to_engage", BOOL),
    ("contact_id", STR), ("account_id", STR),
])  # fmt: skip

#: Organization object (organizations/enrich, bulk_enrich, company search items). ``org.source`` is set
#: on company search rows only; ``org.account_id`` is the CRM account's id (a search's saved account,
#: or an organization object that carries one).
ORG_COLUMNS = _declare("org", [*_ORG_FIELDS, ("source", STR, SOURCE_KEY), ("account_id", STR), *_ACCOUNT_FIELDS])

PERSON_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in PERSON_COLUMNS])
ORG_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in ORG_COLUMNS])
SCHEMAS = {"person": PERSON_SCHEMA, "org": ORG_SCHEMA}
_COLUMNS = {"person": PERSON_COLUMNS, "org": ORG_COLUMNS}


def column_names(kind: str) -> list[str]:
    """Output column names for ``"person"`` or ``"org"``, in order."""
    return [c.name for c in _COLUMNS[kind]]


def json_text(value: Any) -> str:
    """The JSON text form of JSON columns and ``extra``: :func:`apollo_frames.core.jsontext.stable` (compact,
    keys sorted, objects JSON cannot express written as ``str(obj)``), as a string."""
    return jsontext.stable(value).decode()


# ------------------------------------------------------------------ content keys
# Repeated content is written once: people at one company carry the same
# organization object, decoded apart. _Memo keys content by its exact bytes:
# ``marshal.dumps(value, 4)`` accepts only built-in types (dict, list, str,
# int, float, bool, None, ...; no subclasses), keeps int/float/bool apart (1,
# 1.0 and True compare equal but are written differently) and writes the same
# bytes only for the same content in the same key order (version 4 also marks
# objects that have other references, so equal content may give different
# bytes: a miss, never a wrong hit). Only plain JSON data is remembered, so
# equal bytes mean equal text. JSON columns are not keyed: orjson writes a
# value faster than marshal keys it.

#: ``jsontext.stable(value)`` for plain JSON data; raises (one of ``_PLAIN_ERRORS``) for anything else.
_plain = jsontext.stable_plain
_PLAIN_ERRORS = (TypeError,)


class _Memo:
    """JSON text of values seen before in one flatten() call (see above).

    It gives up after ``probe`` lookups that found less than one repeat in
    ten (a column of unique values, such as employment_history), so unique
    data costs little more than before.
    """

    __slots__ = ("texts", "lookups", "hits", "active", "probe")

    def __init__(self, probe: int = 2000):
        self.texts: dict[bytes, Any] = {}  # content -> its text, in the form the memo's user writes
        self.lookups = self.hits = 0
        self.active = True
        self.probe = probe

    def key(self, value: Any) -> bytes | None:
        if not self.active:
            return None
        try:
            key = marshal.dumps(value, 4)
        except (ValueError, RecursionError):  # not built-in data, or too deep
            return None
        self.lookups += 1
        if self.lookups == self.probe and self.hits * 10 < self.lookups:
            self.active = False
            self.texts.clear()
        return key


class _Raw:
    """The finished JSON text of the leftovers of one nested object, placed in a row's ``extra``.

    ``obj``/``covered`` rebuild the leftovers when the row's ``extra`` has to be
    written the slow way.
    """

    __slots__ = ("text", "obj", "covered")

    def __init__(self, text: bytes, obj: dict, covered: frozenset):
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


def _extra_text(extra: dict) -> bytes:
    """``jsontext.stable(extra)`` for a row's leftovers whose top-level values may be :class:`_Raw` text.

    Written piece by piece, exactly as the encoder would (keys sorted, the
    same separators); anything unusual (keys that are not all text, a value
    that cannot be written) takes the ordinary path on the rebuilt dict.
    """
    if all(type(k) is str for k in extra):
        try:
            return b"{" + b",".join(
                _plain(k) + b":" + (v.text if type(v) is _Raw else _plain(v))
                for k, v in sorted(extra.items(), key=_first)
            ) + b"}"
        except _PLAIN_ERRORS:
            pass
    return jsontext.stable({k: v.value() if type(v) is _Raw else v for k, v in extra.items()})


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
_FAST_TYPES: dict[str, set[type]] = {
    "str": {str, _NONE}, "int": {int, _NONE}, "float": {float, int, _NONE}, "bool": {bool, _NONE}
}


_ARROW = {"str": STR, "int": INT, "float": FLOAT, "bool": BOOL, "json": STR, "extra": STR}


def _coerce(values: Sequence[Any], kind: str) -> tuple[pa.Array, list[int]]:
    """(Arrow array of the column, indices whose original could not be converted)."""
    if kind == "json":
        joined = _json_joined(values)
        return (joined if joined is not None else pa.array(_json_texts(values), type=STR)), []
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
        if v is None or (type(v) is float and v != v) or _empty_object(v):  # NaN, {}: missing, nothing to keep
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


@functools.lru_cache(maxsize=64)
def _nulls(m: int, kind: str) -> pa.Array:
    """``m`` nulls of a column of ``kind`` (one array shared by the columns no record holds: Arrow arrays do
    not change)."""
    return pa.nulls(m, _ARROW[kind])


#: the text between two consecutive values of a column of lists / of objects, written as one JSON array
_BETWEEN: dict[type, bytes] = {list: b"],[", dict: b"},{"}


def _json_joined(values: Sequence[Any]) -> pa.Array | None:
    """The JSON column of ``values`` when all are lists, or all non-empty objects, written by one call of the
    encoder: the column's array, its values cut apart where one ends and the next begins (the same text as
    each written alone). None when they are not, or when a value holds such a boundary itself (then the
    boundaries cannot be told apart: each is written alone)."""
    kinds = set(map(type, values))
    between = _BETWEEN.get(kinds.pop()) if len(kinds) == 1 else None
    if between is None or (between == b"},{" and {} in values):  # ({}: null in the column)
        return None
    try:
        whole = jsontext.stable_plain(values)[1:-1]  # the values, each followed by a comma but the last
    except TypeError:  # (orjson.JSONEncodeError): something ``stable`` writes another way
        return None
    text = np.frombuffer(whole, dtype=np.uint8)
    ends = np.flatnonzero((text[:-2] == between[0]) & (text[1:-1] == 44) & (text[2:] == between[2])) + 1
    if len(ends) != len(values) - 1 or len(text) >= 2**31:  # (past 32-bit offsets: each alone, Arrow lays it out)
        return None
    offsets = np.concatenate(([0], ends - np.arange(len(ends)), [len(text) - len(ends)])).astype(np.int32)
    data = np.delete(text, ends)  # the commas between values
    return pa.Array.from_buffers(STR, len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _json_texts(values: Sequence[Any]) -> list[bytes | None]:
    """The stable JSON text of each value (None and ``{}`` are null: see _empty_object), as UTF-8."""
    texts = jsontext.stable_each(values)
    return [None if v is None or (type(v) is dict and not v) else t for v, t in zip(values, texts, strict=True)]


def _empty_object(value: Any) -> bool:
    """``{}`` (Apollo's "nothing" for an object, e.g. ``primary_phone: {}``): null in any column."""
    return type(value) is dict and not value


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
    top: tuple[str, ...]  # declared top-level keys (columns and nested objects), in column order
    nested: str | None  # the one nested object the fast path handles (None: no nested object)
    fast: bool  # rows may take the fast path (at most one nested object, one level deep)


def _plan(columns: tuple[Column, ...], schema: pa.Schema) -> _Plan:
    declared: dict[tuple[str, ...], set[str]] = {(): set()}
    for col in columns:
        for depth in range(len(col.path)):
            declared.setdefault(col.path[:depth], set()).add(col.path[depth])
    parents = tuple(sorted((p for p in declared if p), key=len))
    memoised = frozenset(p for p in parents if len(p) == 1 and not any(q[:1] == p for q in parents if len(q) > 1))
    top = tuple(dict.fromkeys(c.path[0] for c in columns if c.path))
    if len({c.path for c in columns if len(c.path) == 1}) < sum(len(c.path) == 1 for c in columns):
        raise ValueError("two columns read one key")  # (_flatten_shape lets go of a key's values once read)
    fast = len(parents) <= 1 and all(len(p) == 1 for p in parents)
    nested = parents[0][0] if parents else None
    return _Plan(columns, schema, parents, {p: frozenset(k) for p, k in declared.items()}, memoised, top, nested, fast)


#: Bump when flatten gives other rows for the same records and schema: the store's flattened copies
#: (apollo_frames.client.flat) carry it and are rebuilt from the raw answers when it differs.
#: 3: JSON text written by orjson (``0.00001`` and ``2.5e-8`` where json wrote ``1e-05``, ``2.5e-08``; NaN and
#: infinities ``null`` where json wrote ``NaN``, ``Infinity``).
FLATTEN_VERSION = 3

_PLANS = {"person": _plan(PERSON_COLUMNS, PERSON_SCHEMA), "org": _plan(ORG_COLUMNS, ORG_SCHEMA)}
_EMPTY: dict = {}


# ------------------------------------------------------------------ other spellings
#: (declared key path, the other spelling's path): real organisation objects carry ``organization_revenue``
#: (and ``_printed``) where the documented samples have ``annual_revenue``, and some carry both; saved accounts
#: in company search carry ``domain`` with ``primary_domain: null``.
_SPELLINGS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "org": ((("annual_revenue",), ("organization_revenue",)),
            (("annual_revenue_printed",), ("organization_revenue_printed",)),
            (("primary_domain",), ("domain",))),
    "person": ((("organization", "annual_revenue"), ("organization", "organization_revenue")),),
}
#: Where the organisation object is, per kind: its revenue of 0 with no printed form is Apollo's "unknown"
#: (search items for companies whose revenue it does not know), read as null.
_ORG_AT: dict[str, tuple[str, ...]] = {"org": (), "person": ("organization",)}
_PRINTED = ("annual_revenue_printed", "organization_revenue_printed")


def _respelled(records: list, kind: str) -> list:
    """``records``, where a declared key is missing (or null) and its other spelling is not, with the declared
    key filled from it (in a copy; the other spelling stays in ``extra`` unless it holds the same value: each
    value is kept once); a revenue of 0
    with no printed form is null in the column (the 0 stays in ``extra``); a person's placeholder e-mail
    (``email_not_unlocked@...``) is null and kept nowhere."""
    spellings, at = _SPELLINGS[kind], _ORG_AT[kind]
    others = tuple(other[-1] for _, other in spellings)  # (all in the organisation object)
    if _all_as_sent(records, at, others, kind == "person"):
        return records
    out: list | None = None
    for i, record in enumerate(records):
        if type(record) is dict:
            if _as_sent(record, at, others, kind == "person"):
                continue
        elif record is None or not isinstance(record, Mapping):
            continue
        fixed = _without_copies(_unknown_revenue(_respell(record, spellings), at), spellings)
        if kind == "person" and is_locked_email(fixed.get("email")):  # a placeholder, not an address: no column
            fixed = {**fixed, "email": None}
        if fixed is not record:
            if out is None:
                out = list(records)
            out[i] = fixed
    return records if out is None else out


def _all_as_sent(records: list, at: tuple[str, ...], others: tuple[str, ...], person: bool) -> bool:
    """True when no record can need a fix of _respelled (the usual batch), found a key at a time in C loops
    over all records; False when some may (each is then looked at alone)."""
    if set(map(type, records)) != {dict}:
        return False
    orgs = list(filter(None, map(dict.get, records, repeat(at[0])))) if at else records
    if not set(map(type, orgs)) <= {dict}:
        return False
    try:
        if 0 in list(map(dict.get, orgs, repeat("annual_revenue"))):  # (0.0 and False too: looked at alone)
            return False
        emails = "\n".join(filter(None, map(dict.get, records, repeat("email")))) if person else ""
    except (TypeError, ValueError):  # an e-mail that is no text; a value without a truth (an array)
        return False
    if LOCKED_EMAIL in emails.lower():  # (lower() of the whole is the lower() of each: it maps one by one)
        return False
    return all(values.count(None) == len(values) for values in (list(map(dict.get, orgs, repeat(k))) for k in others))


def _as_sent(record: dict, at: tuple[str, ...], others: tuple[str, ...], person: bool) -> bool:
    """True when ``record`` surely needs none of _respelled's fixes (most records; a quick look, no copy)."""
    org = record.get(at[0]) if at else record
    if type(org) is dict:
        if org.get("annual_revenue") == 0:
            return False
        for key in others:
            if org.get(key) is not None:
                return False
    elif isinstance(org, Mapping):
        return False
    return not person or not is_locked_email(record.get("email"))


def _respell(record: Mapping, spellings: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> Mapping:
    copy: dict | None = None
    for target, other in spellings:
        current = record if copy is None else copy
        parent = current if len(target) == 1 else current.get(target[0])
        if not isinstance(parent, Mapping) or parent.get(other[-1]) is None or parent.get(target[-1]) is not None:
            continue
        if copy is None:
            copy = dict(record)
        if len(target) == 1:
            copy[target[0]] = parent[other[-1]]
        else:
            copy[target[0]] = {**parent, target[-1]: parent[other[-1]]}
    return record if copy is None else copy


def _without_copies(record: Mapping, spellings: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> Mapping:
    """``record`` without the other spellings that hold the same value as their declared key (kept once)."""
    copy: dict | None = None
    for target, other in spellings:
        current = record if copy is None else copy
        parent = current if len(target) == 1 else current.get(target[0])
        if not isinstance(parent, Mapping) or parent.get(other[-1]) is None or \
                parent.get(other[-1]) != parent.get(target[-1]) or type(parent.get(other[-1])) is bool:
            continue
        if copy is None:
            copy = dict(record)
        if len(target) == 1:
            del copy[other[0]]
        else:
            copy[target[0]] = {k: v for k, v in parent.items() if k != other[-1]}
    return record if copy is None else copy


def _unknown_revenue(record: Mapping, at: tuple[str, ...]) -> Mapping:
    """``record`` with the organisation's ``annual_revenue`` null when it is 0 and no printed form says so."""
    org = record.get(at[0]) if at else record
    if not isinstance(org, Mapping):
        return record
    revenue = org.get("annual_revenue")
    if revenue != 0 or isinstance(revenue, bool) or any(org.get(k) is not None for k in _PRINTED):
        return record
    if not at:
        return {**record, "annual_revenue": None}
    return {**record, at[0]: {**org, "annual_revenue": None}}


def flatten(records: Sequence[Mapping | None], kind: str) -> pa.Table:
    """One row per record (``kind`` is ``"person"`` or ``"org"``); None and non-dicts give all-null rows.

    Records that share one set of keys and hold nothing unusual take the fast
    path (:func:`_flatten_shape`); every other record, and every record the
    fast path turns back, is flattened by :func:`_flatten_rows`. Both give the
    same row for the same record; the rows are put back in input order.
    """
    plan = _PLANS[kind]
    if not plan.fast:
        return _flatten_rows(_respelled(records if type(records) is list else list(records), kind), plan)
    records = list(records)  # (a copy: respelled records are put in it, chunk by chunk)
    tables: list[pa.Table] = []
    orders: list[list[int]] = []
    slow: list[int] = []
    memos: dict[Any, _Memo] = {}  # this call's memos, by column (and by leftover keys for extra)
    for start in range(0, len(records), _CHUNK):
        stop = min(start + _CHUNK, len(records))
        records[start:stop] = _respelled(records[start:stop], kind)  # (while the chunk is in the CPU cache)
        shapes, chunk_slow = _by_shape(records, start, stop, plan)
        slow += chunk_slow
        for shape in shapes:
            table, turned_back = _flatten_shape(shape, plan, memos)
            index = shape.index
            if turned_back:
                keep = np.ones(len(index), dtype=bool)
                keep[list(turned_back)] = False
                table = table.filter(pa.array(keep))
                slow += [index[j] for j in turned_back]
                index = [i for i, k in zip(index, keep, strict=True) if k]
            tables.append(table)
            orders.append(index)
    if slow or not tables:
        slow.sort()
        tables.append(_flatten_rows([records[i] for i in slow], plan))
        orders.append(slow)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    order = np.concatenate([np.asarray(o, dtype=np.int64) for o in orders])
    if len(order) > 1 and not (order[1:] > order[:-1]).all():
        table = table.take(np.argsort(order, kind="stable"))
    return table


# ------------------------------------------------------------------ fast path
# Most calls flatten records of one shape (the same keys, from one API). They
# are taken _CHUNK records at a time (each pass over a chunk finds it in the
# CPU cache), and for each shape one itemgetter per record reads every declared
# top-level value and every leftover key at once, into one list for the shape
# (no tuple kept per record: see _Shape); columns are strided slices of it. The
# nested object (person.organization, org.primary_phone) is read once
# per distinct content (marshal bytes, as in _Memo), or row by row when every
# object is small and fully declared (_Direct), and ``extra`` is joined
# from finished UTF-8 pieces. A record with anything unusual (a value that
# must go to ``extra``, a leftover that is not plain JSON data) is turned back
# to _flatten_rows, so unusual data is written by one piece of code only.

_MAX_SHAPES = 8
_NO_EXTRA = (b"", b"", None)
_HASHABLE_EXACT = {str, bool, _NONE}  # equal only when written alike: usable as dict keys for their text
_CHUNK = 1024  # records per pass: what one pass touches stays in the CPU cache for the next


class _Shape:
    """The records (their values, one list for all, record after record) whose keys are those of one record,
    found by length.

    ``keys`` are the declared top-level keys the record has, then its other
    keys sorted (``left``). ``getter`` is None when such records cannot take
    the fast path (keys that are not all text, fewer than two keys). Each
    record's tuple of values is let go of as soon as it is copied into
    ``rows``: a tuple kept per record made the cyclic garbage collector run
    about twice per chunk and walk every value of the tuples it found (see
    ``benchmarks/RESULTS.md``, section 30).
    """

    __slots__ = ("keys", "left", "getter", "rows", "index")

    def __init__(self, record: dict, plan: _Plan):
        top = plan.declared[()]
        self.left = tuple(sorted(k for k in record if k not in top))
        self.keys = (*(k for k in plan.top if k in record), *self.left)
        ok = all(type(k) is str for k in record) and len(self.keys) >= 2
        self.getter = itemgetter(*self.keys) if ok else None
        self.rows: list = []  # the values of the shape's keys, record after record
        self.index: list[int] = []


def _by_shape(records: list, start: int, stop: int, plan: _Plan) -> tuple[list[_Shape], list[int]]:
    """(shapes with the values of records[start:stop], indices of those left to _flatten_rows)."""
    chunk = records[start:stop]
    if chunk and set(map(type, chunk)) == {dict} and len(set(map(len, chunk))) == 1:
        shape = _Shape(chunk[0], plan)
        if shape.getter is not None:
            try:  # all records have the same length and the shape's keys: the same keys
                shape.rows = list(chain.from_iterable(map(shape.getter, chunk)))
            except KeyError:
                pass
            else:
                shape.index = list(range(start, stop))
                return [shape], []
    shapes: dict[int, _Shape] = {}
    slow: list[int] = []
    for i, r in enumerate(chunk, start):
        if type(r) is dict:
            found = shapes.get(len(r))
            if found is None and len(shapes) < _MAX_SHAPES:
                found = shapes[len(r)] = _Shape(r, plan)
            if found is not None and found.getter is not None:
                try:  # succeeds only if the record has all the shape's keys; same length: no others
                    found.rows += found.getter(r)
                except KeyError:
                    pass
                else:
                    found.index.append(i)
                    continue
        slow.append(i)
    return [s for s in shapes.values() if s.rows], slow


class _Nested:
    """The nested object's column values and leftover text, once per distinct content.

    ``memo`` (this call's) maps content to the leftover text as UTF-8
    (``b'"organization":{...}'``, or None when nothing is left over).
    """

    def __init__(self, objects: Sequence[Any], path: tuple[str, ...], covered: frozenset, turned_back: set[int],
                 memo: _Memo):
        self.distinct: list[dict] = []
        self.parts: list[bytes | None] = []  # per distinct object, UTF-8
        self.turned_back = turned_back
        index: list[int] = []  # row -> distinct object, -1 for none
        seen: dict[bytes, int] = {}
        name = _plain(path[-1]) + b":"
        bad: set[int] = set()
        last_key, last = None, -1
        k: int | None
        part: Any
        for j, obj in enumerate(objects):
            if type(obj) is dict:
                key = memo.key(obj)
                if key is not None and key == last_key:  # runs of one object are common; skips hashing the key
                    k = last
                else:
                    k = seen.get(key) if key is not None else None
                    last_key = key
                if k is None:
                    k = len(self.distinct)
                    self.distinct.append(obj)
                    part = memo.texts.get(key, _BAD) if key is not None else _BAD
                    if part is _BAD:
                        part = None
                        if obj and not obj.keys() <= covered:
                            try:
                                part = name + _plain(_leftovers(obj, covered))
                            except _PLAIN_ERRORS:
                                bad.add(k)
                        if key is not None and memo.active and k not in bad:
                            memo.texts[key] = part
                    else:
                        memo.hits += 1
                    self.parts.append(part)
                    if key is not None:
                        seen[key] = k
                else:
                    memo.hits += 1
                index.append(k)
                last = k
            else:
                if obj is not None:  # kept in extra, or a Mapping to copy: _flatten_rows does both
                    turned_back.add(j)
                index.append(-1)
        self.parts.append(None)
        self.index = index
        self.take = np.asarray(index, dtype=np.int64)
        self.take[self.take < 0] = len(self.distinct)  # the null appended after the distinct values
        self._turn_back(bad)

    def _turn_back(self, bad: set[int]) -> None:
        if bad:
            self.turned_back.update(j for j, k in enumerate(self.index) if k in bad)

    def column(self, key: str, kind: str) -> pa.Array:
        values = [obj.get(key) for obj in self.distinct]
        if values.count(None) == len(values):  # (a key no object has: most of a short organization's columns)
            return _nulls(len(self.take), kind)
        values.append(None)
        array, bad = _coerce(values, kind)
        self._turn_back(set(bad))
        return array.take(self.take)


class _Direct:
    """The nested objects read row by row, when none holds a key no column covers and together they hold few
    keys (small answers): reading a few keys per row costs less than keying each object by its content."""

    parts: list[bytes | None] = [None]  # nothing left over: no text in extra

    def __init__(self, objects: list[dict], keys: Collection[str], turned_back: set[int],
                 columns: dict[str, list] | None = None):
        self.objects, self.keys, self.turned_back, self.columns = objects, keys, turned_back, columns
        self.index = [-1] * len(objects)

    def column(self, key: str, kind: str) -> pa.Array:
        if key not in self.keys:
            return _nulls(len(self.objects), kind)
        values = self.columns[key] if self.columns is not None else list(map(dict.get, self.objects, repeat(key)))
        array, bad = _coerce(values, kind)
        self.turned_back.update(bad)
        return array


def _alike(objects: list[dict], covered: frozenset) -> dict[str, list] | None:
    """The objects' values by key when all have the first one's keys, two to ``_FEW_KEYS`` of them, all
    covered (the usual small answer: every organization with the same few keys), read by one pass of
    ``itemgetter``; else None."""
    first = objects[0]
    if not 2 <= len(first) <= _FEW_KEYS or len(set(map(len, objects))) != 1 or not first.keys() <= covered:
        return None
    keys = tuple(first)
    try:  # (same length and all the first one's keys: the same keys)
        flat = list(chain.from_iterable(map(itemgetter(*keys), objects)))
    except KeyError:
        return None
    return {key: flat[j::len(keys)] for j, key in enumerate(keys)}


_FEW_KEYS = 16  # at most this many keys in all: the nested objects are read row by row (_Direct)


def _nested(objects: Sequence[Any], path: tuple[str, ...], covered: frozenset, turned_back: set[int],
            memo: _Memo) -> _Nested | _Direct:
    """The nested objects as :class:`_Direct` when they can be (all objects or null, nothing left over, few
    keys), else as :class:`_Nested`."""
    types = set(map(type, objects))
    if types == {dict}:
        columns = _alike(cast("list[dict]", objects), covered)
        if columns is not None:
            return _Direct(cast("list[dict]", objects), columns.keys(), turned_back, columns)
    if types <= {dict, _NONE}:
        rows = list(objects) if _NONE not in types else [_EMPTY if o is None else o for o in objects]
        if max(map(len, rows), default=0) <= _FEW_KEYS:  # (their sizes first: a large object's keys are not read)
            keys = set().union(*rows)
            if len(keys) <= _FEW_KEYS and keys <= covered:
                return _Direct(rows, keys, turned_back)
    return _Nested(objects, path, covered, turned_back, memo)


def _memo(memos: dict[Any, _Memo], key: Any) -> _Memo:
    memo = memos.get(key)
    if memo is None:
        memo = memos[key] = _Memo()
    return memo


def _flatten_shape(shape: _Shape, plan: _Plan, memos: dict[Any, _Memo]) -> tuple[pa.Table, set[int]]:
    """(table of the shape's records, positions among them to turn back to _flatten_rows)."""
    m, width = len(shape.index), len(shape.keys)
    rows, shape.rows = shape.rows, []
    at = {key: j for j, key in enumerate(shape.keys)}  # each column is cut out of the rows right before it is
    # read, so the passes over its values that follow (types, conversion, letting go) find them in the CPU cache
    nones = [None] * m
    turned_back: set[int] = set()
    nested = None
    if plan.nested is not None:
        path = (plan.nested,)
        objects = rows[at[plan.nested]::width] if plan.nested in at else (None,) * m
        nested = _nested(objects, path, plan.declared[path], turned_back, _memo(memos, path))
    arrays = []
    for col in plan.columns:
        if col.kind == "extra":
            continue
        if len(col.path) == 2:
            assert nested is not None  # a two-level path means the plan has a nested object
            arrays.append(nested.column(col.path[1], col.kind))
            continue
        j = at.get(col.path[0])
        if j is None:
            arrays.append(_nulls(m, col.kind))
            continue
        array, bad = _coerce(rows[j::width], col.kind)
        rows[j::width] = nones  # (its values let go of now, while they are in the CPU cache, not at the end)
        turned_back.update(bad)
        arrays.append(array)
    memo = _memo(memos, shape.left)
    values = {key: rows[at[key]::width] for key in shape.left}
    arrays.append(_extra_array(shape, values, plan, nested, turned_back, memo))
    return pa.Table.from_arrays(arrays, schema=plan.schema), turned_back


def _extra_array(shape: _Shape, values: dict, plan: _Plan, nested: _Nested | _Direct | None, turned_back: set[int],
                 memo: _Memo) -> pa.Array:
    """``extra`` of each record as ``json_text`` writes it (keys sorted): its leftover top-level keys,
    written once per distinct set of values (``memo``), around the nested object's leftover text.

    The pieces are UTF-8 bytes, joined once into the Arrow buffer: the long
    nested text is neither copied into a Python string per record nor encoded
    again for each one.
    """
    left = shape.left
    m = len(shape.index)
    parts: list[bytes | None] = nested.parts if nested is not None else [None]
    if not left and parts.count(None) == len(parts):  # nothing left over in any record (small answers)
        return _nulls(m, "extra")
    split = sum(1 for k in left if nested is None or k < plan.nested)  # leftover keys written before the nested object
    out = _extra_pieces(left, split, [values[k] for k in left], m, turned_back, memo)
    index = nested.index if nested is not None else [-1] * m
    return _join_extra(out, parts, index, turned_back)


_Pieces = tuple[bytes, bytes, bytes | None]  # (text before the nested object, after it, the whole without it)


def _pieces(left: tuple[str, ...], split: int, tail: tuple) -> _Pieces | None:
    """The ``extra`` text pieces for leftover keys ``left`` holding ``tail``; None if they are not plain JSON data."""
    try:
        before = _plain(dict(zip(left[:split], tail[:split], strict=True)))[1:-1]
        after = _plain(dict(zip(left[split:], tail[split:], strict=True)))[1:-1]
        whole = b"{" + b",".join(p for p in (before, after) if p) + b"}" if left else None
        return (b"{" + before + b"," if before else b"{"), (b"," + after + b"}" if after else b"}"), whole
    except _PLAIN_ERRORS:  # (lone surrogates too: orjson refuses them, as _flatten_rows says)
        return None


def _extra_pieces(left: tuple[str, ...], split: int, columns: list, m: int, turned_back: set[int],
                  memo: _Memo) -> list[_Pieces | None]:
    """Each record's pieces, computed once per distinct set of leftover values (None: not plain JSON data)."""
    if not left:
        return [_pieces(left, split, ())] * m
    if all(set(map(type, c)) <= _HASHABLE_EXACT for c in columns):  # the values themselves are exact keys
        distinct = dict.fromkeys(zip(*columns, strict=True))
        for tail in distinct:
            distinct[tail] = _pieces(left, split, tail)
        return list(map(distinct.__getitem__, zip(*columns, strict=True)))
    texts: dict = memo.texts  # leftover values -> pieces
    out: list[_Pieces | None] = []
    for j, tail in enumerate(zip(*columns, strict=True)):
        key = memo.key(tail)
        got = texts.get(key) if key is not None else None
        if got is None:
            got = _pieces(left, split, tail)
            if got is None:
                turned_back.add(j)
                got = _NO_EXTRA
            elif key is not None and memo.active:
                texts[key] = got
        else:
            memo.hits += 1
        out.append(got)
    return out


def _join_extra(out: list[_Pieces | None], parts: list[bytes | None], index: list[int],
                turned_back: set[int]) -> pa.Array:
    """The ``extra`` string array: each record's pieces around its nested object's text, in one buffer."""
    m = len(out)
    chunks: list[bytes] = []
    ends = np.zeros(m, dtype=np.int64)  # end of each record's text in the data buffer
    valid = np.ones(m, dtype=bool)
    end = 0
    for j, (got, k) in enumerate(zip(out, index, strict=True)):
        if got is None:  # not plain JSON data (found through the exact keys above)
            turned_back.add(j)
            got = out[j] = _NO_EXTRA
        part = parts[k]
        if part is not None:
            chunks += (got[0], part, got[1])
            end += len(got[0]) + len(part) + len(got[1])
        elif got[2] is not None:
            chunks.append(got[2])
            end += len(got[2])
        else:
            valid[j] = False
        ends[j] = end
    if end >= 2**31:  # beyond 32-bit offsets: let Arrow lay it out (no None is left in ``out``)
        done = cast("list[_Pieces]", out)
        return pa.array([_extra_str(got, parts[k]) for got, k in zip(done, index, strict=True)], type=STR)
    offsets = np.concatenate(([0], ends)).astype(np.int32)
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(STR, m, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(chunks))])


def _extra_str(got: _Pieces, part: bytes | None) -> str | None:
    whole = got[2] if part is None else got[0] + part + got[1]
    return None if whole is None else whole.decode()


def _flatten_rows(records: Sequence[Mapping | None], plan: _Plan) -> pa.Table:
    """Any records -> the plan's table, column by column (the general path)."""
    rows = [r if type(r) is dict else (dict(r) if isinstance(r, Mapping) else _EMPTY) for r in records]
    n = len(rows)
    extras: dict[int, dict] = {}  # row -> leftovers, only for rows that have some
    objects = _declared_objects(rows, plan, extras)
    arrays = []
    for col in plan.columns:
        if col.kind == "extra":
            continue
        parents = objects[col.path[:-1]]
        array, bad = _coerce(list(map(dict.get, parents, repeat(col.path[-1], n))), col.kind)
        for i in bad:
            _put(extras.setdefault(i, {}), col.path, parents[i][col.path[-1]])
        arrays.append(array)
    raw_rows = _add_leftovers(objects, plan, extras)
    extra: list[bytes | None] = [None] * n
    for i, leftovers in extras.items():
        extra[i] = _extra_text(leftovers) if i in raw_rows else jsontext.stable(leftovers)
    arrays.append(pa.array(extra, type=STR))
    return pa.Table.from_arrays(arrays, schema=plan.schema)


def _declared_objects(rows: list[dict], plan: _Plan, extras: dict[int, dict]) -> dict[tuple[str, ...], list[dict]]:
    """Object path -> the object at that path in each row (``{}`` where there is none).

    Other Mappings are copied to dicts; a value that is no object at all is kept in ``extras``.
    """
    n = len(rows)
    objects: dict[tuple[str, ...], list[dict]] = {(): rows}
    for path in plan.parents:
        values = list(map(dict.get, objects[path[:-1]], repeat(path[-1], n), repeat(_EMPTY, n)))
        if not set(map(type, values)) <= {dict}:
            for i, v in enumerate(values):
                if type(v) is not dict:
                    values[i] = _as_object(v, i, path, extras)
        objects[path] = values
    return objects


def _as_object(value: Any, i: int, path: tuple[str, ...], extras: dict[int, dict]) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    if value is not None:
        _put(extras.setdefault(i, {}), path, value)
    return _EMPTY


def _add_leftovers(objects: dict[tuple[str, ...], list[dict]], plan: _Plan, extras: dict[int, dict]) -> set[int]:
    """Merge the keys of each declared object that no column covers into ``extras``, under their path.

    A top-level nested object with no declared objects inside it (person.organization) is
    written once per distinct content and placed as finished text (_Raw), unless the row
    already keeps something under its key (a value that did not convert). Returns the rows
    holding such text.
    """
    raw_rows: set[int] = set()
    for path, covered in sorted(plan.declared.items(), key=lambda item: len(item[0])):
        memo = _Memo() if path in plan.memoised else None
        for i, obj in enumerate(objects[path]):
            if not obj or obj.keys() <= covered:
                continue
            if memo is not None and _add_memoised(extras, raw_rows, i, path, obj, covered, memo):
                continue
            left = _leftovers(obj, covered)
            if not path:
                have = extras.get(i)
                extras[i] = left if have is None else {**left, **have}
            else:
                _merge(extras.setdefault(i, {}), path, left)
    return raw_rows


def _add_memoised(extras: dict[int, dict], raw_rows: set[int], i: int, path: tuple[str, ...], obj: dict,
                  covered: frozenset, memo: _Memo) -> bool:
    """Put row ``i``'s leftovers of ``obj`` (at top-level ``path``) as memoised text; False: not done, merge them."""
    have = extras.get(i)
    if have is not None and path[0] in have:
        return False
    key = memo.key(obj)
    text = None if key is None else memo.texts.get(key)
    if text is not None:
        memo.hits += 1
    else:
        left = _leftovers(obj, covered)
        try:
            text = _plain(left)
        except _PLAIN_ERRORS:
            _merge(extras.setdefault(i, {}), path, left)
            return True
        if key is not None and memo.active:
            memo.texts[key] = text
    (have if have is not None else extras.setdefault(i, {}))[path[0]] = _Raw(text, obj, covered)
    raw_rows.add(i)
    return True


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
    pa.timestamp("us", tz="UTC"): pd.DatetimeTZDtype("us", "UTC"),  # (apollo_fetched_at: a plain pandas datetime)
}


def _dtype(t: pa.DataType):
    return _DTYPES.get(t) or pd.ArrowDtype(t)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a DataFrame whose dtypes depend only on the Arrow schema (see the module doc)."""
    return table.to_pandas(types_mapper=_dtype)


def handed_to_pandas(tables: list[pa.Table]) -> pd.DataFrame:
    """:func:`to_pandas` of the one table in ``tables``, handed over (the list is emptied).

    pandas keeps text as ``large_string``: each text column is widened here one at a time and its narrow form
    let go of before the next (only the offsets are new; the characters are shared), so when the caller keeps
    no other reference a large result's offsets are not held in both widths at once (a cold run's peak, issue 27).
    """
    (table,) = tables
    tables.clear()
    schema, columns = table.schema, table.columns
    del table
    for i, column in enumerate(columns):
        if pa.types.is_string(column.type):
            columns[i] = column.cast(pa.large_string())
        del column
    fields = [field.with_type(column.type) for field, column in zip(schema, columns, strict=True)]
    return to_pandas(pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata)))


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """A zero-row frame with the columns and dtypes :func:`to_pandas` gives for ``schema``."""
    return to_pandas(schema.empty_table())
