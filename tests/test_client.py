"""HTTP client behaviour with respx: retries, pacing, typed errors, key hygiene."""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import pandas as pd
import pytest
import respx

import apollo_frames as af
from apollo_frames.client.http import endpoint_of
from apollo_frames.client.ratelimit import (
    RateLimiter,
    parse_rate_headers,
    parse_retry_after,
    window_from_message,
)
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import RequestAbandoned

BASE = "https://apollo.test/api/v1"
KEY = "test-key-0123456789-SECRET"
LIMIT_MSG = (
    "The maximum number of api calls allowed for api/v1/people/bulk_match is 20 times per {unit}. "
    "Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade."
)


@pytest.fixture
def fake_time():
    """A clock that only moves when something sleeps on it."""
    return FakeClock()


@pytest.fixture
def client(tmp_path, fake_time):
    c = af.ApolloClient(
        api_key=KEY,
        base_url=BASE,
        cache_dir=tmp_path,
        plan="paid",
        clock=fake_time,
    )
    yield c
    c.close()


def ok(json=None, headers=None):
    return httpx.Response(200, json=json if json is not None else {"ok": True}, headers=headers or {})


@respx.mock
def test_key_travels_only_in_header(client):
    route = respx.post(f"{BASE}/people/bulk_match").mock(return_value=ok())
    client.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
    request = route.calls.last.request
    assert request.headers["x-api-key"] == KEY
    assert KEY not in str(request.url)
    assert KEY.encode() not in request.content
    assert KEY not in repr(client) and KEY not in str(client.settings)


def test_key_refused_in_params_or_body(client):
    with pytest.raises(ValueError, match="X-Api-Key header"):
        client.post("people/match", json={"api_key": "x"})
    with pytest.raises(ValueError, match="X-Api-Key header"):
        client.get("auth/health", params={"api_key": "x"})


@respx.mock
def test_429_then_429_then_200_with_retry_after(client, fake_time):
    route = respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[
            httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}, headers={"Retry-After": "2"}),
            httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}, headers={"Retry-After": "3"}),
            ok({"matches": []}),
        ]
    )
    started = fake_time.monotonic()
    response = client.post("people/bulk_match", json={"details": []})
    assert response.attempts == 3 and route.call_count == 3
    assert response.data == {"matches": []}
    assert client.stats.rate_limited == 2 and client.stats.retries == 0
    assert fake_time.monotonic() - started >= 5  # waited what Apollo asked, no less


@respx.mock
def test_429_without_retry_after_waits_for_the_named_window(client, fake_time):
    respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}), ok()]
    )
    started = fake_time.monotonic()
    response = client.post("people/bulk_match", json={})
    assert response.attempts == 2
    assert 60 <= fake_time.monotonic() - started < 62


@respx.mock
def test_429s_do_not_use_the_retry_budget(tmp_path, fake_time):
    client = af.ApolloClient(
        api_key=KEY, base_url=BASE, cache_dir=tmp_path, max_retries=0, clock=fake_time
    )
    limited = httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}, headers={"Retry-After": "1"})
    respx.post(f"{BASE}/people/bulk_match").mock(side_effect=[limited] * 5 + [ok()])
    assert client.post("people/bulk_match", json={}).attempts == 6


@respx.mock
def test_429_http_date_retry_after(client, fake_time):
    when = email.utils.formatdate(fake_time.time() + 30, usegmt=True)
    respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": when}), ok()]
    )
    started = fake_time.monotonic()
    client.post("people/bulk_match", json={})
    assert 28 <= fake_time.monotonic() - started <= 32


