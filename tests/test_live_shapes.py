"""Today's Apollo shapes (issue 21): placeholder e-mails, fractional charges, saved accounts without a primary
domain, unknown revenue, typed columns for the 2025-2026 fields; each against the sandbox with its switch on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core import schema as sc
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox, SandboxConfig

FIXTURES = Path(__file__).parent / "fixtures" / "apollo"
LOCKED = "email_not_unlocked@domain.com"


def small(**kw) -> Sandbox:
    kw.setdefault("n_orgs", 120)
    kw.setdefault("seed", 21)
    return Sandbox(SandboxConfig(**kw), clock=FakeClock())


def _sent_details(sb: Sandbox) -> list[dict]:
    """Every detail the sandbox was asked to identify (the request bodies' identifiers)."""
    seen: list[dict] = []
    identify = sb.identify

    def spy(d):
        seen.append(dict(d) if isinstance(d, dict) else d)
        return identify(d)

    sb.identify = spy  # type: ignore[method-assign]
    return seen


def _holds_placeholder(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].astype("string").str.contains("email_not_unlocked@", regex=False)
            .fillna(False).any()]


# -- 2. placeholder e-mails ----------------------------------------------------------------------------


def test_a_locked_email_is_never_a_column_an_identifier_or_a_flag(tmp_path):
    sb = small(locked_emails=0.5)
    people = [p for p in sb.world.people if p["email"]][:40]
    frame = pd.DataFrame({"first_name": [p["first_name"] for p in people],
                          "last_name": [p["last_name"] for p in people],
                          "domain": [p["organization"]["primary_domain"] for p in people]})
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = af.enrich_people(frame, client=c, progress=False)
        locked = out["apollo_status"].eq("matched") & out["person.email"].isna()
        assert locked.sum() >= 10  # the sandbox answered those with the placeholder
        assert _holds_placeholder(out) == []
        assert not out["apollo_match_flags"].fillna("").str.contains("email_domain_mismatch").any()
        # enriched again from its own output (person.email as the e-mail column, with a placeholder from an old
        # export in three rows): no request carries it, and three people are not collapsed into one request
        again = out[["person.email", "person.first_name", "person.last_name"]].copy()
        again.columns = ["email", "first_name", "last_name"]
        again["domain"] = frame["domain"]
        again.loc[locked[locked].index[:3], "email"] = LOCKED
        details = _sent_details(sb)
        second = af.enrich_people(again, client=c, progress=False)
    assert all(LOCKED not in json.dumps(d) for d in details)
    assert _holds_placeholder(second) == ["email"]  # the input column as given; no column the run wrote
    assert not second["apollo_match_flags"].fillna("").str.contains("email_domain_mismatch").any()
    assert (second["apollo_status"] == "matched").sum() == (out["apollo_status"] == "matched").sum()


def test_the_placeholder_is_not_an_address():
    from apollo_frames.core import normalize as nz

    for value in (LOCKED, " Email_Not_Unlocked@Domain.com ", "email_not_unlocked@acme.example"):
        assert nz.normalize_email(value)[0] is None and nz.is_locked_email(value)
        assert nz.normalize_fast([value], "email") == ([None], [False])  # left to the normaliser, which refuses it
    table = sc.flatten_people([{"id": "p1", "email": LOCKED, "email_status": "verified"}])
    row = table.to_pylist()[0]
    assert row["person.email"] is None and row["person.extra"] is None and row["person.email_status"] == "verified"


# -- 3. fractional charges -----------------------------------------------------------------------------


def test_fractional_charges_are_believed_and_the_ledger_is_exact(tmp_path):
    sb = small(locked_emails=0.4, fractional_credits=0.01)
    people = [p for p in sb.world.people if p["email"]][:60]
    frame = pd.DataFrame({"name": [p["name"] for p in people],
                          "domain": [p["organization"]["primary_domain"] for p in people]})
    with sb.client(cache_dir=tmp_path / "c") as c:
        with pytest.warns(UserWarning, match="skipped"):
            out = af.enrich_people(frame, client=c, progress=False, max_credits=30)
        ledger = c.ledger.frame()
    assert sb.credits_consumed != int(sb.credits_consumed)  # fractions were charged
    assert abs(ledger["credits"].sum() - sb.credits_consumed) <= 1e-9
    assert not ledger["unverified"].any()
    assert abs(out.attrs["apollo"]["credits_consumed"] - sb.credits_consumed) <= 1e-9 and sb.credits_consumed <= 30


# -- 4, 5. saved accounts and unknown revenue ----------------------------------------------------------


def test_saved_accounts_keep_their_domain_once(tmp_path):
    sb = small()
    orgs = sb.world.orgs[:6]
    for org in orgs[:3]:
        sb.store.create_account({"name": org["name"], "domain": org["primary_domain"]})
    domains = [o["primary_domain"] for o in orgs]
    with sb.client(cache_dir=tmp_path / "c") as c:
        raw = c.post("mixed_companies/search", json={"q_organization_domains_list": domains}).data
        found = af.search_orgs(q_organization_domains_list=domains, client=c, progress=False)
    assert raw["accounts"] and all(a["primary_domain"] is None and a["domain"] for a in raw["accounts"])
    assert sorted(found["org.primary_domain"]) == sorted(domains)  # every company's domain, once
    assert (found["org.source"] == "account").sum() == 3


def test_zero_revenue_without_a_printed_form_is_unknown(tmp_path):
    sb = small(revenue_spelling="organization")
    with sb.client(cache_dir=tmp_path / "c") as c:
        everyone = {"organization_num_employees_ranges": ["1,10000000"]}
        raw = c.post("mixed_companies/search", json={"per_page": 100, **everyone}).data["organizations"]
        found = af.search_orgs(**everyone, max_results=100, client=c, progress=False)
    unknown = {o["id"] for o in raw if o["organization_revenue"] == 0 and o["organization_revenue_printed"] is None}
    assert unknown and len(unknown) < len(raw)
    by_id = found.set_index("org.id")["org.annual_revenue"]
    assert by_id[list(unknown)].isna().all()
    assert by_id.drop(list(unknown)).notna().all()
    rows = sc.flatten_orgs([{"organization_revenue": 0, "organization_revenue_printed": None},
                            {"annual_revenue": 0.0, "annual_revenue_printed": "0"},
                            {"organization_revenue": 12.5}]).column("org.annual_revenue").to_pylist()
    assert rows == [None, 0.0, 12.5]
