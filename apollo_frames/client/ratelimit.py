"""Client-side pacing for Apollo's fixed rate-limit windows (minute, hour, day per endpoint).

The limiter keeps, per endpoint and window, the highest usage Apollo has
reported, how many requests it sent in the window and how many of those have
ended, and when the window resets. What is left is the limit minus the
highest reported usage minus the requests still in flight (counting them as
used never overshoots; each answer or failure frees its slot, and the next
reading corrects for a failed request Apollo counted after all). Until a
window's first reading, every request sent counts against the plan preset.
A 429 pauses every worker on that endpoint. Apollo sends no
reset-time header, so a window is assumed to last its full length from the
first request we sent in it, plus a small margin: this errs towards waiting a
little rather than drawing a 429.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from apollo_frames.client.retry import rate_limit_error, rate_limit_floor, usable_retry_after
from apollo_frames.core.clock import (
    DEFAULT_WINDOW_LENGTHS,
    SYSTEM_CLOCK,
    WINDOWS,
    Clock,
)

__all__ = [
    "WINDOWS",
    "RateLimiter",
    "Ticket",
    "WindowReading",
    "parse_rate_headers",
    "parse_retry_after",
    "window_from_message",
]

#: Header names per window as (limit, usage, left). Apollo has used two names
#: for the day window; both are read, the live ``24-hour`` one first.
HEADER_FAMILIES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "minute": (("x-rate-limit-minute", "x-minute-usage", "x-minute-requests-left"),),
    "hour": (("x-rate-limit-hourly", "x-hourly-usage", "x-hourly-requests-left"),),
    "day": (
        ("x-rate-limit-24-hour", "x-24-hour-usage", "x-24-hour-requests-left"),
        ("x-rate-limit-daily", "x-daily-usage", "x-daily-requests-left"),
    ),
}

_WINDOW_IN_MESSAGE = re.compile(r"times per (minute|hour|day)", re.IGNORECASE)
_WINDOW_IN_CODE = {"MINUTE": "minute", "HOUR": "hour", "HOURLY": "hour", "DAY": "day",
                   "DAILY": "day"}


@dataclasses.dataclass(frozen=True)
class WindowReading:
    """What one response's headers said about one window."""

    limit: int | None
    usage: int | None
    left: int | None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    # A header is a count: anything else (inf, nan, 1e300) is a server we do not believe.
    return int(value) if math.isfinite(value) and abs(value) < 2**53 else None


def parse_rate_headers(headers: Mapping[str, str]) -> dict[str, WindowReading]:
    """Read both header families; windows with no header at all are left out (unlimited)."""
    readings: dict[str, WindowReading] = {}
    for window, families in HEADER_FAMILIES.items():
        for limit_name, usage_name, left_name in families:
            reading = WindowReading(
                _int_header(headers, limit_name), _int_header(headers, usage_name), _int_header(headers, left_name)
            )
            if reading.limit is not None or reading.left is not None:
                if reading.left is None and reading.limit is not None and reading.usage is not None:
                    reading = dataclasses.replace(reading, left=max(reading.limit - reading.usage, 0))
                readings[window] = reading
                break
    return readings


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(when.timestamp() - now, 0.0)


def window_from_message(message: str | None, code: str | None = None) -> str | None:
    """Which window a 429 names: its structured code first, when it names one
    (``..._HOURLY_...``, ``...MINUTE...``), else its text ("... times per hour ...")."""
    for token in re.split(r"[^A-Z]+", (code or "").upper()):
        if token in _WINDOW_IN_CODE:
            return _WINDOW_IN_CODE[token]
    match = _WINDOW_IN_MESSAGE.search(message or "")
    return match.group(1).lower() if match else None


@dataclasses.dataclass
class Ticket:
    """One reserved request: its sequence number and when it was sent."""

    endpoint: str
    seq: int
    sent_at: float
    waited: float = 0.0  # seconds acquire() waited for the window before reserving it
    ended: bool = False  # its answer (or failure) has been counted


