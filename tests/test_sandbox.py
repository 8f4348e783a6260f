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
    assert r.status_code == 422 and "webhook_url" in r.json()["error"] and sb.credits_consumed == 0
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
    message = ("The maximum number of api calls allowed for api/v1/people/match is 2 times per minute. "
               "Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade.")
    assert r.json() == {"message": message, "error_details": {"code": "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED",
                                                              "message": message}}
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


# -- the sandbox's clock ------------------------------------------------------------------------------


def wsgi(sb: Sandbox, key: str = DEFAULT_API_KEY) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://sandbox.invalid/api/v1/",
                        headers={"X-Api-Key": key} if key else {})


def test_clock_drives_windows_latency_and_timestamps():
    clock = FakeClock()
    sb = small(clock, n_orgs=10, limits={"auth/health": (2, None, None)}, latency=5.0)
    with wsgi(sb) as c:
        started = time.monotonic()
        assert [c.get("auth/health").status_code for _ in range(3)] == [200, 200, 429]
        assert clock.sleeps == [5.0, 5.0, 5.0]  # latency slept on the sandbox's clock, not for real
        clock.advance(60)
        assert c.get("auth/health").status_code == 200  # the minute window reset on the fake clock
        assert time.monotonic() - started < 2.0
    assert sb.requests[-1].t == clock.time() - 5.0


# -- mixed_companies/search: saved accounts -------------------------------------------------------------


def test_company_search_lists_saved_accounts_apart(api):
    sb = api.sb
    a, b, c = sb.world.orgs[0], sb.world.orgs[1], sb.world.orgs[2]
    by_domain = api.post("accounts", headers=MASTER, json={"name": "Our " + a["name"], "domain": a["primary_domain"]}).json()["account"]
    by_org = api.post("accounts/bulk_create", headers=MASTER,
                      json={"accounts": [{"name": b["name"], "organization_id": b["id"]}]}).json()["created_accounts"][0]
    r = api.post("mixed_companies/search", headers=MASTER, json={"per_page": 5})
    body = r.json()
    assert [x["id"] for x in body["accounts"]] == [by_domain["id"], by_org["id"]]
    assert [x["organization_id"] for x in body["accounts"]] == [a["id"], b["id"]]
    assert body["accounts"][0]["domain"] == a["primary_domain"] and body["accounts"][0]["name"] == "Our " + a["name"]
    assert body["accounts"][1]["domain"] == b["primary_domain"]
    assert [o["id"] for o in body["organizations"]] == [o["id"] for o in sb.world.orgs[2:5]]
    assert c["id"] in [o["id"] for o in body["organizations"]]
    assert body["pagination"]["total_entries"] == len(sb.world.orgs)
    assert sb.requests[-1].credits == 1 and sb.requests[-1].n_records == 5
    # a search whose only hit is a saved account returns it (and is charged)
    only = api.post("mixed_companies/search", headers=MASTER, json={"q_organization_domains_list": [a["primary_domain"]]}).json()
    assert only["organizations"] == [] and [x["id"] for x in only["accounts"]] == [by_domain["id"]]
    assert only["pagination"]["total_entries"] == 1 and sb.requests[-1].credits == 1
    assert sb.credits_consumed == 2


def test_company_search_saved_accounts_switch_off(make_api):
    api = make_api(small(search_saved_accounts=False))
    org = api.sb.world.orgs[0]
    api.post("accounts", headers=MASTER, json={"name": org["name"], "domain": org["primary_domain"]})
    body = api.post("mixed_companies/search", headers=MASTER, json={"q_organization_domains_list": [org["primary_domain"]]}).json()
    assert body["accounts"] == [] and [o["id"] for o in body["organizations"]] == [org["id"]]


# -- people: omitted misses, stubs, match_confidence ----------------------------------------------------


def test_bulk_match_can_omit_misses(make_api):
    api = make_api(small(omit_bulk_misses=True))
    a, b = with_email(api.sb, 2)
    details = [{"email": a["email"]}, {"email": "ghost@nowhere.example"}, {"email": b["email"]}, {"first_name": "No", "last_name": "Body"}]
    body = api.post("people/bulk_match", headers=MASTER, json={"details": details}).json()
    assert [m["id"] for m in body["matches"]] == [a["id"], b["id"]]
    assert (body["total_requested_enrichments"], body["unique_enriched_records"], body["missing_records"]) == (4, 2, 2)
    assert body["credits_consumed"] == 2 == api.sb.credits_consumed


def test_stub_misses_on_match_and_bulk_match(make_api):
    api = make_api(small(stub_misses=True))
    sb = api.sb
    org = sb.world.orgs[3]
    r = api.post("people/match", headers=MASTER, json={"email": f"nobody.here@{org['primary_domain']}"})
    person = r.json()["person"]
    assert r.status_code == 200 and person["id"] is None and person["name"] == "" and person["match_confidence"] == "none"
    assert person["organization"]["id"] == org["id"] == person["organization_id"]
    unknown = api.post("people/match", headers=MASTER, json={"email": "who@unknown-co.example"}).json()["person"]
    assert unknown["organization"] == {"id": None, "name": None, "website_url": "http://www.unknown-co.example",
                                       "primary_domain": "unknown-co.example"}
    bare = api.post("people/match", headers=MASTER, json={"first_name": "No", "last_name": "Body"}).json()["person"]
    assert bare["organization"] is None and bare["match_confidence"] == "none"
    hit = with_email(sb, 1)[0]
    body = api.post("people/bulk_match", headers=MASTER,
                    json={"details": [{"email": hit["email"]}, {"email": f"x@{org['primary_domain']}"}]}).json()
    assert body["matches"][0]["id"] == hit["id"] and "match_confidence" not in body["matches"][0]
    assert body["matches"][1]["id"] is None and body["matches"][1]["organization"]["id"] == org["id"]
    assert body["missing_records"] == 1 and body["unique_enriched_records"] == 1
    assert sb.credits_consumed == 1  # stubs are misses: free
    # omitting wins over stubbing
    both = make_api(small(stub_misses=True, omit_bulk_misses=True))
    body = both.post("people/bulk_match", headers=MASTER, json={"details": [{"email": "a@b.example"}]}).json()
    assert body["matches"] == [] and body["missing_records"] == 1


