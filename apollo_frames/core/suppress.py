"""Identifiers a team must never enrich, push or keep: how a suppression value is read (no I/O).

A suppression value is an e-mail, a domain (``acme.com`` suppresses every
address at it and the organisation itself), a LinkedIn URL or an Apollo id,
normalised exactly as inputs are (``JANE@Acme.com`` and ``jane@acme.com`` are
one value; ``https://www.acme.com/about`` is the domain ``acme.com``). A row
or an answer is suppressed when any identifier it holds, or the domain of its
e-mail, is suppressed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from apollo_frames.core.normalize import (
    is_missing,
    normalize_apollo_id,
    normalize_domain,
    normalize_email,
    normalize_linkedin_url,
)

#: the kinds of identifier a suppression list holds
KINDS = ("email", "domain", "linkedin_url", "id")

_ID = re.compile(r"^\s*[0-9a-fA-F]{24}\s*$")
_LINKEDIN = re.compile(r"linkedin\.com/", re.IGNORECASE)
#: what separates values on one line of a suppression file (or in one cell)
_SEPARATORS = re.compile(r"[,;\t\n\r]+")


def identifier(value: Any) -> tuple[str, str] | None:
    """``(kind, normalised value)`` of one suppression value, or None when it is none of :data:`KINDS`."""
    if is_missing(value):
        return None
    text = str(value)
    if "@" in text:
        found, _ = normalize_email(text)
        return ("email", found) if found else None
    if _LINKEDIN.search(text):
        found, _ = normalize_linkedin_url(text)
        return ("linkedin_url", found) if found else None
    if _ID.match(text):
        found, _ = normalize_apollo_id(text)
        return ("id", found) if found else None
    found, _ = normalize_domain(text)
    return ("domain", found) if found else None


def split_values(values: Iterable[Any]) -> Iterator[Any]:
    """Each value, with text holding several (``a@x.com; b@y.com``, a CSV line) split into its parts."""
    for value in values:
        if isinstance(value, str):
            yield from (part.strip() for part in _SEPARATORS.split(value) if part.strip())
        else:
            yield value


def identifiers(values: Iterable[Any]) -> tuple[list[tuple[str, str]], int]:
    """The distinct identifiers among ``values`` (in first-seen order) and how many values were none."""
    found: dict[tuple[str, str], None] = {}
    rejected = 0
    for value in split_values(values):
        pair = identifier(value)
        if pair is None:
            rejected += 1
        else:
            found[pair] = None
    return list(found), rejected


def record_identifiers(record: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What a prepared record (or a flattened answer, by its ``person.*`` / ``org.*`` names) is identified by:
    its e-mail and the e-mail's domain, its (organisation's) domain, LinkedIn URL and Apollo id, normalised."""
    if not record:
        return []
    out: list[tuple[str, str]] = []
    for kind, fields in _FIELDS.items():
        for field in fields:
            value = record.get(field)
            if is_missing(value):
                continue
            pair = identifier(value)
            if pair is not None and pair[0] == kind:
                out.append(pair)
                if kind == "email":
                    out.append(("domain", _email_domain(pair[1])))
    return out


def _email_domain(email: str) -> str:
    host = email.rsplit("@", 1)[1]
    found, _ = normalize_domain(host)
    return found or host


#: the record (and flattened answer) fields each kind is read from
_FIELDS = {
    "email": ("email", "person.email"),
    "domain": ("domain", "org.primary_domain", "person.organization.primary_domain"),
    "linkedin_url": ("linkedin_url", "person.linkedin_url"),
    "id": ("id", "person.id", "org.id"),
}


def answer_identifiers(answer: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What a raw Apollo answer (a person or an organization as Apollo sends it, a search record) reveals: its
    e-mail (and that e-mail's domain), LinkedIn URL, id and its (organisation's) domain or website."""
    if not isinstance(answer, Mapping):
        return []
    org = answer.get("organization")
    org = org if isinstance(org, Mapping) else {}
    # an organisation's own domain (a saved account's ``domain``, else its website), else its organisation's
    domain = (answer.get("primary_domain") or answer.get("domain") or answer.get("website_url")
              or org.get("primary_domain") or org.get("website_url"))
    return record_identifiers({"email": answer.get("email"), "linkedin_url": answer.get("linkedin_url"),
                               "id": answer.get("id"), "domain": domain})


def _mappings(value: Any, depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """Every object inside a stored value (the value itself first), depth first."""
    if depth > 64:  # (stored answers are parsed with a depth limit far below this)
        return
    if isinstance(value, Mapping):
        yield value
        items: Iterable[Any] = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return
    for item in items:
        if isinstance(item, (Mapping, list)):
            yield from _mappings(item, depth + 1)


def named_identifiers(value: Any) -> Iterator[tuple[str, str]]:
    """Every identifier any object inside a stored value reveals (a person, its organisation, each person of a
    search page or a phone payload): what erasure looks for, wherever in an answer a person sits."""
    for mapping in _mappings(value):
        yield from answer_identifiers(mapping)


def revealed(value: Any, wanted: set[tuple[str, str]] | frozenset[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """None when a stored value names none of ``wanted`` (normalised ``(kind, value)`` pairs); else the strong
    identifiers (e-mail, LinkedIn URL, id; never a domain) of each object in it that names one: what a later row
    could name the same person by."""
    found: list[tuple[str, str]] | None = None
    for mapping in _mappings(value):
        pairs = answer_identifiers(mapping)
        if any(pair in wanted for pair in pairs):
            found = (found or []) + [pair for pair in pairs if pair[0] != "domain"]
    return found
