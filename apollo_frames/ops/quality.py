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
  people change jobs; it never makes a row a conflict);
* ``job_change``: in place of ``company_mismatch`` when the answer's own
  ``employment_history`` lists the input company as a past employer: the
  match is right, the person has moved (informational, like ``stale_title``;
  the row's ``apollo_error`` names the old and the new employer). It reads the
  answer already paid for: no extra request, no extra credit.

``on_conflict="reject"`` turns a matched row with any flag but ``stale_title``
or ``job_change`` into status ``conflict`` (the credit was spent; the answer
stays in the store).
:func:`match_report` summarises a result: match rate by identifier kind,
reasons for misses and invalid rows, flag counts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import pandas as pd

from apollo_frames.core import jsontext
from apollo_frames.core.columns import fold
from apollo_frames.core.errors import InputError
from apollo_frames.core.reasons import reason

FLAGS = ("email_domain_mismatch", "company_mismatch", "name_mismatch", "stale_title", "job_change")
#: flags that make a row a ``conflict`` under ``on_conflict="reject"``
CONFLICT_FLAGS = frozenset(FLAGS) - {"stale_title", "job_change"}
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


def _history(value: Any) -> list:
    """Apollo's ``employment_history``: a list, or its JSON text in a flattened frame; [] for anything else."""
    if isinstance(value, str):
        try:
            value = jsontext.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def former_employer(inputs: dict, history: Any) -> str | None:
    """The past employer in ``history`` that the input company names (by its words, or a domain whose first
    label is the employer's name or one of its words), else None. Current positions never count."""
    given = set(company_words(inputs.get("organization_name")))
    label = compared_domain(inputs.get("domain")).split(".")[0]
    for entry in _history(history):
        if not isinstance(entry, dict) or entry.get("current") is True:
            continue
        words = company_words(entry.get("organization_name"))
        if not words:
            continue
        if given and (given <= set(words) or set(words) <= given):
            return str(entry.get("organization_name"))
        if label and (label in words or label == "".join(words)):
            return str(entry.get("organization_name"))
    return None


def job_change_reason(former: str, now: Any) -> str:
    """A job-change row's ``apollo_error``: where the input placed the person, and where the answer does."""
    return reason("job_change", former=former, current="no current employer" if is_blank(now) else f"now at {now}")


_TITLE_NAMES = {fold(n) for n in ("title", "job title", "jobtitle", "position", "contact title", "person title")}


def title_column(frame: pd.DataFrame) -> Any:
    """The frame's own job-title column, if any (never one this toolkit wrote)."""
    for name in frame.columns:
        if isinstance(name, str) and not name.startswith(("person.", "org.")) and fold(name) in _TITLE_NAMES:
            return name
    return None


def check_on_conflict(on_conflict: Any) -> str:
    if on_conflict not in ON_CONFLICT:
        raise InputError(f"on_conflict must be one of {ON_CONFLICT}, got {on_conflict!r}")
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