def test_match_confidence_with_waterfall_and_always(make_api):
    api = make_api(small())
    sb = api.sb
    p = with_email(sb, 1)[0]
    org = p["organization"]
    details = [{"email": p["email"]}, {"first_name": p["first_name"], "last_name": p["last_name"], "domain": org["primary_domain"]},
               {"name": p["name"], "organization_name": org["name"]}, {"email": "ghost@nowhere.example"}]
    plain = api.post("people/bulk_match", headers=MASTER, json={"details": details}).json()
    assert all("match_confidence" not in m for m in plain["matches"] if m) and plain["matches"][3] is None
    water = api.post("people/bulk_match", headers=MASTER,
                     json={"details": details, "run_waterfall_email": True, "poll_only": True}).json()
    assert [m["match_confidence"] for m in water["matches"]] == ["high", "medium", "low", "none"]
    assert water["matches"][3]["id"] is None and water["waterfall"]["status"] == "accepted"
    assert isinstance(water["request_id"], int)
    always = make_api(small(match_confidence_always=True))
    one = always.post("people/match", headers=MASTER, json={"email": p["email"]}).json()["person"]
    assert one["match_confidence"] == "high"
    assert always.post("people/match", headers=MASTER, json={"email": "a@b.example"}).json() == {"person": None}


# -- organisations: revenue spelling, rewritten domains -------------------------------------------------


def test_revenue_spellings(make_api):
    default = make_api(small())
    org = default.sb.world.orgs[0]
    got = default.get("organizations/enrich", headers=MASTER, params={"domain": org["primary_domain"]}).json()["organization"]
    assert got["annual_revenue"] == org["annual_revenue"] and "organization_revenue" not in got
    only = make_api(small(revenue_spelling="organization"))
    got = only.get("organizations/enrich", headers=MASTER, params={"domain": org["primary_domain"]}).json()["organization"]
    assert got["organization_revenue"] == org["annual_revenue"] and got["organization_revenue_printed"] == org["annual_revenue_printed"]
    assert "annual_revenue" not in got and "annual_revenue_printed" not in got
    assert only.sb.world.orgs[0]["annual_revenue"] == org["annual_revenue"]  # the world itself is untouched
    mixed = make_api(small(revenue_spelling="mixed"))
    orgs = mixed.sb.world.orgs[:10]
    answer = mixed.post("organizations/bulk_enrich", headers=MASTER, json={"domains": [o["primary_domain"] for o in orgs]}).json()
    served = answer["organizations"]
    assert all(o["organization_revenue"] == w["annual_revenue"] for o, w in zip(served, orgs))
    with_annual = ["annual_revenue" in o for o in served]
    assert any(with_annual) and not all(with_annual)
    person = next(p for p in mixed.sb.world.people if p["email"])
    match = mixed.post("people/match", headers=MASTER, json={"email": person["email"]}).json()["person"]
    assert "annual_revenue" not in match["organization"] and "organization_revenue" in match["organization"]
    item = mixed.post("mixed_companies/search", headers=MASTER, json={"per_page": 1}).json()["organizations"][0]
    assert item["organization_revenue"] == mixed.sb.world.orgs[0]["annual_revenue"]
    with pytest.raises(ValueError, match="revenue_spelling"):
        SandboxConfig(revenue_spelling="yearly")


def test_rewritten_domains_answer_under_the_primary_domain(make_api):
    base = build_world(7, 60)
    real, other = base.orgs[0], base.orgs[1]
    api = make_api(small(rewrite_domains={"fb-alias.example": real["primary_domain"]}))
    body = api.post("organizations/bulk_enrich", headers=MASTER,
                    json={"domains": ["https://www.FB-alias.example/", other["primary_domain"], "nobody.example"]}).json()
    assert [o["primary_domain"] for o in body["organizations"]] == [real["primary_domain"], other["primary_domain"]]
    assert (body["unique_domains"], body["unique_enriched_records"], body["missing_records"]) == (3, 2, 1)
    assert api.sb.credits_consumed == 2
    single = api.get("organizations/enrich", headers=MASTER, params={"domain": "fb-alias.example"}).json()["organization"]
    assert single["id"] == real["id"]
    # alias and primary domain in one request: one organisation, charged once
    twice = api.post("organizations/bulk_enrich", headers=MASTER, json={"domains": ["fb-alias.example", real["primary_domain"]]}).json()
    assert len(twice["organizations"]) == 1 and twice["missing_records"] == 0 and api.sb.requests[-1].credits == 1
    auto = make_api(small(rewrite_domains=True))
    alias = real["primary_domain"].replace(".example", "-alias.example")
    assert auto.get("organizations/enrich", headers=MASTER, params={"domain": alias}).json()["organization"]["id"] == real["id"]
    with pytest.raises(ValueError, match="rewrite_domains"):
        small(rewrite_domains={"x.example": "not-in-the-world.example"})


