"""The search filter catalogue, and validation of filter values before any request.

Apollo silently ignores a filter name it does not know and answers with an
unfiltered sample, so nothing here is passed through unchecked: every name is
looked up in the catalogue of its endpoint (an unknown one is an error naming
the closest valid one), and every value is brought into the shape Apollo
documents or refused with a message saying what was expected.

Values, by filter type:

* **text lists** (``person_titles``, ``person_locations``, ...): a string is
  wrapped in a list; items must be text (numbers are refused, so are dicts);
  blanks are dropped; duplicates removed; the list is sorted (order never
  changes Apollo's answer, and a canonical order makes identical queries share
  a cache entry).
* **seniorities**: the documented values owner, founder, c_suite, partner, vp,
  head, director, manager, senior, entry, intern; case, spaces and hyphens are
  forgiven (``"VP"`` -> ``vp``, ``"C-Suite"`` -> ``c_suite``), as are
  ``"vice president"`` and ``"chief"``-style spellings listed in
  ``SENIORITY_ALIASES``. Anything else is refused naming the closest value.
* **employee ranges**: Apollo's ``"min,max"`` strings. ``(1, 10)``,
  ``"1-10"``, ``"1 - 10"`` and ``"1,10"`` all become ``"1,10"``; an open top
  is written ``"10001+"`` or ``(10001, None)`` and becomes ``"10001,"``.
  A pair of numbers is one range; a list of pairs or strings is several.
* **numeric ranges** (``revenue_range``, funding amounts, number of jobs):
  sent as ``{"min": ..., "max": ...}`` (either side may be left out). Given
  as a dict, a ``(min, max)`` pair or a ``"min,max"`` / ``"min-max"`` /
  ``"min to max"`` string. Money bounds are parsed carefully and refused when
  ambiguous: a leading ``$`` and a ``K``/``M``/``B`` suffix are understood
  (``"$1M-$5M"`` -> 1,000,000..5,000,000); other currency symbols and
  thousands separators (``"1,000,000"``) are refused, because inside a range
  string the comma separates min from max.
* **date ranges** (funding date, job posted at): ``YYYY-MM-DD`` strings,
  ``datetime.date`` or ``pandas.Timestamp`` bounds.
* **domains** (``q_organization_domains_list``): each through
  ``normalize.normalize_domain`` (the registrable domain: no scheme, no subdomain, ASCII); at most
  1,000 per query, as Apollo documents.
* **ids** (``organization_ids``): Apollo ids, trimmed.
* **single text** (``q_keywords``, ``q_organization_name``): one string.
* **flags** (``include_similar_titles``): a bool, or true/false/yes/no/1/0 text.

Names may be written plain or with Apollo's ``[]`` suffix (``person_titles[]``);
``revenue_range[min]`` / ``revenue_range[max]`` are merged into ``revenue_range``.
``page`` and ``per_page`` are not filters: pagination belongs to the toolkit
(use ``max_results``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

from apollo_frames.core.columns import ColumnMapping, FieldSpec, FieldTable, resolve
from apollo_frames.core.errors import FilterError, InputError

PEOPLE = "people"
ORGS = "orgs"
KINDS = (PEOPLE, ORGS)
ENDPOINTS = {PEOPLE: "mixed_people/api_search", ORGS: "mixed_companies/search"}

#: Documented values of person_seniorities (docs/API_NOTES.md §6).
SENIORITIES = (
    "owner",
    "founder",
    "c_suite",
    "partner",
    "vp",
    "head",
    "director",
    "manager",
    "senior",
    "entry",
    "intern",
)
SENIORITY_ALIASES = {
    "csuite": "c_suite",
    "c_level": "c_suite",
    "clevel": "c_suite",
    "cxo": "c_suite",
    "chief": "c_suite",
    "executive": "c_suite",
    "vice_president": "vp",
    "vicepresident": "vp",
    "svp": "vp",
    "evp": "vp",
    "avp": "vp",
    "head_of": "head",
    "directors": "director",
    "managers": "manager",
    "owners": "owner",
    "founders": "founder",
    "partners": "partner",
    "entry_level": "entry",
    "internship": "intern",
    "interns": "intern",
}
#: Documented values of contact_email_status (docs/API_NOTES.md §6).
EMAIL_STATUSES = ("verified", "unverified", "likely to engage", "unavailable")
MAX_DOMAINS = 1000


@dataclasses.dataclass(frozen=True)
class FilterSpec:
    name: str
    #: text_list | text | flag | seniorities | employee_ranges | money_range | int_range | date_range | domains
    #: | ids | email_statuses
    type: str
    kinds: tuple[str, ...]


def _spec(name: str, type_: str, kinds: Iterable[str]) -> FilterSpec:
    return FilterSpec(name, type_, tuple(kinds))


_BOTH = (PEOPLE, ORGS)
CATALOGUE: dict[str, FilterSpec] = {
    s.name: s
    for s in (
        # people (mixed_people/api_search, docs/API_NOTES.md §6)
        _spec("person_titles", "text_list", (PEOPLE,)),
        _spec("include_similar_titles", "flag", (PEOPLE,)),
        _spec("q_keywords", "text", (PEOPLE,)),
        _spec("person_locations", "text_list", (PEOPLE,)),
        _spec("person_seniorities", "seniorities", (PEOPLE,)),
        _spec("contact_email_status", "email_statuses", (PEOPLE,)),
        _spec("currently_using_all_of_technology_uids", "text_list", (PEOPLE,)),
        _spec("currently_not_using_any_of_technology_uids", "text_list", (PEOPLE,)),
        # organizations (mixed_companies/search, docs/API_NOTES.md §7)
        _spec("organization_not_locations", "text_list", (ORGS,)),
        _spec("q_organization_keyword_tags", "text_list", (ORGS,)),
        _spec("q_organization_name", "text", (ORGS,)),
        _spec("latest_funding_amount_range", "money_range", (ORGS,)),
        _spec("total_funding_range", "money_range", (ORGS,)),
        _spec("latest_funding_date_range", "date_range", (ORGS,)),
        # both
        _spec("q_organization_domains_list", "domains", _BOTH),
        _spec("organization_ids", "ids", _BOTH),
        _spec("organization_locations", "text_list", _BOTH),
        _spec("organization_num_employees_ranges", "employee_ranges", _BOTH),
        _spec("revenue_range", "money_range", _BOTH),
        _spec("currently_using_any_of_technology_uids", "text_list", _BOTH),
        _spec("q_organization_job_titles", "text_list", _BOTH),
        _spec("organization_job_locations", "text_list", _BOTH),
        _spec("organization_num_jobs_range", "int_range", _BOTH),
        _spec("organization_job_posted_at_range", "date_range", _BOTH),
    )
}
RESERVED = ("page", "per_page")
#: Filters that pin a search to particular organizations. In a per-row search
#: that maps one of them to a column, a row needs a value in one of them, or its
#: search would silently widen to every company.
ANCHORS = ("q_organization_domains_list", "organization_ids", "q_organization_name")


def names_for(kind: str) -> list[str]:
    check_kind(kind)
    return sorted(n for n, s in CATALOGUE.items() if kind in s.kinds)


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"kind must be 'people' or 'orgs', got {kind!r}")
    return kind


# -- names -------------------------------------------------------------------------------------


def _base_name(name: Any) -> tuple[str, str | None]:
    """(filter name, 'min'/'max' sub-key or None) of a name as written."""
    if not isinstance(name, str):
        raise TypeError(f"filter names are text, got {name!r}")
    text = name.strip()
    m = re.fullmatch(r"([A-Za-z_]+)\[(min|max)\]", text)
    if m:
        return m.group(1), m.group(2)
    text = text.removesuffix("[]")
    return text, None


def resolve_name(name: str, kind: str) -> str:
    """The catalogue name of a filter as written (plain or with ``[]``), or a FilterError naming the closest."""
    base, _ = _base_name(name)
    if base in RESERVED:
        raise FilterError(
            f"{base!r} is not a filter: the toolkit pages through results itself. "
            "Use max_results to say how many you want."
        )
    spec = CATALOGUE.get(base)
    if spec is not None and kind in spec.kinds:
        return base
    other = ORGS if kind == PEOPLE else PEOPLE
    where = ENDPOINTS[kind]
    if spec is not None:
        raise FilterError(
            f"{base!r} is {'a people' if other == PEOPLE else 'an organization'} search filter; "
            f"{where} does not take it "
            f"(Apollo would ignore it and return an unfiltered page). Valid filters here: {', '.join(names_for(kind))}."
        )
    close = difflib.get_close_matches(base, names_for(kind), n=1, cutoff=0.5) or difflib.get_close_matches(
        base.lower(), names_for(kind), n=1, cutoff=0.0
    )
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FilterError(
        f"unknown {kind} search filter {name!r}.{hint} Apollo ignores unknown filters and returns an unfiltered "
        f"page, so it is refused here. Valid filters: {', '.join(names_for(kind))}."
    )


# -- values ------------------------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, str) and not value.strip()


def _as_items(name: str, value: Any) -> list:
    """A scalar wrapped in a list; list-likes (list, tuple, set, Series, ndarray) as a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        return [value]
    return list(value)


