"""Real Apollo response shapes (issue 13), each against the sandbox with its switch on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import respx

import apollo_frames as af
from apollo_frames.core import schema as sc
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.paginate import read_page
from apollo_frames.ops import phones
from apollo_frames.sandbox import Sandbox, SandboxConfig

ALL_SIZES = {"organization_num_employees_ranges": ["1,10000000"]}
FIXTURES = Path(__file__).parent / "fixtures" / "apollo"
BASE = "https://apollo.test/api/v1"
KEY = "test-key-0123456789-SECRET"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def small(**kw) -> Sandbox:
    kw.setdefault("n_orgs", 300)
    kw.setdefault("seed", 11)
    return Sandbox(SandboxConfig(**kw), clock=FakeClock())


@pytest.fixture
def make_client(tmp_path):
    """A client on a given sandbox (one cache per test), closed at the end."""
    opened = []

    def make(sb: Sandbox, **kw):
        kw.setdefault("retry_backoff", (0.001, 0.01))
        client = sb.client(cache_dir=tmp_path / "cache", **kw)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def save_account(sb: Sandbox, org: dict, name: str | None = None) -> dict:
    """A company saved in the team's CRM: company search then lists it in ``accounts``."""
    return sb.store.create_account({"name": name or org["name"], "domain": org["primary_domain"]})


# -- 1. company search: accounts[] and organizations[] -------------------------------------------------


def test_search_whose_only_hit_is_a_saved_account_returns_it_and_pays(make_client):
    sb = small()
    org = sb.world.orgs[4]
    account = save_account(sb, org, name="Our " + org["name"])
    client = make_client(sb)
    out = af.search_orgs(client=client, progress=False, q_organization_domains_list=[org["primary_domain"]])
    assert len(out) == 1
    row = out.iloc[0]
    assert row["org.source"] == "account" and row["org.account_id"] == account["id"] and row["org.id"] == org["id"]
    assert row["org.name"] == "Our " + org["name"] and row["org.primary_domain"] == org["primary_domain"]
    assert out.attrs["apollo"]["credits_consumed"] == 1 == sb.credits_consumed == client.ledger.total_credits()


def test_search_page_with_accounts_and_organizations_goes_on(make_client):
    sb = small()
    saved = {o["id"]: save_account(sb, o)["id"] for o in sb.world.orgs[10:15]}  # 5 accounts on page 1
    client = make_client(sb)
    out = af.search_orgs(max_results=200, client=client, progress=False, **ALL_SIZES)
    assert len(out) == 200 and out.attrs["apollo"]["pages"] == 2
    assert sb.count(path="mixed_companies/search") == 2
    assert out.attrs["apollo"]["credits_consumed"] == 2 == sb.credits_consumed
    assert out.attrs["apollo"]["total_entries"] == len(sb.world.orgs)
    accounts = out[out["org.source"] == "account"]
    assert dict(zip(accounts["org.id"], accounts["org.account_id"], strict=True)) == saved
    assert (out["org.source"] == "organization").sum() == 195 and out["org.account_id"].isna().sum() == 195
    # every company once: the saved ones by their organisation id too
    assert set(out["org.id"]) == {o["id"] for o in sb.world.orgs[:200]}
    # the cached pages read the same way
    again = af.search_orgs(max_results=200, client=client, progress=False, **ALL_SIZES)
    assert again.attrs["apollo"]["cache_hits"] == 2 and sb.count(path="mixed_companies/search") == 2
    pd.testing.assert_frame_equal(again, out)


def test_search_page_of_only_accounts_is_charged_and_recorded(make_client):
    sb = small()
    orgs = sb.world.orgs[:3]
    for org in orgs:
        save_account(sb, org)
    client = make_client(sb)
    out = af.search_orgs(client=client, progress=False, q_organization_domains_list=[o["primary_domain"] for o in orgs])
    assert list(out["org.source"]) == ["account"] * 3
    assert out.attrs["apollo"]["credits_consumed"] == 1 == sb.credits_consumed == client.ledger.total_credits()
    assert list(client.ledger.frame()["records_matched"]) == [1]


def test_search_by_row_reads_accounts_too(make_client):
    sb = small()
    org = sb.world.orgs[7]
    account = save_account(sb, org)
    client = make_client(sb)
    frame = pd.DataFrame({"domain": [org["primary_domain"], sb.world.orgs[8]["primary_domain"]]})
    out = frame.apollo.search(kind="orgs", client=client, progress=False)
    assert list(out["org.source"]) == ["account", "organization"]
    assert out["org.account_id"].iloc[0] == account["id"] and out.attrs["apollo"]["credits_consumed"] == 2