# -- bulk updates and ignored fields ----------------------------------------------------------------------


def make_contacts(api, n):
    rows = [{"first_name": f"F{i}", "last_name": "L", "email": f"c{i}@acme.example"} for i in range(n)]
    created = []
    for start in range(0, n, 100):
        created += api.post("contacts/bulk_create", headers=MASTER, json={"contacts": rows[start:start + 100]}).json()["created_contacts"]
    return [c["id"] for c in created]


def test_contacts_bulk_update(api):
    sb = api.sb
    ids = make_contacts(api, 3)
    r = api.post("contacts/bulk_update", headers=MASTER, json={"contact_attributes": [
        {"id": ids[0], "title": "CEO", "industry": "Mining"}, {"id": ids[1], "first_name": "Zed", "email": "zed@acme.example"}]})
    assert r.status_code == 200 and [c["id"] for c in r.json()["contacts"]] == ids[:2]
    assert set(r.json()["contacts"][0]) == {"id", "first_name", "last_name", "email", "title", "organization_name", "owner_id",
                                             "account_id", "present_raw_address", "linkedin_url", "updated_at"}
    assert sb.store.contacts[ids[0]]["title"] == "CEO" and sb.store.contacts[ids[1]]["name"] == "Zed L"
    assert "industry" not in sb.store.contacts[ids[0]]
    assert {"endpoint": "contacts/bulk_update", "field": "industry", "id": ids[0]} in sb.ignored_fields
    shared = api.post("contacts/bulk_update", headers=MASTER, json={"contact_ids": ids, "title": "VP"}).json()
    assert [c["title"] for c in shared["contacts"]] == ["VP"] * 3
    # an unknown id refuses the whole batch: nothing is written
    bad = api.post("contacts/bulk_update", headers=MASTER, json={"contact_attributes": [
        {"id": ids[0], "title": "Changed"}, {"id": "ffffffffffffffffffffffff", "title": "x"}]})
    assert bad.status_code == 422 and bad.json()["error"] == "Validation failed"
    assert list(bad.json()["error_details"]) == ["ffffffffffffffffffffffff"]
    assert sb.store.contacts[ids[0]]["title"] == "VP"
    no_id = api.post("contacts/bulk_update", headers=MASTER, json={"contact_attributes": [{"title": "x"}]})
    assert no_id.status_code == 422 and "contact_attributes[0]" in no_id.json()["error_details"]
    for body in ({}, {"contact_ids": []}, {"contact_attributes": "nope"}):
        r = api.post("contacts/bulk_update", headers=MASTER, json=body)
        assert r.status_code == 422 and r.json() == {"error": "Please provide either contact_ids or contact_attributes"}
    assert sb.credits_consumed == 0


def test_contacts_bulk_update_async_and_limits(api):
    sb = api.sb
    ids = make_contacts(api, 101)
    r = api.post("contacts/bulk_update", headers=MASTER, json={"contact_attributes": [{"id": i, "title": "Async"} for i in ids]})
    job = r.json()["entity_progress_job"]
    assert r.status_code == 200 and set(r.json()) == {"entity_progress_job"}
    assert job["job_type"] == "contact_bulk_update" and job["status"] == "pending" and job["entity_ids"] == ids
    assert set(job) == {"id", "job_type", "status", "entity_ids", "created_at", "updated_at"}
    assert all(sb.store.contacts[i]["title"] == "Async" for i in ids)  # applied at once (see the docstring)
    small_async = api.post("contacts/bulk_update", headers=MASTER, json={"contact_ids": ids[:2], "title": "T", "async": True}).json()
    assert "entity_progress_job" in small_async
    sync = api.post("contacts/bulk_update", headers=MASTER, json={"contact_ids": ids[:100], "title": "Sync"}).json()
    assert len(sync["contacts"]) == 100
    too_many = api.post("contacts/bulk_update", headers=MASTER, json={"contact_ids": [ids[0]] * 1001, "title": "x"})
    assert too_many.status_code == 422 and too_many.json() == {"error": "Please limit your array to fewer than 1000."}
    assert sb.store.contacts[ids[0]]["title"] == "Sync"
    assert api.post("contacts/bulk_update", headers=MASTER, json={"contact_ids": [ids[0]] * 1000, "title": "k"}).status_code == 200


