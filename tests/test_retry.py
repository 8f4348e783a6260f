"""The retry decisions, called directly with tables of inputs; the error tree; the injected clock."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

import apollo_frames as af
from apollo_frames.client.ratelimit import window_from_message
from apollo_frames.client.retry import (
    Outcome,
    apollo_code,
    apollo_message,
    connection_error,
    may_have_written,
    may_hold,
    outcome_of_error,
    outcome_of_status,
    rate_limit_error,
    retry_delay,
    scrub,
    should_retry,
    status_error,
)
from apollo_frames.core.clock import SYSTEM_CLOCK, WINDOW_SECONDS, WINDOWS, FakeClock

O = Outcome

# -- sorting what happened -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, O.OK), (201, O.OK), (204, O.OK), (302, O.OK),
        (429, O.RATE_LIMITED),
        (500, O.SERVER_ERROR), (502, O.SERVER_ERROR), (503, O.SERVER_ERROR), (504, O.SERVER_ERROR),
        (408, O.SERVER_ERROR),
        (400, O.REFUSED), (401, O.REFUSED), (403, O.REFUSED), (404, O.REFUSED), (409, O.REFUSED), (422, O.REFUSED),
    ],
)
def test_outcome_of_status(status, outcome):
    assert outcome_of_status(status) is outcome


@pytest.mark.parametrize(
    "exc, outcome",
    [
        (httpx.ConnectError("refused"), O.NOT_SENT),
        (httpx.ConnectTimeout("slow dns"), O.NOT_SENT),
        (httpx.PoolTimeout("pool"), O.NOT_SENT),
        (httpx.ReadTimeout("slow"), O.NO_ANSWER),
        (httpx.WriteTimeout("slow"), O.NO_ANSWER),
        (httpx.ReadError("reset"), O.NO_ANSWER),
        (httpx.RemoteProtocolError("dropped"), O.NO_ANSWER),
    ],
)
def test_outcome_of_error(exc, outcome):
    assert outcome_of_error(exc) is outcome


# -- should_retry ----------------------------------------------------------------------------------

#: outcome, retries done, max retries, idempotent -> retry?
SHOULD_RETRY = [
    # success and refusals: never
    (O.OK, 0, 3, True, False),
    (O.REFUSED, 0, 3, True, False),
    (O.REFUSED, 0, 3, False, False),
    # 429: always, whatever the retry budget or the method (Apollo did not process it)
    (O.RATE_LIMITED, 0, 3, True, True),
    (O.RATE_LIMITED, 3, 3, True, True),
    (O.RATE_LIMITED, 0, 0, False, True),
    # server errors and lost answers: within the budget, and only when safe to resend
    (O.SERVER_ERROR, 0, 3, True, True),
    (O.SERVER_ERROR, 2, 3, True, True),
    (O.SERVER_ERROR, 3, 3, True, False),
    (O.SERVER_ERROR, 0, 0, True, False),
    (O.SERVER_ERROR, 0, 3, False, False),  # a write may have happened
    (O.NO_ANSWER, 0, 3, True, True),
    (O.NO_ANSWER, 3, 3, True, False),
    (O.NO_ANSWER, 0, 3, False, False),  # a write may have happened
    # never connected: safe to resend even a write
    (O.NOT_SENT, 0, 3, True, True),
    (O.NOT_SENT, 0, 3, False, True),
    (O.NOT_SENT, 3, 3, False, False),
]


@pytest.mark.parametrize("outcome, done, most, idempotent, expected", SHOULD_RETRY)
def test_should_retry(outcome, done, most, idempotent, expected):
    assert should_retry(outcome, done, most, idempotent) is expected


@pytest.mark.parametrize(
    "outcome, idempotent, expected",
    [
        (O.SERVER_ERROR, False, True),
        (O.NO_ANSWER, False, True),
        (O.NOT_SENT, False, False),
        (O.REFUSED, False, False),
        (O.SERVER_ERROR, True, False),
        (O.NO_ANSWER, True, False),
    ],
)
def test_may_have_written(outcome, idempotent, expected):
    assert may_have_written(outcome, idempotent) is expected


# -- retry_delay -----------------------------------------------------------------------------------

#: retries done, Retry-After, backoff, rand -> seconds
RETRY_DELAY = [
    (0, None, (0.5, 8.0), 0.0, 0.5),
    (1, None, (0.5, 8.0), 0.0, 1.0),
    (2, None, (0.5, 8.0), 0.0, 2.0),
    (4, None, (0.5, 8.0), 0.0, 8.0),  # capped
    (9, None, (0.5, 8.0), 0.0, 8.0),
    (0, None, (0.5, 8.0), 1.0, 0.375),  # at most a quarter off
    (1, None, (0.5, 8.0), 0.5, 0.875),
    (0, None, (0.001, 0.01), 0.0, 0.001),
    (5, None, (0.001, 0.01), 0.0, 0.01),
    # a server's Retry-After within (0, 60] wins, without jitter
    (0, 3.0, (0.5, 8.0), 0.9, 3.0),
    (5, 60.0, (0.5, 8.0), 0.0, 60.0),
    # outside that range it is ignored
    (0, 0.0, (0.5, 8.0), 0.0, 0.5),
    (0, 61.0, (0.5, 8.0), 0.0, 0.5),
    (1, 3600.0, (0.5, 8.0), 0.0, 1.0),
]


@pytest.mark.parametrize("done, retry_after, backoff, rand, expected", RETRY_DELAY)
def test_retry_delay(done, retry_after, backoff, rand, expected):
    assert retry_delay(done, retry_after, backoff, rand) == pytest.approx(expected)


# -- status_error ----------------------------------------------------------------------------------

#: status, Apollo's message, unknown outcome -> error class, words in the message
STATUS_ERRORS = [
    (400, "domain count cannot be more than 10", False, af.ValidationError, ["400", "cannot be more than 10"]),
    (422, "Please limit your array", False, af.ValidationError, ["422", "limit your array"]),
    (401, "Invalid access credentials.", False, af.AuthenticationError, ["APOLLO_API_KEY", "Invalid access"]),
    (401, "", False, af.AuthenticationError, ["no message"]),
    (403, "not accessible", False, af.PermissionDeniedError, ["master key", "not accessible"]),
    (404, "", False, af.NotFoundError, ["404", "not found"]),
    (409, "conflict", False, af.APIStatusError, ["409", "conflict"]),
    (500, "boom", False, af.ApolloServerError, ["500", "boom", "after 4 attempt(s)"]),
    (503, "", False, af.ApolloServerError, ["503", "no message"]),
    (408, "", False, af.ApolloServerError, ["408"]),
    (502, "bad gateway", True, af.ApolloServerError, ["502", "outcome is unknown"]),
]


@pytest.mark.parametrize("status, message, unknown, kind, words", STATUS_ERRORS)
def test_status_error(status, message, unknown, kind, words):
    body = {"error": message}
    err = status_error(status, "people/bulk_match", message, body, 4, outcome_unknown=unknown,
                       headers={"x-minute-usage": "3"})
    assert type(err) is kind
    assert err.status_code == status and err.path == "people/bulk_match" and err.attempts == 4
    assert err.body == body and err.headers == {"x-minute-usage": "3"} and err.outcome_unknown is unknown
    for word in words:
        assert word in str(err)
    if not unknown:
        assert "unknown" not in str(err)


@pytest.mark.parametrize(
    "exc, unknown, kind, words",
    [
        (httpx.ReadTimeout("slow"), False, af.APITimeoutError, ["timed out", "2 attempt(s)"]),
        (httpx.ReadTimeout("slow"), True, af.APITimeoutError, ["outcome is unknown"]),
        (httpx.ConnectError("refused"), False, af.APIConnectionError, ["failed to connect (ConnectError)"]),
        (httpx.RemoteProtocolError("x"), True, af.APIConnectionError, ["RemoteProtocolError", "unknown"]),
    ],
)
def test_connection_error(exc, unknown, kind, words):
    err = connection_error(exc, "contacts/bulk_create", 2, outcome_unknown=unknown)
    assert type(err) is kind and err.path == "contacts/bulk_create" and err.attempts == 2
    assert err.outcome_unknown is unknown
    for word in words:
        assert word in str(err)
    assert err.__cause__ is None and err.__context__ is None  # the httpx exception (and its request) is not kept


def test_rate_limit_error():
    err = rate_limit_error("people/bulk_match", pause=50000, window="day", cap=900, now=1_000_000.0,
                           message="100 times per day", attempts=3)
    assert isinstance(err, af.RateLimitError) and err.status_code == 429
    assert err.window == "day" and err.reset_at == 1_050_000.0 and err.attempts == 3
    for word in ("day window", "50000 s", "900 s", "max_rate_limit_wait", "100 times per day"):
        assert word in str(err)
    unnamed = rate_limit_error("e", pause=5, window=None, cap=1, now=0.0)
    assert unnamed.window is None and "current window" in str(unnamed)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("key KEY123 leaked", "key *** leaked"),
        ({"KEY123": ["a KEY123", 1, None]}, {"***": ["a ***", 1, None]}),
        ([{"x": "KEY123KEY123"}], [{"x": "******"}]),
        (42, 42),
        (None, None),
    ],
)
def test_scrub(value, expected):
    assert scrub(value, "KEY123") == expected


_BODIES = [
    b'{"name": "Ren\xc3\xa9e", "note": "AT\\u0026T \\"quoted\\" a\\/b\\n"}',  # escapes of no key character
    b'{"k": "KEY123"}',  # the key itself
    b'{"k": "KEY\\u00312\\u0033"}',  # the key spelt with escapes
    b'{"k": "K\\u0045Y123"}',
    b'{"KEY\\u0031": 23}',  # in a name, split by an escape
    b'{"k": "KEY12\\"3"}',  # an escape between two halves: no key, but a character of it is near
    '{"k": "KEY123"}'.encode("utf-16"),  # another encoding
    b'{"k": "\\\\u0031KEY"}',  # an escaped backslash, then plain text
    b"plain text KEY123",
    b"",
]


@pytest.mark.parametrize("content", _BODIES)
def test_may_hold_says_true_whenever_a_parsed_text_holds_the_key(content):
    try:
        parsed = json.loads(content) if content else None
    except ValueError:
        parsed = content.decode("utf-8", errors="replace")
    holds = scrub(parsed, "KEY123") != parsed
    assert may_hold(content, "KEY123") or not holds
    assert holds == ("KEY123" in json.dumps(parsed, ensure_ascii=False))  # the check above can fail


@pytest.mark.parametrize(
    "content, expected",
    [
        (_BODIES[0], False),  # escapes that produce none of the key's characters: the walk is skipped
        (_BODIES[1], True),
        (_BODIES[2], True),
        (_BODIES[6], True),
        (_BODIES[7], False),
        (b'{"k": "x\\u0059"}', True),  # "Y" is one of the key's characters: the walk is done
        (b'{"k": "KEY12 3", "y": "Y"}', False),  # no escape at all: nothing but the key's own bytes can make it
    ],
)
def test_may_hold(content, expected):
    assert may_hold(content, "KEY123") is expected
    assert may_hold(content, "KÉY123") is True  # a key that is not ASCII is always walked


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"error": "bad"}, "bad"),
        ({"error_message": "worse", "error_code": "X"}, "worse [X]"),  # the code is shown in row reasons
        ({"error_details": {"code": "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED", "message": "slow down"}},
         "slow down [USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED]"),
        ({"error_details": {"code": "A.B"}}, "[A.B]"),
        ({"message": "limit"}, "limit"),
        ({"other": 1}, "{'other': 1}"),
        ("  plain text  ", "plain text"),
        (None, ""),
        ("x" * 500, "x" * 300),
    ],
)
def test_apollo_message(body, expected):
    assert apollo_message(body) == expected


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"error_details": {"code": "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED"}, "error_code": "OLD"},
         "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED"),
        ({"error_details": {"code": ""}, "error_code": "INVALID_REQUEST"}, "INVALID_REQUEST"),
        ({"error_details": "x", "error": "y"}, None),
        ("text", None),
    ],
)
def test_apollo_code(body, expected):
    assert apollo_code(body) == expected


def test_the_window_comes_from_the_code_before_the_text():
    assert window_from_message("You hit 600 times per hour", "USAGE.RATE_LIMIT.MINUTE_LIMIT_EXCEEDED") == "minute"
    assert window_from_message("You hit 600 times per hour", "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED") == "hour"
    assert window_from_message("", "USAGE.RATE_LIMIT.HOURLY_LIMIT") == "hour"
    assert window_from_message(None) is None


# -- the error tree --------------------------------------------------------------------------------

TREE = [
    (af.APIError, af.ApolloError),
    (af.APIConnectionError, af.APIError),
    (af.APITimeoutError, af.APIConnectionError),
    (af.APIStatusError, af.APIError),
    (af.ValidationError, af.APIStatusError),
    (af.AuthenticationError, af.APIStatusError),
    (af.PermissionDeniedError, af.APIStatusError),
    (af.NotFoundError, af.APIStatusError),
    (af.RateLimitError, af.APIStatusError),
    (af.ApolloServerError, af.APIStatusError),
    (af.ConfigurationError, af.ApolloError),
    (af.BudgetExceededError, af.ApolloError),
    (af.StorageError, af.ApolloError),
]


@pytest.mark.parametrize("child, parent", TREE)
def test_error_tree(child, parent):
    assert issubclass(child, parent) and child.__bases__ == (parent,)
    assert child.__name__ in af.__all__


@pytest.mark.parametrize("kind", [af.ConfigurationError, af.BudgetExceededError, af.StorageError])
def test_errors_outside_the_api_are_not_api_errors(kind):
    assert not issubclass(kind, af.APIError)


def test_connection_and_status_errors_share_what_a_caller_needs():
    errors = [
        af.APITimeoutError("t", path="a", attempts=2, outcome_unknown=True),
        af.ApolloServerError("s", status_code=503, path="a", attempts=2, outcome_unknown=True),
        af.RateLimitError("r", path="a", attempts=2),
    ]
    for err in errors:
        assert isinstance(err, af.APIError)
        assert (err.path, err.attempts) == ("a", 2)
    assert errors[0].outcome_unknown and errors[1].outcome_unknown and not errors[2].outcome_unknown
    assert errors[2].status_code == 429 and errors[2].headers == {}
    assert af.StorageError("disk full", path="/tmp/x").path == "/tmp/x"


# -- the clock -------------------------------------------------------------------------------------


def test_fake_clock_moves_only_when_slept_on():
    clock = FakeClock(start=1_000_000.0)
    assert (clock.monotonic(), clock.time()) == (1000.0, 1_000_000.0)
    clock.sleep(2.5)
    clock.sleep(0)
    clock.advance(10)
    assert clock.monotonic() == 1012.5 and clock.time() == 1_000_012.5
    assert clock.sleeps == [2.5, 0] and clock.slept == 2.5
    clock.sleep(-1)  # a negative wait does not turn time back
    assert clock.monotonic() == 1012.5


def test_fake_clock_is_thread_safe():
    clock = FakeClock()
    threads = [threading.Thread(target=lambda: [clock.sleep(0.001) for _ in range(500)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(clock.sleeps) == 4000 and clock.monotonic() == pytest.approx(1000.0 + 4.0)


def test_system_clock_reads_the_real_time():
    import time

    assert abs(SYSTEM_CLOCK.time() - time.time()) < 5 and SYSTEM_CLOCK.monotonic() <= time.monotonic()


def test_windows_are_defined_once():
    from apollo_frames import estimates
    from apollo_frames.client import ratelimit
    from apollo_frames.sandbox import SandboxConfig
    from apollo_frames.sandbox.app import WINDOW_NAMES

    assert WINDOWS == ("minute", "hour", "day") and WINDOW_SECONDS == {"minute": 60, "hour": 3600, "day": 86400}
    assert ratelimit.WINDOWS is WINDOWS and estimates.WINDOW_SECONDS is WINDOW_SECONDS and WINDOW_NAMES is WINDOWS
    assert tuple(SandboxConfig().windows) == tuple(WINDOW_SECONDS[w] for w in WINDOWS)
