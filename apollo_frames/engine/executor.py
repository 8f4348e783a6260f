"""The one bounded concurrent executor behind enrichment, search and push.

An operation hands the executor a source of tasks, a ``work`` function run
on a worker thread (the request), and an ``on_done`` callback that receives
each task's :class:`Outcome` on the calling thread, in completion order (so
cache and ledger writes stay on one thread). Up to ``concurrency`` tasks run
at once. Every failure is sorted by one rule, :func:`classify`:

* **fatal** (refused key, missing permission, bad configuration): stop
  sending; the caller raises the error at the end (:meth:`StopSignal.raise_fatal`);
* **stop** (a rate limit beyond the client's wait cap, or the circuit
  breaker): stop sending; the rows not sent are ``skipped`` with the reason;
* **error** (any other :class:`~apollo_frames.core.errors.ApolloError`): this
  task's rows fail, the run goes on.

Anything else is a bug and is raised at once. A :class:`StopSignal` may be
shared by several runs (the chunks of one file run): once one of them stops,
the others send nothing more.

An interrupt (Ctrl-C, ``SystemExit``, an error in ``on_done``) starts nothing
more; on the main thread Ctrl-C (and SIGTERM where it raises KeyboardInterrupt,
as on the command line) is only noted by the signal handler and raised by the
loop between two steps (:class:`DeferredInterrupts`): raised anywhere, it can
land inside the locks of ``concurrent.futures`` or ``queue`` and leave one held,
so a worker never finishes and the process never exits. A second Ctrl-C raises
at once. Then the tasks in flight get up to ``drain_s`` seconds (``for_client``: the
request timeout) and every outcome that arrives is still handed to
``on_done``, so an answer paid for is never dropped; then the exception goes on.

``ahead`` tasks beyond ``concurrency`` may wait in the pool's queue, so a
worker that finishes one starts the next at once instead of waiting for the
calling thread to hand it over (a thread hop that costs milliseconds per task
when Python threads share a busy core). A queued task that would start after
the run stopped is not run: its outcome has ``started=False``, as has one an
interrupt cancelled. Each outcome is judged on its worker (the breaker counts
under a lock), so a stop is set before a task queued behind it can start.

A :class:`CircuitBreaker` counts tasks that got no answer at all (connection
failures and timeouts, after the client's own retries) per API path: after
``BREAKER_THRESHOLD`` in a row the task that tripped it and every task not yet
started are ``skipped`` with one message naming the host, instead of hours of
retries against a dead host. Any other outcome on that path resets the count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from apollo_frames.client.http import endpoint_of
from apollo_frames.core.errors import (
    APIConnectionError,
    APITimeoutError,
    ApolloError,
    AuthenticationError,
    CircuitOpenError,
    ConfigurationError,
    PermissionDeniedError,
    RateLimitError,
    RequestAbandoned,
)
from apollo_frames.core.reasons import error_code, tagged

T = TypeVar("T")
R = TypeVar("R")


class Failure(enum.Enum):
    """How a failed task affects its run."""

    FATAL = "fatal"  # stop sending, raise at the end
    STOP = "stop"  # stop sending, rows left skipped
    ERROR = "error"  # this task's rows fail, the run goes on


_FATAL = (AuthenticationError, PermissionDeniedError, ConfigurationError)
#: Tasks in a row that got no answer (connection failures, timeouts) on one path before the run stops.
BREAKER_THRESHOLD = 5
#: After an interrupt, seconds the tasks in flight may take to finish (``Executor.for_client``: the request timeout).
DRAIN_S = 30.0
#: Added to the request timeout for the drain (answers read and stored after the last byte).
DRAIN_MARGIN_S = 5.0
#: Seconds between two looks at a noted interrupt while the main thread waits for tasks.
INTERRUPT_POLL_S = 0.1


def classify(exc: BaseException) -> Failure | None:
    """The one failure rule; None for an exception that is not an ApolloError (a bug: raised at once)."""
    if isinstance(exc, _FATAL):
        return Failure.FATAL
    if isinstance(exc, (RateLimitError, CircuitOpenError, RequestAbandoned)):
        return Failure.STOP
    if isinstance(exc, ApolloError):
        return Failure.ERROR
    return None


class StopSignal:
    """Set once to stop sending; shared by every run that must stop together.

    ``reason`` and ``error`` are the first stop's; ``fatal`` is the first
    fatal error even when a rate limit stopped the run before it (a refused
    key must never go unreported).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.error: ApolloError | None = None
        self.fatal: ApolloError | None = None
        #: a Ctrl-C (or SIGTERM) noted by :class:`DeferredInterrupts`, not raised yet
        self.interrupted = False

    def __repr__(self) -> str:
        return f"StopSignal({self.reason!r})" if self.stopped else "StopSignal(not stopped)"

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def stop(self, reason: str, error: ApolloError | None = None) -> None:
        """Stop sending; the first reason wins."""
        with self._lock:
            if self.reason is None:
                self.reason, self.error = reason, error
            if self.fatal is None and error is not None and classify(error) is Failure.FATAL:
                self.fatal = error

    def fail(self, exc: ApolloError, failure: Failure) -> None:
        """Stop for a fatal or stop failure, with the reason the operations report."""
        if failure is Failure.ERROR:
            return
        if isinstance(exc, RateLimitError):
            text = f"rate limit: {exc}"
        else:  # the breaker's and an interrupt's messages say it stopped; a fatal error does not
            text = str(exc) if isinstance(exc, (CircuitOpenError, RequestAbandoned)) else f"stopped: {exc}"
        self.stop(tagged(error_code(exc), text), exc)

    def check_interrupt(self) -> None:
        """Raise the Ctrl-C a :class:`DeferredInterrupts` handler noted (call it where raising is safe)."""
        if self.interrupted:
            raise KeyboardInterrupt

    @property
    def rate_limit(self) -> RateLimitError | None:
        """The rate limit that stopped the run, if that is what stopped it."""
        return self.error if isinstance(self.error, RateLimitError) else None

    def raise_fatal(self) -> None:
        """Raise the fatal error, if a run stopped on one (call it once the run's rows are accounted for)."""
        if self.fatal is not None:
            raise self.fatal


