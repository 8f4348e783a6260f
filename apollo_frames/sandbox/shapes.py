"""Answer shapes real Apollo sends besides the documented ones, and the credit meter's body.

Pure functions of their arguments; the app decides when each applies (see the
``SandboxConfig`` switches in the package docstring).
"""

from __future__ import annotations

import calendar
import json
import time

from .world import normalize_domain

REVENUE_SPELLINGS = ("annual", "organization", "mixed")
USAGE_KEY_FORMS = ("array", "path", "mixed")
#: Credit types of ``usage_stats/credit_usage_stats``, in Apollo's order.
CREDIT_TYPES = (
    "lead_credit", "direct_dial_credit", "export_credit", "conversation_credit", "ai_credit", "power_up_credit",
    "inbound_website_visitor_credit", "contact_website_visitor_credit",
)
DEFAULT_CREDIT_LIMITS = {
    "lead_credit": 100_000, "direct_dial_credit": 10_000, "export_credit": 10_000, "conversation_credit": 0,
    "ai_credit": 1_000, "power_up_credit": 0, "inbound_website_visitor_credit": 0, "contact_website_visitor_credit": 0,
}
#: How a person was identified -> the ``match_confidence`` Apollo would report.
CONFIDENCE = {"id": "high", "email": "high", "hashed_email": "high", "linkedin_url": "high",
              "name_domain": "medium", "name_organization": "low"}


def keeps_annual(org: dict) -> bool:
    """In the "mixed" spelling, about half of the organisations (by id) still carry ``annual_revenue``."""
    return int(org["id"][-2:], 16) % 2 == 0


def org_out(org: dict | None, spelling: str, full: bool):
    """An organisation as served. "annual" = the world's object (``annual_revenue``/``_printed``);
    "organization" = ``organization_revenue``/``_printed`` only; "mixed" = ``organization_revenue*`` always,
    ``annual_revenue*`` too on full enrichments of some organisations."""
    if org is None or spelling == "annual":
        return org
    out = dict(org)
    out["organization_revenue"] = org["annual_revenue"]
    out["organization_revenue_printed"] = org["annual_revenue_printed"]
    if spelling == "organization" or not (full and keeps_annual(org)):
        out.pop("annual_revenue", None)
        out.pop("annual_revenue_printed", None)
    return out


#: share of organisations (by id) whose revenue search items do not know (``organization_revenue: 0``)
UNKNOWN_REVENUE = 0.25


def light_revenue(item: dict, org: dict, spelling: str) -> dict:
    """Search items carry ``organization_revenue*`` outside the "annual" spelling (they never carry ``annual_*``)."""
    if spelling != "annual":
        unknown = share(org["id"]) < UNKNOWN_REVENUE  # live search items: 0 and no printed form for these
        item["organization_revenue"] = 0.0 if unknown else org["annual_revenue"]
        item["organization_revenue_printed"] = None if unknown else org["annual_revenue_printed"]
    return item


def stub_person(details: dict, org: dict | None) -> dict:
    """A miss answered as a stub person: no id, empty name, confidence "none", organisation from the e-mail domain.

    ``org`` is the (served) world organisation of that domain; an unknown domain gives a bare organisation
    with the domain only; no domain at all gives ``organization: null``.
    """
    domain = stub_domain(details)
    if org is None and domain:
        org = {"id": None, "name": None, "website_url": f"http://www.{domain}", "primary_domain": domain}
    return {
        "id": None, "first_name": None, "last_name": None, "name": "", "linkedin_url": None, "title": None,
        "email": None, "email_status": None, "organization_id": org.get("id") if org else None,
        "organization": org, "match_confidence": "none",
    }


def stub_domain(details: dict) -> str | None:
    """The domain a stub's organisation is filled from: the e-mail's, else ``domain``."""
    email = details.get("email")
    if isinstance(email, str) and "@" in email:
        found = normalize_domain(email)
        if found:
            return found
    return normalize_domain(details.get("domain"))


def usage_key(controller: str, action: str, form: str, index: int) -> str:
    """``["api/v1/people", "match"]`` (documented) or ``api/v1/people/match`` (seen live); "mixed" alternates."""
    if form == "path" or (form == "mixed" and index % 2 == 1):
        return f"api/v1/{controller}/{action}"
    return json.dumps([f"api/v1/{controller}", action])


def credit_cycle(now: float) -> dict:
    """The calendar month (UTC) holding ``now`` (POSIX seconds)."""
    t = time.gmtime(now)
    last = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    month = f"{t.tm_year:04d}-{t.tm_mon:02d}"
    return {"start_date": f"{month}-01", "end_date": f"{month}-{last:02d}"}


def meter_body(consumed: dict, limits: dict, cycle: dict) -> dict:
    """The body of ``usage_stats/credit_usage_stats``."""
    stats = {}
    for name in list(CREDIT_TYPES) + [k for k in limits if k not in CREDIT_TYPES]:
        limit = limits.get(name, 0)
        used = consumed.get(name, 0.0)
        used = int(used) if float(used).is_integer() else used
        stats[name] = {"limit": limit, "consumed": used, "left_over": max(0, limit - used)}
    return {"credit_usage_stats": stats, "current_credit_cycle": dict(cycle)}


#: Apollo's placeholder for an e-mail that is not unlocked
LOCKED_EMAIL = "email_not_unlocked@domain.com"


def share(record_id: str) -> float:
    """A stable number in [0, 1) from a hexadecimal record id: which records a ``share`` switch applies to."""
    try:
        return int(record_id[-6:], 16) / 16**6
    except (TypeError, ValueError):
        return 0.0

