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


# -- 7. what was paid for reaches declared columns -------------------------------------------------------


def _leaves(value) -> int:
    """Scalar values in an answer, counted inside objects and lists (an empty one counts as one)."""
    if isinstance(value, dict):
        return sum(map(_leaves, value.values())) or 1
    if isinstance(value, list):
        return sum(map(_leaves, value)) or 1
    return 1


def _recorded() -> list[tuple[str, str, dict]]:
    """(file, kind, record) for every person and organization in the recordings (stub misses left out)."""
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        if path.name == "manifest.json" or not isinstance(data, dict):
            continue
        people = [m for m in data.get("matches") or [] if m] + [data.get("person")]
        orgs = [*(data.get("organizations") or []), *(data.get("accounts") or []), data.get("organization")]
        people, orgs = [p for p in people if isinstance(p, dict)], [o for o in orgs if isinstance(o, dict)]
        out += [(path.name, "person", p) for p in people if p.get("id")]
        out += [(path.name, "org", o) for o in orgs]
    return out


def test_at_most_15_percent_of_an_answers_leaves_are_only_in_extra():
    records = _recorded()
    assert {"people_match_2025_fields.json", "mixed_companies_search_2025_fields.json",
            "organizations_enrich_organization_revenue.json"} <= {name for name, _, _ in records}
    shares = {}
    for name, kind, record in records:
        if kind == "org" and "primary_domain" not in record:
            record = {**record, "_source": "account", "account_id": record["id"], "id": record.get("organization_id")}
        extra = sc.flatten([record], kind).column(f"{kind}.extra")[0].as_py()
        shares[(name, record.get("id"))] = (_leaves(json.loads(extra)) if extra else 0) / _leaves(record)
    worst = max(shares, key=shares.__getitem__)
    assert shares[worst] <= 0.15, (worst, shares[worst])


def test_the_2025_fields_are_typed_columns_with_their_values():
    person = json.loads((FIXTURES / "people_match_2025_fields.json").read_text())["person"]
    org = person["organization"]
    row = sc.flatten_people([person]).to_pylist()[0]
    assert row["person.email_domain_catchall"] is True and row["person.show_intent"] is True
    assert row["person.is_likely_to_engage"] is True and row["person.intent_strength"] is None
    assert "person.contact_id" in row and "person.account_id" in row
    p = "person.organization."
    assert row[p + "organization_headcount_six_month_growth"] == 0.125
    assert row[p + "organization_headcount_twenty_four_month_growth"] == pytest.approx(-0.372, abs=1e-3)
    assert row[p + "market_cap"] == "2.5B" and row[p + "publicly_traded_symbol"] == "HBVI"
    assert json.loads(row[p + "technology_names"]) == org["technology_names"]
    assert json.loads(row[p + "funding_events"]) == org["funding_events"]
    assert row[p + "total_funding"] == float(org["total_funding"]) and row[p + "total_funding_printed"] == "12M"
    assert row[p + "street_address"] == org["street_address"] and row[p + "postal_code"] == org["postal_code"]
    assert row[p + "primary_phone"] is None  # primary_phone: {} is null, not an error
    orgs = json.loads((FIXTURES / "organizations_enrich_organization_revenue.json").read_text())["organization"]
    o = sc.flatten_orgs([orgs]).to_pylist()[0]
    for key in ("technology_names", "current_technologies", "industries", "keywords", "funding_events"):
        assert json.loads(o[f"org.{key}"]) == orgs[key], key
    for key in ("short_description", "total_funding_printed", "latest_funding_stage", "latest_funding_round_date",
                "phone", "street_address", "postal_code", "state", "publicly_traded_symbol"):
        assert o[f"org.{key}"] == orgs[key], key
    assert o["org.primary_phone.number"] == orgs["primary_phone"]["number"]
    types = {f.name: f.type for f in sc.ORG_SCHEMA}
    assert types["org.organization_headcount_twelve_month_growth"] == types["org.total_funding"] == sc.FLOAT
    assert types["org.show_intent"] == sc.BOOL and types["org.market_cap"] == sc.STR


def test_the_schema_is_the_same_whatever_the_records_hold(tmp_path):
    """Parquet files of runs over different data concatenate: the declared schema does not depend on the data."""
    sb = small()
    with sb.client(cache_dir=tmp_path / "c") as c:
        one = af.enrich_orgs(pd.DataFrame({"domain": [sb.world.orgs[0]["primary_domain"]]}), client=c, progress=False)
        two = af.enrich_orgs(pd.DataFrame({"domain": ["nobody-here.example"]}), client=c, progress=False)
    for i, frame in enumerate((one, two)):
        frame.to_parquet(tmp_path / f"{i}.parquet")
    both = pd.concat([pd.read_parquet(tmp_path / f"{i}.parquet") for i in range(2)])
    assert list(both.dtypes) == list(one.dtypes) == list(two.dtypes)
    assert both["org.organization_headcount_six_month_growth"].dtype == "Float64"