# -- 2./3. bulk_match: misses left out, stub misses, match_confidence -------------------------------------


def people_frame(sb: Sandbox) -> tuple[pd.DataFrame, list[str]]:
    """Rows that find people by every kind of identifier, with misses between them; the expected statuses."""
    people = [p for p in sb.world.people if p["email"] and p["linkedin_url"]][:6]
    hashed = hashlib.sha256(people[2]["email"].lower().encode()).hexdigest()
    rows = [
        {"email": people[0]["email"]},
        {"email": "ghost.one@nowhere.example"},
        {"person_id": people[1]["id"]},
        {"hashed_email": hashed},
        {"first_name": "No", "last_name": "Body", "domain": people[0]["organization"]["primary_domain"]},
        {"linkedin_url": people[3]["linkedin_url"]},
        {"first_name": people[4]["first_name"].upper(), "last_name": people[4]["last_name"],
         "domain": people[4]["organization"]["primary_domain"]},
        {"name": people[5]["name"], "organization_name": people[5]["organization"]["name"]},
        {"email": "ghost.two@nowhere.example"},
        {"person_id": "0" * 24},
        {"email": people[0]["email"].upper()},  # the same person as row 0: sent once
    ]
    expected = ["matched", "no_match", "matched", "matched", "no_match", "matched", "matched", "matched",
                "no_match", "no_match", "matched"]
    return pd.DataFrame(rows), expected


def test_omitted_misses_give_exact_statuses_credits_and_a_free_rerun(make_client):
    sb = small(omit_bulk_misses=True)
    client = make_client(sb)
    frame, expected = people_frame(sb)
    out = frame.apollo.enrich_people(client=client, progress=False)
    assert list(out["apollo_status"]) == expected
    assert out["apollo_error"].isna().all()
    assert out.attrs["apollo"]["unattributed"] == []
    assert out["person.email"].iloc[0] == out["person.email"].iloc[10] == frame["email"].iloc[0]
    assert out["person.id"].iloc[2] == frame["person_id"].iloc[2]
    assert sb.credits_consumed == 6 == out.attrs["apollo"]["credits_consumed"] == client.ledger.total_credits()
    assert list(client.ledger.frame()["records_matched"]) == [6]
    requests = len(sb.requests)
    again = frame.apollo.enrich_people(client=client, progress=False)
    assert len(sb.requests) == requests and again.attrs["apollo"]["credits_consumed"] == 0
    assert list(again["apollo_status"]) == expected


def bulk_match_answer(n_requested: int, matches: list, credits: float) -> dict:
    return {"status": "success", "total_requested_enrichments": n_requested, "unique_enriched_records": len(matches),
            "missing_records": n_requested - len(matches), "credits_consumed": credits, "matches": matches}


def test_omitted_misses_that_cannot_be_aligned_are_kept_and_reported(tmp_path):
    recorded = fixture("people_bulk_match_omitted_misses.json")
    dana, tomas = recorded["matches"]
    answer = bulk_match_answer(3, [dana, tomas], 2)
    frame = pd.DataFrame({"email": ["dana.w@harborview-instruments.example", tomas["email"], "nobody@else.example"]})
    with respx.mock(base_url=BASE) as mock:
        route = mock.post("/people/bulk_match").respond(200, json=answer)
        with af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path / "c", clock=FakeClock()) as client:
            with pytest.warns(UserWarning, match="could not be matched to a row"):
                out = frame.apollo.enrich_people(client=client, progress=False)
            assert list(out["apollo_status"]) == ["error", "matched", "error"]
            assert out["person.id"].iloc[1] == tomas["id"]
            assert "left its misses out" in out["apollo_error"].iloc[0]
            assert "may be one of them" in out["apollo_error"].iloc[2]
            unattributed = out.attrs["apollo"]["unattributed"]
            assert [u["id"] for u in unattributed] == [dana["id"]] and unattributed[0]["credits"] == 1.0
            assert [r["email"] for r in unattributed[0]["requested"]] == [frame["email"][0], frame["email"][2]]
            assert client.ledger.total_credits() == 2 == out.attrs["apollo"]["credits_consumed"]
            # Dana is cached under her own e-mail and id: asking for her costs nothing
            known = pd.DataFrame({"email": [dana["email"]], "id": [None]})
            again = known.apollo.enrich_people(client=client, progress=False)
            assert list(again["apollo_status"]) == ["matched"] and route.call_count == 1
            # the rows left unsure are asked again
            frame.apollo.enrich_people(client=client, progress=False)
            assert route.call_count == 2
            assert len(json.loads(route.calls[-1].request.content)["details"]) == 2


