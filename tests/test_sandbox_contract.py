"""The sandbox honours the contract's documented limits and errors, in-process and over loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from apollo_frames.sandbox import DEFAULT_API_KEY, SCOPED_API_KEY, Sandbox, SandboxConfig

MASTER = {"X-Api-Key": DEFAULT_API_KEY}


@pytest.fixture(scope="module")
def world_sandbox():
    return Sandbox(SandboxConfig(seed=5, n_orgs=120))


@pytest.fixture(params=["wsgi", "loopback"])
def http(request, world_sandbox):
    """The same sandbox through both paths: an in-process transport and real loopback HTTP."""
    if request.param == "wsgi":
        with httpx.Client(transport=httpx.WSGITransport(app=world_sandbox), base_url="http://sandbox.invalid/api/v1/") as c:
            yield c
    else:
        with world_sandbox.serve() as base_url:
            assert base_url.startswith("http://127.0.0.1:")
            with httpx.Client(base_url=base_url + "/", timeout=10) as c:
                yield c


def emails(sb, n):
    return [p for p in sb.world.people if p.get("email")][:n]


def test_auth_errors(http):
    r = http.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
    assert r.status_code == 401 and r.text.strip() == "Invalid access credentials."
    assert "x-minute-requests-left" not in r.headers
    r = http.post("people/bulk_match", headers={"X-Api-Key": "nope"}, json={"details": []})
    assert r.status_code == 401
    r = http.post("people/bulk_match", params={"api_key": DEFAULT_API_KEY}, json={"details": []})
    assert r.status_code == 422 and "X-Api-Key header" in r.json()["error"]
    r = http.post("people/bulk_match", json={"api_key": DEFAULT_API_KEY, "details": []})
    assert r.status_code == 422 and "X-Api-Key header" in r.json()["error"]
    r = http.post("usage_stats/api_usage_stats", headers={"X-Api-Key": SCOPED_API_KEY})
    assert r.status_code == 403 and r.json()["error_code"] == "API_INACCESSIBLE"
    assert "usage_stats/api_usage_stats is not accessible" in r.json()["error"]


def test_bulk_match_alignment_counters_and_credits(http, world_sandbox):
    known = emails(world_sandbox, 3)
    before = world_sandbox.credits_consumed
    details = [{"email": known[0]["email"]}, {"email": "ghost@nowhere-at-all.example"}, {"email": known[1]["email"].upper()}]
    r = http.post("people/bulk_match", headers=MASTER, json={"details": details})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success"
    assert [m and m["id"] for m in body["matches"]] == [known[0]["id"], None, known[1]["id"]]
    assert body["total_requested_enrichments"] == 3 and body["missing_records"] == 1
    assert body["unique_enriched_records"] == 2 and body["credits_consumed"] == 2
    assert world_sandbox.credits_consumed - before == 2
    for header in ("x-rate-limit-minute", "x-minute-usage", "x-minute-requests-left"):
        assert header in r.headers


def test_hashed_email_and_name_with_domain_match(http, world_sandbox):
    person = emails(world_sandbox, 5)[4]
    md5 = hashlib.md5(person["email"].encode()).hexdigest()
    by_name = {"first_name": person["first_name"], "last_name": person["last_name"], "domain": person["organization"]["primary_domain"]}
    body = http.post("people/bulk_match", headers=MASTER, json={"details": [{"hashed_email": md5}, by_name]}).json()
    assert [m["id"] for m in body["matches"]] == [person["id"], person["id"]]


def test_batch_limits(http):
    r = http.post("people/bulk_match", headers=MASTER, json={"details": [{"email": f"x{i}@y.example"} for i in range(11)]})
    assert r.status_code == 400 and r.json()["error_code"] == "RECORD_LIMIT_EXCEEDED"
    r = http.post("organizations/bulk_enrich", headers=MASTER, json={"domains": [f"d{i}.example" for i in range(11)]})
    assert r.status_code == 400 and r.json()["error_code"] == "RECORD_LIMIT_EXCEEDED"
    r = http.post("people/bulk_match", headers=MASTER, json={})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_REQUEST"
    r = http.post("contacts/bulk_create", headers=MASTER, json={"contacts": [{"email": f"c{i}@z.example"} for i in range(101)]})
    assert r.status_code == 422 and "100 contacts" in r.json()["error"]
    r = http.post("contacts/bulk_create", headers=MASTER, json={})
    assert r.status_code == 422 and "contact_attributes" in r.json()["error"]


def test_bulk_enrich_omits_misses(http, world_sandbox):
    orgs = world_sandbox.world.orgs[:2]
    domains = [orgs[0]["primary_domain"], "missing-company-qq.example", "https://www." + orgs[1]["primary_domain"]]
    body = http.post("organizations/bulk_enrich", headers=MASTER, json={"domains": domains}).json()
    assert [o["id"] for o in body["organizations"]] == [orgs[0]["id"], orgs[1]["id"]]
    assert body["missing_records"] == 1 and "credits_consumed" not in body


def test_phone_reveal_rules():
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=120))
    with httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://sandbox.invalid/api/v1/") as http:
        people = emails(sb, 60)
        r = http.post("people/bulk_match", headers=MASTER, json={"details": [{"email": people[0]["email"]}], "reveal_phone_number": True})
        assert r.status_code == 400 and "webhook_url" in r.json()["error"]
        with_phone = [p for p in people if p["id"] in sb.world.mobile_phones][:3]
        without = [p for p in people if p["id"] not in sb.world.mobile_phones][:2]
        assert with_phone and without
        details = [{"email": p["email"]} for p in with_phone + without]
        body = http.post(
            "people/bulk_match",
            headers=MASTER,
            json={"details": details, "reveal_phone_number": True, "webhook_url": "https://hooks.example/x"},
        ).json()
        assert body["credits_consumed"] == len(with_phone) * 9 + len(without)
        assert all("phone_numbers" not in (m or {}) or not m["phone_numbers"] for m in body["matches"])
        assert len(sb.webhook_deliveries) == len(details)


def test_rate_limit_headers_429_and_reset():
    sb = Sandbox(
        SandboxConfig(seed=5, n_orgs=50, windows=(1, 3600, 86400), limits={"auth/health": (3, 100, 1000)}, daily_header_aliases=True)
    )
    with sb.serve() as base_url, httpx.Client(base_url=base_url + "/", headers=MASTER, timeout=10) as http:
        answers = [http.get("auth/health") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        first = answers[0].headers
        assert first["x-rate-limit-minute"] == "3" and first["x-minute-usage"] == "1" and first["x-minute-requests-left"] == "2"
        assert first["x-rate-limit-hourly"] == "100" and first["x-rate-limit-24-hour"] == "1000"
        assert first["x-rate-limit-daily"] == "1000" and first["x-daily-requests-left"] == "999"
        limited = answers[3]
        assert "times per minute" in limited.json()["message"] and "auth/health" in limited.json()["message"]
        assert 1 <= int(limited.headers["retry-after"]) <= 1
        time.sleep(1.05)
        again = http.get("auth/health")
        assert again.status_code == 200 and again.headers["x-minute-usage"] == "1"


def test_scripted_faults_and_lost_write():
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=50))
    with httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://sandbox.invalid/v1/", headers=MASTER) as http:
        sb.inject("503", "lost_write", path="contacts/bulk_create")
        payload = {"contacts": [{"email": "new.person@fresh.example", "first_name": "New"}], "run_dedupe": True}
        assert http.post("contacts/bulk_create", json=payload).status_code == 503
        assert len(sb.store.contacts) == 0  # an injected 5xx never reaches the endpoint
        lost = http.post("contacts/bulk_create", json=payload)
        assert lost.status_code == 502 and lost.content == b""
        assert len(sb.store.contacts) == 1  # ...but a lost write is committed
        retry = http.post("contacts/bulk_create", json=payload).json()
        assert retry["created_contacts"] == [] and len(retry["existing_contacts"]) == 1
        assert len(sb.store.contacts) == 1
        dup = http.post("contacts/bulk_create", json=dict(payload, run_dedupe=False)).json()
        assert len(dup["created_contacts"]) == 1 and len(sb.store.contacts) == 2  # no dedupe unless asked


def test_update_verbs_and_unknown_ids(http):
    created = http.post("contacts", headers=MASTER, json={"email": "edit.me@patch.example", "first_name": "Ed"}).json()["contact"]
    for verb in ("PATCH", "PUT"):
        r = http.request(verb, f"contacts/{created['id']}", headers=MASTER, json={"title": f"Head of {verb}"})
        assert r.status_code == 200 and r.json()["contact"]["title"] == f"Head of {verb}"
    r = http.request("PATCH", "contacts/000000000000000000000000", headers=MASTER, json={"title": "x"})
    assert r.status_code == 404
    r = http.post("accounts", headers={"X-Api-Key": SCOPED_API_KEY}, json={"name": "Acme", "domain": "acme.example"})
    assert r.status_code == 403


def test_usage_stats_shape(http):
    http.post("people/bulk_match", headers=MASTER, json={"details": [{"email": "a@b.example"}]})
    body = http.post("usage_stats/api_usage_stats", headers=MASTER).json()
    key = json.dumps(["api/v1/people", "bulk_match"])
    assert key in body or key.replace(" ", "") in body
    entry = body.get(key) or body[key.replace(" ", "")]
    assert set(entry) == {"day", "hour", "minute"}
    assert entry["minute"]["consumed"] >= 1 and set(entry["minute"]) == {"limit", "consumed", "left_over"}


def test_both_prefixes_and_health(world_sandbox):
    with httpx.Client(transport=httpx.WSGITransport(app=world_sandbox), base_url="http://sandbox.invalid", headers=MASTER) as c:
        for prefix in ("/api/v1", "/v1"):
            assert c.get(f"{prefix}/auth/health").json() == {"healthy": True, "is_logged_in": True}
        assert c.get("/api/v1/no/such/endpoint").status_code == 404


def test_world_is_deterministic_and_search_ids_enrich():
    a, b = Sandbox(SandboxConfig(seed=9, n_orgs=40)), Sandbox(SandboxConfig(seed=9, n_orgs=40))
    assert [p["email"] for p in a.world.people] == [p["email"] for p in b.world.people]
    assert [o["id"] for o in a.world.orgs] == [o["id"] for o in b.world.orgs]
    assert [p["id"] for p in Sandbox(SandboxConfig(seed=10, n_orgs=40)).world.people] != [p["id"] for p in a.world.people]
    with httpx.Client(transport=httpx.WSGITransport(app=a), base_url="http://sandbox.invalid/api/v1/", headers=MASTER) as c:
        teaser = c.post("mixed_people/api_search", json={"per_page": 5, "person_titles": ["a"]}).json()
        assert teaser["total_entries"] >= len(teaser["people"]) > 0 and "pagination" not in teaser
        first = teaser["people"][0]
        assert "email" not in first and first["last_name_obfuscated"]
        match = c.post("people/bulk_match", json={"details": [{"id": first["id"]}]}).json()["matches"][0]
        assert match["id"] == first["id"] and match["last_name"]
