"""Recognise which columns of a user's frame hold which Apollo field: one resolver for every operation.

Each operation has one :class:`FieldTable`: its fields (:class:`FieldSpec`),
each with the column names it is recognised by, in priority order. Enrichment's
tables are here (:data:`PEOPLE`, :data:`ORGS`); push keeps its own beside its
send rules (``ops/push.py``), search builds one per kind from its filter
catalogue (``core/filters.py``). All go through :func:`resolve`.

**Folding.** Names are compared folded (:func:`fold`): case, surrounding
whitespace, a byte-order mark, a trailing ``[]`` and every whitespace, ``-``,
``_``, ``.``, ``/`` and ``:`` are ignored, so ``"E-mail"``, ``"e_mail"``,
``"EMAIL "``, ``"Contact: Email"`` and Salesforce's ``"Contact.Email"`` are
the same as the alias ``"Contact Email"``. A Salesforce report header in the
"Object: Field" style that is not recognised whole is tried by its field part
(``"Account: Account Name"`` -> ``"Account Name"``), ranked after the columns
recognised whole.

**Rules**, in order:

1. ``columns={"their column": "field"}`` puts that column first for the field;
   the columns recognised for it stay as fallbacks (a row empty in the mapped
   column uses them), except in a table that does not coalesce, where the
   mapped column is the only one. ``{"col": None}`` leaves a column out. An
   unknown column, an unknown field and two overrides for one field are errors.
2. Every other column is recognised by its folded name. Columns this toolkit
   writes (``person.*``, ``org.*``) are used for a field only when no plain
   column supplies it, so re-enriching an enriched frame keeps the user's own
   ``email`` rather than ``person.email`` (yet ``"Person Email"`` is a plain
   column). A field with ``by_own_name=False`` (people's ``id``: a bare ``id``
   column is usually the user's own row id) is recognised only by its aliases.
3. **Coalescing.** Several columns supplying one field are candidates, in
   priority order: the order of the names in the table (the field's own name
   first), then the frame's column order. Enrichment and push use them per
   row: the first non-empty value wins (``Email`` before ``Work Email``;
   HubSpot's ``Company Domain Name`` before ``Website URL``). A table with
   ``coalesce=False`` (search filters: one column per filter) uses the first
   and ignores the rest; two candidates of equal rank there are ambiguous.
4. **Guesses.** A field with ``content`` that no column is recognised for by
   name takes the columns whose header holds one of its ``words`` anywhere
   (``"E-mail 1 - Value"``, ``"Account Name (Parent Customer)"``), or, for a
   field ``by_content``, whose values are mostly of its kind (e-mails, LinkedIn
   profiles, web addresses): :mod:`apollo_frames.core.sniff` looks at the first
   values of the frame passed as ``sample``. A guess must fit: at least half
   the sampled values with a header word, 80 % by content alone, and no single
   value filling most of an identifier's sample (an owner's address). Guesses
   rank after columns recognised by name, by header evidence, then share of
   values that fit, then filled cells; the reason is the choice's ``how``, and
   a column that almost fitted says why it was not used. The values are then
   validated row by row as any column's are.
5. Fields sharing a ``group`` are exclusive: the first in table order that has
   a column (or is pinned, or given separately) takes the group; the others are
   not recognised by name (search's organisation anchor: domain, else
   organisation id, else company name).
6. A label that appears twice in the frame is refused when it would be used.

The result is a :class:`ColumnMapping`: per field its columns in priority
order and how each was chosen, and the columns ignored (with why); it renders
as a table (``to_frame()``, ``_repr_html_``) and is what callers record in
``attrs["apollo"]["columns"]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apollo_frames.core import sniff
from apollo_frames.core.errors import ColumnMappingError
from apollo_frames.core.normalize import is_missing

__all__ = [
    "Columns",
    "ORGS",
    "ORG_FIELDS",
    "PEOPLE",
    "PEOPLE_FIELDS",
    "Choice",
    "ColumnMapping",
    "ColumnMappingError",
    "FieldSpec",
    "FieldTable",
    "coalesce",
    "fold",
    "resolve",
]

#: What every public function's ``columns=`` takes: {column label: Apollo field (or None: leave it out)}
Columns = Mapping[Any, str | None] | None

#: How a column was chosen for a field.
OVERRIDE, ALIAS, TOOLKIT, PREFIX = "override", "alias", "toolkit", "prefix"
#: Labels of columns this toolkit writes itself.
TOOLKIT_PREFIXES = ("person.", "org.")
#: Why a column named ``None`` in ``columns=`` is not used.
LEFT_OUT = "left out by columns="
#: Why a column whose values almost fitted a field is not used (the field, then the evidence).
NEAR_MISS = "not used as {field}: {why}"
NEAR_MISS_FIELD = re.compile(r"^not used as (\w+): ")
_PLAIN_HOWS = (OVERRIDE, ALIAS, TOOLKIT, PREFIX)
_FOLDED = re.compile(r"[\s\-_./:]+")
_SHOWN = 20
_BY_PART = 1000
#: guessed columns rank after every column recognised by name
_GUESSED = 2000


def fold(label: object) -> str | None:
    """The comparison key of a column label (None for non-text labels): see the module docstring."""
    if not isinstance(label, str):
        return None
    text = label.replace("\ufeff", "").strip().lower()
    text = text.removesuffix("[]")
    return _FOLDED.sub("", text) or None


def is_toolkit_column(label: object) -> bool:
    """True for a column this toolkit wrote (``person.*``, ``org.*``)."""
    return isinstance(label, str) and label.replace("\ufeff", "").strip().lower().startswith(TOOLKIT_PREFIXES)


# -- tables ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field an operation reads from a column, and the names that column may have (best first)."""

    name: str
    aliases: tuple[str, ...] = ()
    #: recognised by its own name too (False for people's ``id``: a bare ``id`` is not an Apollo id)
    by_own_name: bool = True
    #: fields of one group are exclusive (at most one recognised by name)
    group: str | None = None
    #: folded words a header may hold anywhere to be a candidate when no column is recognised by name
    words: tuple[str, ...] = ()
    #: the kind a guessed column's values must have (``core/sniff.py``); None: never guessed
    content: str | None = None
    #: a column may be guessed by its values alone, whatever its header
    by_content: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return ((self.name,) if self.by_own_name else ()) + tuple(self.aliases)