def test_stub_misses_are_no_match_and_free(make_client):
    sb = small(stub_misses=True)
    client = make_client(sb)
    hit = next(p for p in sb.world.people if p["email"])
    domain = sb.world.orgs[3]["primary_domain"]
    frame = pd.DataFrame({"email": [hit["email"], f"nobody.here@{domain}", "who@unknown-co.example"]})
    out = frame.apollo.enrich_people(client=client, progress=False)
    assert list(out["apollo_status"]) == ["matched", "no_match", "no_match"]
    assert out["person.organization.id"].isna().tolist() == [False, True, True]  # a stub's organisation is not kept
    assert sb.credits_consumed == 1 == client.ledger.total_credits()
    assert list(client.ledger.frame()["records_matched"]) == [1]


def test_match_confidence_is_a_column(make_client):
    sb = small(match_confidence_always=True)
    client = make_client(sb)
    p = next(p for p in sb.world.people if p["email"])
    frame = pd.DataFrame({"email": [p["email"], None], "first_name": [None, p["first_name"]],
                          "last_name": [None, p["last_name"]], "domain": [None, p["organization"]["primary_domain"]]})
    out = frame.apollo.enrich_people(client=client, progress=False)
    assert list(out["apollo_status"]) == ["matched", "matched"]
    assert list(out["person.match_confidence"]) == ["high", "medium"]
    assert str(out["person.match_confidence"].dtype) == "string"
    assert out["person.extra"].isna().all() or not out["person.extra"].str.contains("match_confidence").any()


def test_people_parse_reads_stubs_and_confidence_from_recordings():
    from apollo_frames.ops.people import _parse

    recorded = fixture("people_bulk_match_match_confidence.json")
    parsed = _parse([{"email": "dana.whitlock@harborview-instruments.example"}, {"email": "x@y.example"}], recorded)
    assert parsed.results[0]["match_confidence"] == "high" and parsed.results[1] is None
    assert parsed.credits == 1 and not parsed.errors and not parsed.unattributed
    stub = fixture("people_match_stub_miss.json")["person"]
    assert _parse([{"email": "a@harborview-instruments.example"}], {"matches": [stub]}).results == [None]
    nulls = fixture("people_bulk_match_null_misses.json")
    details = [{"email": m["email"]} if m else {"email": f"miss{i}@x.example"} for i, m in enumerate(nulls["matches"])]
    parsed = _parse(details, nulls)
    assert [r is not None for r in parsed.results] == [m is not None for m in nulls["matches"]]


# -- 4. revenue spellings ------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["annual", "organization", "mixed"])
def test_revenue_is_filled_from_either_spelling(make_client, spelling):
    sb = small(revenue_spelling=spelling)
    client = make_client(sb)
    orgs = sb.world.orgs[:12]
    frame = pd.DataFrame({"domain": [o["primary_domain"] for o in orgs]})
    out = frame.apollo.enrich_orgs(client=client, progress=False)
    assert list(out["org.annual_revenue"]) == [o["annual_revenue"] for o in orgs]
    assert list(out["org.annual_revenue_printed"]) == [o["annual_revenue_printed"] for o in orgs]
    people = [next(p for p in sb.world.people if p["email"] and p["organization"] is o) for o in orgs[:3]]
    enriched = pd.DataFrame({"email": [p["email"] for p in people]}).apollo.enrich_people(client=client, progress=False)
    assert list(enriched["person.organization.annual_revenue"]) == [o["annual_revenue"] for o in orgs[:3]]
    if spelling != "annual":  # search items carry revenue only in Apollo's own spelling
        found = af.search_orgs(client=client, progress=False, max_results=5, **ALL_SIZES)
        assert list(found["org.annual_revenue"]) == [o["annual_revenue"] for o in sb.world.orgs[:5]]


# -- 5. organisations answered under a rewritten domain ---------------------------------------------------