@respx.mock
def test_429_beyond_wait_cap_is_a_rate_limit_error(tmp_path, fake_time):
    client = af.ApolloClient(
        api_key=KEY,
        base_url=BASE,
        cache_dir=tmp_path,
        max_rate_limit_wait=120,
        clock=fake_time,
    )
    route = respx.post(f"{BASE}/people/bulk_match").mock(
        return_value=httpx.Response(429, json={"message": LIMIT_MSG.format(unit="day")}, headers={"Retry-After": "50000"})
    )
    with pytest.raises(af.RateLimitError) as info:
        client.post("people/bulk_match", json={})
    err = info.value
    assert err.window == "day" and err.reset_at > fake_time.time() + 40000
    assert "day" in str(err) and "max_rate_limit_wait" in str(err)
    assert route.call_count == 1 and fake_time.sleeps == []  # no pointless 15-minute wait first


@respx.mock
def test_error_details_code_is_on_the_exception_and_decides_the_window(tmp_path, fake_time):
    client = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path, max_rate_limit_wait=120, clock=fake_time)
    code = "USAGE.RATE_LIMIT.HOURLY_LIMIT_EXCEEDED"
    respx.post(f"{BASE}/people/bulk_match").mock(return_value=httpx.Response(
        429, json={"error_details": {"code": code, "message": "Too many requests"}}, headers={"Retry-After": "3000"}))
    with pytest.raises(af.RateLimitError) as info:
        client.post("people/bulk_match", json={})
    assert info.value.code == code and info.value.window == "hour" and code in str(info.value)
    respx.post(f"{BASE}/people/match").mock(return_value=httpx.Response(
        422, json={"error": "bad", "error_details": {"code": "REQUEST.INVALID"}, "error_code": "OLD"}))
    with pytest.raises(af.ValidationError) as refused:
        client.post("people/match", json={})
    assert refused.value.code == "REQUEST.INVALID" and "[REQUEST.INVALID]" in str(refused.value)
    client.close()
    fresh = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path / "2", max_rate_limit_wait=120,
                            clock=fake_time)
    with pytest.warns(UserWarning, match="skipped"):
        out = af.enrich_people(pd.DataFrame({"email": ["a@b.example"]}), client=fresh, progress=False)
    assert out["apollo_status"].tolist() == ["skipped"] and code in out["apollo_error"][0]  # the row says the code
    fresh.close()


@respx.mock
def test_repeated_429s_add_up_to_the_cap(tmp_path, fake_time):
    client = af.ApolloClient(
        api_key=KEY, base_url=BASE, cache_dir=tmp_path, max_rate_limit_wait=100, clock=fake_time
    )
    limited = httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}, headers={"Retry-After": "30"})
    route = respx.post(f"{BASE}/people/bulk_match").mock(return_value=limited)
    with pytest.raises(af.RateLimitError):
        client.post("people/bulk_match", json={})
    assert route.call_count == 4  # 30 + 30 + 30 waited; the 4th pause would pass 100 s


@respx.mock
def test_5xx_burst_is_retried_with_backoff(client, fake_time):
    respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[httpx.Response(500, json={"error": "boom"}), httpx.Response(503), ok()]
    )
    response = client.post("people/bulk_match", json={})
    assert response.attempts == 3 and client.stats.retries == 2
    first, second = fake_time.sleeps
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0  # exponential, with at most 25% jitter


@respx.mock
def test_5xx_after_retries_is_server_error(client):
    route = respx.post(f"{BASE}/people/bulk_match").mock(return_value=httpx.Response(502, json={"error": "bad gateway"}))
    with pytest.raises(af.ApolloServerError) as info:
        client.post("people/bulk_match", json={})
    assert route.call_count == 4 and info.value.attempts == 4  # 1 + default 3 retries
    assert "502" in str(info.value) and "bad gateway" in str(info.value)


@respx.mock
def test_timeouts_are_retried_then_raised(client):
    route = respx.post(f"{BASE}/people/bulk_match").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(af.APITimeoutError) as info:
        client.post("people/bulk_match", json={})
    assert route.call_count == 4 and info.value.attempts == 4


