"""Retry decisions as small pure functions, in the style of openai-python's base client.

``ApolloClient.request`` sends, sorts what happened into an :class:`Outcome`,
then asks these functions whether to send again (:func:`should_retry`), how
long to wait first (:func:`retry_delay`) and, when it gives up, which typed
error to raise (:func:`status_error`, :func:`connection_error`,
:func:`rate_limit_error`). None of them does I/O, sleeps or reads the clock,
so the tests call them directly with tables of inputs.

The policy: a 429 is pacing, not failure (the client waits for the window and
sends again without spending a retry); 5xx, 408, timeouts and dropped
connections are retried with exponential backoff and jitter up to
``max_retries``; other 4xx are raised at once. A write that is not idempotent
is sent again only when it surely never reached Apollo (the connection was
never made, or Apollo answered 429 without processing it).
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any

from apollo_frames.core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ApolloServerError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)

#: (first delay, longest delay) in seconds for the exponential backoff.
DEFAULT_BACKOFF: tuple[float, float] = (0.5, 8.0)
#: A server's ``Retry-After`` on a 5xx is honoured when it is in (0, this] seconds.
MAX_SERVER_RETRY_AFTER = 60.0
#: Jitter takes up to this fraction off each backoff delay.
JITTER = 0.25
#: The least a 429 pauses, whatever ``Retry-After`` says; it doubles per consecutive 429 on the endpoint ...
MIN_RATE_LIMIT_PAUSE = 1.0
#: ... up to this many seconds.
MAX_RATE_LIMIT_FLOOR = 60.0


class Outcome(enum.Enum):
    """What one attempt came to, as far as retrying is concerned."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: Apollo did not process it; wait for the window
    SERVER_ERROR = "server_error"  # 5xx or 408: Apollo got it and failed (a write may have happened)
    REFUSED = "refused"  # any other 4xx: sending again will not help
    NOT_SENT = "not_sent"  # no connection was made: it never reached Apollo
    NO_ANSWER = "no_answer"  # timed out or dropped after sending: it may have reached Apollo




def outcome_of_status(status: int) -> Outcome:
    """Sort an HTTP status."""
    if status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status >= 500 or status == 408:
        return Outcome.SERVER_ERROR
    return Outcome.REFUSED


def outcome_of_error(exc: BaseException) -> Outcome:
    """Sort a transport failure: was the request possibly sent? (Connect and pool failures happen before a
    single byte reaches the server.)"""
    import httpx  # (loaded by then: the failure came from it; not on ``import apollo_frames``, see client.http)

    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return Outcome.NOT_SENT if never_sent else Outcome.NO_ANSWER


def may_have_run(outcome: Outcome) -> bool:
    """True when a failed attempt may have been run (and charged) by the server: a 5xx/408, or no answer."""
    return outcome in (Outcome.SERVER_ERROR, Outcome.NO_ANSWER)


def may_have_written(outcome: Outcome, idempotent: bool) -> bool:
    """True when a non-idempotent request may have taken effect although no success came back."""
    return not idempotent and may_have_run(outcome)


def should_retry(outcome: Outcome, retries_done: int, max_retries: int, idempotent: bool) -> bool:
    """Whether to send the request again after ``outcome``.

    A 429 always may be sent again (the wait cap, not the retry budget, bounds
    it). Other failures spend the retry budget, and a non-idempotent request
    is only resent when it surely never reached Apollo.
    """
    if outcome is Outcome.RATE_LIMITED:
        return True
    if outcome in (Outcome.OK, Outcome.REFUSED) or retries_done >= max_retries:
        return False
    return outcome is Outcome.NOT_SENT or idempotent


def retry_delay(
    retries_done: int,
    retry_after: float | None,
    backoff: tuple[float, float] = DEFAULT_BACKOFF,
    rand: float = 0.0,
) -> float:
    """Seconds to wait before retry number ``retries_done + 1`` after a failure (not a 429).

    A server's ``Retry-After`` within (0, 60] s wins; otherwise the delay
    doubles from ``backoff[0]`` up to ``backoff[1]`` and jitter takes off up
    to a quarter of it. ``rand`` is a number in [0, 1) from the caller, so this
    stays deterministic.
    """
    if retry_after is not None and 0 < retry_after <= MAX_SERVER_RETRY_AFTER:
        return retry_after
    initial, longest = backoff
    return min(initial * 2.0**retries_done, longest) * (1 - JITTER * rand)


def usable_retry_after(seconds: float | None) -> float | None:
    """A ``Retry-After`` worth obeying on a 429: finite and above 0. 0, negative, NaN or a past date is no
    licence to resend at once: None, so the pause falls back to the window's reset."""
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def rate_limit_floor(streak: int) -> float:
    """The least the ``streak``-th consecutive 429 on an endpoint pauses: 1 s, 2 s, 4 s ... up to 60 s."""
    return min(MIN_RATE_LIMIT_PAUSE * 2.0 ** max(streak - 1, 0), MAX_RATE_LIMIT_FLOOR)


def _or(message: str, fallback: str) -> str:
    return message or fallback