def test_the_only_answer_left_is_the_only_domain_lefts(make_client):
    base = small()
    real, other = base.world.orgs[0], base.world.orgs[1]
    sb = small(rewrite_domains={"fb-alias.example": real["primary_domain"]})
    client = make_client(sb)
    frame = pd.DataFrame({"domain": ["https://www.fb-alias.example/", other["primary_domain"]]})
    out = frame.apollo.enrich_orgs(client=client, progress=False)
    assert list(out["apollo_status"]) == ["matched", "matched"]
    assert list(out["org.id"]) == [real["id"], other["id"]]
    assert out.attrs["apollo"]["unattributed"] == [] and sb.credits_consumed == 2 == client.ledger.total_credits()
    calls = len(sb.requests)
    frame.apollo.enrich_orgs(client=client, progress=False)
    pd.DataFrame({"domain": [real["primary_domain"]]}).apollo.enrich_orgs(client=client, progress=False)
    assert len(sb.requests) == calls  # cached under the requested domain, and under its own


def test_an_answer_that_cannot_be_attributed_is_reported_with_its_credits(make_client):
    base = small()
    real, other = base.world.orgs[0], base.world.orgs[1]
    sb = small(rewrite_domains={"fb-alias.example": real["primary_domain"]})
    client = make_client(sb)
    frame = pd.DataFrame({"domain": ["fb-alias.example", other["primary_domain"], "nobody-here.example"]})
    with pytest.warns(UserWarning, match="could not be matched to a row"):
        out = frame.apollo.enrich_orgs(client=client, progress=False)
    assert list(out["apollo_status"]) == ["error", "matched", "error"]
    assert real["primary_domain"] in out["apollo_error"].iloc[0]
    assert out.attrs["apollo"]["unattributed"] == [{
        "endpoint": "organizations/bulk_enrich", "id": real["id"], "name": real["name"],
        "primary_domain": real["primary_domain"], "credits": 1.0,
        "requested": ["fb-alias.example", "nobody-here.example"],
    }]
    assert sb.credits_consumed == 2 == client.ledger.total_credits() == out.attrs["apollo"]["credits_consumed"]
    assert list(client.ledger.frame()["records_matched"]) == [2]
    calls = len(sb.requests)
    found = pd.DataFrame({"domain": [real["primary_domain"]]}).apollo.enrich_orgs(client=client, progress=False)
    assert list(found["org.id"]) == [real["id"]] and len(sb.requests) == calls  # the paid answer was kept


def test_orgs_parse_joins_on_a_domain_alias_field_and_reads_the_recording():
    from apollo_frames.ops.orgs import _parse

    recorded = fixture("organizations_bulk_enrich_omitted_misses.json")
    domains = ["harborview-instruments.example", "qm-freight.example", "nobody-here.example"]
    parsed = _parse([{"domain": d} for d in domains], recorded)
    found = [r["primary_domain"] if r else None for r in parsed.results]
    assert found == ["harborview-instruments.example", None, None] and sorted(parsed.errors) == [1, 2]
    assert [u.answer["primary_domain"] for u in parsed.unattributed] == ["quillmarsh.example"]
    assert parsed.credits == 2
    aliased = dict(recorded, organizations=[recorded["organizations"][0],
                                            dict(recorded["organizations"][1], domain_aliases=["qm-freight.example"])])
    parsed = _parse([{"domain": d} for d in domains], aliased)
    assert [r["primary_domain"] if r else None for r in parsed.results] == [
        "harborview-instruments.example", "quillmarsh.example", None]
    assert not parsed.errors and not parsed.unattributed


# -- 6./9. pushes: only documented fields, bulk updates ---------------------------------------------------


def contacts(n: int, start: int = 0, title: str = "Analyst") -> pd.DataFrame:
    return pd.DataFrame({"email": [f"p{i}@bulk{i % 9}.example" for i in range(start, start + n)],
                         "first_name": [f"F{i}" for i in range(start, start + n)], "last_name": "L", "title": title},
                        index=[f"r{i}" for i in range(start, start + n)])


