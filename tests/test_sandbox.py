"""The offline Apollo emulator: every documented limit, error, credit rule and choice.

Most tests run twice, in-process through ``httpx.WSGITransport`` and over real
loopback HTTP, via the ``api`` fixture. Expected values are derived from the
world (``sb.world``) or from the contract's rules, never copied from output.
"""

from __future__ import annotations

import csv
import email.utils
import hashlib
import json
import math
import threading
import time
from pathlib import Path

import httpx
import pytest

from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import DEFAULT_API_KEY, ROUTES, SCOPED_API_KEY, KeySpec, Sandbox, SandboxConfig
from apollo_frames.sandbox.samples import write_samples
from apollo_frames.sandbox.world import build_world, normalize_domain

MASTER = {"X-Api-Key": DEFAULT_API_KEY}
SCOPED = {"X-Api-Key": SCOPED_API_KEY}
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def small(clock=None, **kw) -> Sandbox:
    kw.setdefault("n_orgs", 60)
    return Sandbox(SandboxConfig(**kw), clock=clock if clock is not None else FakeClock())


class Api:
    """One httpx client on a sandbox, either in-process or over loopback."""

    def __init__(self, sb: Sandbox, mode: str, stack):
        self.sb = sb
        if mode == "wsgi":
            self.client = httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://sandbox.invalid/api/v1/")
        else:
            base_url = stack.enter_context(sb.serve())
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/api/v1")
            self.client = httpx.Client(base_url=base_url + "/", timeout=10)
        stack.callback(self.client.close)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture(params=["wsgi", "loopback"])
def mode(request):
    return request.param


@pytest.fixture
def make_api(mode):
    import contextlib

    with contextlib.ExitStack() as stack:
        yield lambda sb: Api(sb, mode, stack)


@pytest.fixture
def api(make_api):
    return make_api(small())


def with_email(sb, n, mobile=None):
    found = [p for p in sb.world.people if p["email"]]
    if mobile is not None:
        found = [p for p in found if (p["id"] in sb.world.mobile_phones) == mobile]
    assert len(found) >= n
    return found[:n]


# -- auth ----------------------------------------------------------------------------------------


def test_401_is_plain_text_without_rate_headers(api):
    for headers in ({}, {"X-Api-Key": "wrong"}, {"x-api-key": ""}):
        r = api.post("people/bulk_match", headers=headers, json={"details": [{"email": "a@b.example"}]})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("text/plain") and r.text == "Invalid access credentials."
        assert not any(h.startswith("x-") for h in r.headers)
    # the header name is case-insensitive; auth/health answers the newer body
    r = api.get("auth/health", headers={"X-API-KEY": DEFAULT_API_KEY})
    assert r.status_code == 200 and r.json() == {"healthy": True, "is_logged_in": True}
    assert api.get("auth/health").status_code == 401
    assert api.sb.count(path="people/bulk_match", status=401) == 3


def test_json_401_mode(make_api):
    api = make_api(small(json_401=True))
    r = api.post("people/match", json={"email": "x@y.example"})
    assert r.status_code == 401 and r.json() == {"error": "Invalid access credentials."}


def test_api_key_in_query_or_body_is_refused_with_422(api):
    message = "API key must be passed in the X-Api-Key header for security reasons"
    r = api.post("people/bulk_match", params={"api_key": DEFAULT_API_KEY}, json={"details": [{"email": "a@b.example"}]})
    assert r.status_code == 422 and r.json() == {"error": message}
    r = api.post("people/match", json={"api_key": DEFAULT_API_KEY, "email": "a@b.example"})
    assert r.status_code == 422 and r.json() == {"error": message}
    # even alongside a valid header, and nothing is charged or counted against limits
    r = api.post("people/match", headers=MASTER, params={"api_key": "x"}, json={"email": with_email(api.sb, 1)[0]["email"]})
    assert r.status_code == 422 and api.sb.credits_consumed == 0 and "x-minute-usage" not in r.headers


def test_scoped_key_allow_list(api):
    person = with_email(api.sb, 1)[0]
    assert api.post("people/match", headers=SCOPED, json={"email": person["email"]}).status_code == 200
    assert api.post("mixed_people/api_search", headers=SCOPED, json={"per_page": 1}).status_code == 200
    assert api.post("contacts", headers=SCOPED, json={"first_name": "A", "last_name": "B"}).status_code == 200
    assert api.post("accounts/search", headers=SCOPED, json={}).status_code == 200
    forbidden = [
        ("POST", "usage_stats/api_usage_stats", None, "usage_stats/api_usage_stats"),
        ("POST", "accounts", {"name": "X"}, "accounts/create"),
        ("POST", "accounts/bulk_create", {"accounts": [{"name": "X"}]}, "accounts/bulk_create"),
        ("PATCH", "accounts/abc", {"name": "X"}, "accounts/update"),
    ]
    for method, path, body, endpoint in forbidden:
        r = api.request(method, path, headers=SCOPED, json=body)
        assert r.status_code == 403, path
        assert r.json() == {"error": f"api/v1/{endpoint} is not accessible with this api_key", "error_code": "API_INACCESSIBLE"}
        assert "x-minute-usage" not in r.headers
    assert api.sb.store.accounts == {}