def test_accounts_bulk_update(api):
    sb = api.sb
    made = api.post("accounts/bulk_create", headers=MASTER,
                    json={"accounts": [{"name": "A", "domain": "a.example"}, {"name": "B"}]}).json()["created_accounts"]
    ids = [a["id"] for a in made]
    r = api.post("accounts/bulk_update", headers=MASTER, json={"account_attributes": [
        {"id": ids[0], "name": "A2", "account_stage_id": "stage-1", "industry": "Retail", "domain": "other.example",
         "typed_custom_fields": {"f1": "v"}}]})
    answer = r.json()["accounts"][0]
    assert r.status_code == 200 and answer["name"] == "A2" and answer["account_stage_id"] == "stage-1"
    assert set(answer) == {"id", "name", "domain", "owner_id", "account_stage_id", "typed_custom_fields", "updated_at"}
    stored = sb.store.accounts[ids[0]]
    assert "industry" not in stored and stored["domain"] == "a.example" and stored["typed_custom_fields"] == {"f1": "v"}
    ignored = {(e["field"], e["id"]) for e in sb.ignored_fields if e["endpoint"] == "accounts/bulk_update"}
    assert ignored == {("industry", ids[0]), ("domain", ids[0])}
    shared = api.post("accounts/bulk_update", headers=MASTER, json={"account_ids": ids, "owner_id": "u2", "typed_custom_fields": {"x": 1}})
    assert [a["owner_id"] for a in shared.json()["accounts"]] == ["u2", "u2"]
    assert sb.store.accounts[ids[1]]["typed_custom_fields"] == {}  # not a shared field: ignored
    job = api.post("accounts/bulk_update", headers=MASTER, json={"account_ids": ids, "account_stage_id": "s2", "async": True}).json()
    assert job["entity_progress_job"]["job_type"] == "account_bulk_update" and sb.store.accounts[ids[1]]["account_stage_id"] == "s2"
    refused = api.post("accounts/bulk_update", headers=MASTER, json={"account_attributes": [{"id": ids[0], "name": "x"}], "async": True})
    assert refused.status_code == 422 and refused.json() == {"error": "Async processing is not permitted."}
    assert api.post("accounts/bulk_update", headers=MASTER, json={"account_ids": ids * 501, "name": "x"}).json() == {
        "error": "Please limit your array to fewer than 1000."}
    assert api.post("accounts/bulk_update", headers=MASTER, json={"name": "x"}).json() == {
        "error": "Please provide either account_ids or account_attributes"}
    unknown = api.post("accounts/bulk_update", headers=MASTER, json={"account_ids": ["nope"], "name": "x"})
    assert unknown.status_code == 422 and unknown.json()["error"] == "Validation failed"
    scoped = api.post("accounts/bulk_update", headers=SCOPED, json={"account_ids": ids, "name": "x"})
    assert scoped.status_code == 403 and scoped.json()["error"] == "api/v1/accounts/bulk_update is not accessible with this api_key"
    assert sb.store.accounts[ids[0]]["name"] == "A2"


def test_undocumented_account_fields_are_ignored_and_visible(api):
    sb = api.sb
    a = api.post("accounts", headers=MASTER, json={"name": "Acme", "industry": "Retail"}).json()["account"]
    assert "industry" not in a and "industry" not in sb.store.accounts[a["id"]]
    api.patch(f"accounts/{a['id']}", headers=MASTER, json={"industry": "Mining", "name": "Acme 2"})
    api.post("accounts/bulk_create", headers=MASTER, json={"accounts": [{"name": "B", "industry": "x", "num_employees": 3}]})
    api.patch(f"accounts/{a['id']}-missing", headers=MASTER, json={"industry": "Never recorded"})
    assert [(e["endpoint"], e["field"]) for e in sb.ignored_fields] == [
        ("accounts/create", "industry"), ("accounts/update", "industry"), ("accounts/bulk_create", "industry"),
        ("accounts/bulk_create", "num_employees")]
    assert sb.store.accounts[a["id"]]["name"] == "Acme 2" and "industry" not in sb.store.accounts[a["id"]]
    api.post("contacts", headers=MASTER, json={"first_name": "A", "favourite_colour": "blue", "run_dedupe": True})
    assert sb.ignored_fields[-1]["field"] == "favourite_colour" and sb.ignored_fields[-1]["endpoint"] == "contacts/create"


# -- poll_only and webhook_result ------------------------------------------------------------------------


def test_poll_only_gives_a_request_id_and_webhook_result_follows_the_clock():
    clock = FakeClock()
    sb = small(clock=clock, webhook_result_delay=40)
    with wsgi(sb) as c:
        mobile = with_email(sb, 2, mobile=True)
        plain = with_email(sb, 1, mobile=False)[0]
        details = [{"email": p["email"]} for p in mobile + [plain]] + [{"email": "ghost@nowhere.example"}]
        r = c.post("people/bulk_match", json={"details": details, "reveal_phone_number": True, "poll_only": True})
        body = r.json()
        rid = body["request_id"]
        assert r.status_code == 200 and isinstance(rid, int) and -(2**63) <= rid < 2**63
        assert body["credits_consumed"] == 3 and sb.credits_consumed == 3  # phones are charged when produced
        assert all("phone_numbers" not in m for m in body["matches"] if m)
        pending = c.get(f"webhook_result/{rid}")
        assert pending.status_code == 404 and pending.json() == {"error_code": "result_pending", "retry_after_seconds": 40}
        clock.advance(25)
        assert c.get(f"webhook_result/{rid}").json()["retry_after_seconds"] == 15
        clock.advance(15)
        ready = c.get(f"webhook_result/{rid}")
        assert ready.status_code == 200
        payload = ready.json()
        result = payload["webhook_result"]  # the documented envelope: request_id as text, the result inside
        assert payload["request_id"] == str(rid) and payload["request_type"] == "phone"
        assert result["credits_consumed"] == 16 and result["missing_records"] == 1
        people = {p["id"]: p for p in result["people"]}
        assert set(people) == {p["id"] for p in mobile + [plain]} and people[plain["id"]]["phone_numbers"] == []
        assert people[plain["id"]]["status"] == "not_found" and {people[p["id"]]["status"] for p in mobile} == {"success"}
        for p in mobile:
            (phone,) = people[p["id"]]["phone_numbers"]
            assert phone["raw_number"] == sb.world.mobile_phones[p["id"]] and phone["type_cd"] == "mobile"
            assert phone["sanitized_number"].startswith("+") and phone["sanitized_number"][1:].isdigit()
            assert {"raw_number", "sanitized_number", "type_cd", "status_cd", "dnc_status_cd"} <= set(phone)
        assert "emails" not in people[plain["id"]]
        assert sb.credits_consumed == 3 + 16 and [c_["credits"] for c_ in sb.async_charges] == [16]
        assert c.get(f"webhook_result/{rid}").status_code == 200 and sb.credits_consumed == 19  # charged once
        assert all(r_.credits == 0 for r_ in sb.requests if r_.path == "webhook_result/{id}")  # polling is free
        clock.advance(30 * 86400)
        gone = c.get(f"webhook_result/{rid}")
        assert gone.status_code == 410 and gone.json()["error_code"] == "request_id_expired"