def test_upsert_of_1000_contacts_600_existing_uses_bulk_calls(make_client):
    sb = small(n_orgs=20)
    client = make_client(sb)
    seeded = contacts(600).apollo.push_contacts(mode="insert", client=client, progress=False)
    assert set(seeded["apollo_status"]) == {"created"}
    before = len(sb.requests)
    frame = contacts(1000, title="Director")
    result = frame.apollo.push_contacts(client=client, progress=False)
    sent = [r.path for r in sb.requests[before:]]
    assert sent.count("contacts/bulk_create") == 10 and sent.count("contacts/bulk_update") == 6
    assert len(sent) == 16 and result.attrs["apollo"]["api_calls"] == 16
    assert (result["apollo_status"].iloc[:600] == "updated").all()
    assert (result["apollo_status"].iloc[600:] == "created").all()
    assert (result["apollo_id"].iloc[:600] == seeded["apollo_id"]).all()
    stored = [c for c in sb.store.contacts.values()]
    assert len(stored) == 1000 and len({c["email"] for c in stored}) == 1000  # no duplicates
    assert {c["title"] for c in stored} == {"Director"}
    assert sb.ignored_fields == []


def test_update_rejected_rows_and_rows_bulk_update_cannot_carry_are_patched(make_client):
    sb = small(n_orgs=20)
    client = make_client(sb)
    ids = list(contacts(150).apollo.push_contacts(mode="insert", client=client, progress=False)["apollo_id"])
    ids[120] = "0" * 24  # unknown: the second bulk_update is refused as a whole (all or nothing)
    frame = pd.DataFrame({"id": ids, "title": "CTO", "phone": [None] * 149 + ["+1 415 555 0100"]})
    before = len(sb.requests)
    result = frame.apollo.push_contacts(mode="update", client=client, progress=False)
    assert result["apollo_status"].value_counts().to_dict() == {"updated": 149, "error": 1}
    assert "0" * 24 in result["apollo_error"].iloc[120]
    sent = [(r.path, r.status, r.n_records) for r in sb.requests[before:] if "bulk" in r.path]
    # the refused batch is resent without the row it named, which is PATCHed alone
    assert sorted(sent) == [("contacts/bulk_update", 200, 48), ("contacts/bulk_update", 200, 100),
                            ("contacts/bulk_update", 422, 49)]
    patched = [r for r in sb.requests[before:] if r.path == "contacts/{id}"]
    assert sorted(r.status for r in patched) == [200, 404]  # the phone row (bulk_update takes no phone), the unknown id
    assert sb.store.contacts[ids[149]]["direct_phone"] == "+14155550100"
    assert sum(c["title"] == "CTO" for c in sb.store.contacts.values()) == 149
    assert result.attrs["apollo"]["bulk_update_calls"] == 3 and result.attrs["apollo"]["update_calls"] == 2


def accounts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"Website": [f"https://acct{i}.example" for i in range(n)],
                         "Company": [f"Acct {i}" for i in range(n)], "Industry": "software"})


def test_accounts_push_sends_only_documented_fields(make_client):
    sb = small(n_orgs=20)
    client = make_client(sb)
    with pytest.warns(UserWarning, match=r"not pushed.*industry \(from 'Industry'\)"):
        created = accounts(5).apollo.push_accounts(mode="insert", client=client, progress=False)
    assert set(created["apollo_status"]) == {"created"}
    assert created.attrs["apollo"]["not_pushed"] == {"industry": ["Industry"]}
    renamed = accounts(8).assign(Company=[f"New {i}" for i in range(8)])
    with pytest.warns(UserWarning, match="not pushed"):
        result = renamed.apollo.push_accounts(client=client, progress=False)
    assert list(result["apollo_status"]) == ["updated"] * 5 + ["created"] * 3
    assert sb.count(path="accounts/bulk_update") == 1 and sb.count(path="accounts/{id}") == 0
    assert {a["name"] for a in sb.store.accounts.values()} == {f"New {i}" for i in range(8)}
    assert sb.ignored_fields == []  # nothing sent that Apollo would drop
    with pytest.raises(af.ColumnMappingError, match="industry"):
        accounts(2).apollo.push_accounts(columns={"Industry": "industry"}, client=client, progress=False)


def test_bulk_update_refused_as_an_endpoint_falls_back_to_patch(make_client, tmp_path):
    import httpx

    from apollo_frames.sandbox import DEFAULT_API_KEY, SANDBOX_BASE_URL

    sb = small(n_orgs=20)
    ids = list(contacts(3).apollo.push_contacts(mode="insert", client=make_client(sb), progress=False)["apollo_id"])

    def legacy(environ, start_response):
        if environ["PATH_INFO"].endswith("/bulk_update"):
            start_response("405 Method Not Allowed", [("Content-Type", "application/json")])
            return [b'{"error": "not allowed"}']
        return sb(environ, start_response)

    with af.ApolloClient(transport=httpx.WSGITransport(app=legacy), api_key=DEFAULT_API_KEY, base_url=SANDBOX_BASE_URL,
                         cache_dir=tmp_path / "legacy", plan="paid", allow_insecure_http=True) as client:
        result = pd.DataFrame({"id": ids, "title": "VP"}).apollo.push_contacts(mode="update", client=client,
                                                                                progress=False)
    assert set(result["apollo_status"]) == {"updated"} and result.attrs["apollo"]["update_calls"] == 3
    assert {sb.store.contacts[i]["title"] for i in ids} == {"VP"}


