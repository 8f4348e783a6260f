"""Recognise which columns of a user's frame hold which Apollo input field.

Column names are compared after folding: lower-case, stripped (including a
byte-order mark), with spaces, hyphens, dots, slashes and underscores ignored,
so ``"E-mail"``, ``"e_mail"`` and ``"EMAIL "`` are the same name. The aliases
live in one table, :data:`ALIASES`.

Columns this toolkit writes itself (``person.*``, ``org.*``, e.g. ``person.id``
in a people-search result) are recognised too, but only for fields that no
ordinary column provides, so re-enriching an enriched frame keeps using the
user's own ``email`` column rather than stumbling over ``person.email``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "PEOPLE_FIELDS",
    "ORG_FIELDS",
    "ALIASES",
    "ColumnMappingError",
    "fold_name",
    "resolve_columns",
]

PEOPLE_FIELDS = ("first_name", "last_name", "name", "email", "hashed_email", "organization_name", "domain", "id", "linkedin_url")
ORG_FIELDS = ("domain",)

_DOMAIN = (
    "domain", "Company Domain", "Website", "Company Website", "URL", "Web Site", "Website URL", "Company URL",
    "primary_domain", "Organization Domain", "org_domain", "email_domain",
)  # fmt: skip

#: field -> names recognised for it (compared folded), for people and for organizations.
ALIASES: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    PEOPLE_FIELDS: {
        "first_name": ("First Name", "firstname", "first", "Given Name", "forename", "Contact First Name", "person.first_name"),
        "last_name": ("Last Name", "lastname", "last", "surname", "Family Name", "Contact Last Name", "person.last_name"),
        "name": ("Full Name", "Name", "Contact Name", "Person Name", "Contact", "person.name"),
        "email": (
            "Email", "E-mail", "e_mail", "Email Address", "E-mail Address", "Work Email", "Business Email",
            "Contact Email", "Person Email", "mail", "person.email",
        ),
        "hashed_email": ("hashed email", "email_hash", "email_md5", "email_sha256", "md5_email", "sha256_email", "md5", "sha256"),
        "organization_name": (
            "Company", "Company Name", "Organization", "Organisation", "Organization Name", "Organisation Name",
            "org_name", "Account Name", "Account", "Employer", "person.organization.name",
        ),
        "domain": _DOMAIN + ("person.organization.primary_domain",),
        "id": ("Apollo ID", "apollo_person_id", "person_id", "person.id"),
        "linkedin_url": (
            "LinkedIn", "LinkedIn URL", "linkedin_profile", "LinkedIn Profile URL", "Person Linkedin Url",
            "LinkedIn Link", "li_url", "person.linkedin_url",
        ),
    },  # fmt: skip
    ORG_FIELDS: {"domain": _DOMAIN + ("org.primary_domain",)},
}

#: A bare "id" column is usually the user's own row/CRM id, not an Apollo id:
#: it is only used when named in ``columns=``.
_NOT_BY_OWN_NAME = frozenset({"id"})
_SEPARATORS = re.compile(r"[\s\-./_]+")
_OWN_PREFIXES = ("person.", "org.")


class ColumnMappingError(ValueError):
    """The frame's columns cannot be matched to Apollo fields; the message says how to fix it."""


def fold_name(label: object) -> str | None:
    """The comparison key of a column label (None for non-string labels)."""
    if not isinstance(label, str):
        return None
    return _SEPARATORS.sub("", label.replace("\ufeff", "").strip().lower()) or None


def _alias_index(fields: tuple[str, ...]) -> dict[str, str]:
    table = ALIASES.get(tuple(fields))
    if table is None:  # a custom field list: recognise each field by its own name
        table = {}
    index = {}
    for field in fields:
        own = () if field in _NOT_BY_OWN_NAME else (field,)
        for alias in (*own, *table.get(field, ())):
            index[fold_name(alias)] = field
    return index


def _closest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    choices = list(choices)
    folded = {c.lower(): c for c in choices}
    return [folded[m] for m in difflib.get_close_matches(word.lower(), list(folded), n=n, cutoff=0.5)]