def _text(name: str, item: Any) -> str | None:
    if _is_blank(item):
        return None
    if isinstance(item, bool) or not isinstance(item, str):
        raise TypeError(f"{name} takes text values, got {type(item).__name__} {item!r}")
    return " ".join(item.split())


def _text_list(name: str, value: Any) -> list[str]:
    out = {t for t in (_text(name, item) for item in _as_items(name, value)) if t}
    return sorted(out)


def _single_text(name: str, value: Any) -> str | None:
    if not isinstance(value, str) and not _is_blank(value):
        raise TypeError(f"{name} takes one text value, got {type(value).__name__} {value!r}")
    return _text(name, value)


def _flag(name: str, value: Any) -> bool | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        return value
    if hasattr(value, "dtype") and str(getattr(value, "dtype", "")) == "bool":
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1", "y", "t"):
            return True
        if text in ("false", "no", "0", "n", "f"):
            return False
    raise TypeError(f"{name} takes True or False, got {value!r}")


def _seniorities(name: str, value: Any) -> list[str]:
    out = set()
    for item in _as_items(name, value):
        text = _text(name, item)
        if not text:
            continue
        key = re.sub(r"[\s\-./]+", "_", text.lower()).strip("_")
        key = SENIORITY_ALIASES.get(key, SENIORITY_ALIASES.get(key.replace("_", ""), key))
        if key not in SENIORITIES:
            close = difflib.get_close_matches(key, SENIORITIES, n=1, cutoff=0.4)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise FilterError(
                f"{name}: {item!r} is not an Apollo seniority.{hint} Use one of {', '.join(SENIORITIES)}."
            )
        out.add(key)
    return sorted(out, key=SENIORITIES.index)