# -- 7. doctor and usage --------------------------------------------------------------------------------


def test_doctor_says_a_logged_out_health_answer_is_a_refused_key(tmp_path, monkeypatch, capsys):
    from apollo_frames.cli import main

    sb = Sandbox(SandboxConfig(n_orgs=20, health_logged_out=True))
    with sb.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", "not-the-key-0123456789")
        assert main(["doctor", "--cache-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "auth       REFUSED" in out and "not accepted" in out and "is_logged_in: false" in out
    assert "auth       ok" not in out and "not-the-key-0123456789" not in out


@pytest.mark.parametrize("keys", ["array", "path", "mixed"])
def test_usage_reads_both_key_forms(tmp_path, monkeypatch, capsys, keys):
    from apollo_frames.cli import main
    from apollo_frames.sandbox import DEFAULT_API_KEY

    sb = Sandbox(SandboxConfig(n_orgs=20, usage_stats_keys=keys))
    with sb.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", DEFAULT_API_KEY)
        assert main(["usage", "--cache-dir", str(tmp_path)]) == 0
    endpoints = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    assert "people/bulk_match" in endpoints and "mixed_companies/search" in endpoints
    assert not any(e.startswith(("api/", "[")) for e in endpoints)


# -- 8. every recorded shape through the parsers and flatteners -------------------------------------------


def _check_bulk_match(data: dict) -> None:
    from apollo_frames.ops.people import _parse

    matches = data["matches"]
    emails = [m.get("email") if isinstance(m, dict) else None for m in matches]
    details = [{"email": e} if e else {"email": f"miss{i}@nowhere.example"} for i, e in enumerate(emails)]
    omitted = data.get("missing_records", 0) if len(matches) < data["total_requested_enrichments"] else 0
    details += [{"email": f"omitted{i}@nowhere.example"} for i in range(omitted)]
    parsed = _parse(details, data)
    assert len(parsed.results) == len(details) and not parsed.errors and not parsed.unattributed
    found = [r for r in parsed.results if r is not None]
    assert len(found) == data.get("unique_enriched_records", len(found))
    table = sc.flatten_people(parsed.results)
    assert table.column("person.id").to_pylist() == [r["id"] if r else None for r in parsed.results]


def _check_bulk_enrich(data: dict) -> None:
    from apollo_frames.ops.orgs import _parse

    domains = [o["primary_domain"] for o in data["organizations"]] + ["nobody-here.example"]
    parsed = _parse([{"domain": d} for d in domains], data)
    assert [r is not None for r in parsed.results] == [True] * len(data["organizations"]) + [False]
    assert parsed.credits == len(data["organizations"]) and not parsed.unattributed
    assert sc.flatten_orgs(parsed.results).column("org.id").to_pylist()[:-1] == [o["id"] for o in data["organizations"]]


def _check_person(data: dict) -> None:
    from apollo_frames.ops.people import _person

    person = data["person"]
    row = sc.flatten_people([person]).to_pylist()[0]
    assert row["person.organization.name"] == person["organization"]["name"]
    if person.get("match_confidence") == "none":
        assert _person(person) is None  # the recorded stub is a miss
        return
    assert _person(person) is person and row["person.id"] == person["id"]
    assert row["person.email"] is None and row["person.email_domain_catchall"] is True  # a locked e-mail: no address
    assert row["person.organization.market_cap"] == "2.5B" and row["person.organization.primary_phone"] is None


def _check_org(data: dict) -> None:
    org = data["organization"]
    row = sc.flatten_orgs([org]).to_pylist()[0]
    assert row["org.annual_revenue"] == org["organization_revenue"] and "annual_revenue" not in org
    assert row["org.annual_revenue_printed"] == org["organization_revenue_printed"]


def _check_company_search(data: dict) -> None:
    records, total, pages = read_page(data, "organizations")
    assert len(records) == len(data["accounts"]) + len(data["organizations"])
    assert total == data["pagination"]["total_entries"]
    rows = sc.flatten_orgs(records).to_pylist()
    for row, record in zip(rows, records, strict=True):  # an unknown revenue (0, no printed form) is null
        if record.get("organization_revenue") == 0 and record.get("organization_revenue_printed") is None:
            assert row["org.annual_revenue"] is None
    assert [r["org.source"] for r in rows] == ["account"] * len(data["accounts"]) + ["organization"] * len(
        data["organizations"])
    assert [r["org.account_id"] for r in rows[:len(data["accounts"])]] == [a["id"] for a in data["accounts"]]
    assert [r["org.id"] for r in rows] == [a["organization_id"] for a in data["accounts"]] + [
        o["id"] for o in data["organizations"]]


def _check_usage(data: dict) -> None:
    from apollo_frames.cli import _stats_usage

    class Notes:
        def __init__(self):
            self.noted: dict = {}

        def note_limits(self, endpoint, readings, source=None):
            self.noted[endpoint] = readings

    notes = Notes()
    rows = _stats_usage(data, notes)
    assert len(rows) == len(data) and all("/" in e and not e.startswith(("api/", "[")) for e, _ in rows)
    assert all(row["minute"]["limit"] is not None for _, row in rows) and set(notes.noted) == {e for e, _ in rows}


def _check_health(data: dict) -> None:
    from apollo_frames.cli import health_refusal

    assert "not accepted" in health_refusal(data) and health_refusal({"is_logged_in": True}) is None


def _check_bulk_update(data: dict, kind: str) -> None:
    from apollo_frames.ops.push import ACCOUNTS, CONTACTS, Row, read_bulk_update

    target = CONTACTS if kind == "contacts" else ACCOUNTS
    ids = [r["id"] for r in data[kind]] if kind in data else data["entity_progress_job"]["entity_ids"]
    rows = [Row(i, f"k{i}", {}, {}, record_id) for i, record_id in enumerate([*ids, "f" * 24])]
    updated = read_bulk_update(target, rows, data)
    assert [d.row.record_id for d in updated.done] == ids and {d.status for d in updated.done} == {"updated"}
    assert [task.rows[0].record_id for task in updated.again] == ["f" * 24]  # not in the answer: PATCHed alone
    if "entity_progress_job" in data:
        assert all(d.message.startswith("queued") for d in updated.done)


def _check_people_payload(data: dict) -> None:
    table = sc.flatten_people(data["people"])
    assert table.column("person.id").to_pylist() == [p["id"] for p in data["people"]]
    assert table.column("person.phone_numbers").to_pylist()[0].startswith("[{")


CHECKS = {
    "people/bulk_match": _check_bulk_match,
    "organizations/bulk_enrich": _check_bulk_enrich,
    "people/match": _check_person,
    "organizations/enrich": _check_org,
    "mixed_companies/search": _check_company_search,
    "usage_stats/api_usage_stats": _check_usage,
    "auth/health": _check_health,
    "contacts/bulk_update": lambda data: _check_bulk_update(data, "contacts"),
    "accounts/bulk_update": lambda data: _check_bulk_update(data, "accounts"),
}


def _through_client(name: str, entry: dict, tmp_path) -> None:
    """Shapes no parser of the toolkit reads yet: the client hands a 200 over as it came, and turns an error
    answer into a typed error that carries the body."""
    from apollo_frames.core.errors import APIStatusError

    data = fixture(name)
    with respx.mock(base_url=BASE) as mock:
        mock.route(method=entry["method"]).respond(entry["status"], json=data)
        with af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path / "c", clock=FakeClock(),
                             max_retries=0) as client:
            path = entry["endpoint"].replace("{request_id}", "-6017453323104876817")
            if entry["status"] == 200:
                assert client.request(entry["method"], path, json={}).data == data
                if "people" in data or "webhook_result" in data:
                    _check_people_payload(phones.result_of(data))
            else:
                with pytest.raises(APIStatusError) as info:
                    client.request(entry["method"], path, json={})
                assert info.value.status_code == entry["status"] and info.value.body == data


MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_recorded_shape_is_read(name, tmp_path):
    entry = MANIFEST[name]
    check = CHECKS.get(entry["endpoint"])
    if check is not None and entry["status"] == 200:
        check(fixture(name))
    else:
        _through_client(name, entry, tmp_path)