def test_webhook_result_refuses_bad_and_unknown_ids(api):
    for bad in ("abc", "1.5", str(2**63), str(-(2**63) - 1), "--1", "1e3"):
        r = api.get(f"webhook_result/{bad}", headers=MASTER)
        assert r.status_code == 400 and r.json()["error_code"] == "invalid_request_id", bad
    for unknown in (str(-(2**63)), str(2**63 - 1), "7"):
        r = api.get(f"webhook_result/{unknown}", headers=MASTER)
        assert r.status_code == 404 and r.json()["error_code"] == "request_id_unknown"
    assert api.get("webhook_result/7", headers=SCOPED).status_code == 404  # the scoped key may poll
    assert api.sb.credits_consumed == 0


def test_poll_only_on_people_match_with_waterfall_and_negative_ids():
    clock = FakeClock()
    sb = small(clock=clock, webhook_result_delay=5)
    with wsgi(sb) as c:
        nomail = next(p for p in sb.world.people if p["email"] is None and int(p["id"][-1], 16) % 2 == 0)
        r = c.post("people/match", json={"id": nomail["id"], "run_waterfall_email": True, "poll_only": "true"}).json()
        assert r["person"]["match_confidence"] == "high" and "webhook_result" in r["waterfall"]["message"]
        clock.advance(5)
        (entry,) = c.get(f"webhook_result/{r['request_id']}").json()["webhook_result"]["people"]
        assert entry["phone_numbers"] == [] and entry["emails"][0]["email"].endswith("@" + nomail["organization"]["primary_domain"])
        assert sb.credits_consumed == 1  # no phone asked: nothing more to charge
        ids = [c.post("people/match", json={"email": "x@y.example", "reveal_phone_number": True, "poll_only": True}).json()["request_id"]
               for _ in range(12)]
        assert min(ids) < 0 < max(ids) and len(set(ids)) == 12
        assert "request_id" not in c.post("people/match", json={"email": "x@y.example", "poll_only": True}).json()
        for flags in ({"reveal_phone_number": True}, {"run_waterfall_phone": True}, {"run_waterfall_email": "true"}):
            refused = c.post("people/match", json={"email": "x@y.example", **flags})
            assert refused.status_code == 422 and "webhook_url" in refused.json()["error"], flags


def test_webhook_requests_are_pollable_and_charged_at_once():
    clock = FakeClock()
    sb = small(clock=clock, webhook_result_delay=10)
    with wsgi(sb) as c:
        p = with_email(sb, 1, mobile=True)[0]
        r = c.post("people/match", json={"email": p["email"], "reveal_phone_number": True, "webhook_url": "https://h.example/x"}).json()
        assert sb.credits_consumed == 9 and sb.webhook_deliveries[0]["request_id"] == r["request_id"]
        clock.advance(10)
        ready = c.get(f"webhook_result/{r['request_id']}").json()["webhook_result"]
        assert ready["people"][0]["phone_numbers"][0]["raw_number"] == sb.world.mobile_phones[p["id"]]
        assert ready["credits_consumed"] == 0 and sb.credits_consumed == 9  # nothing charged twice


# -- credit meter, health, usage stats -----------------------------------------------------------------------


def test_credit_usage_stats_follow_the_true_charges():
    clock = FakeClock(start=1_795_000_000.0)  # 2026-11-18
    limits = {"lead_credit": 50, "direct_dial_credit": 20, "export_credit": 5}
    sb = small(clock=clock, webhook_result_delay=1, credit_limits=limits)
    with wsgi(sb) as c:
        meter = c.post("usage_stats/credit_usage_stats").json()
        assert meter["current_credit_cycle"] == {"start_date": "2026-11-01", "end_date": "2026-11-30"}
        assert meter["credit_usage_stats"]["lead_credit"] == {"limit": 50, "consumed": 0, "left_over": 50}
        assert set(meter["credit_usage_stats"]) >= {"lead_credit", "direct_dial_credit", "export_credit", "ai_credit"}
        mobile = with_email(sb, 1, mobile=True)[0]
        c.post("people/bulk_match", json={"details": [{"email": mobile["email"]}], "reveal_phone_number": True, "poll_only": True})
        c.get("organizations/enrich", params={"domain": sb.world.orgs[0]["primary_domain"]})
        c.post("mixed_companies/search", json={"per_page": 2})
        stats = c.get("usage_stats/credit_usage_stats").json()["credit_usage_stats"]
        assert stats["lead_credit"] == {"limit": 50, "consumed": 3, "left_over": 47}
        assert stats["direct_dial_credit"]["consumed"] == 0  # the phone is not produced yet
        clock.advance(1)
        stats = c.post("usage_stats/credit_usage_stats").json()["credit_usage_stats"]
        assert stats["direct_dial_credit"] == {"limit": 20, "consumed": 8, "left_over": 12}
        sb.charge_outside(60, "lead_credit")
        stats = c.post("usage_stats/credit_usage_stats").json()["credit_usage_stats"]
        assert stats["lead_credit"] == {"limit": 50, "consumed": 63, "left_over": 0}
        assert sb.credits_consumed == 3 + 8  # outside spending is only on the meter
        assert all(r.credits == 0 for r in sb.requests if r.path == "usage_stats/credit_usage_stats")
        assert c.post("usage_stats/credit_usage_stats", headers=SCOPED).status_code == 403
    cfg = SandboxConfig(n_orgs=10, credit_cycle={"start_date": "2026-01-05", "end_date": "2026-02-04"}).with_api_key(
        "meter-only", master=False, allowed=["usage_stats/credit_usage_stats"])
    with wsgi(Sandbox(cfg), "meter-only") as c:
        r = c.post("usage_stats/credit_usage_stats")
        assert r.status_code == 200 and r.json()["current_credit_cycle"]["start_date"] == "2026-01-05"