def test_custom_keys_and_with_api_key():
    cfg = SandboxConfig(n_orgs=20).with_api_key("my-own-key")
    assert cfg.api_keys["my-own-key"].master and DEFAULT_API_KEY in cfg.api_keys
    cfg = SandboxConfig(n_orgs=20, api_keys={"only-orgs": KeySpec(allowed=frozenset({"organizations/enrich"}))})
    sb = Sandbox(cfg)
    with httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://x/api/v1/") as c:
        h = {"X-Api-Key": "only-orgs"}
        assert c.get("organizations/enrich", headers=h, params={"domain": sb.world.orgs[0]["primary_domain"]}).status_code == 200
        assert c.post("people/match", headers=h, json={"email": "a@b.example"}).status_code == 403
        assert c.get("auth/health", headers=MASTER).status_code == 401  # the default keys were replaced


# -- routing ---------------------------------------------------------------------------------------


def test_both_prefixes_share_counters_and_unknown_paths_404(mode, make_api):
    sb = small()
    api = make_api(sb)
    root = str(api.client.base_url).rsplit("/api/v1", 1)[0]
    org = sb.world.orgs[0]
    a = api.get(f"{root}/api/v1/organizations/enrich", headers=MASTER, params={"domain": org["primary_domain"]})
    b = api.post(f"{root}/v1/organizations/enrich", headers=MASTER, json={"domain": org["primary_domain"]})
    assert a.json() == b.json() and a.json()["organization"]["id"] == org["id"]
    assert (a.headers["x-minute-usage"], b.headers["x-minute-usage"]) == ("1", "2")
    for path in ("/api/v1/people/nothing", "/v2/people/match", "/api/v1/people/match/extra"):
        r = api.post(root + path, headers=MASTER, json={})
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    assert api.get(f"{root}/api/v1/people/match", headers=MASTER).status_code == 404  # wrong method
    assert sb.count(path="organizations/enrich") == 2 and sb.credits_consumed == 2


# -- people enrichment -----------------------------------------------------------------------------


def test_bulk_match_alignment_counters_and_credits(api):
    sb = api.sb
    a, b = with_email(sb, 2, mobile=False)
    details = [{"email": a["email"]}, {"email": "ghost@nowhere.example"}, {"email": f"  {b['email'].upper()} "}, {},
               {"id": a["id"]}]
    r = api.post("people/bulk_match", headers=MASTER, json={"details": details})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success" and body["error_code"] is None
    assert len(body["matches"]) == len(details)
    assert [m and m["id"] for m in body["matches"]] == [a["id"], None, b["id"], None, a["id"]]
    assert body["total_requested_enrichments"] == 5 and body["missing_records"] == 2
    assert body["unique_enriched_records"] == 2 and body["credits_consumed"] == 2  # a matched twice, paid once
    assert sb.credits_consumed == 2 and sb.requests[-1].n_records == 5 and sb.requests[-1].credits == 2
    person = body["matches"][0]
    for key in ("id", "first_name", "last_name", "name", "linkedin_url", "title", "email_status", "photo_url", "twitter_url",
                "github_url", "facebook_url", "extrapolated_email_confidence", "headline", "email", "organization_id",
                "employment_history", "state", "city", "country", "organization", "departments", "subdepartments",
                "functions", "seniority", "revealed_for_current_team", "is_likely_to_engage", "intent_strength", "show_intent"):
        assert key in person, key
    assert "account" not in person["organization"] and person["organization"]["id"] == person["organization_id"]
    assert set(person["employment_history"][0]) >= {"_id", "current", "organization_id", "organization_name", "start_date", "title"}
    assert "personal_emails" not in person


