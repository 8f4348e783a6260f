"""The match-quality rules one row at a time: the oracle the column rules of ``ops/quality_columns`` are
checked against (the product has one implementation, by column; this one is plain to read)."""

from __future__ import annotations

from collections.abc import Callable

from apollo_frames.ops.quality import (
    PERSONAL_MAIL_DOMAINS,
    company_words,
    compared_domain,
    fold_text,
    former_employer,
)


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
    flags = [name for name, check in _CHECKS if check(inputs, answer)]
    if "company_mismatch" in flags and former_employer(inputs, answer.get("person.employment_history")):
        flags = [f for f in flags if f != "company_mismatch"] + ["job_change"]
    return flags
