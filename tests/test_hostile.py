"""Servers we do not trust: lying credits, bad Retry-After, unreadable or malformed answers, trickling or huge
bodies, dead hosts, plain http, echoed keys; and frames with a MultiIndex through every operation."""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client.retry import rate_limit_floor, usable_retry_after
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    ConfigurationError,
)
from apollo_frames.engine.budget import trusted_credits
from apollo_frames.ops.people import enrich_people
from apollo_frames.sandbox import DEFAULT_API_KEY as DEFAULT_KEY
from apollo_frames.sandbox import client_for

BASE = "https://apollo.test/api/v1"
KEY = "test-key-0123456789-SECRET"


def make_client(tmp_path: Path, handler=None, clock: FakeClock | None = None, **kw: Any) -> af.ApolloClient:
    """A client on a MockTransport ``handler`` (or respx when None), on a fake clock."""
    transport = httpx.MockTransport(handler) if handler is not None else None
    kw.setdefault("plan", "paid")
    client = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path / "cache", clock=clock or FakeClock(),
                             transport=transport, retry_backoff=(0.01, 0.05), **kw)
    client.meter_threshold = math.inf  # these tests count requests; the credit meter's pre-flight has its own
    return client


def emails(n: int) -> pd.DataFrame:
    return pd.DataFrame({"email": [f"person{i}@acme{i % 3}.example" for i in range(n)]})


def bulk_match(credits: Any = "count", person=lambda detail: {"id": "p-" + detail["email"].split("@")[0],
                                                              "email": detail["email"], "name": "Pat"}):
    """A bulk_match handler answering every detail with ``person(detail)``, reporting ``credits``."""

    def handler(request: httpx.Request) -> httpx.Response:
        details = json.loads(request.content)["details"]
        matches = [person(d) for d in details]
        body: dict[str, Any] = {"matches": matches}
        if credits != "count":
            body["credits_consumed"] = credits
        return httpx.Response(200, content=json.dumps(body, allow_nan=True).encode(),
                              headers={"content-type": "application/json"})

    return handler


def never_answers(kind: type[httpx.TransportError] = httpx.ConnectError, seen: list | None = None):
    """A MockTransport handler that raises ``kind`` for every request (a dead host)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(1)
        raise kind("no answer", request=request)

    return handler


def walk(exc: BaseException) -> list[Any]:
    """Every object reachable from an exception's chain and attributes (not its traceback frames)."""
    seen: set[int] = set()
    found: list[Any] = []
    todo: list[Any] = [exc]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        found.append(obj)
        if isinstance(obj, BaseException):
            todo += [obj.__cause__, obj.__context__, *obj.args, *vars(obj).values()]
        elif isinstance(obj, dict):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set)):
            todo += list(obj)
        elif isinstance(obj, (httpx.Request, httpx.Response)):
            todo += [dict(obj.headers), str(obj.url)]
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            todo += list(vars(obj).values())
    return found


def assert_no_key(exc: BaseException) -> None:
    for obj in walk(exc):
        assert KEY not in str(obj), f"the key is reachable from {type(exc).__name__} via {type(obj).__name__}"
        assert not isinstance(obj, (httpx.HTTPError, httpx.Request)), f"{type(exc).__name__} chains {obj!r}"


# -- MultiIndex through every operation ---------------------------------------------------------------