@respx.mock
def test_a_request_no_attempt_of_which_connected_is_never_sent_and_a_timeout_may_have_been(client):
    respx.post(f"{BASE}/people/bulk_match").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(af.APIConnectionError) as refused:
        client.post("people/bulk_match", json={})
    assert refused.value.never_sent and refused.value.attempts == 4
    respx.post(f"{BASE}/people/bulk_match").mock(side_effect=[httpx.ConnectError("refused"), httpx.ReadTimeout("x"),
                                                             httpx.ConnectError("refused"), httpx.ConnectError("r")])
    with pytest.raises(af.APIConnectionError) as mixed:
        client.post("people/bulk_match", json={})
    assert not mixed.value.never_sent  # the timed-out attempt may have reached Apollo (and been charged)


@respx.mock
def test_an_abandoned_request_is_not_sent_again_nor_after_its_rate_limit_wait(client, fake_time):
    route = respx.post(f"{BASE}/people/bulk_match").mock(side_effect=[httpx.ReadTimeout("slow"), ok()])
    calls = []

    def abandon():
        calls.append(route.call_count)
        return route.call_count >= 1  # interrupted once the first attempt went out

    with pytest.raises(RequestAbandoned) as info:
        client.post("people/bulk_match", json={}, abandon=abandon)
    assert route.call_count == 1 and not info.value.never_sent and "interrupted" in str(info.value)
    # a request waiting for its window is given up during the wait, before it is sent
    respx.post(f"{BASE}/people/bulk_match").mock(return_value=ok(headers={
        "x-minute-usage": "20", "x-minute-requests-left": "0", "x-rate-limit-minute": "20"}))
    client.post("people/bulk_match", json={})  # the window is now spent
    sent = respx.calls.call_count
    with pytest.raises(RequestAbandoned) as waited:
        client.post("people/bulk_match", json={}, abandon=lambda: fake_time.slept > 0)
    assert waited.value.never_sent and respx.calls.call_count == sent and 0 < fake_time.slept <= 1.0


def test_limit_headers_a_server_could_not_mean_are_ignored():
    assert parse_rate_headers({"x-rate-limit-minute": "1e300", "x-minute-usage": "inf",
                               "x-minute-requests-left": "nan"}) == {}


@respx.mock
def test_non_idempotent_write_is_not_retried_once_sent(client):
    route = respx.post(f"{BASE}/contacts/bulk_create").mock(return_value=httpx.Response(500, json={"error": "x"}))
    with pytest.raises(af.ApolloServerError) as info:
        client.post("contacts/bulk_create", json={"contacts": []}, idempotent=False)
    assert route.call_count == 1 and info.value.outcome_unknown
    assert "outcome is unknown" in str(info.value)


@respx.mock
def test_non_idempotent_write_is_retried_when_it_never_connected(client):
    route = respx.post(f"{BASE}/contacts/bulk_create").mock(
        side_effect=[httpx.ConnectError("refused"), ok({"created_contacts": []})]
    )
    assert client.post("contacts/bulk_create", json={}, idempotent=False).attempts == 2
    assert route.call_count == 2


@respx.mock
def test_non_idempotent_read_timeout_is_outcome_unknown(client):
    respx.post(f"{BASE}/contacts/bulk_create").mock(side_effect=httpx.ReadTimeout("lost"))
    with pytest.raises(af.APITimeoutError) as info:
        client.post("contacts/bulk_create", json={}, idempotent=False)
    assert info.value.outcome_unknown and info.value.attempts == 1