@dataclasses.dataclass
class Outcome(Generic[T, R]):
    """One task's end: its value, or the ApolloError it failed with and how that counts."""

    task: T
    value: R | None = None
    error: ApolloError | None = None
    failure: Failure | None = None
    #: False for a task never started because the run stopped first
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None

    def row_status(self, verb: str = "sent") -> tuple[str, str]:
        """(status, message) for the rows of a failed task: ``skipped`` when the run stopped, else ``error``."""
        code = error_code(self.error)
        if self.failure is Failure.FATAL:
            return "skipped", tagged(code, f"not {verb}: {self.error}")
        if self.failure is Failure.STOP:
            return "skipped", tagged(code, str(self.error))
        return "error", tagged(code, str(self.error))


class CircuitBreaker:
    """Counts tasks in a row that got no answer, per endpoint (record ids collapsed); trips at ``threshold``.

    See the module docstring.
    """

    def __init__(self, threshold: int = BREAKER_THRESHOLD, host: str | None = None):
        self.threshold = max(1, int(threshold))
        self.host = host
        self._streaks: dict[str | None, int] = {}

    def __repr__(self) -> str:
        return f"CircuitBreaker(threshold={self.threshold}, host={self.host!r})"

    def answered(self) -> None:
        """A task got its answer: the host is up, every count starts again."""
        self._streaks.clear()

    def failed(self, exc: ApolloError) -> CircuitOpenError | None:
        """Count a failed task; the error to stop with when it trips the breaker, else None."""
        endpoint = endpoint_of("GET", str(getattr(exc, "path", None) or ""))  # record ids collapsed
        if not isinstance(exc, APIConnectionError) or isinstance(exc, CircuitOpenError):
            self._streaks.pop(endpoint, None)  # an answer, even an error one: the host is up
            return None
        streak = self._streaks[endpoint] = self._streaks.get(endpoint, 0) + 1
        if streak < self.threshold:
            return None
        what = "timed out" if isinstance(exc, APITimeoutError) else "failed to connect"
        where = f"Apollo at {self.host}" if self.host else "Apollo"
        tripped = CircuitOpenError(
            f"{where} did not answer {streak} requests in a row ({what}): stopped sending; "
            "check the network and the base URL (APOLLO_BASE_URL), then run again",
            path=exc.path, attempts=exc.attempts,
        )
        tripped.charged_attempts = exc.charged_attempts  # its attempts may still have been charged
        return tripped