def _names(items: Iterable[object]) -> str:
    return ", ".join(repr(i) for i in items)


def resolve_columns(
    columns: Iterable[object], fields: tuple[str, ...], overrides: Mapping[object, str | None] | None = None
) -> dict[str, object]:
    """Map each Apollo field to the label of the frame column that holds it.

    ``overrides`` (``{"their column": "apollo field"}``, the ``columns=``
    argument of the enrich functions) wins over auto-detection; mapping a
    column to ``None`` excludes it from auto-detection. Returns fields in the
    order of ``fields``; raises :class:`ColumnMappingError` with a precise
    message when the mapping is invalid or ambiguous, or when nothing is found.
    """
    labels = list(columns)
    fields = tuple(fields)
    counts: dict[object, int] = {}
    for label in labels:
        try:
            counts[label] = counts.get(label, 0) + 1
        except TypeError:  # unhashable label: never matched
            pass
    str_labels = [str(label) for label in labels]

    def check_unique(label: object, field: str) -> None:
        if counts.get(label, 0) > 1:
            raise ColumnMappingError(
                f"the frame has {counts[label]} columns named {label!r}, which would be used for {field!r}; "
                f"rename or drop the duplicates (e.g. df.loc[:, ~df.columns.duplicated()])"
            )

    mapping: dict[str, object] = {}
    excluded: set[object] = set()
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ColumnMappingError(
            f"columns= takes a mapping {{'their column': 'apollo field'}}, got {type(overrides).__name__}"
        )
    for source, target in (overrides or {}).items():
        if source not in counts:
            near = _closest(str(source), str_labels)
            hint = f"closest existing columns: {_names(near)}" if near else f"the frame's columns are: {_names(labels[:20])}"
            raise ColumnMappingError(f"columns= names {source!r}, which is not a column of the frame; {hint}")
        excluded.add(source)
        if target is None:
            continue
        if target not in fields:
            near = _closest(str(target), fields, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ColumnMappingError(
                f"columns={{{source!r}: {target!r}}}: {target!r} is not an Apollo input field here; "
                f"valid fields are {', '.join(fields)}.{hint}"
            )
        if target in mapping:
            raise ColumnMappingError(
                f"columns= maps both {mapping[target]!r} and {source!r} to {target!r}; choose one"
            )
        check_unique(source, target)
        mapping[target] = source

    index = _alias_index(fields)
    found: dict[str, list[list[object]]] = {}  # field -> [plain columns, toolkit-output columns]
    seen: set[object] = set()
    for label in labels:
        key = fold_name(label)
        field = index.get(key) if key else None
        if field is None or field in mapping or label in excluded or label in seen:
            continue
        seen.add(label)
        own = label.strip().lower().startswith(_OWN_PREFIXES)  # type: ignore[union-attr]
        found.setdefault(field, [[], []])[own].append(label)
    for field, tiers in found.items():
        candidates = tiers[0] or tiers[1]
        if len(candidates) > 1:
            raise ColumnMappingError(
                f"columns {_names(candidates)} {'both' if len(candidates) == 2 else 'all'} look like {field!r}; pass columns={{{candidates[0]!r}: {field!r}}} "
                f"(the one to use) to the enrich call, or {{column: None}} to ignore a column"
            )
        check_unique(candidates[0], field)
        mapping[field] = candidates[0]

    if not mapping:
        table = ALIASES.get(fields, {})
        example = "email" if "email" in fields else fields[0]
        examples = "; ".join(f"{f} ({', '.join(repr(a) for a in table.get(f, ())[:3]) or repr(f)})" for f in fields)
        raise ColumnMappingError(
            f"No column was recognised as an Apollo input (the frame's columns: {_names(labels[:20]) or 'none'}"
            f"{' ...' if len(labels) > 20 else ''}). Recognised names (case, spaces, '-', '_', '.' ignored): "
            f"{examples}. Or name yours explicitly: columns={{'your column': {example!r}}}"
        )
    return {field: mapping[field] for field in fields if field in mapping}
