"""The one clock: every wait, timeout, window and timestamp in the package reads it.

``SYSTEM_CLOCK`` is the real one. ``FakeClock`` is for tests and the sandbox:
time moves only when something sleeps on it, so a run that would pause a
minute for a rate-limit window takes no real time and never depends on the
machine's speed. Pass the same clock to the client and the sandbox and both
see the same time.

Apollo's rate-limit windows are defined here too, once.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

#: Apollo's fixed rate-limit windows, shortest first.
WINDOWS: tuple[str, str, str] = ("minute", "hour", "day")
#: Their lengths in seconds.
WINDOW_SECONDS: dict[str, float] = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}
#: The same lengths as a (minute, hour, day) tuple, the shape the limiter and the sandbox take.
DEFAULT_WINDOW_LENGTHS: tuple[float, float, float] = (
    WINDOW_SECONDS["minute"],
    WINDOW_SECONDS["hour"],
    WINDOW_SECONDS["day"],
)


class Clock(Protocol):
    """What the package asks of a clock."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for waits and windows."""
        ...

    def time(self) -> float:
        """POSIX seconds (wall clock), for timestamps and reset times shown to users."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK"


SYSTEM_CLOCK: Clock = SystemClock()


class FakeClock:
    """A thread-safe clock that moves only when someone sleeps on it (or calls ``advance``).

    Wall time starts at ``start`` (default: the real time when the clock is
    made) and moves with the monotonic time. Every sleep is recorded in
    ``sleeps``. Sleeping yields the thread so other workers can run, but never
    waits for real.
    """

    def __init__(self, start: float | None = None, *, monotonic_start: float = 1000.0):
        self._lock = threading.Lock()
        self._offset = 0.0
        self._monotonic0 = monotonic_start
        self._wall0 = time.time() if start is None else start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic0 + self._offset

    def time(self) -> float:
        with self._lock:
            return self._wall0 + self._offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._offset += max(seconds, 0.0)
        time.sleep(0)  # let other threads run, as a real sleep would

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep (time passing outside the code under test)."""
        with self._lock:
            self._offset += max(seconds, 0.0)

    @property
    def slept(self) -> float:
        """Total seconds slept on this clock."""
        with self._lock:
            return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(elapsed={self._offset:.3f}s, sleeps={len(self.sleeps)})"