def test_health_logged_out_switch(make_api):
    default = make_api(small())
    assert default.get("auth/health", headers={"X-Api-Key": "nope"}).status_code == 401
    api = make_api(small(health_logged_out=True))
    for headers in ({"X-Api-Key": "nope"}, {}):
        r = api.get("auth/health", headers=headers)
        assert r.status_code == 200 and r.json() == {"is_logged_in": False}
    assert api.get("auth/health", headers=MASTER).json() == {"healthy": True, "is_logged_in": True}
    assert api.post("people/match", headers={"X-Api-Key": "nope"}, json={"email": "a@b.example"}).status_code == 401


def test_usage_stats_key_forms(make_api):
    def keys(**kw):
        api = make_api(small(**kw))
        return list(api.post("usage_stats/api_usage_stats", headers=MASTER).json())

    array, path, mixed = keys(), keys(usage_stats_keys="path"), keys(usage_stats_keys="mixed")
    assert all(json.loads(k)[0].startswith("api/v1/") for k in array) and '["api/v1/people", "match"]' in array
    assert "api/v1/people/match" in path and not any(k.startswith("[") for k in path)
    assert len(array) == len(path) == len(mixed)
    assert any(k.startswith("[") for k in mixed) and any(k.startswith("api/v1/") for k in mixed)
    assert "api/v1/usage_stats/credit_usage_stats" in path and "api/v1/webhook_result/show" in path
    with pytest.raises(ValueError, match="usage_stats_keys"):
        SandboxConfig(usage_stats_keys="dict")


# -- hostile-server faults ---------------------------------------------------------------------------------


def test_hostile_credits_consumed_and_retry_after():
    clock = FakeClock()
    sb = small(clock=clock)
    p = with_email(sb, 1)[0]
    details = {"details": [{"email": p["email"]}]}
    with wsgi(sb) as c:
        for value, check in (("-100", lambda v: v == -100), ("0", lambda v: v == 0), ("nan", math.isnan),
                             ("1e300", lambda v: v == 1e300)):
            sb.inject(f"credits_consumed={value}", path="people/bulk_match")
            r = c.post("people/bulk_match", json=details)
            assert r.status_code == 200 and check(json.loads(r.text)["credits_consumed"]), value
        assert sb.credits_consumed == 4  # the true charge is unchanged
        for value in ("0", "-5", "nan"):
            sb.inject(f"retry_after={value}")
            r = c.post("people/bulk_match", json=details)
            assert r.status_code == 429 and r.headers["retry-after"] == value
        sb.inject("retry_after=past")
        past = email.utils.parsedate_to_datetime(c.post("people/bulk_match", json=details).headers["retry-after"])
        assert past.timestamp() < clock.time()
        assert sb.credits_consumed == 4  # 429 faults never reach the endpoint
    persistent = small(n_orgs=10, credits_consumed_override=-1.0, retry_after_override="0", limits={"people/bulk_match": (1, None, None)})
    with wsgi(persistent) as c:
        first = c.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
        assert first.json()["credits_consumed"] == -1.0
        second = c.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
        assert second.status_code == 429 and second.headers["retry-after"] == "0"
    for bad in ("credits_consumed", "credits_consumed=lots", "retry_after", "echo_key=1", "500=2", "teapot"):
        with pytest.raises(ValueError):
            sb.inject(bad)


def test_hostile_bodies_run_the_request_then_spoil_the_answer(mode, make_api):
    clock = FakeClock()
    sb = small(clock=clock)
    api = make_api(sb)
    p = with_email(sb, 1)[0]
    details = {"details": [{"email": p["email"]}]}
    sb.inject("deep_json")
    r = api.post("people/bulk_match", headers=MASTER, json=details)
    assert r.status_code == 200 and r.content.startswith(b'{"matches": [[[') and r.content.count(b"[") == 200_000
    with pytest.raises(RecursionError):
        json.loads(r.content)
    sb.inject("bad_gzip")
    with pytest.raises(httpx.DecodingError):
        api.post("people/bulk_match", headers=MASTER, json=details)
    sb.inject("oversized=3000000")
    big = api.post("people/bulk_match", headers=MASTER, json=details)
    assert len(big.content) == 3_000_000 and big.json()["matches"][0]["id"] == p["id"]
    sb.inject("echo_key")
    echoed = api.post("people/bulk_match", headers=MASTER, json=details)
    assert echoed.status_code == 200 and DEFAULT_API_KEY in echoed.json()["matches"][0]["name"]
    assert echoed.json()["echo"] == {"x-api-key": DEFAULT_API_KEY}
    sb.inject("wrong_shape")
    wrong = api.post("people/bulk_match", headers=MASTER, json=details).json()
    assert wrong["matches"] == [f"matches {p['id']}"]
    sb.inject("wrong_shape", path="people/match")
    assert isinstance(api.post("people/match", headers=MASTER, json={"email": p["email"]}).json()["person"], str)
    assert sb.credits_consumed == 6  # every spoiled answer was charged for real
    sb.inject("trickle=0.25")
    before = len(clock.sleeps)
    slow = api.get("auth/health", headers=MASTER)
    assert slow.json() == {"healthy": True, "is_logged_in": True}
    assert clock.sleeps[before:] == [0.25] * len(slow.content)  # one byte per tick of the sandbox's clock