@dataclasses.dataclass
class RateWindow:
    name: str
    length: float
    limit: int | None
    reset_at: float | None = None
    opened_seq: int = 0
    sent: int = 0  # requests we sent in this window
    answered: int = 0  # of those, how many have ended (answered or failed)
    usage: int | None = None  # the highest usage Apollo reported in this window (None until it reports)
    spent: bool = False  # a 429 said this window is used up

    @property
    def left(self) -> int | None:
        if self.limit is None:
            return None
        if self.spent:
            return 0
        if self.usage is None:  # no reading yet in this window: count every request sent
            return self.limit - self.sent
        return self.limit - self.usage - (self.sent - self.answered)

    def roll(self, now: float) -> None:
        if self.reset_at is not None and now >= self.reset_at:
            self.reset_at = None
            self.sent = self.answered = 0
            self.usage = None
            self.spent = False


@dataclasses.dataclass
class WindowBucket:
    windows: dict[str, RateWindow]
    seq: int = 0
    paused_until: float = 0.0
    paused_window: str | None = None
    streak: int = 0  # consecutive 429s


class RateLimiter:
    """Thread-safe pacing for every endpoint of one API key.

    ``acquire`` blocks until a request may go, ``observe`` feeds back the
    response headers, ``pause`` handles a 429. Waits and windows run on the
    injected ``clock`` so tests can run on fake time.
    """

    def __init__(
        self,
        limits: tuple[int | None, int | None, int | None] = (50, 200, 600),
        window_seconds: tuple[float, float, float] = DEFAULT_WINDOW_LENGTHS,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self._limits = dict(zip(WINDOWS, limits, strict=False))
        self._lengths = dict(zip(WINDOWS, window_seconds, strict=False))
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, WindowBucket] = {}

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """Hold the windows (``self._buckets``) for one read-and-update; a subclass may keep them elsewhere."""
        with self._lock:
            yield

    def _margin(self, length: float) -> float:
        return 0.05 + 0.01 * length

    def _bucket(self, endpoint: str) -> WindowBucket:
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            windows = {name: RateWindow(name, self._lengths[name], self._limits[name]) for name in WINDOWS}
            bucket = self._buckets[endpoint] = WindowBucket(windows)
        return bucket

    def _wait_needed(self, bucket: WindowBucket, now: float) -> tuple[float, str | None]:
        until, why = bucket.paused_until, bucket.paused_window
        for window in bucket.windows.values():
            window.roll(now)
            if window.limit is not None and window.left is not None and window.left <= 0:
                reset = window.reset_at if window.reset_at is not None else now + window.length
                window.reset_at = reset
                if reset > until:
                    until, why = reset, window.name
        return max(until - now, 0.0), why

    def acquire(self, endpoint: str, *, max_wait: float = float("inf"),
                abandon: Callable[[], object] | None = None) -> Ticket:
        """Block until a request to ``endpoint`` may be sent, then reserve it.

        Raises RateLimitError at once when the wait needed is longer than
        ``max_wait`` (for example the daily window is spent). The ticket says
        how long this call waited. ``abandon`` is called before each step of
        a wait (it raises to give the request up).
        """
        waited = 0.0
        while True:
            if abandon is not None:
                abandon()
            with self._held():
                bucket = self._bucket(endpoint)
                now = self._clock.monotonic()
                wait, window = self._wait_needed(bucket, now)
                if wait <= 0:
                    return self._reserve(endpoint, bucket, now, waited)
            if waited + wait > max_wait:
                raise rate_limit_error(endpoint, pause=wait, window=window, cap=max_wait, now=self._clock.time())
            step = min(wait, 1.0)
            self._clock.sleep(step)
            waited += step

    def _reserve(self, endpoint: str, bucket: WindowBucket, now: float, waited: float) -> Ticket:
        bucket.seq += 1
        for w in bucket.windows.values():
            if w.reset_at is None:
                w.reset_at = now + w.length + self._margin(w.length)
                w.opened_seq = bucket.seq
            w.sent += 1
        return Ticket(endpoint, bucket.seq, now, waited=waited)

    def observe(self, ticket: Ticket, headers: Mapping[str, str], *, status: int | None = None) -> None:
        """An answer came back: free its slot, and correct the windows from its limit headers if it has any.

        Any ``status`` but 429 ends a run of consecutive 429s on the endpoint.
        """
        readings = parse_rate_headers(headers)
        with self._held():
            bucket = self._bucket(ticket.endpoint)
            self._end(bucket, ticket)
            if status is not None and status != 429:
                bucket.streak = 0
            if not readings:
                return  # a 5xx or a bare 429: the next answer with headers tells the usage
            for name, window in bucket.windows.items():
                reading = readings.get(name)
                if reading is None:
                    # Headers arrived but not for this window: Apollo leaves out unlimited windows.
                    window.limit = None
                else:
                    self._read(window, ticket, reading)

    def _read(self, window: RateWindow, ticket: Ticket, reading: WindowReading) -> None:
        """Correct one window from one reading of the answer to ``ticket``."""
        if reading.limit is not None:
            window.limit = reading.limit
        if ticket.seq < window.opened_seq:
            return  # sent in an earlier window: says nothing about this one
        usage = reading.usage
        if usage is None and reading.left is not None and window.limit is not None:
            usage = window.limit - reading.left
        if usage is not None:
            # Answers arrive out of order; usage only grows within a window, so the highest is the truest.
            window.usage = usage if window.usage is None else max(window.usage, usage)
        if reading.usage == 1:
            # That request opened the server's window, so it resets no earlier than this.
            reset = ticket.sent_at + window.length + self._margin(window.length)
            window.reset_at = reset if window.reset_at is None else max(window.reset_at, reset)

    def release(self, ticket: Ticket) -> None:
        """The request failed without an answer (connect error, timeout): free its slot.

        If Apollo counted it after all, the next answer's usage header says so.
        """
        with self._held():
            self._end(self._bucket(ticket.endpoint), ticket)

    @staticmethod
    def _end(bucket: WindowBucket, ticket: Ticket) -> None:
        if ticket.ended:
            return
        ticket.ended = True
        for window in bucket.windows.values():
            if ticket.seq >= window.opened_seq:
                window.answered += 1

    def pause(self, endpoint: str, *, retry_after: float | None, window: str | None) -> float:
        """A 429 arrived: hold every request to ``endpoint``. Returns the pause in seconds.

        ``Retry-After`` is obeyed only when above 0 (else the window's reset is
        awaited), and never below a floor that doubles per consecutive 429.
        """
        retry_after = usable_retry_after(retry_after)
        with self._held():
            bucket = self._bucket(endpoint)
            bucket.streak += 1
            now = self._clock.monotonic()
            target = bucket.windows.get(window) if window else None
            seconds = max(self._pause_seconds(target, retry_after, now), rate_limit_floor(bucket.streak))
            if target is not None:
                target.spent = True
                # Apollo's own hint wins over our estimate of the window's reset.
                target.reset_at = (
                    now + seconds if retry_after is not None else max(target.reset_at or 0.0, now + seconds)
                )
            if now + seconds > bucket.paused_until:
                bucket.paused_until = now + seconds
                bucket.paused_window = window
            return seconds

    def _pause_seconds(self, target: RateWindow | None, retry_after: float | None, now: float) -> float:
        """How long a 429 pauses: Apollo's ``Retry-After``, else the named window's reset, else a full window."""
        if retry_after is not None:
            return retry_after
        if target is not None and target.reset_at is not None and target.reset_at > now:
            return target.reset_at - now
        return (target.length if target is not None else self._lengths["minute"]) + self._margin(0)

    def snapshot(self) -> dict[str, dict[str, dict[str, int | None]]]:
        """Known limits and what is left, per endpoint and window (for estimates and doctor)."""
        with self._held():
            return {
                endpoint: {name: {"limit": w.limit, "left": w.left} for name, w in bucket.windows.items()}
                for endpoint, bucket in self._buckets.items()
            }