def test_bulk_match_limits_and_bad_bodies(api):
    r = api.post("people/bulk_match", headers=MASTER, json={"details": [{"email": f"p{i}@x.example"} for i in range(11)]})
    assert r.status_code == 400
    assert r.json() == {"status": "failed", "error_code": "RECORD_LIMIT_EXCEEDED", "error_message": "domain count cannot be more than 10"}
    ten = api.post("people/bulk_match", headers=MASTER, json={"details": [{"email": f"p{i}@x.example"} for i in range(10)]})
    assert ten.status_code == 200 and ten.json()["missing_records"] == 10
    for body in ({}, {"details": []}):
        r = api.post("people/bulk_match", headers=MASTER, json=body)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_REQUEST"
        assert r.json()["error_message"] == "invalid request, missing details"
    r = api.post("people/bulk_match", headers={**MASTER, "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 422 and r.json()["error_code"] == "UNKNOWN_ERROR" and "stack_trace" in r.json()
    r = api.post("people/bulk_match", headers=MASTER, json={"details": ["a@b.example"]})
    assert r.status_code == 422
    assert api.sb.credits_consumed == 0


def test_people_match_identifiers(api):
    sb = api.sb
    p = with_email(sb, 3)[2]
    domain = p["organization"]["primary_domain"]
    raw = p["email"].lower().encode()
    ways = [
        {"id": p["id"]},
        {"email": p["email"].upper()},
        {"hashed_email": hashlib.md5(raw).hexdigest()},
        {"hashed_email": hashlib.sha256(raw).hexdigest().upper()},
        {"linkedin_url": p["linkedin_url"].replace("http://www.", "HTTPS://").upper() + "/"},
        {"first_name": p["first_name"].upper(), "last_name": f" {p['last_name']} ", "domain": f"https://www.{domain}/about"},
        {"name": p["name"], "organization_name": p["organization"]["name"].lower()},
    ]
    for params in ways:
        r = api.post("people/match", headers=MASTER, json=params)
        assert r.status_code == 200 and r.json()["person"]["id"] == p["id"], params
    # query-string parameters work too (the OpenAPI style)
    assert api.post("people/match", headers=MASTER, params={"email": p["email"]}).json()["person"]["id"] == p["id"]
    assert sb.credits_consumed == len(ways) + 1
    miss = api.post("people/match", headers=MASTER, json={"first_name": p["first_name"], "last_name": p["last_name"]})
    assert miss.status_code == 200 and miss.json() == {"person": None}
    assert api.post("people/match", headers=MASTER, json={"email": "ghost@nowhere.example"}).json() == {"person": None}
    none = api.post("people/match", headers=MASTER, json={"reveal_personal_emails": True})
    assert none.status_code == 400 and none.json()["error_code"] == "INVALID_REQUEST"
    assert sb.credits_consumed == len(ways) + 1  # misses and errors are free


def test_accented_names_match_without_accents(api):
    sb = api.sb
    accented = next(p for p in sb.world.people if not p["name"].isascii())
    plain = accented["name"].translate(str.maketrans("éëóüñöøåłŁźçáíÁÉ", "eeounooallzcaiAE"))
    r = api.post("people/match", headers=MASTER,
                 json={"name": plain, "domain": accented["organization"]["primary_domain"]})
    assert r.json()["person"]["id"] == accented["id"]
    assert accented["email"] is None or accented["email"].isascii()


def test_phone_reveal_costs_eight_more_and_goes_to_the_webhook(api):
    sb = api.sb
    mobile = with_email(sb, 1, mobile=True)[0]
    plain = with_email(sb, 1, mobile=False)[0]
    r = api.post("people/bulk_match", headers=MASTER, json={"details": [{"email": mobile["email"]}]}, params={"reveal_phone_number": "true"})
    assert r.status_code == 400 and "webhook_url" in r.json()["error"] and sb.credits_consumed == 0
    r = api.post(
        "people/bulk_match", headers=MASTER,
        json={"details": [{"email": mobile["email"]}, {"email": plain["email"]}, {"email": "ghost@nowhere.example"}],
              "reveal_phone_number": True, "webhook_url": "https://hooks.example/apollo"},
    )
    body = r.json()
    assert r.status_code == 200 and body["credits_consumed"] == (1 + 8) + 1 == sb.credits_consumed
    assert all("phone_numbers" not in m for m in body["matches"] if m)
    assert sb.world.mobile_phones[mobile["id"]] not in r.text  # never inline
    deliveries = {d["person_id"]: d for d in sb.webhook_deliveries}
    assert set(deliveries) == {mobile["id"], plain["id"]}
    assert deliveries[mobile["id"]]["phone_numbers"][0]["raw_number"] == sb.world.mobile_phones[mobile["id"]]
    assert deliveries[plain["id"]]["phone_numbers"] == [] and deliveries[plain["id"]]["url"] == "https://hooks.example/apollo"
    single = api.post("people/match", headers=MASTER, json={"id": mobile["id"], "reveal_phone_number": True, "webhook_url": "https://h.example"})
    assert single.status_code == 200 and sb.requests[-1].credits == 9


def test_personal_emails_and_people_without_email(api):
    sb = api.sb
    pid = next(iter(sb.world.personal_emails))
    r = api.post("people/match", headers=MASTER, json={"id": pid, "reveal_personal_emails": "true"})
    assert r.json()["person"]["personal_emails"] == sb.world.personal_emails[pid]
    nomail = next(p for p in sb.world.people if p["email"] is None)
    r = api.post("people/match", headers=MASTER, json={"linkedin_url": nomail["linkedin_url"]})
    assert r.json()["person"]["email"] is None and r.json()["person"]["email_status"] == "unavailable"
    share = sum(p["email"] is None for p in sb.world.people) / len(sb.world.people)
    assert 0.03 < share < 0.3


# -- organization enrichment ----------------------------------------------------------------------


def test_bulk_enrich_omits_misses_and_charges_per_org(api):
    sb = api.sb
    orgs = sb.world.orgs[:3]
    domains = [f"https://www.{orgs[0]['primary_domain'].upper()}/about", orgs[1]["primary_domain"], "nobody-here.example",
               orgs[0]["primary_domain"], f"www.{orgs[2]['primary_domain']}"]
    r = api.post("organizations/bulk_enrich", headers=MASTER, json={"domains": domains})
    body = r.json()
    assert r.status_code == 200 and "credits_consumed" not in body
    assert [o["id"] for o in body["organizations"]] == [o["id"] for o in orgs]
    assert (body["total_requested_domains"], body["unique_domains"], body["unique_enriched_records"], body["missing_records"]) == (5, 4, 3, 1)
    assert sb.credits_consumed == 3
    # the OpenAPI query form domains[]=...
    q = api.post("organizations/bulk_enrich", headers=MASTER, params=[("domains[]", orgs[1]["primary_domain"]), ("domains[]", "zz.example")])
    assert [o["id"] for o in q.json()["organizations"]] == [orgs[1]["id"]] and sb.credits_consumed == 4
    org = body["organizations"][0]
    for key in ("primary_phone", "languages", "founded_year", "primary_domain", "industry", "keywords", "estimated_num_employees",
                "industries", "raw_address", "street_address", "city", "state", "postal_code", "country", "short_description",
                "annual_revenue", "annual_revenue_printed", "total_funding", "latest_funding_stage", "latest_funding_round_date",
                "funding_events", "technology_names", "current_technologies", "departmental_head_count"):
        assert key in org, key
    assert set(org["primary_phone"]) == {"number", "source", "sanitized_number"}
    assert all(set(t) == {"uid", "name", "category"} for t in org["current_technologies"])


def test_bulk_enrich_errors_and_single_enrich(api):
    sb = api.sb
    r = api.post("organizations/bulk_enrich", headers=MASTER, json={"domains": [f"d{i}.example" for i in range(11)]})
    assert r.status_code == 400 and r.json()["error_code"] == "RECORD_LIMIT_EXCEEDED"
    r = api.post("organizations/bulk_enrich", headers=MASTER, json={})
    assert r.status_code == 400 and r.json()["error_message"] == "invalid request, missing domains"
    org = sb.world.orgs[5]
    r = api.get("organizations/enrich", headers=MASTER, params={"domain": "http://WWW." + org["primary_domain"]})
    assert r.json()["organization"]["id"] == org["id"]
    assert api.get("organizations/enrich", headers=MASTER, params={"domain": "unknown.example"}).json() == {"organization": None}
    r = api.get("organizations/enrich", headers=MASTER)
    assert r.status_code == 422 and "domain" in r.json()["error"]
    assert sb.credits_consumed == 1


# -- search ------------------------------------------------------------------------------------------


def test_people_api_search_filters_are_free_and_ids_enrich(api):
    sb = api.sb
    org = max(sb.world.orgs, key=lambda o: len(sb.world.people_by_org[o["id"]]))
    at_org = [sb.world.people[i] for i in sb.world.people_by_org[org["id"]]]
    r = api.post("mixed_people/api_search", headers=MASTER,
                 json={"q_organization_domains_list": [f"https://www.{org['primary_domain']}/"], "per_page": 100})
    body = r.json()
    assert set(body) == {"total_entries", "people"} and body["total_entries"] == len(at_org)
    assert [p["id"] for p in body["people"]] == [p["id"] for p in at_org]
    teaser = body["people"][0]
    assert "email" not in teaser and "last_name" not in teaser
    assert teaser["last_name_obfuscated"].startswith(at_org[0]["last_name"][:1]) and "***" in teaser["last_name_obfuscated"]
    assert set(teaser["organization"]) >= {"name", "has_industry"}
    # search -> enrich by id
    ids = [{"id": p["id"]} for p in body["people"][:10]]
    m = api.post("people/bulk_match", headers=MASTER, json={"details": ids}).json()
    assert [x["email"] for x in m["matches"]] == [p["email"] for p in at_org[:10]]
    assert sb.count(path="mixed_people/api_search") == 1 and sb.requests[0].credits == 0

    def total(**flt):
        return api.post("mixed_people/api_search", headers=MASTER, json=flt).json()["total_entries"]

    people = sb.world.people
    assert total(person_titles=["VP"], include_similar_titles=False) == sum("vp" in p["title"].lower() for p in people)
    assert total(person_seniorities=["c_suite", "founder"]) == sum(p["seniority"] in ("c_suite", "founder") for p in people)
    lo_hi = (50, 500)
    want = sum(lo_hi[0] <= p["organization"]["estimated_num_employees"] <= lo_hi[1] for p in people)
    assert total(organization_num_employees_ranges=["50,500"]) == want
    assert total(organization_ids=[org["id"]], person_seniorities=["c_suite"]) == sum(p["seniority"] == "c_suite" for p in at_org)
    country = people[0]["country"]
    assert total(person_locations=[country.lower()]) == sum(p["country"] == country for p in people)
    assert total(q_keywords=org["name"]) >= len(at_org)
    assert total(no_such_filter=["x"]) == len(people)  # unknown filters are ignored
    assert sum(r.credits for r in sb.requests if r.path == "mixed_people/api_search") == 0
    assert sb.credits_consumed == len(ids)  # only the enrichment was paid


def test_search_paging_caps(api):
    sb = api.sb
    r = api.post("mixed_people/api_search", headers=MASTER, json={"per_page": 500}).json()
    assert len(r["people"]) == 100 and r["total_entries"] == len(sb.world.people)
    assert len(api.post("mixed_people/api_search", headers=MASTER, json={}).json()["people"]) == 25  # documented default
    assert api.post("mixed_people/api_search", headers=MASTER, json={"page": 501, "per_page": 1}).json()["people"] == []
    page2 = api.post("mixed_people/api_search", headers=MASTER, params={"page": "2", "per_page": "3"}).json()["people"]
    assert [p["id"] for p in page2] == [p["id"] for p in sb.world.people[3:6]]


def test_company_search_credits_per_page_with_results(api):
    sb = api.sb
    n = len(sb.world.orgs)
    r = api.post("mixed_companies/search", headers=MASTER, json={"per_page": 25, "page": 1})
    body = r.json()
    assert body["pagination"] == {"page": 1, "per_page": 25, "total_entries": n, "total_pages": math.ceil(n / 25)}
    assert body["accounts"] == [] and [o["id"] for o in body["organizations"]] == [o["id"] for o in sb.world.orgs[:25]]
    assert sb.credits_consumed == 1
    api.post("mixed_companies/search", headers=MASTER, json={"per_page": 25, "page": 99})  # empty page: free
    api.post("mixed_companies/search", headers=MASTER, json={"q_organization_domains_list": ["none.example"]})
    assert sb.credits_consumed == 1
    org = sb.world.orgs[7]
    hit = api.post("mixed_companies/search", headers=MASTER, json={"q_organization_name": org["name"].upper()[:12]}).json()
    assert org["id"] in [o["id"] for o in hit["organizations"]]
    rev = api.post("mixed_companies/search", headers=MASTER, json={"revenue_range": {"min": 0, "max": 5_000_000}}).json()
    assert rev["pagination"]["total_entries"] == sum(o["annual_revenue"] <= 5_000_000 for o in sb.world.orgs)
    tag = org["keywords"][0]
    tagged = api.post("mixed_companies/search", headers=MASTER, json={"q_organization_keyword_tags": [tag], "per_page": 100}).json()
    assert org["id"] in [o["id"] for o in tagged["organizations"]]
    legacy = api.post("mixed_people/search", headers=MASTER, json={"per_page": 2}).json()
    assert legacy["pagination"]["per_page"] == 2 and "contacts" in legacy
    assert all(p["email"] in (None, "email_not_unlocked@domain.com") for p in legacy["people"])
    assert sb.credits_consumed == 5


# -- rate limits ----------------------------------------------------------------------------------


def test_rate_limit_headers_and_aliases(make_api):
    sb = small(daily_header_aliases=True)
    api = make_api(sb)
    r = api.post("mixed_people/api_search", headers=MASTER, json={"per_page": 1})
    assert (r.headers["x-rate-limit-minute"], r.headers["x-minute-usage"], r.headers["x-minute-requests-left"]) == ("200", "1", "199")
    assert (r.headers["x-rate-limit-hourly"], r.headers["x-hourly-usage"], r.headers["x-hourly-requests-left"]) == ("2000", "1", "1999")
    assert (r.headers["x-rate-limit-24-hour"], r.headers["x-24-hour-usage"], r.headers["x-24-hour-requests-left"]) == ("6000", "1", "5999")
    assert (r.headers["x-rate-limit-daily"], r.headers["x-daily-usage"], r.headers["x-daily-requests-left"]) == ("6000", "1", "5999")
    # paid enrichment: 1000/min, no hourly or daily limit -> those headers are absent
    e = api.post("people/match", headers=MASTER, json={"email": "x@y.example"})
    assert e.headers["x-rate-limit-minute"] == "1000" and "x-rate-limit-hourly" not in e.headers
    assert "x-rate-limit-24-hour" not in e.headers and "x-rate-limit-daily" not in e.headers
    # validation answers are counted and carry headers too
    v = api.post("people/bulk_match", headers=MASTER, json={})
    assert v.status_code == 400 and v.headers["x-minute-usage"] == "1"
    # the free preset
    free = SandboxConfig.free_plan(n_orgs=10)
    assert Sandbox(free).limits_for(next(r for r in ROUTES if r.path == "people/match")) == (50, 200, 600)
    plain = make_api(small())
    assert "x-rate-limit-daily" not in plain.post("mixed_people/api_search", headers=MASTER, json={"per_page": 1}).headers


def test_429_message_retry_after_and_reset(make_api):
    clock = FakeClock()
    sb = small(clock, windows=(1, 3600, 86400), limits={"people/match": (2, None, None)})
    api = make_api(sb)
    body = {"email": "x@y.example"}
    lefts = [api.post("people/match", headers=MASTER, json=body).headers["x-minute-requests-left"] for _ in range(2)]
    assert lefts == ["1", "0"]
    r = api.post("people/match", headers=MASTER, json=body)
    assert r.status_code == 429
    assert r.json() == {"message": "The maximum number of api calls allowed for api/v1/people/match is 2 times per minute. "
                                   "Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade."}
    assert r.headers["Retry-After"] == "1" and "x-minute-usage" not in r.headers
    # other endpoints and other keys have their own counters
    assert api.post("people/bulk_match", headers=MASTER, json={"details": [body]}).status_code == 200
    assert api.post("people/match", headers=SCOPED, json=body).status_code == 200
    # 429s are not counted: after the window the full allowance is back
    clock.advance(0.9)
    assert api.post("people/match", headers=MASTER, json=body).status_code == 429  # not yet
    clock.advance(0.15)
    again = api.post("people/match", headers=MASTER, json=body)
    assert again.status_code == 200 and again.headers["x-minute-usage"] == "1"
    api.post("people/match", headers=MASTER, json=body)
    assert api.post("people/match", headers=MASTER, json=body).status_code == 429
    sb.reset_limits()
    assert api.post("people/match", headers=MASTER, json=body).status_code == 200
    assert sb.count(path="people/match", status=429) == 3  # the first, the "not yet" and the last


def test_hour_window_http_date_and_no_retry_after(make_api):
    clock = FakeClock()
    sb = small(clock, limits={"search": (100, 2, None)}, retry_after_format="http-date")
    api = make_api(sb)
    for _ in range(2):
        assert api.post("mixed_people/api_search", headers=MASTER, json={"per_page": 1}).status_code == 200
    r = api.post("mixed_people/api_search", headers=MASTER, json={"per_page": 1})
    assert r.status_code == 429 and "is 2 times per hour" in r.json()["message"]
    when = email.utils.parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert 3598 < when - clock.time() <= 3601
    # a class limit applies to every endpoint in the class, each with its own counter
    assert api.post("contacts/search", headers=MASTER, json={}).headers["x-rate-limit-hourly"] == "2"
    quiet = make_api(small(limits={"people/match": (1, None, None)}, retry_after=False))
    quiet.post("people/match", headers=MASTER, json={"email": "a@b.example"})
    r = quiet.post("people/match", headers=MASTER, json={"email": "a@b.example"})
    assert r.status_code == 429 and "retry-after" not in r.headers


def test_usage_stats_shape_follows_the_counters(api):
    sb = api.sb
    for _ in range(3):
        api.post("people/bulk_match", headers=MASTER, json={"details": [{"email": "a@b.example"}]})
    api.post("people/bulk_match", headers=SCOPED, json={"details": [{"email": "a@b.example"}]})  # another key
    r = api.post("usage_stats/api_usage_stats", headers=MASTER)
    stats = r.json()
    key = json.dumps(["api/v1/people", "bulk_match"])
    assert key == '["api/v1/people", "bulk_match"]' and key in stats
    assert stats[key]["minute"] == {"limit": 1000, "consumed": 3, "left_over": 997}
    assert stats[key]["hour"] == {"limit": None, "consumed": 3, "left_over": None}
    assert set(stats[key]) == {"day", "hour", "minute"}
    search = stats[json.dumps(["api/v1/mixed_companies", "search"])]
    assert search["day"] == {"limit": 6000, "consumed": 0, "left_over": 6000}
    assert stats[json.dumps(["api/v1/usage_stats", "api_usage_stats"])]["minute"]["consumed"] == 1
    for name in ('["api/v1/people", "match"]', '["api/v1/organizations", "bulk_enrich"]', '["api/v1/contacts", "create"]',
                 '["api/v1/accounts", "search"]'):
        assert name in stats


# -- faults ---------------------------------------------------------------------------------------


def test_scripted_faults_in_order_for_a_path(make_api):
    clock = FakeClock()
    sb = small(clock, timeout_fault_seconds=0.2)
    api = make_api(sb)
    p = with_email(sb, 1)[0]
    sb.inject("500", "502", "503", "429", "429-no-retry-after", "timeout", path="people/bulk_match")
    # other paths are not affected
    assert api.post("people/match", headers=MASTER, json={"email": p["email"]}).status_code == 200
    statuses, retry = [], []
    for _ in range(7):
        r = api.post("people/bulk_match", headers=MASTER, json={"details": [{"email": p["email"]}]})
        statuses.append(r.status_code)
        retry.append(r.headers.get("retry-after"))
    assert statuses == [500, 502, 503, 429, 429, 504, 200]
    assert retry[3] == "1" and retry[4] is None
    assert clock.sleeps == [0.2]  # only the timeout fault waits
    assert sb.credits_consumed == 2  # faults reach nothing: only the two good answers paid
    assert sb.count(path="people/bulk_match") == 7 and sb.count(path="people/bulk_match", status=200) == 1
    # a bad key does not use up a scripted fault
    sb.inject("503")
    assert api.post("people/match", json={"email": p["email"]}).status_code == 401
    assert api.get("auth/health", headers=MASTER).status_code == 503
    with pytest.raises(ValueError, match="unknown fault"):
        sb.inject("418")


def test_lost_write_commits_then_answers_empty_502(api):
    sb = api.sb
    sb.inject("lost_write", path="contacts/bulk_create")
    r = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": [{"first_name": "Lost", "email": "lost@acme.example"}]})
    assert r.status_code == 502 and r.content == b""
    assert [c["email"] for c in sb.store.contacts.values()] == ["lost@acme.example"]
    retry = api.post("contacts/bulk_create", headers=MASTER,
                     json={"contacts": [{"first_name": "Lost", "email": "LOST@acme.example"}], "run_dedupe": True}).json()
    assert retry["created_contacts"] == [] and retry["existing_contacts"][0]["email"] == "lost@acme.example"
    sb.inject("lost_write", path="contacts")
    assert api.post("contacts", headers=MASTER, json={"first_name": "Solo"}).status_code == 502
    assert len(sb.store.contacts) == 2


def test_random_faults_are_reproducible():
    def run():
        sb = small(n_orgs=10, error_rate=0.3, rate_429=0.2, lost_write_rate=0.5, fault_seed=4)
        with httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://x/api/v1/") as c:
            answers = [c.post("contacts", headers=MASTER, json={"first_name": f"n{i}"}) for i in range(40)]
        return [(r.status_code, r.content == b"") for r in answers], len(sb.store.contacts)

    first, second = run(), run()
    assert first == second
    answers, stored = first
    statuses = [s for s, _ in answers]
    assert {429, 200} <= set(statuses) and set(statuses) & {500, 502, 503}
    # lost writes (empty 502) are stored although the answer is lost; the other faults store nothing
    lost = answers.count((502, True))
    assert lost > 0 and stored == statuses.count(200) + lost


def test_latency_is_added_after_counting():
    counted_before_sleeping = []

    class Watching(FakeClock):
        def sleep(self, seconds):
            counted_before_sleeping.append(sb.count())
            super().sleep(seconds)

    clock = Watching()
    sb = small(clock, n_orgs=10, latency=0.15)
    with httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://x/api/v1/") as c:
        assert c.get("auth/health", headers=MASTER).status_code == 200
        assert c.get("auth/health", headers=MASTER).status_code == 200
    assert clock.sleeps == [0.15, 0.15] and counted_before_sleeping == [1, 2]


# -- contacts and accounts ------------------------------------------------------------------------


def test_contacts_bulk_create_dedupe_semantics(api):
    sb = api.sb
    rows = [{"first_name": "Ann", "last_name": "Lee", "email": "ann.lee@acme.example", "title": "CEO"},
            {"first_name": "Bo", "last_name": "Ek", "email": "bo@acme.example"}]
    first = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": rows, "append_label_names": ["Imported"]}).json()
    assert len(first["created_contacts"]) == 2 and first["existing_contacts"] == []
    ann = first["created_contacts"][0]
    changed = [{"first_name": "Changed", "email": " ANN.LEE@acme.example ", "title": "Other"}, {"first_name": "New", "email": "new@acme.example"}]
    dedup = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": changed, "run_dedupe": True}).json()
    assert [c["id"] for c in dedup["existing_contacts"]] == [ann["id"]]
    assert dedup["existing_contacts"][0]["first_name"] == "Ann" and dedup["existing_contacts"][0]["title"] == "CEO"  # unchanged
    assert sb.store.contacts[ann["id"]]["first_name"] == "Ann"
    assert [c["email"] for c in dedup["created_contacts"]] == ["new@acme.example"]
    dupes = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": rows[:1]}).json()  # run_dedupe false
    assert len(dupes["created_contacts"]) == 1 and dupes["created_contacts"][0]["id"] != ann["id"]
    assert sum(c["email"] == "ann.lee@acme.example" for c in sb.store.contacts.values()) == 2
    r = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": [{"first_name": str(i)} for i in range(101)]})
    assert r.status_code == 422 and r.json() == {"error": "Please limit your array to 100 contacts or fewer."}
    for body in ({}, {"contacts": "nope"}):
        r = api.post("contacts/bulk_create", headers=MASTER, json=body)
        assert r.status_code == 422
        assert r.json() == {"error": 'Please provide an array of contact attributes in the "contact_attributes" parameter.'}
    ok = api.post("contacts/bulk_create", headers=MASTER, json={"contacts": [{"first_name": str(i)} for i in range(100)]})
    assert ok.status_code == 200 and len(ok.json()["created_contacts"]) == 100
    assert len(sb.store.contacts) == 4 + 100


def test_contact_create_update_and_404(api):
    sb = api.sb
    person = with_email(sb, 1)[0]
    c = api.post("contacts", headers=MASTER, json={"first_name": "Ann", "last_name": "Lee", "email": person["email"],
                                                   "label_names": ["A", "B"]}).json()
    contact = c["contact"]
    assert "dedupe_result" not in c and sorted(l["name"] for l in c["labels"]) == ["A", "B"]
    assert contact["person_id"] == person["id"] and contact["name"] == "Ann Lee"
    d = api.post("contacts", headers=MASTER, json={"email": person["email"].upper(), "title": "CTO", "run_dedupe": True}).json()
    assert d["contact"]["id"] == contact["id"] and d["contact"]["title"] == "CTO"  # submitted fields applied
    assert d["dedupe_result"] == {"found_existing": True, "match_reason": "email_match", "existing_contact_id": contact["id"]}
    fresh = api.post("contacts", headers=MASTER, json={"email": "fresh@x.example", "run_dedupe": True}).json()
    assert fresh["dedupe_result"]["found_existing"] is False and fresh["contact"]["id"] != contact["id"]
    up = api.patch(f"contacts/{contact['id']}", headers=MASTER, json={"title": "COO", "label_names": ["C"]}).json()
    assert up["contact"]["title"] == "COO" and [l["name"] for l in up["labels"]] == ["C"]
    put = api.put(f"contacts/{contact['id']}", headers=MASTER, json={"last_name": "Li"}).json()
    assert put["contact"]["name"] == "Ann Li" and put["contact"]["title"] == "COO"
    assert api.get(f"contacts/{contact['id']}", headers=MASTER).json()["contact"]["last_name"] == "Li"
    missing = api.patch("contacts/ffffffffffffffffffffffff", headers=MASTER, json={"title": "x"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "NOT_FOUND"
    assert api.put("accounts/ffffffffffffffffffffffff", headers=MASTER, json={"name": "x"}).status_code == 404
    found = api.post("contacts/search", headers=MASTER, json={"q_keywords": "ann", "per_page": 1}).json()
    assert found["pagination"] == {"page": 1, "per_page": 1, "total_entries": 1, "total_pages": 1}
    assert found["contacts"][0]["id"] == contact["id"]
    bad = api.post("contacts/search", headers=MASTER, json={"sort_by_field": "name"})
    assert bad.status_code == 422 and bad.json()["error"] == "Invalid sort criteria"


def test_accounts_create_dedupe_and_update(api):
    sb = api.sb
    org = sb.world.orgs[0]
    r = api.post("accounts", headers=MASTER, json={"phone": "123"})
    assert r.status_code == 422 and r.json() == {"error": "Please specify at least a name or domain."}
    a = api.post("accounts", headers=MASTER, json={"name": org["name"], "domain": "https://www." + org["primary_domain"]}).json()["account"]
    assert a["domain"] == org["primary_domain"] and a["organization_id"] == org["id"]
    b = api.post("accounts", headers=MASTER, json={"name": org["name"]}).json()["account"]
    assert b["id"] != a["id"]  # POST accounts never dedupes
    rows = [{"name": "Other", "domain": org["primary_domain"].upper()}, {"name": org["name"].lower()}, {"name": "Brand New"}]
    dedup = api.post("accounts/bulk_create", headers=MASTER, json={"accounts": rows, "run_dedupe": True}).json()
    assert len(dedup["existing_accounts"]) == 2 and [x["name"] for x in dedup["created_accounts"]] == ["Brand New"]
    assert all(x["name"] == org["name"] for x in dedup["existing_accounts"])
    plain = api.post("accounts/bulk_create", headers=MASTER, json={"accounts": rows}).json()
    assert len(plain["created_accounts"]) == 3 and plain["existing_accounts"] == []
    r = api.post("accounts/bulk_create", headers=MASTER, json={"accounts": [{"name": "x"}] * 101})
    assert r.status_code == 422 and r.json() == {"error": "Please limit your array to 100 accounts or fewer."}
    r = api.post("accounts/bulk_create", headers=MASTER, json={})
    assert r.json() == {"error": 'Please provide an array of account attributes in the "accounts" parameter.'}
    up = api.patch(f"accounts/{a['id']}", headers=MASTER, json={"name": "Renamed", "label_names": ["Target"]}).json()
    assert up["account"]["name"] == "Renamed" and [l["name"] for l in up["labels"]] == ["Target"]
    assert api.put(f"accounts/{a['id']}", headers=MASTER, json={"account_stage_id": "s1"}).json()["account"]["name"] == "Renamed"
    found = api.post("accounts/search", headers=MASTER, json={"q_organization_name": "renam"}).json()
    assert [x["id"] for x in found["accounts"]] == [a["id"]]
    assert len(sb.store.accounts) == 2 + 1 + 3


def test_concurrent_requests_over_loopback_are_consistent():
    sb = small(n_orgs=40)
    people = with_email(sb, 40)
    with sb.serve() as base_url:
        errors = []

        def worker(chunk):
            try:
                with httpx.Client(base_url=base_url + "/", timeout=10) as c:
                    for p in chunk:
                        assert c.post("people/bulk_match", headers=MASTER, json={"details": [{"email": p["email"]}]}).status_code == 200
                        c.post("contacts", headers=MASTER, json={"email": p["email"]})
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(people[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert sb.credits_consumed == 40 and sb.count(path="people/bulk_match", status=200) == 40
    assert len(sb.store.contacts) == 40 and len({c["id"] for c in sb.store.contacts.values()}) == 40
    with pytest.raises(httpx.ConnectError):  # the server is stopped: a new connection is refused
        httpx.get(base_url + "/auth/health", headers=MASTER, timeout=2)


def test_start_stop_and_loopback_only():
    sb = small(n_orgs=5)
    url = sb.start(port=0)
    try:
        assert httpx.get(url + "/auth/health", headers=MASTER).json()["healthy"] is True
        assert sb.start() == url  # already running
    finally:
        sb.stop()
    with pytest.raises(ValueError, match="loopback"):
        sb.start(host="0.0.0.0")


# -- world and samples ----------------------------------------------------------------------------


def test_world_is_deterministic_and_fictional():
    a, b, c = build_world(3, 80), build_world(3, 80), build_world(4, 80)
    assert json.dumps(a.people, sort_keys=True) == json.dumps(b.people, sort_keys=True)
    assert a.mobile_phones == b.mobile_phones
    assert [p["id"] for p in a.people] != [p["id"] for p in c.people]
    assert all(o["primary_domain"].endswith(".example") for o in a.orgs)
    assert all(p["email"] is None or p["email"].endswith("@" + p["organization"]["primary_domain"]) for p in a.people)
    assert len({p["id"] for p in a.people}) == len(a.people) and all(len(p["id"]) == 24 for p in a.people)
    sizes = [len(v) for v in a.people_by_org.values()]
    assert min(sizes) >= 1 and max(sizes) > min(sizes) and 9 <= sum(sizes) / len(sizes) <= 15
    assert {p["seniority"] for p in a.people} <= {"owner", "founder", "c_suite", "partner", "vp", "head", "director",
                                                  "manager", "senior", "entry", "intern"}
    assert any(not p["name"].isascii() for p in a.people)
    assert a.people[0]["linkedin_url"].startswith("http://www.linkedin.com/in/")


def test_default_sandbox_starts_fast():
    started = time.process_time()
    sb = Sandbox()
    assert len(sb.world.orgs) == 2000 and 20_000 <= len(sb.world.people) <= 28_000
    assert time.process_time() - started < 3.0  # ~1 s CPU; generous for busy CI machines


def test_committed_samples_match_the_world(tmp_path):
    people_path, companies_path = write_samples(tmp_path)
    assert people_path.read_bytes() == (SAMPLES / "people.csv").read_bytes()
    assert companies_path.read_bytes() == (SAMPLES / "companies.csv").read_bytes()
    with (SAMPLES / "people.csv").open(encoding="utf-8", newline="") as fh:
        people = list(csv.DictReader(fh))
    with (SAMPLES / "companies.csv").open(encoding="utf-8", newline="") as fh:
        companies = list(csv.DictReader(fh))
    assert len(people) >= 500 and len(companies) >= 200
    assert list(people[0]) == ["First Name", "Last Name", "Email", "Company", "Company Domain", "LinkedIn"]
    assert list(companies[0]) == ["Company", "Website"]
    world = build_world(7)
    emails = [r["Email"] for r in people]
    assert any(e != e.strip() for e in emails) and any(e.strip() != e.strip().lower() and "@" in e for e in emails)
    assert any(r["Company Domain"].startswith("https://www.") for r in people)
    assert any(not r["Email"].strip() for r in people)
    assert any(not r["First Name"].isascii() for r in people)
    rows = [tuple(r.values()) for r in people]
    assert len(set(rows)) < len(rows)  # exact duplicates
    folded = [tuple(v.strip().lower() for v in r) for r in rows]
    assert len(set(folded)) < len(set(rows))  # duplicates differing by case/space only
    known = {p["email"] for p in world.people if p["email"]}
    valid = [e.strip().lower() for e in emails if e.strip().count("@") == 1 and "." in e.split("@")[-1]]
    assert sum(e in known for e in valid) >= 300 and any(e not in known for e in valid)
    assert any(("@" in e and (e.count("@") > 1 or e.strip().endswith("@") or " " in e.strip())) for e in emails)
    domains = {normalize_domain(r["Website"]) for r in companies}
    assert len(domains & set(world.org_by_domain)) >= 180 and any(d and d not in world.org_by_domain for d in domains)