def multi(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.index = pd.MultiIndex.from_tuples([("batch", i) for i in range(len(frame))], names=["src", "n"])
    return frame


@pytest.mark.parametrize("operation", ["enrich_people", "enrich_orgs", "search", "push_contacts", "push_accounts",
                                       "push_dry_run", "estimate"])
def test_every_operation_takes_a_multiindex(sandbox, client, operation):
    people = [p for p in sandbox.world.people if p.get("email")][:4]
    orgs = [o for o in sandbox.world.orgs if o.get("primary_domain")][:3]
    frames = {
        "enrich_people": lambda: pd.DataFrame({"email": [p["email"] for p in people]}),
        "enrich_orgs": lambda: pd.DataFrame({"domain": [o["primary_domain"] for o in orgs]}),
        "search": lambda: pd.DataFrame({"domain": [o["primary_domain"] for o in orgs]}),
        "push_contacts": lambda: pd.DataFrame({"Email": ["a@m1.example", "b@m1.example"], "First Name": ["A", "B"],
                                               "Last Name": ["X", "Y"]}),
        "push_accounts": lambda: pd.DataFrame({"Website": ["m1.example", "m2.example"], "Company": ["M1", "M2"]}),
        "push_dry_run": lambda: pd.DataFrame({"Email": ["c@m1.example"], "First Name": ["C"], "Last Name": ["Z"]}),
        "estimate": lambda: pd.DataFrame({"email": [p["email"] for p in people]}),
    }
    frame = multi(frames[operation]())
    run = {
        "enrich_people": lambda f: f.apollo.enrich_people(client=client, progress=False),
        "enrich_orgs": lambda f: f.apollo.enrich_orgs(client=client, progress=False),
        "search": lambda f: f.apollo.search(kind="people", client=client, progress=False),
        "push_contacts": lambda f: f.apollo.push_contacts(client=client, progress=False),
        "push_accounts": lambda f: f.apollo.push_accounts(client=client, progress=False),
        "push_dry_run": lambda f: f.apollo.push_contacts(client=client, progress=False, dry_run=True),
        "estimate": lambda f: f.apollo.estimate(operation="enrich_people", client=client),
    }[operation]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(frame)
    if operation == "estimate":
        assert result.rows == len(frame) and result.to_fetch == len(people)
    elif operation == "search":
        assert len(result) > 0
        labels = {tuple(json.loads(text)) for text in result["apollo_input_index"]}
        assert labels <= set(frame.index) and labels
        assert isinstance(result["apollo_input_index"].iloc[0], str)
    else:
        assert result.index.equals(frame.index)
        assert result["apollo_status"].notna().all()
        assert not result["apollo_status"].isin(["error", "skipped"]).any(), result["apollo_error"].tolist()


# -- credits_consumed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "worst", "expected"),
    [
        (3, 10, (3.0, True)),
        (0, 10, (0.0, True)),
        (10.0, 10, (10.0, True)),
        (1.01, 10, (1.01, True)),
        (-100, 10, (10.0, False)),
        (float("nan"), 10, (10.0, False)),
        (float("inf"), 10, (10.0, False)),
        (11, 10, (10.0, False)),
        ("5", 10, (10.0, False)),
        (True, 10, (10.0, False)),
        (None, 10, (10.0, False)),
    ],
)
def test_trusted_credits(reported, worst, expected):
    assert trusted_credits(reported, worst) == expected


@pytest.mark.parametrize(
    ("reported", "floor", "expected"),
    [
        (2, 2, (2.0, True)),
        (3, 2, (3.0, True)),
        (0, 2, (10.0, False)),  # two records returned cost at least 2: a 0 would lift the cap
        (1.5, 2, (10.0, False)),
        (0, 0, (0.0, True)),
    ],
)
def test_trusted_credits_floor(reported, floor, expected):
    assert trusted_credits(reported, 10, floor=floor) == expected


@pytest.mark.parametrize("reported", [-100, float("nan"), float("inf"), "lots", 1e9, 10.5])
def test_lying_credits_count_the_worst_case_and_keep_the_cap(tmp_path, reported):
    client = make_client(tmp_path, bulk_match(credits=reported))
    with pytest.warns(UserWarning) as caught:
        result = enrich_people(emails(50), client=client, progress=False, max_credits=25)
    info = result.attrs["apollo"]
    # each batch counts its worst case (1 per record): 10 + 10 + a last batch of 5 reach the cap, the rest is skipped
    assert info["credits_consumed"] == 25 and client.stats.requests == 3
    assert (result["apollo_status"] == "matched").sum() == 25 and (result["apollo_status"] == "skipped").sum() == 25
    assert any("flagged unverified" in str(w.message) and "credits_consumed" in str(w.message) for w in caught)
    ledger = client.ledger.frame()
    assert ledger["unverified"].tolist() == [True] * 3 and ledger["credits"].tolist() == [10.0, 10.0, 5.0]
    client.close()