@dataclasses.dataclass(frozen=True)
class FieldTable:
    """The fields of one operation, in output order, and how its columns are resolved."""

    operation: str
    fields: tuple[FieldSpec, ...]
    #: several columns for one field: coalesce them per row (True) or use the first (False)
    coalesce: bool = True
    #: labels starting with this (``"custom."``) are fields of their own (``custom.<field_id>``)
    open_prefix: str | None = None
    #: what a field is called in messages
    noun: str = "an Apollo input field"
    #: what a column is used as, in the "nothing recognised" message
    purpose: str = "an Apollo input"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def spec(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    def index(self) -> dict[str, tuple[str, int]]:
        """Folded name -> (field, rank of that name within the field); the first field to claim a name keeps it."""
        out: dict[str, tuple[str, int]] = {}
        for spec in self.fields:
            for rank, alias in enumerate(spec.names):
                key = fold(alias)
                if key:
                    out.setdefault(key, (spec.name, rank))
        return out

    def open_field(self, name: object) -> str | None:
        """``name`` as an open-prefix field (``custom.<field_id>``), or None."""
        prefix = self.open_prefix
        if prefix is None or not isinstance(name, str):
            return None
        text = name.strip()
        if text.lower().startswith(prefix) and len(text) > len(prefix):
            return prefix + text[len(prefix) :]
        return None

    def accepts(self, name: object) -> bool:
        return (isinstance(name, str) and self.spec(name) is not None) or self.open_field(name) is not None


_EMAIL = (
    "Email", "E-mail", "Email Address", "E-mail Address", "Work Email", "Business Email", "Contact Email",
    "Lead Email", "Person Email", "Person - Email - Work", "primary_email", "primary_contact_primary_email",
    "Prospect Email", "Emails", "Email 1", "mail", "Secondary Email", "Person - Email - Other",
    "Person - Email - Home", "Personal Email", "person.email",
)  # fmt: skip
_FIRST = (
    "First Name", "first", "Given Name", "forename", "Contact First Name", "Lead First Name", "Person - First name",
    "Prospect First Name", "person.first_name",
)  # fmt: skip
_LAST = (
    "Last Name", "last", "surname", "Family Name", "Contact Last Name", "Lead Last Name", "Person - Last name",
    "Prospect Last Name", "person.last_name",
)  # fmt: skip
_FULL_NAME = (
    "Full Name", "Name", "Contact Name", "Person Name", "Lead Name", "Prospect Name", "Contact", "primary_contact_name",
    "person.name",
)  # fmt: skip
_COMPANY = (
    "Company", "Company Name", "Organization", "Organisation", "Organization Name", "Organisation Name", "org_name",
    "Account Name", "Account", "Company / Account", "Lead Company", "Associated Company", "Person - Organization",
    "Current Company", "Employer", "Company Name for Emails", "lead_display_name", "lead_name",
)  # fmt: skip
#: Domain-like names before website-like ones: a domain column is the cleaner value when both are filled.
_DOMAIN = (
    "domain", "Company Domain", "Company Domain Name", "Domain Name", "primary_domain", "Organization Domain",
    "org_domain", "Account Domain", "Website", "Company Website", "Website URL", "Company Website URL", "Web Site",
    "Account Website", "Lead Website", "Organization - Website", "URL", "Company URL", "lead_url", "email_domain",
)  # fmt: skip
_LINKEDIN = (
    "LinkedIn", "LinkedIn URL", "LinkedIn Profile URL", "LinkedIn Profile", "Person Linkedin Url", "linkedin_profile",
    "LinkedIn Link", "li_url", "Profile URL", "person.linkedin_url",
)  # fmt: skip
#: Shared by the push tables (ops/push.py): the same people fields under the same names.
PERSON_ALIASES: dict[str, tuple[str, ...]] = {
    "email": _EMAIL,
    "first_name": _FIRST,
    "last_name": _LAST,
    "name": _FULL_NAME,
    "organization_name": _COMPANY,
    "domain": _DOMAIN,
    "linkedin_url": _LINKEDIN,
}

#: Guessing, for fields no header names (see "Guesses" above): the words a header may hold, the values' kind.
_EMAIL_WORDS = ("email", "mail")
_COMPANY_WORDS = ("company", "organization", "organisation", "accountname", "employer")
_DOMAIN_WORDS = ("website", "domain", "webaddress", "webpage", "url", "site")
#: an Apollo contact or account id has a person id's shape: only a header naming a person id is guessed
_ID_WORDS = ("apolloid", "personid")

PEOPLE = FieldTable(
    "enrich_people",
    (
        FieldSpec("first_name", _FIRST, content="text"),
        FieldSpec("last_name", _LAST, content="text"),
        FieldSpec("name", _FULL_NAME, content="text"),
        FieldSpec("email", _EMAIL, words=_EMAIL_WORDS, content="email", by_content=True),
        FieldSpec("hashed_email", (
            "hashed email", "email_hash", "email_md5", "email_sha256", "md5_email", "sha256_email", "md5", "sha256",
        )),
        FieldSpec("organization_name", _COMPANY + ("person.organization.name",), words=_COMPANY_WORDS, content="text"),
        FieldSpec("domain", _DOMAIN + ("person.organization.primary_domain",), words=_DOMAIN_WORDS, content="web",
                  by_content=True),
        FieldSpec(
            "id", ("Apollo ID", "Apollo Person ID", "apollo_person_id", "person_id", "person.id"), by_own_name=False,
            words=_ID_WORDS, content="id",
        ),
        FieldSpec("linkedin_url", _LINKEDIN, words=("linkedin",), content="linkedin", by_content=True),
    ),
)  # fmt: skip
ORGS = FieldTable("enrich_orgs", (
    FieldSpec("domain", _DOMAIN + ("org.primary_domain", "org.website_url"), words=_DOMAIN_WORDS, content="web",
              by_content=True),
))  # fmt: skip
PEOPLE_FIELDS = PEOPLE.names
ORG_FIELDS = ORGS.names


# -- the result -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Choice:
    """One column used for one field: its rank among the field's columns (1 = tried first) and how it was chosen."""

    column: Any
    field: str
    priority: int
    how: str


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Which frame columns an operation reads, for which fields, in which priority; and which it ignores."""

    operation: str
    labels: tuple[Any, ...]
    choices: tuple[Choice, ...]
    #: (column, why it is not used), in frame order
    ignored: tuple[tuple[Any, str], ...]

    @property
    def fields(self) -> dict[str, tuple[Any, ...]]:
        """Field -> its columns in priority order, fields in table order."""
        out: dict[str, list[Any]] = {}
        for choice in self.choices:
            out.setdefault(choice.field, []).append(choice.column)
        return {field: tuple(cols) for field, cols in out.items()}

    @property
    def first(self) -> dict[str, Any]:
        """Field -> its first column (the only one when the table does not coalesce)."""
        return {field: cols[0] for field, cols in self.fields.items()}

    def __contains__(self, field: object) -> bool:
        return any(c.field == field for c in self.choices)

    def without(self, dropped: Mapping[Any, str]) -> ColumnMapping:
        """This mapping with the ``dropped`` columns ignored, for the reasons given (the columns after them move up)."""
        if not dropped:
            return self
        gone = {_key(label) for label in dropped}
        kept = [c for c in self.choices if _key(c.column) not in gone]
        choices = tuple(
            dataclasses.replace(c, priority=1 + sum(o.field == c.field and o.priority < c.priority for o in kept))
            for c in kept
        )
        return dataclasses.replace(self, choices=choices, ignored=self.ignored + tuple(dropped.items()))

    def values(self, frame: Any) -> dict[str, list[Any]]:
        """Field -> one value per row of ``frame``: the first non-empty of the field's columns."""
        return {field: coalesce([frame[c].tolist() for c in cols]) for field, cols in self.fields.items()}

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-able ``{field: [column, ...]}`` (priority order), for ``attrs["apollo"]["columns"]``."""
        return {field: [str(c) for c in cols] for field, cols in self.fields.items()}

    def reasons(self) -> dict[str, str]:
        """JSON-able ``{column: why}`` for columns guessed (by header words or content) or not used although
        they almost fitted a field, for ``attrs["apollo"]["column_reasons"]`` and the report's fix."""
        out = {str(c.column): f"{c.field}: {c.how}" for c in self.choices if c.how not in _PLAIN_HOWS}
        out.update((str(label), why) for label, why in self.ignored if NEAR_MISS_FIELD.match(why))
        return out

    def rows(self) -> list[tuple[Any, str | None, int | None, str]]:
        """(input column, field, priority, how / why ignored) per input column, in frame order."""
        chosen = {_key(c.column): c for c in self.choices}
        why = {_key(label): reason for label, reason in self.ignored}
        out: list[tuple[Any, str | None, int | None, str]] = []
        for label in self.labels:
            c = chosen.get(_key(label))
            if c is not None:
                out.append((label, c.field, c.priority, c.how))
            else:
                out.append((label, None, None, "ignored: " + why.get(_key(label), "not recognised")))
        return out

    def to_frame(self) -> Any:
        """A pandas frame: input column -> Apollo field, priority, how chosen (or why ignored)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows(), columns=["column", "field", "priority", "how"])
        frame["priority"] = frame["priority"].astype("Int64")
        return frame

    def __repr__(self) -> str:
        used = "; ".join(f"{f} <- {', '.join(map(repr, cols))}" for f, cols in self.fields.items())
        skipped = f"; ignored: {', '.join(repr(label) for label, _ in self.ignored)}" if self.ignored else ""
        return f"ColumnMapping({self.operation}: {used or 'nothing'}{skipped})"

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
            for row in self.rows()
        )
        head = "".join(f"<th>{h}</th>" for h in ("input column", "Apollo field", "priority", "how"))
        return (
            f"<div><b>{html.escape(self.operation)}</b>: column mapping"
            f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table></div>"
        )


def _key(label: Any) -> Any:
    try:
        hash(label)
    except TypeError:
        return id(label)
    return label


def coalesce(columns: Sequence[Sequence[Any]]) -> list[Any]:
    """Per row, the first value that is not missing (None, NaN, NA, blank text); the first column's when all are."""
    if len(columns) == 1:
        return list(columns[0])
    out = []
    for values in zip(*columns, strict=False):
        out.append(next((v for v in values if not is_missing(v)), values[0]))
    return out


# -- the resolver ---------------------------------------------------------------------------------


def _closest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    folded: dict[str, str] = {}
    for c in choices:
        folded.setdefault(c.lower(), c)
    return [folded[m] for m in difflib.get_close_matches(word.lower(), list(folded), n=n, cutoff=0.5)]


def _names(items: Iterable[object]) -> str:
    return ", ".join(repr(i) for i in items)


def _shown(labels: Sequence[object]) -> str:
    return (_names(labels[:_SHOWN]) or "none") + (" ..." if len(labels) > _SHOWN else "")


def _counts(labels: Sequence[object]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for label in labels:
        try:
            counts[label] = counts.get(label, 0) + 1
        except TypeError:  # an unhashable label is never matched
            pass
    return counts


def _unknown_field(source: object, target: object, table: FieldTable, error: type[Exception]) -> Exception:
    near = _closest(str(target), table.names, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    extra = f", or '{table.open_prefix}<field_id>'" if table.open_prefix else ""
    return error(
        f"columns={{{source!r}: {target!r}}}: {target!r} is not {table.noun} here; "
        f"valid fields are {', '.join(table.names)}{extra}.{hint}"
    )


def _overrides(
    labels: Sequence[object], counts: Mapping[Any, int], table: FieldTable, overrides: object, error: type[Exception]
) -> tuple[dict[str, Any], set[Any]]:
    """(field -> the column columns= pins it to, columns taken out of recognition by name)."""
    if overrides is None:
        return {}, set()
    if not isinstance(overrides, Mapping):
        raise error(f"columns= takes a mapping {{'their column': 'apollo field'}}, got {type(overrides).__name__}")
    pinned: dict[str, Any] = {}
    excluded: set[Any] = set()
    for source, target in overrides.items():
        if source not in counts:
            near = _closest(str(source), [str(label) for label in labels])
            hint = f"closest existing columns: {_names(near)}" if near else f"the frame's columns are: {_shown(labels)}"
            raise error(f"columns= names {source!r}, which is not a column of the frame; {hint}")
        excluded.add(source)
        if target is None:
            continue
        if not table.accepts(target):
            raise _unknown_field(source, target, table, error)
        field = table.open_field(target) or target
        if field in pinned:
            raise error(f"columns= maps both {pinned[field]!r} and {source!r} to {field!r}; choose one")
        pinned[field] = source
    return pinned, excluded


@dataclasses.dataclass(frozen=True)
class _Candidate:
    label: Any
    rank: int
    position: int
    toolkit: bool
    #: why a guessed column was chosen (None: recognised by name)
    how: str | None = None


def _match(label: object, table: FieldTable, index: Mapping[str, tuple[str, int]]) -> tuple[str, int] | None:
    """(field, rank) a column is recognised as, by name; None if it is not."""
    opened = table.open_field(label)
    if opened is not None:
        return opened, 0
    hit = index.get(fold(label) or "")
    if hit is None and isinstance(label, str) and ":" in label:  # Salesforce "Object: Field"
        part = index.get(fold(label.rsplit(":", 1)[1]) or "")
        # ranked after every whole-name match: "Phone" before "Account: Phone"
        hit = (part[0], part[1] + _BY_PART) if part else None
    return hit


def _recognise(
    labels: Sequence[object], table: FieldTable, excluded: set[Any]
) -> tuple[dict[str, list[_Candidate]], dict[Any, str]]:
    """Candidates per field by name, and why each other column is not used."""
    index = table.index()
    found: dict[str, list[_Candidate]] = {}
    ignored: dict[Any, str] = {}
    seen: set[Any] = set()
    for position, label in enumerate(labels):
        key = _key(label)
        if key in seen:
            continue
        seen.add(key)
        if key in excluded:
            ignored[key] = LEFT_OUT
            continue
        hit = _match(label, table, index)
        if hit is None:
            ignored[key] = "not recognised"
            continue
        field, rank = hit
        found.setdefault(field, []).append(_Candidate(label, rank, position, is_toolkit_column(label)))
    return found, ignored


# -- guesses: header words and content --------------------------------------------------------------

#: a header naming another attribute beside the field's word ("Company Phone", "Email Opt Out") is not the field
_OTHER_ATTRIBUTES = frozenset((
    "address", "phone", "fax", "city", "state", "country", "region", "zip", "postal", "street", "industry", "size",
    "revenue", "employees", "type", "status", "owner", "assistant", "manager", "date", "time", "opt", "count",
    "description", "note", "notes", "logo", "id", "ids", "title", "position", "role", "job", "department",
    "photo", "image", "picture", "avatar", "source", "referrer", "unsubscribe", "tracking",
))  # fmt: skip
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
#: share of sampled values that must fit: with a header word, by content alone
_HEADER_FIT, _CONTENT_FIT = 0.5, 0.8
#: at most this share of an identifier's sample may be one value (an owner's address is not each row's own)
_SHARED = {"text": 1.0, "web": 0.9}
#: kinds whose values contradict a column recognised by name when almost none fit
_CONTRADICTED = ("email", "linkedin", "web", "text")


def _word(label: object, spec: FieldSpec) -> str | None:
    """The field's word a header holds anywhere (not beside another attribute's word), or None."""
    key = fold(label) or ""
    word = next((w for w in spec.words if w in key), None)
    tokens = {t.lower() for t in _WORDS.findall(str(label))}
    others = _OTHER_ATTRIBUTES - {"id"} if spec.name == "id" else _OTHER_ATTRIBUTES
    return None if word is None or tokens & others else word


class _Samples:
    """The frame a resolution may look into: each column's :class:`~apollo_frames.core.sniff.Profile`, read once."""

    def __init__(self, frame: Any):
        self.frame = frame
        self.profiles: dict[Any, sniff.Profile | None] = {}

    def profile(self, label: object) -> sniff.Profile | None:
        """None when there is no frame, no row, or the label is repeated (only the header is evidence then)."""
        key = _key(label)
        if key not in self.profiles:
            column = None if self.frame is None else self.frame[label]
            usable = column is not None and getattr(column, "ndim", 1) == 1 and len(column) > 0
            self.profiles[key] = sniff.profile(column) if column is not None and usable else None
        return self.profiles[key]


def _judge(label: object, spec: FieldSpec, samples: _Samples) -> tuple[float, str] | None:
    """(score, how) when ``label`` may be guessed as ``spec``; (-1, why not) for a near miss; None otherwise."""
    assert spec.content is not None
    word = _word(label, spec)
    if word is None and not spec.by_content:
        return None
    seen = samples.profile(label)
    if word is None and seen is None:
        return None
    if seen is None:  # labels only: the header is the evidence
        return 2.0, f"header contains {word!r} (values not seen)"
    ev = seen.evidence(spec.content)
    if not ev.n:  # empty in the sample: nothing says it is the field
        return None
    says = ev.says(sniff.NOUNS[spec.content])
    if ev.fit < (_HEADER_FIT if word else _CONTENT_FIT):
        return (-1.0, NEAR_MISS.format(field=spec.name, why=says)) if word or ev.fit >= _HEADER_FIT else None
    if ev.shared(_SHARED.get(spec.content, 0.5)):
        shared = f"one value fills {ev.top} of {ev.n} sampled cells (not each row's own)"
        return -1.0, NEAR_MISS.format(field=spec.name, why=shared)
    if word is None:
        return ev.fit + ev.filled / 10, f"content: {says}"
    return 2.0 + ev.fit + ev.filled / 10, f"header contains {word!r}; {says}"


def _veto(
    table: FieldTable, found: dict[str, list[_Candidate]], ignored: dict[Any, str], samples: _Samples
) -> set[Any]:
    """Take back the columns recognised by name whose values contradict their field (a ``URL`` column of
    LinkedIn profiles is not a domain, a ``Contact`` column of e-mails is not a name); they may then be guessed
    for another field. Returns their keys."""
    vetoed: set[Any] = set()
    for spec in table.fields:
        if spec.content not in _CONTRADICTED or not found.get(spec.name):
            continue
        kept = []
        for c in found[spec.name]:
            seen = None if c.toolkit else samples.profile(c.label)
            ev = seen.evidence(spec.content) if seen is not None else None
            if ev is not None and ev.n >= 3 and ev.fit < 0.2:
                ignored[_key(c.label)] = NEAR_MISS.format(field=spec.name, why=ev.says(sniff.NOUNS[spec.content]))
                vetoed.add(_key(c.label))
            else:
                kept.append(c)
        found[spec.name] = kept
    return vetoed


def _guess(
    labels: Sequence[object],
    table: FieldTable,
    found: dict[str, list[_Candidate]],
    ignored: dict[Any, str],
    sample: Any,
) -> None:
    """Add to ``found`` the columns guessed for fields no header names, best first; near misses go in ``ignored``."""
    samples = _Samples(sample)
    vetoed = _veto(table, found, ignored, samples)
    free = [
        (i, label)
        for i, label in enumerate(labels)
        if ignored.get(_key(label)) == "not recognised" or _key(label) in vetoed
    ]
    for spec in table.fields:
        if spec.content is None or found.get(spec.name):
            continue
        judged = [(i, label, _judge(label, spec, samples)) for i, label in free]
        for _, label, verdict in judged:
            if verdict is not None and verdict[0] < 0 and ignored[_key(label)] == "not recognised":
                ignored[_key(label)] = verdict[1]
        kept = sorted((-v[0], i, label, v[1]) for i, label, v in judged if v is not None and v[0] >= 0)
        if kept:
            found[spec.name] = [
                _Candidate(label, _GUESSED + n, i, False, how) for n, (_, i, label, how) in enumerate(kept)
            ]
            taken = {_key(label) for _, _, label, _ in kept}
            free = [(i, label) for i, label in free if _key(label) not in taken]


def _ambiguous(field: str, labels: Sequence[object], error: type[Exception]) -> Exception:
    both = "both" if len(labels) == 2 else "all"
    return error(
        f"columns {_names(labels)} {both} look like {field!r}; pass columns={{{labels[0]!r}: {field!r}}} "
        f"(the one to use), or {{column: None}} to ignore a column"
    )


def _rank(
    field: str, candidates: list[_Candidate], table: FieldTable, ignored: dict[Any, str], error: type[Exception]
) -> list[_Candidate]:
    """The candidates used for ``field``, best first; the others are recorded in ``ignored``."""
    plain = [c for c in candidates if not c.toolkit]
    used = sorted(plain or candidates, key=lambda c: (c.rank, c.position))
    if plain:
        for c in candidates:
            if c.toolkit:
                ignored[_key(c.label)] = f"toolkit column; {field} comes from {used[0].label!r}"
    if not table.coalesce and len(used) > 1:
        ties = [c.label for c in used if c.rank == used[0].rank]
        if len(ties) > 1:
            raise _ambiguous(field, ties, error)
        for c in used[1:]:
            ignored[_key(c.label)] = f"{field} comes from {used[0].label!r}"
        used = used[:1]
    return used


def _order(table: FieldTable, pinned: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """Table fields in table order, then open-prefix fields in order of appearance."""
    extra = [f for f in [*pinned, *found] if table.spec(f) is None]
    return [*table.names, *dict.fromkeys(extra)]


def _groups_taken(table: FieldTable, names: Iterable[str]) -> dict[str, str]:
    """Group -> the field (pinned or given separately) that takes it before any recognition by name."""
    groups: dict[str, str] = {}
    for name in names:
        spec = table.spec(name)
        if spec is not None and spec.group is not None:
            groups.setdefault(spec.group, name)
    return groups


def _choose(
    table: FieldTable,
    pinned: Mapping[str, Any],
    found: Mapping[str, list[_Candidate]],
    skip: frozenset[str],
    ignored: dict[Any, str],
    error: type[Exception],
) -> list[Choice]:
    groups = _groups_taken(table, [*pinned, *skip])
    choices: list[Choice] = []
    for field in _order(table, pinned, found):
        candidates = found.get(field, [])
        spec = table.spec(field)
        group = spec.group if spec is not None else None
        pin = [Choice(pinned[field], field, 1, OVERRIDE)] if field in pinned else []
        if pin and not table.coalesce:
            why = f"{field} is set by columns="
        elif field in skip:
            why = f"{field} is given separately (keyword argument)"
        elif candidates and not pin and group is not None and groups.get(group, field) != field:
            why = f"{groups[group]} is used for the {group} instead"
        else:  # columns= first, the columns recognised stay as fallbacks
            used = _rank(field, candidates, table, ignored, error) if candidates else []
            how = PREFIX if spec is None else None
            choices += pin + [
                Choice(c.label, field, i, how or c.how or (TOOLKIT if c.toolkit else ALIAS))
                for i, c in enumerate(used, 1 + len(pin))
            ]
            if used and group is not None:
                groups.setdefault(group, field)
            continue
        choices += pin
        for c in candidates:
            ignored[_key(c.label)] = why
    return choices


def _nothing_recognised(
    labels: Sequence[object], table: FieldTable, ignored: Mapping[Any, str], error: type[Exception]
) -> Exception:
    examples = "; ".join(f"{f.name} ({_names(f.aliases[:3]) if f.aliases else repr(f.name)})" for f in table.fields)
    example = "email" if "email" in table.names else table.names[0]
    near = [f"{label!r} is {why}" for label, why in ignored.items() if NEAR_MISS_FIELD.match(why)]
    almost = f" ({'; '.join(near)})" if near else ""
    return error(
        f"no column of the frame can be used as {table.purpose}: none of its columns ({_shown(labels)}) was "
        f"recognised{almost}. Recognised names (case, spaces, '-', '_', '.', '/', ':' ignored): {examples}. "
        f"Or name yours explicitly: columns={{'your column': {example!r}}}"
    )


def resolve(
    labels: Iterable[object],
    table: FieldTable,
    overrides: Mapping[Any, str | None] | None = None,
    *,
    skip: Iterable[str] = (),
    error: type[Exception] = ColumnMappingError,
    sample: Any = None,
) -> ColumnMapping:
    """Which columns of a frame with these column ``labels`` supply which fields of ``table``.

    ``overrides`` is the ``columns=`` argument (``{"their column": "field"}``,
    ``None`` to leave a column out); fields in ``skip`` are given some other way
    and not recognised by name. ``sample`` is the frame itself, when there is
    one: its first values let a column no header names be guessed by content.
    Raises ``error`` (:class:`ColumnMappingError` unless told) for an unknown
    column or field, two overrides for one field,
    equally-ranked candidates where the table does not coalesce, a repeated
    label that would be used, or when no column is recognised at all.
    """
    labels = list(labels)
    counts = _counts(labels)
    pinned, excluded = _overrides(labels, counts, table, overrides, error)
    found, ignored = _recognise(labels, table, excluded)
    _guess(labels, table, found, ignored, sample)
    choices = _choose(table, pinned, found, frozenset(skip), ignored, error)
    for c in choices:
        if counts.get(c.column, 0) > 1:
            raise error(
                f"the frame has {counts[c.column]} columns named {c.column!r}, which would be used for {c.field!r}; "
                f"rename or drop the duplicates (e.g. df.loc[:, ~df.columns.duplicated()])"
            )
    if not choices:
        raise _nothing_recognised(labels, table, ignored, error)
    chosen = {_key(c.column) for c in choices}
    unused: dict[Any, tuple[Any, str]] = {}
    for label in labels:
        key = _key(label)
        if key not in chosen and key in ignored:
            unused.setdefault(key, (label, ignored[key]))
    return ColumnMapping(table.operation, tuple(labels), tuple(choices), tuple(unused.values()))