@pytest.mark.parametrize(
    "status, body, error, words",
    [
        (401, "Invalid access credentials.", af.AuthenticationError, ["APOLLO_API_KEY", "Invalid access credentials"]),
        (
            403,
            {"error": "api/v1/usage_stats/api_usage_stats is not accessible with this api_key", "error_code": "API_INACCESSIBLE"},
            af.PermissionDeniedError,
            ["master key", "not accessible"],
        ),
        (422, {"error": "Please limit your array to 100 contacts or fewer."}, af.ValidationError, ["100 contacts"]),
        (
            400,
            {"status": "failed", "error_code": "RECORD_LIMIT_EXCEEDED", "error_message": "domain count cannot be more than 10"},
            af.ValidationError,
            ["cannot be more than 10"],
        ),
        (404, {"error": "not found"}, af.NotFoundError, ["404"]),
    ],
)
@respx.mock
def test_client_errors_are_typed_and_not_retried(client, status, body, error, words):
    kwargs = {"text": body} if isinstance(body, str) else {"json": body}
    route = respx.post(f"{BASE}/some/endpoint").mock(return_value=httpx.Response(status, **kwargs))
    with pytest.raises(error) as info:
        client.post("some/endpoint", json={})
    assert route.call_count == 1
    assert info.value.status_code == status
    for word in words:
        assert word in str(info.value)
    assert KEY not in str(info.value)


@respx.mock
def test_key_echoed_by_server_is_scrubbed_from_errors(client):
    respx.post(f"{BASE}/x").mock(return_value=httpx.Response(422, json={"error": f"bad key {KEY}"}))
    with pytest.raises(af.ValidationError) as info:
        client.post("x", json={})
    assert KEY not in str(info.value) and "***" in str(info.value)
    assert KEY not in str(info.value.body) and info.value.body == {"error": "bad key ***"}


@respx.mock
def test_key_never_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[httpx.Response(500), httpx.Response(429, json={"message": "x"}, headers={"Retry-After": "1"}), ok()]
    )
    client.post("people/bulk_match", json={"details": [{"email": "x@y.example"}]})
    assert caplog.records, "expected the client to log something at DEBUG"
    assert KEY not in caplog.text


def test_header_parsing_both_families():
    live = {
        "x-rate-limit-minute": "200",
        "x-minute-usage": "1",
        "x-minute-requests-left": "199",
        "x-rate-limit-hourly": "400",
        "x-hourly-usage": "1",
        "x-hourly-requests-left": "399",
        "x-rate-limit-24-hour": "2000",
        "x-24-hour-usage": "1",
        "x-24-hour-requests-left": "1999",
    }
    readings = parse_rate_headers(live)
    assert readings["minute"].limit == 200 and readings["minute"].left == 199
    assert readings["hour"].limit == 400 and readings["day"].left == 1999
    legacy = {"x-rate-limit-daily": "300", "x-daily-usage": "7", "x-daily-requests-left": "293", "x-rate-limit-minute": "50"}
    readings = parse_rate_headers(legacy)
    assert readings["day"].limit == 300 and readings["day"].usage == 7 and readings["day"].left == 293
    assert readings["minute"].left is None and "hour" not in readings
    assert parse_rate_headers({"x-rate-limit-minute": "10", "x-minute-usage": "4"})["minute"].left == 6
    assert parse_rate_headers({"content-type": "application/json"}) == {}


def test_retry_after_and_window_parsing():
    assert parse_retry_after("7") == 7
    assert parse_retry_after("nonsense") is None and parse_retry_after(None) is None
    assert 59 <= parse_retry_after(email.utils.formatdate(time.time() + 60, usegmt=True)) <= 61
    assert window_from_message(LIMIT_MSG.format(unit="hour")) == "hour"
    assert window_from_message("nothing here") is None


def test_endpoint_buckets_collapse_record_ids():
    assert endpoint_of("PATCH", "contacts/abc123") == "contacts/update"
    assert endpoint_of("PUT", "/accounts/abc123/") == "accounts/update"
    assert endpoint_of("POST", "contacts/bulk_create") == "contacts/bulk_create"
    assert endpoint_of("POST", "people/bulk_match") == "people/bulk_match"