def _email_statuses(name: str, value: Any) -> list[str]:
    out = set()
    for item in _as_items(name, value):
        text = _text(name, item)
        if not text:
            continue
        key = " ".join(text.lower().replace("_", " ").split())
        if key not in EMAIL_STATUSES:
            raise FilterError(f"{name}: {item!r} is not one of {', '.join(repr(s) for s in EMAIL_STATUSES)}")
        out.add(key)
    return sorted(out)


def _int_bound(name: str, value: Any) -> int | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name}: a bound must be a whole number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(float(value))
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    if isinstance(value, (str, numbers.Real)):
        raise FilterError(f"{name}: {value!r} is not a whole number")
    raise TypeError(f"{name}: a bound must be a whole number, got {type(value).__name__} {value!r}")


_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "mm": 1_000_000, "b": 1_000_000_000, "bn": 1_000_000_000}


def _money_bound(name: str, value: Any) -> int | float | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name}: a bound must be a number, got {value!r}")
    if isinstance(value, numbers.Real):
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise FilterError(f"{name}: {value!r} is not a usable amount")
        return int(float(value)) if float(value).is_integer() else float(value)
    if not isinstance(value, str):
        raise TypeError(f"{name}: a bound must be a number, got {type(value).__name__} {value!r}")
    text = value.strip().replace(" ", "")
    m = re.fullmatch(r"(?i)(?:usd|\$)?(\d+(?:\.\d+)?)(k|mm|m|bn|b)?", text)
    if not m:
        raise FilterError(
            f"{name}: cannot read {value!r} as an amount in USD. Write a plain number (1000000), or with a "
            f"$ and K/M/B suffix ($1M); thousands separators and other currencies are not accepted."
        )
    amount = float(m.group(1)) * _SUFFIX[(m.group(2) or "").lower()]
    return int(amount) if amount.is_integer() else amount


def _date_bound(name: str, value: Any) -> str | None:
    if _is_blank(value):
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            return (
                _dt.date.fromisoformat(text[:10]).isoformat()
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ].*)?", text)
                else _bad_date(name, value)
            )
        except ValueError:
            return _bad_date(name, value)
    raise TypeError(f"{name}: a bound must be a date (YYYY-MM-DD), got {type(value).__name__} {value!r}")


def _bad_date(name: str, value: Any):
    raise FilterError(f"{name}: {value!r} is not a date in YYYY-MM-DD form")


def _split_range_text(name: str, text: str) -> tuple[str, str]:
    t = text.strip()
    if t.endswith("+"):
        return t[:-1], ""
    for sep in (",", " to ", "–", "—"):
        if sep in t:
            parts = t.split(sep)
            break
    else:
        parts = re.split(r"(?<=\S)\s*-\s*(?=\S)", t) if "-" in t else [t]
    if len(parts) != 2:
        raise FilterError(
            f"{name}: cannot read {text!r} as a range; write 'min,max' (e.g. '1,10' or '1000000,5000000'), "
            f"'min-max', or a (min, max) pair. Thousands separators are not accepted."
        )
    return parts[0], parts[1]