# -- recorded shapes -----------------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "apollo"
DATA_KEYED = {"industry_tag_hash", "typed_custom_fields"}


def shape_errors(want, got, where: str = "$") -> list[str]:
    """Where ``got`` lacks the structure of ``want``: every key of a fixture object must be present with a value of
    the same kind (objects, lists, strings, numbers, booleans); a null in the fixture accepts anything except inside
    lists, where null and record positions must agree; values themselves are not compared."""
    if want is None:
        return []
    if isinstance(want, dict):
        return _object_errors(want, got, where)
    if isinstance(want, list):
        return _list_errors(want, got, where)
    if got is None:
        return []
    kind = next(k for k in ((bool,), (int, float), (str,)) if isinstance(want, k))
    ok = isinstance(got, kind) and (kind == (bool,) or not isinstance(got, bool))
    return [] if ok else [f"{where}: expected {kind[0].__name__}, got {type(got).__name__}"]


def _object_errors(want: dict, got, where: str) -> list[str]:
    if not isinstance(got, dict):
        return [f"{where}: expected an object, got {type(got).__name__}"]
    errors = []
    for k, v in want.items():
        if k not in got:
            errors.append(f"{where}.{k}: missing")
        elif k in DATA_KEYED:  # its keys are data (an industry name, a custom field id): only the kind counts
            errors += [] if isinstance(got[k], dict) else [f"{where}.{k}: expected an object"]
        else:
            errors += shape_errors(v, got[k], f"{where}.{k}")
    return errors


def _list_errors(want: list, got, where: str) -> list[str]:
    if not isinstance(got, list):
        return [f"{where}: expected a list, got {type(got).__name__}"]
    if want and not got:
        return [f"{where}: empty list"]
    if sum(w is None for w in want) != sum(g is None for g in got):
        return [f"{where}: null positions differ"]
    if len(want) == len(got):
        pairs = list(zip(want, got))
        if any((w is None) != (g is None) for w, g in pairs):  # same count, other places
            return [f"{where}: null positions differ"]
        return [e for i, (w, g) in enumerate(pairs) for e in shape_errors(w, g, f"{where}[{i}]")]
    return [e for i, w in enumerate(want) for e in min((shape_errors(w, g, f"{where}[{i}]") for g in got), key=len)]


def rich(sb, n, mobile=None) -> list[dict]:
    """People with an e-mail whose organisation has funding events (so no list in the answer is empty)."""
    found = [p for p in with_email(sb, 1, mobile) + sb.world.people if p["email"] and p["organization"]["funding_events"]
             and (mobile is None or (p["id"] in sb.world.mobile_phones) == mobile)]
    return list({p["id"]: p for p in found}.values())[:n]


def _people(sb, c, **extra):
    a, b = rich(sb, 2)
    return c.post("people/bulk_match", json={"details": [{"email": a["email"]}, {"email": "ghost@nowhere.example"},
                                                         {"email": b["email"]}], **extra})