def test_limiter_waits_when_headers_say_the_window_is_spent(fake_time):
    limiter = RateLimiter((None, None, None), (10, 3600, 86400), clock=fake_time)
    ticket = limiter.acquire("people/bulk_match")
    limiter.observe(ticket, {"x-rate-limit-minute": "3", "x-minute-usage": "1", "x-minute-requests-left": "2"})
    limiter.acquire("people/bulk_match")
    limiter.acquire("people/bulk_match")
    assert fake_time.sleeps == []
    started = fake_time.monotonic()
    limiter.acquire("people/bulk_match")  # the 4th in a 3-per-window: wait for the reset
    assert 10 <= fake_time.monotonic() - started <= 10.5


def test_limiter_corrects_for_requests_sent_after_the_reading(fake_time):
    limiter = RateLimiter((None, None, None), (10, 3600, 86400), clock=fake_time)
    first = limiter.acquire("e")
    for _ in range(3):
        limiter.acquire("e")  # three more in flight before the first answer arrives
    limiter.observe(first, {"x-rate-limit-minute": "5", "x-minute-usage": "1", "x-minute-requests-left": "4"})
    limiter.acquire("e")  # 5th: still allowed
    started = fake_time.monotonic()
    limiter.acquire("e")  # 6th: must wait
    assert fake_time.monotonic() - started >= 10


def _minute(limit: int, usage: int) -> dict:
    return {"x-rate-limit-minute": str(limit), "x-minute-usage": str(usage), "x-minute-requests-left": str(limit - usage)}


def test_limiter_loses_no_capacity_to_answers_out_of_order(fake_time):
    limiter = RateLimiter((None, None, None), (10, 3600, 86400), clock=fake_time)
    tickets = [limiter.acquire("e") for _ in range(5)]
    # The server counted them in the order 2, 1, 3, 5, 4 and answers come back in yet another order.
    for t, usage in ((tickets[0], 2), (tickets[3], 5), (tickets[1], 1), (tickets[4], 4), (tickets[2], 3)):
        limiter.observe(t, _minute(10, usage))
    assert limiter.snapshot()["e"]["minute"] == {"limit": 10, "left": 5}
    for _ in range(5):
        limiter.acquire("e")
    assert fake_time.sleeps == []
    started = fake_time.monotonic()
    limiter.acquire("e")  # the 11th in a 10-per-window
    assert fake_time.monotonic() - started >= 10


def test_limiter_counts_unanswered_requests_and_frees_every_ended_one(fake_time):
    limiter = RateLimiter((None, None, None), (10, 3600, 86400), clock=fake_time)
    first = limiter.acquire("e")
    limiter.observe(first, _minute(4, 1))
    bare, failed, waiting = limiter.acquire("e"), limiter.acquire("e"), limiter.acquire("e")
    assert limiter.snapshot()["e"]["minute"]["left"] == 0  # three in flight may all count
    limiter.release(failed)  # a connect failure or timeout: no answer will come
    limiter.release(failed)  # ending twice frees one slot only
    assert limiter.snapshot()["e"]["minute"]["left"] == 1
    limiter.observe(bare, {})  # a 5xx without limit headers ends it too; the next reading has the usage
    assert limiter.snapshot()["e"]["minute"]["left"] == 2
    limiter.observe(waiting, _minute(4, 3))  # the server had counted the bare 5xx after all
    assert limiter.snapshot()["e"]["minute"]["left"] == 1


def test_answers_without_headers_do_not_leak_slots(fake_time):
    limiter = RateLimiter((50, 200, 600), (60, 3600, 86400), clock=fake_time)
    for _ in range(150):  # e.g. 5xx answers, which Apollo does not count and which carry no limit headers
        limiter.observe(limiter.acquire("e"), {})
        fake_time.advance(0.5)
    ok = limiter.acquire("e")
    limiter.observe(ok, {"x-rate-limit-hourly": "200", "x-hourly-usage": "1", "x-hourly-requests-left": "199"})
    assert limiter.snapshot()["e"]["hour"]["left"] == 199