class DeferredInterrupts:
    """While a run waits on the main thread, Ctrl-C and SIGTERM only set ``stop.interrupted``; a second one raises.

    Only handlers that raise KeyboardInterrupt are replaced (Python's default for SIGINT, and what
    the command line sets for SIGTERM); elsewhere (another thread, a handler of the application's)
    nothing changes. The previous handlers come back on exit.
    """

    def __init__(self, stop: StopSignal, on_note: Callable[[], object] | None = None):
        self.stop, self.on_note = stop, on_note
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is signal.default_int_handler:
                    self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _note(self, signum: int, frame: Any) -> None:
        if self.stop.interrupted:
            raise KeyboardInterrupt  # pressed again: stop waiting now
        self.stop.interrupted = True
        if self.on_note is not None:
            self.on_note()


class Wait(enum.Enum):
    """A source's answer "nothing can start until a running task finishes" (e.g. the budget waits)."""

    WAIT = "wait"


WAIT = Wait.WAIT
#: a source returns the next task, WAIT, or None when it has no more
Source = Callable[[], T | Wait | None]


class Executor:
    """Runs tasks on up to ``concurrency`` threads until the source is empty or the stop signal is set."""

    def __init__(self, concurrency: int, stop: StopSignal | None = None, *, name: str = "apollo",
                 breaker: CircuitBreaker | None = None, ahead: int = 0):
        self.concurrency = max(1, int(concurrency))
        #: tasks queued beyond ``concurrency`` (see the module docstring)
        self.ahead = max(0, int(ahead))
        self.stop = stop if stop is not None else StopSignal()
        self.name = name
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._judging = threading.Lock()  # the breaker counts outcomes in the order the workers end them
        #: after an interrupt, how long the tasks in flight may take to finish (their answers are kept)
        self.drain_s = DRAIN_S
        #: set when an interrupt ends the run: a long task (a search paging on) stops at its next step
        self.interrupted = threading.Event()

    @classmethod
    def for_client(cls, client: Any, stop: StopSignal | None = None, *, name: str = "apollo") -> Executor:
        """An executor as wide as the client's ``settings.concurrency``, its breaker naming the client's host."""
        host = urlsplit(str(getattr(client.settings, "base_url", ""))).netloc or None
        executor = cls(getattr(client.settings, "concurrency", 1), stop, name=name, breaker=CircuitBreaker(host=host))
        # one attempt's deadline and a margin: retries and rate-limit waits are given up once interrupted (abandon)
        executor.drain_s = float(getattr(client.settings, "timeout", DRAIN_S)) + DRAIN_MARGIN_S
        return executor

    def run(self, source: Source[T], work: Callable[[T], R], on_done: Callable[[Outcome[T, R]], None]) -> None:
        """Start tasks from ``source`` while a slot is free; hand each outcome to ``on_done`` as it finishes.

        When anything interrupts the run (Ctrl-C, SystemExit, an error in ``on_done``), nothing more is
        started; the tasks in flight get up to ``drain_s`` seconds to finish and every outcome that
        arrives is still handed to ``on_done`` (an answer paid for is never dropped), then the
        exception goes on. A task is removed from flight only once ``on_done`` returned for it, so
        an interrupt inside ``on_done`` hands the same outcome over again: ``on_done`` must be idempotent.
        A task handed out but never started (queued when the run stopped, or cancelled by an interrupt)
        is handed over with ``started=False``.
        """
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=self.name)
        inflight: dict[Future[Outcome[T, R]], T] = {}
        self.interrupted.clear()
        try:
            with DeferredInterrupts(self.stop, self.interrupted.set):
                try:
                    self._loop(pool, inflight, source, work, on_done)
                except BaseException:
                    self.interrupted.set()  # a task paging on (a search) stops at its next page
                    self._drain(inflight, on_done)
                    raise
        finally:
            pool.shutdown(wait=not inflight, cancel_futures=True)

    def _loop(self, pool: ThreadPoolExecutor, inflight: dict[Future[Outcome[T, R]], T], source: Source[T],
              work: Callable[[T], R], on_done: Callable[[Outcome[T, R]], None]) -> None:
        while self._fill(pool, inflight, source, work):
            done, _ = wait(list(inflight), timeout=INTERRUPT_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(future.result())  # an exception other than an ApolloError is a bug: raised here
                del inflight[future]
            self.stop.check_interrupt()
        self.stop.check_interrupt()  # noted while the last answer was handled

    def _drain(self, inflight: dict[Future[Outcome[T, R]], T], on_done: Callable[[Outcome[T, R]], None]) -> None:
        """After an interrupt: await the tasks in flight (bounded; a second Ctrl-C stops waiting), deliver each
        (those cancelled before they started as ``started=False``)."""
        for future in inflight:
            future.cancel()  # those not started yet
        try:
            wait(list(inflight), timeout=self.drain_s)
        except KeyboardInterrupt:
            pass
        for future, task in list(inflight.items()):
            if future.done():
                with contextlib.suppress(Exception):  # the first exception is the one that goes on
                    on_done(Outcome(task, started=False) if future.cancelled() else future.result())
                del inflight[future]

    def run_tasks(
        self, tasks: Iterable[T], work: Callable[[T], R], on_done: Callable[[Outcome[T, R]], None] | None = None
    ) -> list[Outcome[T, R]]:
        """Run every task (``on_done`` as in :meth:`run`); every task's outcome, in task order.

        Tasks the run never started (it stopped first) have ``started=False``.
        """
        listed = list(tasks)
        outcomes: list[Outcome[T, R]] = [Outcome(task, started=False) for task in listed]
        numbered = iter(enumerate(listed))

        def record(outcome: Outcome[tuple[int, T], R]) -> None:
            i, task = outcome.task
            outcomes[i] = mine = Outcome(task, outcome.value, outcome.error, outcome.failure, outcome.started)
            if on_done is not None:
                on_done(mine)

        self.run(lambda: next(numbered, None), lambda pair: work(pair[1]), record)
        return outcomes

    def _fill(self, pool: ThreadPoolExecutor, inflight: dict[Future[Outcome[T, R]], T], source: Source[T],
              work: Callable[[T], R]) -> bool:
        """Submit tasks while a slot (or a place in the queue) is free, the run is not stopped and the source
        has one; is any in flight?"""
        while len(inflight) < self.concurrency + self.ahead and not self.stop.stopped:
            self.stop.check_interrupt()
            task = source()
            if task is None or isinstance(task, Wait):
                break
            # registered before it is submitted: a Ctrl-C between the two still finds it in flight (and drains it)
            slot: Future[Outcome[T, R]] = Future()
            inflight[slot] = task
            pool.submit(_run_into, slot, functools.partial(self._start, work), task)
        return bool(inflight)

    def _start(self, work: Callable[[T], R], task: T) -> Outcome[T, R]:
        """Run one task on a worker, unless the run stopped (or Ctrl-C was noted) while it waited in the queue."""
        if self.stop.stopped or self.stop.interrupted:
            return Outcome(task, started=False)
        try:
            value = work(task)
        except ApolloError as exc:
            return self._failed(task, exc)
        with self._judging:
            self.breaker.answered()
        return Outcome(task, value=value)

    def _failed(self, task: T, exc: ApolloError) -> Outcome[T, R]:
        """The one place failures are judged (and counted by the circuit breaker), on the worker, so a stop is
        set before a task queued behind this one can start."""
        with self._judging:
            tripped = self.breaker.failed(exc)
        if tripped is not None:
            self.stop.fail(tripped, Failure.STOP)
        # a write that may have happened keeps its own error (outcome unknown); any other trip is skipped
        error = tripped if tripped is not None and not getattr(exc, "outcome_unknown", False) else exc
        failure = classify(error)
        assert failure is not None
        self.stop.fail(error, failure)
        return Outcome(task, error=error, failure=failure)


def _run_into(slot: Future[R], work: Callable[[T], R], task: T) -> None:
    """``work(task)`` on a worker thread, its result or exception into ``slot`` (skipped if cancelled before)."""
    if not slot.set_running_or_notify_cancel():
        return
    try:
        slot.set_result(work(task))
    except BaseException as exc:  # a bug (an ApolloError is judged in the task's outcome): raised by the caller
        slot.set_exception(exc)