def _fixture_scenarios(clock):
    """fixture file -> (SandboxConfig switches, a function (sandbox, client) -> response)."""
    world = build_world(7, 60)
    first, second, third = [o for o in world.orgs if o["funding_events"]][:3]

    def companies(sb, c):
        c.post("accounts", json={"name": first["name"], "domain": first["primary_domain"]})
        domains = [o["primary_domain"] for o in (first, second, third)]
        return c.post("mixed_companies/search", json={"q_organization_domains_list": domains})

    def webhook(state):
        def run(sb, c):
            p = rich(sb, 1, mobile=True)[0]
            rid = c.post("people/match", json={"email": p["email"], "reveal_phone_number": True, "poll_only": True,
                                               "run_waterfall_email": state != "phone"}).json()["request_id"]
            clock.advance({"pending": 0, "ready": 30, "phone": 30, "expired": 31 * 86400}.get(state, 0))
            return c.get(f"webhook_result/{ {'unknown': '42', 'invalid': 'x42'}.get(state, rid)}")
        return run

    def contacts_update(n):
        def run(sb, c):
            ids = [x["id"] for x in c.post("contacts/bulk_create", json={"contacts": [
                {"first_name": f"F{i}", "email": f"f{i}@acme.example"} for i in range(min(n, 100))]}).json()["created_contacts"]]
            return c.post("contacts/bulk_update", json={"contact_ids": (ids * 2)[:n], "title": "VP"})
        return run

    def accounts_update(sb, c):
        ids = [a["id"] for a in c.post("accounts/bulk_create", json={"accounts": [{"name": "A"}]}).json()["created_accounts"]]
        return c.post("accounts/bulk_update", json={"account_attributes": [{"id": ids[0], "account_stage_id": "s1"}]})

    return {
        "people_bulk_match_null_misses.json": ({}, _people),
        "people_bulk_match_omitted_misses.json": ({"omit_bulk_misses": True}, _people),
        "people_bulk_match_match_confidence.json": (
            {}, lambda sb, c: c.post("people/bulk_match", json={"details": [{"email": rich(sb, 1)[0]["email"]}, {
                "email": f"nobody@{first['primary_domain']}"}], "run_waterfall_email": True, "poll_only": True})),
        "people_bulk_match_poll_only.json": (
            {}, lambda sb, c: c.post("people/bulk_match", json={"details": [{"email": rich(sb, 1)[0]["email"]}],
                                                                "reveal_phone_number": True, "poll_only": True})),
        "people_match_stub_miss.json": (
            {"stub_misses": True}, lambda sb, c: c.post("people/match", json={"email": f"nobody@{first['primary_domain']}"})),
        "organizations_bulk_enrich_omitted_misses.json": (
            {"rewrite_domains": {"qm-freight.example": second["primary_domain"]}},
            lambda sb, c: c.post("organizations/bulk_enrich", json={"domains": [first["primary_domain"], "qm-freight.example",
                                                                                "nobody-here.example"]})),
        "organizations_enrich_organization_revenue.json": (
            {"revenue_spelling": "organization"},
            lambda sb, c: c.get("organizations/enrich", params={"domain": first["primary_domain"]})),
        "mixed_companies_search_accounts_and_organizations.json": ({}, companies),
        "mixed_companies_search_2025_fields.json": (
            {"revenue_spelling": "organization"},
            lambda sb, c: c.post("mixed_companies/search", json={"q_organization_domains_list": [first["primary_domain"]]})),
        "people_match_2025_fields.json": (
            {"locked_emails": 1.0}, lambda sb, c: c.post("people/match", json={"email": rich(sb, 1)[0]["email"]})),
        "contacts_bulk_update_sync.json": ({}, contacts_update(2)),
        "contacts_bulk_update_async.json": ({}, contacts_update(101)),
        "accounts_bulk_update.json": ({}, accounts_update),
        "webhook_result_pending.json": ({}, webhook("pending")),
        "webhook_result_ready.json": ({}, webhook("ready")),
        "webhook_result_phone.json": ({}, webhook("phone")),
        "webhook_result_unknown.json": ({}, webhook("unknown")),
        "webhook_result_expired.json": ({}, webhook("expired")),
        "webhook_result_invalid.json": ({}, webhook("invalid")),
        "credit_usage_stats.json": ({}, lambda sb, c: c.post("usage_stats/credit_usage_stats")),
        "api_usage_stats_array_keys.json": ({}, lambda sb, c: c.post("usage_stats/api_usage_stats")),
        "api_usage_stats_path_keys.json": ({"usage_stats_keys": "path"}, lambda sb, c: c.post("usage_stats/api_usage_stats")),
        "auth_health_logged_out.json": ({"health_logged_out": True}, lambda sb, c: c.get("auth/health", headers={"X-Api-Key": "bad"})),
    }


def _answer(name, switches_on=True):
    clock = FakeClock()
    switches, run = _fixture_scenarios(clock)[name]
    sb = small(clock=clock, webhook_result_delay=30, **(switches if switches_on else {}))
    with wsgi(sb) as c:
        return run(sb, c)


def _keys_shape(want, got) -> list[str]:
    """api_usage_stats: the keys are data; compare one value's shape and the key form."""
    form = (lambda k: k.startswith("[")) if next(iter(want)).startswith("[") else (lambda k: k.startswith("api/v1/"))
    errors = [f"key {k!r} has the other form" for k in got if not form(k)]
    return errors + shape_errors(next(iter(want.values())), next(iter(got.values())))


def test_sandbox_answers_have_the_recorded_shapes():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    files = {p.name for p in FIXTURES.glob("*.json")} - {"manifest.json"}
    assert set(manifest) == files == set(_fixture_scenarios(FakeClock()))
    readme = (FIXTURES / "README.md").read_text()
    for name, entry in manifest.items():
        assert name in readme and entry["source"], name
        want = json.loads((FIXTURES / name).read_text())
        r = _answer(name)
        assert r.status_code == entry["status"], name
        compare = _keys_shape if name.startswith("api_usage_stats") else shape_errors
        assert compare(want, r.json()) == [], name


@pytest.mark.parametrize("name", [
    "people_bulk_match_omitted_misses.json", "people_match_stub_miss.json",
    "organizations_enrich_organization_revenue.json", "api_usage_stats_path_keys.json", "auth_health_logged_out.json",
    "mixed_companies_search_2025_fields.json",
])
def test_recorded_shapes_need_their_switch(name):
    """Without its switch the sandbox answers the documented shape, which the recording does not have."""
    want = json.loads((FIXTURES / name).read_text())
    r = _answer(name, switches_on=False)
    compare = _keys_shape if name.startswith("api_usage_stats") else shape_errors
    assert r.status_code != 200 or compare(want, r.json()) != []


def test_shape_errors_catches_differences():
    assert shape_errors({"a": [1, None]}, {"a": [2, None], "b": 1}) == []
    assert shape_errors({"a": 1}, {}) == ["$.a: missing"]
    assert shape_errors({"a": [None, {"x": "s"}]}, {"a": [{"x": "s"}, None]}) == ["$.a: null positions differ"]
    assert shape_errors({"a": "s"}, {"a": 3}) == ["$.a: expected str, got int"]
    assert shape_errors({"a": True}, {"a": 1}) == ["$.a: expected bool, got int"]
    assert shape_errors({"a": {"b": 1}}, {"a": "person"}) == ["$.a: expected an object, got str"]
