"""Match-quality flags: does each answer agree with the row it came from?

Apollo may pick a namesake when several people match, and a wrong match
costs the same credit. After a run every matched row is compared with its
input and ``apollo_match_flags`` says what disagrees (comma-separated, empty
when consistent, null when nothing matched):

* ``email_domain_mismatch``: the input e-mail's domain is neither the answer's
  organisation domain (or a subdomain of it) nor a known personal-mail domain
  (:data:`PERSONAL_MAIL_DOMAINS`);
* ``company_mismatch``: the input company name or domain differs from the
  answer's organisation, after folding case and accents and dropping legal
  suffixes (:data:`LEGAL_SUFFIXES`); a name whose words are a subset of the
  other's ("Northwind" vs "Northwind Analytics GmbH") is consistent;
* ``name_mismatch``: the input first/last name differ beyond accents and case;
* ``stale_title``: the input title differs from the answer's (informational:
  people change jobs; it never makes a row a conflict).

``on_conflict="reject"`` turns a matched row with any flag but ``stale_title``
into status ``conflict`` (the credit was spent; the answer stays in the store).
:func:`match_report` summarises a result: match rate by identifier kind,
reasons for misses and invalid rows, flag counts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pandas as pd

from apollo_frames.core.columns import fold

FLAGS = ("email_domain_mismatch", "company_mismatch", "name_mismatch", "stale_title")
#: flags that make a row a ``conflict`` under ``on_conflict="reject"``
CONFLICT_FLAGS = frozenset(FLAGS) - {"stale_title"}
ON_CONFLICT = ("flag", "reject")
FLAG_COLUMN = "apollo_match_flags"

#: Free-mail providers: an e-mail there says nothing about the employer. Matched on the
#: registrable part (``mail.yahoo.co.uk`` ends with ``yahoo.co.uk``). ``mailbox.example``
#: is the offline sandbox's fictional personal-mail domain.
PERSONAL_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "ymail.com",
    "hotmail.com", "hotmail.co.uk", "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com",
    "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de",
    "mail.ru", "yandex.ru", "yandex.com", "qq.com", "163.com", "126.com", "zoho.com", "fastmail.com",
    "hey.com", "tutanota.com", "orange.fr", "free.fr", "laposte.net", "t-online.de", "libero.it",
    "mailbox.example",
})  # fmt: skip
#: Legal-form words dropped before comparing company names (after folding and removing dots).
LEGAL_SUFFIXES = frozenset({
    "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "plc", "corp", "corporation", "co", "company",
    "gmbh", "ag", "kg", "ug", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "oy", "ab", "as", "aps", "kk",
    "pty", "pte", "sl", "se", "the",
})  # fmt: skip


def fold_text(value: Any) -> str:
    """Lower case, accents removed, punctuation as spaces, single spaces: ``"José-Luis"`` -> ``"jose luis"``."""
    if is_blank(value):
        return ""
    text = unicodedata.normalize("NFKD", str(value).replace("ł", "l").replace("Ł", "L").replace("ø", "o"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def company_words(value: Any) -> tuple[str, ...]:
    """A company name's words without legal suffixes (``"S.A."`` -> ``sa`` -> dropped)."""
    text = fold_text(None if is_blank(value) else re.sub(r"(?<=\b\w)\.(?=\w\b)", "", str(value)))
    return tuple(w for w in text.split() if w not in LEGAL_SUFFIXES)


def compared_domain(value: Any) -> str:
    """A domain, URL or e-mail -> its host, lower case, without scheme or ``www.``."""
    if is_blank(value):
        return ""
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", str(value).strip().casefold())
    text = text.split("/")[0].split("@")[-1].strip(".")
    return text.removeprefix("www.")


def is_blank(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) or value == ""


def _same_domain(a: str, b: str) -> bool:
    return bool(a and b) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def _personal(domain: str) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in PERSONAL_MAIL_DOMAINS)


def _org_domains(answer: dict) -> list[str]:
    return [d for d in (compared_domain(answer.get("person.organization.primary_domain")),
                        compared_domain(answer.get("person.organization.website_url"))) if d]


def _email_flag(inputs: dict, answer: dict) -> bool:
    email = inputs.get("email")
    if not email or "@" not in str(email):
        return False
    domain = compared_domain(str(email).rsplit("@", 1)[1])
    org = _org_domains(answer)
    if _personal(domain) or not org:
        return False
    return not any(_same_domain(domain, d) for d in org)


def _company_flag(inputs: dict, answer: dict) -> bool:
    org_words = company_words(answer.get("person.organization.name"))
    given = company_words(inputs.get("organization_name"))
    if given and org_words and not (set(given) <= set(org_words) or set(org_words) <= set(given)):
        return True
    domain = compared_domain(inputs.get("domain"))
    org = _org_domains(answer)
    return bool(domain and org and not any(_same_domain(domain, d) for d in org))


def _name_flag(inputs: dict, answer: dict) -> bool:
    first, last = fold_text(inputs.get("first_name")), fold_text(inputs.get("last_name"))
    if not (first or last) and inputs.get("name"):
        parts = fold_text(inputs.get("name")).split()
        first, last = (parts[0], parts[-1]) if len(parts) > 1 else ("", "")
    got_first, got_last = fold_text(answer.get("person.first_name")), fold_text(answer.get("person.last_name"))
    return bool((first and got_first and first != got_first) or (last and got_last and last != got_last))


def _title_flag(inputs: dict, answer: dict) -> bool:
    title, got = fold_text(inputs.get("title")), fold_text(answer.get("person.title"))
    return bool(title and got and title != got)


_CHECKS: tuple[tuple[str, Callable[[dict, dict], bool]], ...] = (
    ("email_domain_mismatch", _email_flag),
    ("company_mismatch", _company_flag),
    ("name_mismatch", _name_flag),
    ("stale_title", _title_flag),
)


def match_flags(inputs: dict, answer: dict) -> list[str]:
    """The flags of one matched row: ``inputs`` (email, first_name, last_name, name, organization_name,
    domain, title) against ``answer`` (flattened ``person.*`` values)."""
    return [name for name, check in _CHECKS if check(inputs, answer)]


_TITLE_NAMES = {fold(n) for n in ("title", "job title", "jobtitle", "position", "contact title", "person title")}


def title_column(frame: pd.DataFrame) -> Any:
    """The frame's own job-title column, if any (never one this toolkit wrote)."""
    for name in frame.columns:
        if isinstance(name, str) and not name.startswith(("person.", "org.")) and fold(name) in _TITLE_NAMES:
            return name
    return None


def check_on_conflict(on_conflict: Any) -> str:
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
    return on_conflict


#: identifier kinds, strongest first, as the sandbox and Apollo try them
KINDS = ("id", "email", "hashed_email", "linkedin", "name + domain", "name + company", "none")


_STRONG_KINDS = (("id", "id"), ("email", "email"), ("hashed_email", "hashed_email"), ("linkedin_url", "linkedin"))


def identifier_kind(record: dict | None) -> str:
    """Which identifier a prepared record is matched by (its strongest)."""
    if not record:
        return "none"
    for field, kind in _STRONG_KINDS:
        if record.get(field):
            return kind
    if record.get("domain"):
        return "name + domain"
    return "name + company" if record.get("organization_name") else "none"