@pytest.mark.parametrize("reported", [7, 5.37, 0.1, 0])
def test_believable_credits_are_recorded_as_verified(tmp_path, reported):
    # 7 of 10 found: any finite figure within [0, worst case] is believed (Apollo charges fractions: a match
    # without an e-mail costs less than 1 credit)
    found = bulk_match(credits=reported)

    def seven_of_ten(request: httpx.Request) -> httpx.Response:
        answer = found(request)
        body = json.loads(answer.content)
        body["matches"] = body["matches"][:7] + [None] * (len(body["matches"]) - 7)
        return httpx.Response(200, json=body)

    client = make_client(tmp_path, seven_of_ten)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = enrich_people(emails(10), client=client, progress=False)
    assert result.attrs["apollo"]["credits_consumed"] == pytest.approx(reported, abs=1e-9)
    ledger = client.ledger.frame()
    assert ledger["unverified"].tolist() == [False] and abs(ledger["credits"].sum() - reported) <= 1e-9
    client.close()


def test_an_old_ledger_gains_the_unverified_column(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE spend (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, run_id TEXT NOT NULL, "
                 "operation TEXT NOT NULL, endpoint TEXT NOT NULL, records_sent INTEGER NOT NULL, records_matched "
                 "INTEGER NOT NULL, credits REAL NOT NULL, http_status INTEGER)")
    conn.execute("INSERT INTO spend VALUES (1, 0, 'r', 'op', 'e', 1, 1, 1.0, 200)")
    conn.commit()
    conn.close()
    from apollo_frames.client.ledger import Ledger

    with Ledger(path) as ledger:
        ledger.record(run_id="r2", operation="op", endpoint="e", records_sent=1, records_matched=0, credits=1,
                      status=200, unverified=True)
        assert ledger.frame()["unverified"].tolist() == [False, True]


def test_search_page_credits_are_checked_too(tmp_path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"organizations": [{"id": "o1", "name": "One"}], "credits_consumed": -50,
                                         "pagination": {"page": 1, "per_page": 100, "total_entries": 1,
                                                        "total_pages": 1}})

    client = make_client(tmp_path, handler)
    with pytest.warns(UserWarning, match="flagged unverified"):
        found = af.search_orgs(q_organization_name="one", client=client, progress=False)
    assert found.attrs["apollo"]["credits_consumed"] == 1
    assert client.ledger.frame()["unverified"].tolist() == [True]
    client.close()


# -- Retry-After ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "usable"), [(None, None), (0.0, None), (-3.0, None), (float("nan"), None),
                                               (float("inf"), None), (2.5, 2.5)])
def test_usable_retry_after(value, usable):
    assert usable_retry_after(value) == usable


def test_rate_limit_floor_doubles_to_a_cap():
    assert [rate_limit_floor(n) for n in (1, 2, 3, 4, 7, 8, 50)] == [1, 2, 4, 8, 60, 60, 60]