def status_error(
    status: int,
    path: str,
    message: str,
    body: Any,
    attempts: int,
    *,
    outcome_unknown: bool = False,
    headers: dict[str, str] | None = None,
) -> APIStatusError:
    """The typed error for an error answer that will not be retried (any status but 429).

    ``message`` is Apollo's own text, already scrubbed of the key; the error
    says what to do next.
    """
    kw: dict[str, Any] = {"status_code": status, "path": path, "body": body, "attempts": attempts, "headers": headers,
                          "code": apollo_code(body)}
    if outcome_of_status(status) is Outcome.SERVER_ERROR:
        unknown = " The write may or may not have happened: the outcome is unknown." if outcome_unknown else ""
        return ApolloServerError(
            f"Apollo answered {status} on {path} after {attempts} attempt(s): {_or(message, 'no message')}{unknown}",
            outcome_unknown=outcome_unknown,
            **kw,
        )
    if status == 401:
        return AuthenticationError(
            f"Apollo rejected the API key (401 on {path}: {_or(message, 'no message')}). "
            "Check APOLLO_API_KEY or the api_key given to ApolloClient.",
            **kw,
        )
    if status == 403:
        return PermissionDeniedError(
            f"This API key may not call {path} (403: {_or(message, 'no message')}). "
            "It needs a master key, or a key or plan that includes this endpoint.",
            **kw,
        )
    if status == 404:
        return NotFoundError(f"Apollo answered 404 on {path}: {_or(message, 'not found')}.", **kw)
    if status in (400, 422):
        return ValidationError(f"Apollo refused the request to {path} ({status}): {message}", **kw)
    return APIStatusError(f"Apollo answered {status} on {path}: {message}", **kw)


def connection_error(
    exc: BaseException, path: str, attempts: int, *, outcome_unknown: bool = False, never_sent: bool = False
) -> APIConnectionError:
    """The typed error for a request that got no answer, after all retries.

    Built from the exception's type only: httpx exceptions carry the request,
    and with it the key, so they are never chained or quoted.
    """
    import httpx  # (as in outcome_of_error)

    timed_out = isinstance(exc, httpx.TimeoutException)
    what = "timed out" if timed_out else f"failed to connect ({type(exc).__name__})"
    unknown = " It may have reached Apollo: the outcome is unknown." if outcome_unknown else ""
    kind = APITimeoutError if timed_out else APIConnectionError
    return kind(
        f"Request to {path} {what} after {attempts} attempt(s).{unknown}",
        path=path,
        attempts=attempts,
        outcome_unknown=outcome_unknown,
        never_sent=never_sent,
    )


def rate_limit_error(
    path: str,
    *,
    pause: float,
    window: str | None,
    cap: float,
    now: float,
    message: str = "",
    body: Any = None,
    attempts: int = 1,
    headers: dict[str, str] | None = None,
) -> RateLimitError:
    """The error for a 429 (or a spent window) whose wait would pass ``cap`` seconds in all.

    ``now`` is the wall-clock time, so ``reset_at`` is a POSIX timestamp.
    """
    said = f" ({message})" if message else ""
    return RateLimitError(
        f"Rate limit on {path}: the {window or 'current'} window needs another {pause:.0f} s "
        f"before the next request, beyond the wait cap of {cap:.0f} s{said}. "
        "Run again after it resets, or raise max_rate_limit_wait.",
        window=window,
        reset_at=now + pause,
        path=path,
        body=body,
        attempts=attempts,
        headers=headers,
        code=apollo_code(body),
    )


def scrub(value: Any, secret: str) -> Any:
    """``value`` with every occurrence of ``secret`` replaced, in case a server ever echoes the key."""
    if isinstance(value, str):
        return value.replace(secret, "***")
    if isinstance(value, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secret) for v in value]
    return value


#: a JSON escape: ``\uXXXX`` or one character after the backslash
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b'"': '"', b"\\": "\\", b"/": "/", b"b": "\b", b"f": "\f", b"n": "\n", b"r": "\r", b"t": "\t"}


def may_hold(content: bytes, secret: str) -> bool:
    """Whether a text parsed from the body ``content`` could contain ``secret`` (False: no :func:`scrub` needed).

    In UTF-8 JSON a parsed string is its bytes between the quotes with the escapes decoded, so without
    ``secret``'s bytes in the body it holds ``secret`` only when an escape produced one of its characters.
    Anything else (another encoding, a non-ASCII secret) says True.
    """
    if not secret.isascii() or json.detect_encoding(content) != "utf-8" or secret.encode() in content:
        return True
    if b"\\" not in content:  # no escape at all (one search in C, not a walk of the escapes)
        return False
    chars = set(secret)
    for match in _ESCAPE.finditer(content):
        escape = match.group(1)
        produced = chr(int(escape[1:], 16)) if len(escape) == 5 else _SIMPLE_ESCAPES.get(escape, "")
        if produced in chars:
            return True
    return False


def apollo_code(body: Any) -> str | None:
    """Apollo's structured error code: ``error_details.code`` (since 2026-09), else its older ``error_code``."""
    if not isinstance(body, dict):
        return None
    details = body.get("error_details")
    for code in (details.get("code") if isinstance(details, dict) else None, body.get("error_code")):
        if isinstance(code, str) and code.strip():
            return code.strip()
    return None


def apollo_message(body: Any) -> str:
    """Apollo's own error text from any of its error envelopes, followed by its error code (``[CODE]``) when
    the text does not already say it, so row reasons show the code."""
    if not isinstance(body, dict):
        return str(body or "").strip()[:300]
    details = body.get("error_details")
    said = next((str(v) for v in (body.get("error"), body.get("error_message"), body.get("message"),
                                  details.get("message") if isinstance(details, dict) else None) if v), None)
    code = apollo_code(body)
    if said is None:
        return f"[{code}]" if code else str(body)[:300]
    return f"{said} [{code}]" if code and code not in said else said