def test_a_429_spends_the_window_until_it_resets(fake_time):
    limiter = RateLimiter((None, None, None), (10, 3600, 86400), clock=fake_time)
    ticket = limiter.acquire("e")
    limiter.observe(ticket, _minute(100, 1))
    limiter.pause("e", retry_after=3, window="minute")
    assert limiter.snapshot()["e"]["minute"]["left"] == 0
    started = fake_time.monotonic()
    limiter.acquire("e")
    assert fake_time.monotonic() - started >= 3


def test_preset_seeds_limits_before_any_response(fake_time):
    limiter = RateLimiter((2, None, None), (60, 3600, 86400), clock=fake_time)
    limiter.acquire("e")
    limiter.acquire("e")
    started = fake_time.monotonic()
    limiter.acquire("e")
    assert fake_time.monotonic() - started >= 60


def test_limiter_refuses_a_wait_beyond_the_cap(fake_time):
    limiter = RateLimiter((1, None, None), (60, 3600, 86400), clock=fake_time)
    limiter.acquire("e")
    with pytest.raises(af.RateLimitError, match="minute"):
        limiter.acquire("e", max_wait=5)


def test_settings_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.delenv("APOLLO_API_KEY", raising=False)
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "c1"))
    with pytest.raises(af.ConfigurationError, match="APOLLO_API_KEY"):
        af.ApolloClient().settings.require_key()
    monkeypatch.setenv("APOLLO_API_KEY", "later-key-abcdefgh")
    monkeypatch.setenv("APOLLO_BASE_URL", "http://127.0.0.1:9/api/v1/")
    client = af.ApolloClient()
    assert client.settings.api_key == "later-key-abcdefgh"
    assert client.settings.base_url == "http://127.0.0.1:9/api/v1"
    assert client.settings.cache_dir == tmp_path / "c1"
    assert af.ApolloClient(base_url="http://127.0.0.1:1/v1").settings.base_url == "http://127.0.0.1:1/v1"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"concurrency": 0}, "concurrency"),
        ({"max_retries": -1}, "max_retries"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://api.apollo.io/api/v1?api_key=abc"}, "query string"),
        ({"plan": "gold"}, "plan"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, words, tmp_path):
    with pytest.raises(af.ConfigurationError, match=words):
        af.ApolloClient(api_key=KEY, cache_dir=tmp_path, **kwargs)


def test_preset_counts_every_request_until_a_reading_arrives(fake_time):
    limiter = RateLimiter((3, None, None), (60, 3600, 86400), clock=fake_time)
    for _ in range(3):
        limiter.observe(limiter.acquire("e"), {})  # answered, but no headers: the preset is all we know
    started = fake_time.monotonic()
    limiter.acquire("e")
    assert fake_time.monotonic() - started >= 60


# -- edge cases of the send loop -------------------------------------------------------------------


@respx.mock
def test_a_429_on_a_write_is_resent_without_an_unknown_outcome(client, fake_time):
    limited = httpx.Response(429, json={"message": LIMIT_MSG.format(unit="minute")}, headers={"Retry-After": "2"})
    route = respx.post(f"{BASE}/contacts/bulk_create").mock(side_effect=[limited, ok({"created_contacts": []})])
    response = client.post("contacts/bulk_create", json={"contacts": []}, idempotent=False)
    assert response.attempts == 2 and route.call_count == 2  # Apollo did not process the 429'd request
    assert fake_time.slept >= 2


@respx.mock
def test_a_5xx_retry_after_is_honoured(client, fake_time):
    respx.post(f"{BASE}/people/bulk_match").mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "7"}), ok()]
    )
    assert client.post("people/bulk_match", json={}).attempts == 2
    assert fake_time.sleeps == [7.0]


@respx.mock
def test_waiting_for_the_limiter_counts_against_the_wait_cap(tmp_path, fake_time):
    client = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path, rate_limits=(1, None, None),
                             max_rate_limit_wait=30, clock=fake_time)
    route = respx.post(f"{BASE}/people/bulk_match").mock(return_value=ok())
    client.post("people/bulk_match", json={})
    with pytest.raises(af.RateLimitError, match="minute") as info:
        client.post("people/bulk_match", json={})  # the next slot is a minute away: beyond 30 s
    assert route.call_count == 1 and fake_time.sleeps == []
    assert info.value.reset_at == pytest.approx(fake_time.time() + 60, abs=2)