def _range_pair(name: str, value: Any, bound) -> tuple[Any, Any]:
    if isinstance(value, Mapping):
        extra = set(value) - {"min", "max"}
        if extra:
            raise FilterError(f"{name}: a range has only 'min' and 'max', got keys {sorted(extra)}")
        lo, hi = bound(name, value.get("min")), bound(name, value.get("max"))
    elif isinstance(value, str):
        a, b = _split_range_text(name, value)
        lo, hi = bound(name, a), bound(name, b)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = bound(name, value[0]), bound(name, value[1])
    else:
        raise TypeError(f"{name}: expected a range as (min, max), 'min,max' or {{'min': .., 'max': ..}}, got {value!r}")
    if lo is None and hi is None:
        return None, None
    if lo is not None and hi is not None and lo > hi:
        raise FilterError(f"{name}: min {lo!r} is larger than max {hi!r}")
    return lo, hi


def _range(bound):
    def parse(name: str, value: Any) -> dict | None:
        if _is_blank(value):
            return None
        lo, hi = _range_pair(name, value, bound)
        out = {}
        if lo is not None:
            out["min"] = lo
        if hi is not None:
            out["max"] = hi
        return out or None

    return parse


def _employee_ranges(name: str, value: Any) -> list[str]:
    if _is_blank(value):
        return []
    # One range given as a pair of numbers, or several as a list of pairs / strings.
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in value)
    ):
        items: list[Any] = [tuple(value)]
    elif isinstance(value, Mapping):
        items = [value]
    else:
        items = _as_items(name, value)
    out = set()
    for item in items:
        if _is_blank(item):
            continue
        lo, hi = _range_pair(name, item, _int_bound)
        if lo is None and hi is None:
            continue
        if lo is None:
            lo = 1
        if lo < 0:
            raise FilterError(f"{name}: employee counts cannot be negative, got {item!r}")
        out.add((lo, hi))
    return [f"{lo},{'' if hi is None else hi}" for lo, hi in sorted(out, key=lambda r: (r[0], r[1] or 0))]


def _domains(name: str, value: Any) -> list[str]:
    from apollo_frames.core.normalize import normalize_domain

    out = set()
    for item in _as_items(name, value):
        if _is_blank(item):
            continue
        if not isinstance(item, str):
            raise TypeError(f"{name} takes domains as text, got {type(item).__name__} {item!r}")
        domain, why = normalize_domain(item)
        if domain is None:
            raise FilterError(f"{name}: {item!r} is not a usable domain ({why or 'blank'})")
        out.add(domain)
    if len(out) > MAX_DOMAINS:
        raise FilterError(
            f"{name}: {len(out):,} domains, but Apollo takes at most {MAX_DOMAINS:,} per search. Split them, or put "
            f"them in a frame column and use df.apollo.search (one search per row)."
        )
    return sorted(out)


def _ids(name: str, value: Any) -> list[str]:
    out = set()
    for item in _as_items(name, value):
        if _is_blank(item):
            continue
        if not isinstance(item, str):
            raise TypeError(f"{name} takes Apollo ids as text, got {type(item).__name__} {item!r}")
        text = item.strip()
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", text):
            raise FilterError(f"{name}: {item!r} is not an Apollo id")
        out.add(text)
    return sorted(out)


PARSERS = {
    "text_list": _text_list,
    "text": _single_text,
    "flag": _flag,
    "seniorities": _seniorities,
    "email_statuses": _email_statuses,
    "employee_ranges": _employee_ranges,
    "money_range": _range(_money_bound),
    "int_range": _range(_int_bound),
    "date_range": _range(_date_bound),
    "domains": _domains,
    "ids": _ids,
}


def normalize_value(name: str, value: Any) -> Any:
    """The value of catalogue filter ``name`` in the shape Apollo documents; None/[] when it is blank."""
    spec = CATALOGUE[name]
    return PARSERS[spec.type](name, value)