@pytest.mark.parametrize("retry_after", ["0", "-5", "NaN", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after_that_says_now_is_not_obeyed(tmp_path, retry_after):
    clock = FakeClock()
    client = make_client(tmp_path, lambda request: httpx.Response(429, json={"message": "slow down"},
                                                                  headers={"Retry-After": retry_after}),
                         clock=clock, max_rate_limit_wait=600)
    with pytest.raises(af.RateLimitError):
        client.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
    # no usable hint: each 429 waits for the window (a full minute), so 10 minutes allow about 10 requests
    assert client.stats.requests <= 11
    assert clock.slept >= 60 * (client.stats.requests - 1)
    client.close()


def test_tiny_retry_after_grows_on_repeated_429s(tmp_path):
    clock = FakeClock()
    client = make_client(tmp_path, lambda request: httpx.Response(429, headers={"Retry-After": "0.001"}),
                         clock=clock, max_rate_limit_wait=100)
    with pytest.raises(af.RateLimitError):
        client.post("people/bulk_match", json={"details": [{"email": "a@b.example"}]})
    # pauses 1, 2, 4, 8, 16, 32 (63 s), then 60 would pass the 100 s cap
    assert client.stats.requests == 7 and client.stats.rate_limited == 7
    assert 63 <= clock.slept <= 64
    client.close()


def test_a_success_ends_the_429_streak(tmp_path):
    answers = iter([429, 429, 200, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json={"ok": True}, headers={"Retry-After": "0.001"} if status == 429 else {})

    clock = FakeClock()
    client = make_client(tmp_path, handler, clock=clock)
    client.post("people/bulk_match", json={})
    client.post("people/bulk_match", json={})
    assert clock.slept == pytest.approx(1 + 2 + 1, abs=0.1)  # the third 429 starts a new streak at 1 s
    client.close()


# -- unreadable answers: typed errors, no key anywhere ----------------------------------------------------


def deep_body(depth: int = 200_000) -> bytes:
    return b'{"matches": ' + b"[" * depth + b"]" * depth + b"}"


def broken_gzip(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"\x1f\x8b this is not gzip at all",
                          headers={"content-encoding": "gzip", "content-type": "application/json"})


@pytest.mark.parametrize(
    "handler",
    [lambda request: httpx.Response(200, content=deep_body()), broken_gzip,
     lambda request: httpx.Response(500, content=deep_body())],
    ids=["deep", "gzip", "deep-500"],
)
def test_unreadable_answers_are_typed_errors_without_the_key(tmp_path, handler):
    client = make_client(tmp_path, handler, max_retries=1)
    with pytest.raises(APIError) as info:
        client.post("people/bulk_match", json={"details": []})
    assert_no_key(info.value)
    client.close()


def test_deep_and_gzip_errors_are_response_errors(tmp_path):
    for handler, says in ((lambda request: httpx.Response(200, content=deep_body()), "nested too deeply"),
                          (broken_gzip, "could not be decoded")):
        client = make_client(tmp_path, handler)
        with pytest.raises(APIResponseError, match=says):
            client.post("people/bulk_match", json={})
        client.close()


def test_an_unreadable_answer_to_a_write_leaves_its_outcome_unknown(tmp_path):
    client = make_client(tmp_path, lambda request: httpx.Response(201, content=deep_body()))
    with pytest.raises(APIResponseError, match="outcome is unknown") as info:
        client.request("POST", "contacts/bulk_create", json={"contacts": []}, idempotent=False)
    assert info.value.outcome_unknown and client.stats.requests == 1
    client.close()


def test_connection_failures_carry_no_key(tmp_path):
    client = make_client(tmp_path, never_answers(), max_retries=1)
    with pytest.raises(APIConnectionError) as info:
        client.post("people/bulk_match", json={})
    assert_no_key(info.value)
    client.close()


def deep_person(depth: int):
    """A bulk_match handler whose people each carry a field nested ``depth`` deep (written as text: ``json``
    itself cannot write 1,000 levels)."""

    def handler(request: httpx.Request) -> httpx.Response:
        details = json.loads(request.content)["details"]
        people = [f'{{"id":"p{i}","email":{json.dumps(d["email"])},"x":{"[" * depth}{"]" * depth}}}'
                  for i, d in enumerate(details)]
        return httpx.Response(200, content=f'{{"matches":[{",".join(people)}]}}'.encode(),
                              headers={"content-type": "application/json"})

    return handler


@pytest.mark.parametrize(
    "handler",
    [lambda request: httpx.Response(200, content=deep_body()), broken_gzip, bulk_match(credits=float("nan")),
     # deep enough that a parser could read it but nothing could write it back (orjson reads 1,024, writes 255)
     deep_person(1010), deep_person(300)],
    ids=["deep", "gzip", "nan-credits", "person-1010-deep", "person-300-deep"],
)
def test_hostile_answers_become_row_statuses(tmp_path, handler):
    client = make_client(tmp_path, handler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = enrich_people(emails(12), client=client, progress=False)
    statuses = set(result["apollo_status"])
    assert statuses <= {"matched", "error"} and statuses
    if "error" in statuses:
        assert result.loc[result["apollo_status"] == "error", "apollo_error"].str.contains("could not be used").all()
    client.close()


# -- answers in the wrong shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"matches": "nope"}, "'matches' is str"),
        ({"matches": ["a person"] * 3}, "match 0 is str"),
        ({"matches": [1, None, None]}, "match 0 is int"),
        ([], "'matches' is NoneType"),
        ("text", "its body is not a JSON object"),
    ],
)
def test_wrong_shape_is_an_error_and_never_cached(tmp_path, body, says):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json=body)

    client = make_client(tmp_path, handler)
    for _ in range(2):
        result = enrich_people(emails(3), client=client, progress=False)
        assert (result["apollo_status"] == "error").all()
        assert result["apollo_error"].str.contains(says, regex=False).all()
    assert len(calls) == 2  # nothing was cached: the second run asked again
    client.close()


@pytest.mark.parametrize(("body", "says"), [({"organizations": [42]}, "organization 0 is int"),
                                            ({"organizations": "x"}, "'organizations' is str"),
                                            ({}, "'organizations' is NoneType")])
def test_orgs_in_the_wrong_shape(tmp_path, body, says):
    client = make_client(tmp_path, lambda request: httpx.Response(200, json=body))
    result = af.enrich_orgs(pd.DataFrame({"domain": ["acme.example", "initech.example"]}), client=client,
                            progress=False)
    assert (result["apollo_status"] == "error").all()
    assert result["apollo_error"].str.contains(says, regex=False).all()
    client.close()


def test_search_page_in_the_wrong_shape(tmp_path):
    client = make_client(tmp_path, lambda request: httpx.Response(200, json={"people": ["Ann", "Bob"]}))
    with pytest.raises(APIResponseError, match="people 0 is str"):
        af.search_people(person_titles=["ceo"], client=client, progress=False)
    frame = pd.DataFrame({"domain": ["acme.example"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = frame.apollo.search(kind="people", client=client, progress=False)
    assert found.attrs["apollo"]["error_rows"] == 1 and len(found) == 0
    client.close()


# -- whole-request deadline and size cap ------------------------------------------------------------------


class Trickle(httpx.SyncByteStream):
    """A body that arrives one byte per ``step`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, body: bytes, step: float):
        self.clock, self.body, self.step = clock, body, step
        self.sent = 0

    def __iter__(self):
        for byte in self.body:
            self.clock.advance(self.step)
            self.sent += 1
            yield bytes([byte])


def test_a_trickling_answer_hits_the_whole_request_deadline(tmp_path):
    clock = FakeClock()
    streams: list[Trickle] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(Trickle(clock, json.dumps({"matches": [None] * 40}).encode(), 0.3))
        return httpx.Response(200, stream=streams[-1])

    client = make_client(tmp_path, handler, clock=clock, timeout=2.0, max_retries=1)
    start = clock.monotonic()
    with pytest.raises(APITimeoutError) as info:
        client.post("people/bulk_match", json={})
    assert_no_key(info.value)
    assert len(streams) == 2  # sent, then retried once
    assert all(s.sent <= 8 for s in streams)  # 2 s at 0.3 s a byte: stopped after 7 bytes, not the whole body
    assert clock.monotonic() - start < 6
    client.close()


def test_an_answer_arriving_in_time_is_read_whole(tmp_path):
    clock = FakeClock()
    body = json.dumps({"matches": []}).encode()
    client = make_client(tmp_path, lambda request: httpx.Response(200, stream=Trickle(clock, body, 0.01)),
                         clock=clock, timeout=2.0)
    assert client.post("people/bulk_match", json={}).data == {"matches": []}
    client.close()


def test_an_answer_larger_than_the_cap_is_refused(tmp_path):
    big = json.dumps({"matches": ["x" * 1000] * 10}).encode()
    chunks: list[int] = []

    class Chunks(httpx.SyncByteStream):
        def __iter__(self):
            for start in range(0, len(big), 512):
                chunks.append(start)
                yield big[start:start + 512]

    client = make_client(tmp_path, lambda request: httpx.Response(200, stream=Chunks()), max_response_bytes=4096)
    with pytest.raises(APIResponseError, match="4,096-byte limit"):
        client.post("people/bulk_match", json={})
    assert len(chunks) <= 9  # it stopped reading at the cap
    declared = make_client(tmp_path, lambda request: httpx.Response(200, content=big), max_response_bytes=4096)
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        declared.post("people/bulk_match", json={})  # refused on its Content-Length
    client.close()
    declared.close()


def test_a_gzip_bomb_is_cut_at_the_cap(tmp_path):
    bomb = gzip.compress(b'{"matches": ["' + b"0" * 5_000_000 + b'"]}')
    client = make_client(tmp_path, lambda request: httpx.Response(
        200, content=bomb, headers={"content-encoding": "gzip"}), max_response_bytes=100_000)
    with pytest.raises(APIResponseError, match="limit"):
        client.post("people/bulk_match", json={})
    client.close()


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_max_response_bytes_is_checked(tmp_path, value):
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        make_client(tmp_path, max_response_bytes=value)


# -- circuit breaker --------------------------------------------------------------------------------------


def test_a_dead_host_stops_after_a_handful_of_requests(tmp_path):
    clock = FakeClock()
    attempts: list[int] = []
    client = make_client(tmp_path, never_answers(seen=attempts), clock=clock, concurrency=1, max_retries=2)
    with pytest.warns(UserWarning, match=r"Apollo at apollo\.test did not answer 5 requests in a row") as caught:
        result = enrich_people(emails(500), client=client, progress=False)
    assert len(attempts) == 5 * 3  # 5 batches, each tried 3 times, then nothing more
    statuses = result["apollo_status"].value_counts().to_dict()
    assert statuses == {"skipped": 460, "error": 40}  # 4 batches failed on their own; the 5th tripped the breaker
    skipped = result.loc[result["apollo_status"] == "skipped", "apollo_error"]
    assert skipped.str.contains("did not answer 5 requests in a row").all()
    assert skipped.str.contains("check the network").all()
    assert "460 rows" in str(caught[0].message)
    assert "Apollo at apollo.test" in result.attrs["apollo"]["stopped_reason"]
    assert clock.monotonic() - 1000 < 60  # a handful of short backoffs, not hours of retries
    client.close()


def test_a_dead_host_stops_a_concurrent_run_and_a_row_search(tmp_path):
    client = make_client(tmp_path, never_answers(httpx.ConnectTimeout), concurrency=4, max_retries=0)
    with pytest.warns(UserWarning, match="did not answer"):
        result = enrich_people(emails(500), client=client, progress=False)
    assert client.stats.requests <= 5 + 4  # the breaker's five, plus what was in flight when it tripped
    assert (result["apollo_status"] == "skipped").sum() >= 400
    frame = pd.DataFrame({"domain": [f"d{i}.example" for i in range(60)]})
    before = client.stats.requests
    with pytest.warns(UserWarning, match="did not answer"):
        found = frame.apollo.search(kind="people", client=client, progress=False)
    assert client.stats.requests - before <= 9 and found.attrs["apollo"]["skipped_rows"] >= 50
    assert "did not answer" in found.attrs["apollo"]["stopped_reason"]
    client.close()


def test_a_dead_host_stops_a_push(tmp_path):
    client = make_client(tmp_path, never_answers(), concurrency=1, max_retries=0)
    frame = pd.DataFrame({"Email": [f"p{i}@push.example" for i in range(1000)], "First Name": "P", "Last Name": "Q"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = frame.apollo.push_contacts(client=client, progress=False)
    assert client.stats.requests == 5
    skipped = result.loc[result["apollo_status"] == "skipped", "apollo_error"]
    assert len(skipped) == 600 and skipped.str.contains("Apollo at apollo.test did not answer 5 requests").all()
    client.close()


def test_updates_to_many_records_count_as_one_endpoint(tmp_path):
    client = make_client(tmp_path, never_answers(), concurrency=1, max_retries=0)
    # a phone makes each row a PATCH of its own (contacts/bulk_update takes no phone): 40 paths, one endpoint
    frame = pd.DataFrame({"id": [f"{i:024x}" for i in range(40)], "Title": "CEO", "Phone": "+14155550100"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = frame.apollo.push_contacts(mode="update", client=client, progress=False)
    assert client.stats.requests == 5 and (result["apollo_status"] == "skipped").sum() == 36
    client.close()


def test_a_write_that_may_have_happened_keeps_its_outcome_unknown(tmp_path):
    client = make_client(tmp_path, never_answers(httpx.ReadTimeout), concurrency=1, max_retries=0)
    frame = pd.DataFrame({"Email": [f"p{i}@push.example" for i in range(700)], "First Name": "P", "Last Name": "Q"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = frame.apollo.push_contacts(client=client, progress=False, run_dedupe=False)
    assert client.stats.requests == 5
    assert result["apollo_error"].iloc[:500].str.contains("outcome unknown").all()  # the five batches sent
    assert (result["apollo_status"].iloc[500:] == "skipped").all()
    client.close()


def test_an_answer_resets_the_breaker(tmp_path):
    seen = []

    def flaky(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        if len(seen) % 4 == 0:  # every fourth batch gets through
            return bulk_match()(request)
        raise httpx.ConnectError("refused", request=request)

    client = make_client(tmp_path, flaky, concurrency=1, max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = enrich_people(emails(200), client=client, progress=False)
    assert len(seen) == 20 and "skipped" not in set(result["apollo_status"])
    client.close()


# -- plain http -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.apollo.io/api/v1", "http://10.0.0.8:8080/v1", "http://[fe80::1]/v1",
                                 "http://localhost.evil.example/v1"])
def test_plain_http_is_refused_off_loopback(tmp_path, url):
    with pytest.raises(ConfigurationError, match="in clear"):
        af.ApolloClient(api_key=KEY, base_url=url, cache_dir=tmp_path)
    assert af.ApolloClient(api_key=KEY, base_url=url, cache_dir=tmp_path, allow_insecure_http=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/api/v1", "http://127.1.2.3/v1", "http://[::1]:9/v1",
                                 "http://localhost:5000/api/v1", "https://api.apollo.io/api/v1"])
def test_loopback_and_https_are_allowed(tmp_path, url):
    assert af.ApolloClient(api_key=KEY, base_url=url, cache_dir=tmp_path).settings.base_url == url


def test_allow_insecure_http_must_be_a_bool(tmp_path):
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        af.ApolloClient(api_key=KEY, base_url="https://x.example", cache_dir=tmp_path, allow_insecure_http="yes")


def test_the_in_process_sandbox_still_works(tmp_path, sandbox):
    with client_for(sandbox, cache_dir=tmp_path) as client:
        assert client.settings.allow_insecure_http and client.settings.base_url.startswith("http://sandbox.invalid")
        assert client.get("auth/health").status_code == 200


# -- an echoed key ----------------------------------------------------------------------------------------


def test_an_echoed_key_reaches_neither_the_frame_nor_the_cache(tmp_path):
    def echo(detail):
        return {"id": "p1", "email": detail["email"], "headline": f"key={KEY}", KEY: {"nested": [KEY, 1]}}

    client = make_client(tmp_path, bulk_match(person=echo))
    result = enrich_people(emails(3), client=client, progress=False)
    assert (result["apollo_status"] == "matched").all()
    assert KEY not in result.to_csv() and "***" in result.to_csv()
    assert KEY not in json.dumps(result.attrs, default=str)
    client.close()
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files and not any(KEY.encode() in p.read_bytes() for p in files)
    # the cached answer (scrubbed) serves the next run without a request
    again = make_client(tmp_path, lambda request: pytest.fail("sent a request for a cached answer"))
    assert (enrich_people(emails(3), client=again, progress=False)["apollo_status"] == "matched").all()
    again.close()


# -- the sandbox's hostile switches, end to end -------------------------------------------------------------


@pytest.fixture
def hostile_sandbox(small_config):
    from apollo_frames.sandbox import Sandbox

    return Sandbox(small_config, clock=FakeClock())


@pytest.mark.parametrize("fault", ["deep_json", "bad_gzip", "trickle=0.3", "oversized=60000000", "wrong_shape",
                                   "credits_consumed=nan", "credits_consumed=-100", "credits_consumed=1e300"])
def test_each_hostile_sandbox_answer_is_a_row_status(hostile_sandbox, tmp_path, fault):
    sb = hostile_sandbox
    people = [p for p in sb.world.people if p.get("email")][:15]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    sb.inject(fault, path="people/bulk_match")
    with sb.client(cache_dir=tmp_path / "c", retry_backoff=(0.01, 0.05), max_retries=0, timeout=5,
                   concurrency=1) as client:  # one batch at a time: the fault meets the first batch, of 10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = frame.apollo.enrich_people(client=client, progress=False, max_credits=15)
        statuses = result["apollo_status"].value_counts().to_dict()
        spoiled = 10 if fault.startswith(("deep", "bad", "trickle", "oversized", "wrong")) else 0
        assert statuses.get("error", 0) == spoiled and statuses.get("matched", 0) == 15 - spoiled
        assert sb.count(path="people/bulk_match") == 2  # nothing hammered: one request per batch
        assert result.attrs["apollo"]["credits_consumed"] <= 15  # the budget holds
        ledger = client.ledger.frame()
        if fault.startswith("credits_consumed"):
            # the spoiled batch (whichever of the two the fault met first) is flagged and counted at its worst case
            spoiled_rows = ledger[ledger["unverified"]]
            assert len(ledger) == 2 and len(spoiled_rows) == 1
            assert spoiled_rows["credits"].iloc[0] == spoiled_rows["records_sent"].iloc[0]
        cached = [p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file()]
        assert not any(DEFAULT_KEY.encode() in blob for blob in cached)


def test_echo_key_and_retry_after_switches(hostile_sandbox, tmp_path):
    sb = hostile_sandbox
    people = [p for p in sb.world.people if p.get("email")][:3]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    sb.inject("echo_key", path="people/bulk_match")
    with sb.client(cache_dir=tmp_path / "c") as client:
        result = frame.apollo.enrich_people(client=client, progress=False)
        assert (result["apollo_status"] == "matched").all() and DEFAULT_KEY not in result.to_csv()
        for value in ("0", "-5", "nan", "past"):
            sb.inject(f"retry_after={value}", path="organizations/bulk_enrich")
        before = sb.clock.monotonic()
        orgs = pd.DataFrame({"domain": [o["primary_domain"] for o in sb.world.orgs[:2] if o.get("primary_domain")]})
        assert (orgs.apollo.enrich_orgs(client=client, progress=False)["apollo_status"] != "error").all()
        assert client.stats.rate_limited == 4 and sb.clock.monotonic() - before >= 4 * 1.0
    files = [p.read_bytes() for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files and not any(DEFAULT_KEY.encode() in blob for blob in files)