@respx.mock
def test_limiter_waits_and_429_pauses_add_up_to_the_cap(tmp_path, fake_time):
    client = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path, rate_limits=(1, None, None),
                             window_seconds=(20, 3600, 86400), max_rate_limit_wait=50, clock=fake_time)
    limited = httpx.Response(429, json={"message": LIMIT_MSG.format(unit="hour")}, headers={"Retry-After": "25"})
    route = respx.post(f"{BASE}/people/bulk_match").mock(side_effect=[ok(), limited, ok()])
    client.post("people/bulk_match", json={})
    # the second call waits ~20 s for the window, draws a 429 asking 25 s more (45 s in all): allowed
    assert client.post("people/bulk_match", json={}).attempts == 2
    assert route.call_count == 3 and 45 <= fake_time.slept <= 50
    assert client.stats.rate_limited == 1 and client.stats.rate_limit_wait_s == pytest.approx(fake_time.slept)


@respx.mock
def test_a_connection_error_carries_no_request_and_no_key(client):
    respx.post(f"{BASE}/people/bulk_match").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(af.APIConnectionError) as info:
        client.post("people/bulk_match", json={})
    err = info.value
    assert isinstance(err, af.APIError) and not isinstance(err, af.APITimeoutError)
    assert err.attempts == 4 and not err.outcome_unknown
    assert err.__cause__ is None and err.__context__ is None
    assert KEY not in repr(vars(err)) and KEY not in str(err)


@respx.mock
def test_response_headers_that_echo_the_key_are_scrubbed(client):
    respx.post(f"{BASE}/x").mock(return_value=httpx.Response(403, json={"error": "no"}, headers={"x-debug": KEY}))
    with pytest.raises(af.PermissionDeniedError) as info:
        client.post("x", json={})
    assert info.value.headers["x-debug"] == "***"


def test_the_store_and_the_ledger_run_on_the_client_clock(tmp_path):
    clock = FakeClock(start=1_700_000_000.0)
    with af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path, clock=clock) as client:
        client.ledger.record(run_id="r", operation="enrich_people", endpoint="people/bulk_match",
                             records_sent=1, records_matched=1, credits=1, status=200)
        assert client.ledger.frame()["time"].iloc[0].timestamp() == 1_700_000_000.0
        key = client.cache.key("people/bulk_match", {"email": "a@b.example"})
        client.cache.set_many({key: {"id": "p1"}}, ttl=100)
        clock.advance(99)
        assert client.cache.get_many([key]) == {key: {"id": "p1"}}
        clock.advance(2)
        assert client.cache.get_many([key]) == {}  # expired on the client's clock, not the machine's


def test_a_sandbox_client_shares_the_sandbox_clock(tmp_path):
    from apollo_frames.sandbox import Sandbox, SandboxConfig

    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(n_orgs=5), clock=clock)
    with sandbox.client(cache_dir=tmp_path) as client:
        assert client.clock is clock and sandbox.store.clock is clock
        assert client.get("auth/health").data["healthy"] is True
    assert sandbox.requests[-1].t == clock.time()


def test_a_client_on_an_http_base_url_loads_no_certificates(sandbox, tmp_path, monkeypatch):
    import ssl

    def no_bundle(*args, **kwargs):
        raise AssertionError("a CA bundle was loaded for a client that never speaks TLS")

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", no_bundle)
    from apollo_frames.sandbox import DEFAULT_API_KEY

    with sandbox.serve() as base_url, af.ApolloClient(DEFAULT_API_KEY, base_url, cache_dir=tmp_path / "c") as client:
        assert base_url.startswith("http://127.0.0.1")
        assert client.post("people/bulk_match", json={"details": [{"email": "nobody@example.com"}]}).status_code == 200