def is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def validate_filters(kind: str, filters: Mapping[str, Any], *, allow_empty: bool = False) -> dict[str, Any]:
    """Check names and values; return the canonical query (sorted keys, no blank filters).

    A filter given with a blank value (``None``, ``""``, ``[]``) is refused:
    leaving it out would widen the search without saying so.
    """
    check_kind(kind)
    if not isinstance(filters, Mapping):
        raise TypeError(f"filters must be a mapping of name to value, got {type(filters).__name__}")
    grouped: dict[str, Any] = {}
    bounds: dict[str, dict[str, Any]] = {}
    for raw_name, value in filters.items():
        base, side = _base_name(raw_name)
        name = resolve_name(base, kind)
        if side is not None:
            if CATALOGUE[name].type not in ("money_range", "int_range", "date_range"):
                raise FilterError(f"{raw_name!r}: {name} is not a min/max range")
            bounds.setdefault(name, {})[side] = value
            continue
        if name in grouped:
            raise FilterError(f"filter {name} given twice (as {raw_name!r} too)")
        grouped[name] = value
    for name, sides in bounds.items():
        if name in grouped:
            raise FilterError(f"{name} given both whole and as {name}[min]/[max]")
        grouped[name] = sides
    query: dict[str, Any] = {}
    for name in sorted(grouped):
        value = normalize_value(name, grouped[name])
        if is_empty(value):
            if allow_empty:
                continue
            raise FilterError(
                f"{name} is blank ({grouped[name]!r}); leave it out, or give a value — "
                "a blank filter would widen the search"
            )
        query[name] = value
    return query


# -- per-row columns ---------------------------------------------------------------------------

#: Column names recognised for per-row filters, best first (besides the filter's own name).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "q_organization_domains_list": (
        "domain", "domains", "company_domain", "Company Domain Name", "organization_domain", "org_domain",
        "primary_domain", "org.primary_domain", "website", "company_website", "website_url", "org.website_url", "url",
        "company_url", "person.organization.primary_domain",
    ),
    "organization_ids": (
        "organization_id", "organization_ids", "org_id", "org.id", "company_id", "apollo_organization_id",
        "account_organization_id", "person.organization_id", "person.organization.id",
    ),
    "person_titles": ("person_titles", "title", "titles", "job_title", "job_titles", "person_title"),
    "person_seniorities": ("person_seniorities", "seniority", "seniorities"),
    "person_locations": ("person_locations", "person_location", "location"),
    "organization_locations": (
        "organization_locations", "organization_location", "company_location", "hq_location", "headquarters",
    ),
    "q_keywords": ("q_keywords", "keywords", "keyword"),
    "q_organization_name": (
        "q_organization_name", "company", "company_name", "organization_name", "org.name", "account_name",
    ),
    "q_organization_keyword_tags": ("q_organization_keyword_tags", "keyword_tags", "industry_tags"),
    "organization_num_employees_ranges": (
        "organization_num_employees_ranges", "employee_range", "employees_range", "employee_ranges", "headcount_range",
    ),
}  # fmt: skip


def column_table(kind: str) -> FieldTable:
    """The per-row column table of a ``kind`` search: organisation anchors first (domain, id, name), one group."""
    names = names_for(kind)
    order = [f for f in ANCHORS if f in names] + [f for f in names if f not in ANCHORS]
    return FieldTable(
        f"search_{kind}",
        tuple(FieldSpec(f, COLUMN_ALIASES.get(f, ()), group="organization" if f in ANCHORS else None) for f in order),
        coalesce=False,
        noun=f"a {kind} search filter",
        purpose=f"a per-row {kind} search filter",
    )


def filter_columns(
    kind: str,
    columns: Iterable[Any],
    explicit: Mapping[Any, str | None] | None = None,
    constant: Iterable[str] = (),
) -> ColumnMapping:
    """Which column feeds which filter in a per-row search (one column per filter).

    ``explicit`` ({column: filter name}, None to leave a column out) wins; the
    rest is recognised by name (``COLUMN_ALIASES`` and the filter names),
    skipping filters given as constants, and taking at most one organization
    anchor (domain, else organization id, else company name): two ANDed would
    drop every row whose id or name disagrees with its domain. Raises
    :class:`FilterError` as :func:`apollo_frames.core.columns.resolve` does.
    """
    check_kind(kind)
    constant = set(constant)
    if explicit is not None and isinstance(explicit, Mapping):
        explicit = {label: None if name is None else resolve_name(name, kind) for label, name in explicit.items()}
        for label, name in explicit.items():
            if name in constant:
                raise FilterError(f"{name} is given both as a keyword argument and by column {label!r}; choose one")
    return resolve(columns, column_table(kind), explicit, skip=constant, error=FilterError)


def resolve_filter_columns(
    kind: str,
    columns: Iterable[Any],
    explicit: Mapping[Any, str | None] | None = None,
    constant: Iterable[str] = (),
) -> dict[str, Any]:
    """{filter name: column label} for a per-row search: :func:`filter_columns` as a plain dict."""
    return filter_columns(kind, columns, explicit, constant).first
