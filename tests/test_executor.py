"""The engine's one executor, one budget, one stop signal and one failure rule, tested without the network.

No test sleeps: threads are ordered with events and barriers.
"""

from __future__ import annotations

import math
import threading

import pytest

from apollo_frames.core.errors import (
    APIConnectionError,
    APITimeoutError,
    ApolloError,
    ApolloServerError,
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    StorageError,
    ValidationError,
)
from apollo_frames.engine.budget import Attempts, Budget, check_credits
from apollo_frames.engine.executor import (
    BREAKER_THRESHOLD,
    WAIT,
    CircuitBreaker,
    Executor,
    Failure,
    Outcome,
    StopSignal,
    classify,
)
from apollo_frames.engine.options import RunOptions


def status_error(cls, code):
    return cls(f"Apollo answered {code}", status_code=code, path="people/bulk_match")


# -- the failure rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc, expected",
    [
        (status_error(AuthenticationError, 401), Failure.FATAL),
        (status_error(PermissionDeniedError, 403), Failure.FATAL),
        (ConfigurationError("no API key"), Failure.FATAL),
        (status_error(RateLimitError, 429), Failure.STOP),
        (status_error(NotFoundError, 404), Failure.ERROR),
        (status_error(ValidationError, 422), Failure.ERROR),
        (status_error(ApolloServerError, 503), Failure.ERROR),
        (APIConnectionError("connection reset"), Failure.ERROR),
        (APITimeoutError("timed out"), Failure.ERROR),
        (BudgetExceededError("over"), Failure.ERROR),
        (ApolloError("anything else of ours"), Failure.ERROR),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
        (KeyboardInterrupt(), None),
    ],
)
def test_classify_sorts_every_failure(exc, expected):
    assert classify(exc) is expected


@pytest.mark.parametrize(
    "failure, verb, expected",
    [
        (Failure.FATAL, "sent", ("skipped", "not sent: boom")),
        (Failure.FATAL, "searched", ("skipped", "not searched: boom")),
        (Failure.STOP, "sent", ("skipped", "boom")),
        (Failure.ERROR, "sent", ("error", "boom")),
    ],
)
def test_row_status_of_a_failed_task(failure, verb, expected):
    assert Outcome("task", error=ApolloError("boom"), failure=failure).row_status(verb) == expected


# -- the credits check -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0.0), (3, 3.0), (2.5, 2.5)])
def test_check_credits_accepts_numbers(value, expected):
    assert check_credits("max_credits", value) == expected


@pytest.mark.parametrize("value", [True, False, "5", float("nan"), float("inf"), -1, -0.5, [1]])
def test_check_credits_refuses_the_rest_naming_the_argument(value):
    with pytest.raises(ValueError, match="confirm_over must be a finite number of credits"):
        check_credits("confirm_over", value)
    with pytest.raises(InputError, match="max_credits must be"):  # the run's options, checked once
        RunOptions(max_credits=value)


# -- the budget --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "max_credits, spent, in_flight, unit, wanted, expected",
    [
        (None, 0, 0, 1, 10, 10),  # no cap
        (5, 0, 0, 0, 10, 10),  # free requests always fit
        (25, 0, 0, 1, 10, 10),  # fits
        (25, 20, 0, 1, 10, 5),  # nothing in flight: a smaller last batch
        (25, 25, 0, 1, 10, 0),  # nothing in flight, nothing fits: the budget is reached
        (25, 10, 10, 1, 10, None),  # in flight may come in cheaper: come back later
        (25, 0, 20, 1, 5, 5),  # fits beside what is in flight
        (0.3, 0, 0, 0.1, 3, 3),  # float sums: 0.1 * 3 fits in 0.3
        (10, 0, 0, 3, 4, 3),  # whole items only
    ],
)
def test_reserve_items_worst_case_room(max_credits, spent, in_flight, unit, wanted, expected):
    budget = Budget(max_credits)
    if spent:
        assert budget.reserve_items(1, spent) == spent
        budget.settle(spent, spent)
    if in_flight:
        assert budget.reserve_items(1, in_flight) == in_flight
    assert budget.reserve_items(unit, wanted, wait=False) == expected
    assert budget.spent + budget.reserved <= (max_credits if max_credits is not None else math.inf) + 1e-9


def test_budget_runs_batches_as_the_runner_did():
    """Two batches of 10 in flight under max 25; the third waits until they settle, then the last is smaller."""
    budget = Budget(25)
    assert budget.reserve_items(1, 10, wait=False) == 10
    assert budget.reserve_items(1, 10, wait=False) == 10
    assert budget.reserve_items(1, 10, wait=False) is None
    budget.settle(10, 10)
    assert budget.reserve_items(1, 10, wait=False) is None  # still one in flight, room 5
    budget.settle(10, 3)  # seven no-matches: cheaper than its worst case
    assert budget.reserve_items(1, 10, wait=False) == 10
    budget.settle(10, 10)
    assert budget.reserve_items(1, 10, wait=False) == 2
    budget.settle(2, 2)
    assert budget.reserve_items(1, 10, wait=False) == 0
    assert budget.spent == 25 and budget.reserved == 0
    assert "max_credits=25, spent 25" in budget.reached()


def _watch_waits(budget: Budget) -> threading.Event:
    """An event set when a thread starts waiting inside the budget."""
    waiting = threading.Event()
    real_wait = budget._cond.wait

    def wait(timeout=None):
        waiting.set()
        return real_wait(timeout)

    budget._cond.wait = wait  # type: ignore[method-assign]
    return waiting


@pytest.mark.parametrize("actual, expected", [(0.0, True), (1.0, False)])
def test_reserve_waits_for_in_flight_to_settle(actual, expected):
    budget = Budget(1)
    waiting = _watch_waits(budget)
    assert budget.reserve(1)  # one page in flight, taking the whole budget
    answer: list[bool] = []
    other = threading.Thread(target=lambda: answer.append(budget.reserve(1)))
    other.start()
    assert waiting.wait(5), "the second reservation should wait for the first to settle"
    assert answer == []
    budget.settle(1, actual)  # a page without results costs nothing; one with results takes the budget
    other.join(5)
    assert answer == [expected]
    assert budget.spent == actual and budget.reserved == (1 if expected else 0)


def test_reserve_never_waits_with_nothing_in_flight():
    budget = Budget(1)
    budget.reserve(1)
    budget.settle(1, 1)
    assert budget.reserve(1) is False  # returns at once: nobody could settle
    assert budget.reserve(0) is True  # a free request still fits


def test_budget_never_spends_past_the_cap_under_contention():
    budget = Budget(5)
    start = threading.Barrier(12)
    granted: list[bool] = []
    over: list[float] = []

    def page():
        start.wait(5)
        ok = budget.reserve(1)
        with budget._cond:
            if budget.spent + budget.reserved > 5 + 1e-9:
                over.append(budget.spent + budget.reserved)
        if ok:
            budget.settle(1, 1)
        granted.append(ok)

    threads = [threading.Thread(target=page) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(granted) == [False] * 7 + [True] * 5
    assert budget.spent == 5 and budget.reserved == 0 and over == []


# -- the stop signal ---------------------------------------------------------------------------------


def test_first_stop_reason_wins_but_a_later_fatal_is_kept():
    stop = StopSignal()
    limit = status_error(RateLimitError, 429)
    refused = status_error(AuthenticationError, 401)
    stop.fail(limit, Failure.STOP)
    stop.fail(refused, Failure.FATAL)
    stop.fail(ApolloError("ignored"), Failure.ERROR)
    assert stop.stopped and stop.reason.startswith("rate limit: ") and stop.error is limit
    assert stop.rate_limit is limit and stop.fatal is refused
    with pytest.raises(AuthenticationError):
        stop.raise_fatal()


def test_an_error_does_not_stop():
    stop = StopSignal()
    stop.fail(ApolloError("one row"), Failure.ERROR)
    assert not stop.stopped and stop.fatal is None
    stop.raise_fatal()  # nothing to raise


def test_stop_signal_shared_across_two_executions():
    stop = StopSignal()
    ran: list[tuple[str, int]] = []

    def first(n: int) -> int:
        ran.append(("first", n))
        if n == 2:
            raise status_error(RateLimitError, 429)
        return n

    outcomes = Executor(1, stop).run_tasks(range(5), first)
    assert [o.started for o in outcomes] == [True, True, True, False, False]
    assert outcomes[2].failure is Failure.STOP and stop.rate_limit is outcomes[2].error
    assert [o.value for o in outcomes[:2]] == [0, 1]

    # the next chunk of the same file run: nothing is sent
    second = Executor(4, stop).run_tasks(range(3), lambda n: ran.append(("second", n)))
    assert all(not o.started for o in second)
    assert ran == [("first", 0), ("first", 1), ("first", 2)]


def test_a_fatal_error_stops_the_run_and_is_raised_by_the_caller():
    stop = StopSignal()
    refused = status_error(PermissionDeniedError, 403)

    def work(n: int) -> int:
        if n == 1:
            raise refused
        return n

    outcomes = Executor(1, stop).run_tasks(range(4), work)
    assert [o.started for o in outcomes] == [True, True, False, False]
    assert outcomes[1].row_status() == ("skipped", f"not sent: {refused}")
    with pytest.raises(PermissionDeniedError) as info:
        stop.raise_fatal()
    assert info.value is refused


# -- the executor ------------------------------------------------------------------------------------


def test_executor_returns_every_outcome_in_task_order_and_reports_on_the_calling_thread():
    caller = threading.get_ident()
    seen_on: set[int] = set()
    completed: list[int] = []
    limit = 3
    together = threading.Barrier(limit, timeout=5)  # breaks (a bug, raised) unless 3 run at once
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        together.wait()
        with lock:
            running[0] -= 1
        if n % 4 == 3:
            raise ApolloError(f"task {n} failed")
        return n * n

    def on_done(outcome: Outcome[int, int]) -> None:
        seen_on.add(threading.get_ident())
        completed.append(outcome.task)

    outcomes = Executor(limit).run_tasks(range(9), work, on_done)
    assert [o.task for o in outcomes] == list(range(9))
    assert [o.value for o in outcomes] == [n * n if n % 4 != 3 else None for n in range(9)]
    assert [o.ok for o in outcomes] == [n % 4 != 3 for n in range(9)]
    assert all(o.failure is Failure.ERROR and str(o.error) == f"task {o.task} failed" for o in outcomes if not o.ok)
    assert sorted(completed) == list(range(9)) and seen_on == {caller}
    assert running[1] == limit


def test_a_bug_in_a_task_is_raised_not_swallowed():
    def work(n: int) -> int:
        if n == 1:
            raise ZeroDivisionError("a bug")
        return n

    with pytest.raises(ZeroDivisionError):
        Executor(2).run_tasks(range(3), work)


def test_a_source_may_ask_to_wait_for_a_running_task():
    """Like the budget: the next task starts only once the one in flight is done."""
    left = list(range(5))
    in_flight: list[int] = []
    most = [0]

    def source():
        if not left:
            return None
        if in_flight:
            return WAIT
        in_flight.append(left.pop(0))
        most[0] = max(most[0], len(in_flight))
        return in_flight[-1]

    def on_done(outcome: Outcome[int, int]) -> None:
        in_flight.remove(outcome.task)
        done.append(outcome.value)

    done: list[int | None] = []
    Executor(4).run(source, lambda n: n + 100, on_done)
    assert done == [100, 101, 102, 103, 104] and most[0] == 1


def test_tasks_queued_ahead_wait_for_a_free_worker_and_are_handed_out_before_one_is():
    handed: list[int] = []
    release = threading.Event()
    running = [0, 0]  # now, most
    lock = threading.Lock()

    def source():
        if len(handed) == 6:
            return None
        handed.append(len(handed))
        if len(handed) == 3:  # two workers busy and one task queued before any finished
            release.set()
        return handed[-1]

    def work(n: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        assert release.wait(5)
        with lock:
            running[0] -= 1
        return n

    done: list[int] = []
    Executor(2, ahead=1).run(source, work, lambda outcome: done.append(outcome.value))
    assert sorted(done) == list(range(6)) and running[1] == 2  # never more than 2 at once


def handing_out(n: int, queued_at: int):
    """A source of tasks 0..n-1, and an event set once task ``queued_at`` is handed out (the queue is full)."""
    tasks = iter(range(n))
    queued = threading.Event()

    def source():
        task = next(tasks, None)
        if task == queued_at:
            queued.set()
        return task

    return source, queued


def test_a_queued_task_does_not_start_once_a_worker_stopped_the_run():
    ran: list[int] = []
    refused = status_error(AuthenticationError, 401)
    source, queued = handing_out(6, queued_at=3)  # one running, three queued

    def work(n: int) -> int:
        assert queued.wait(5)
        ran.append(n)
        raise refused

    delivered: list[Outcome] = []
    Executor(1, ahead=3).run(source, work, delivered.append)
    outcomes = sorted(delivered, key=lambda o: o.task)
    assert ran == [0]  # tasks 1-3 were queued behind it: none was sent
    assert [o.task for o in outcomes] == [0, 1, 2, 3]  # handed out, so handed over; 4 and 5 never handed out
    assert [o.started for o in outcomes] == [True, False, False, False]
    assert outcomes[0].failure is Failure.FATAL


def test_the_breaker_trips_before_a_queued_task_starts():
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        raise APIConnectionError("refused", path="people/bulk_match")

    source, queued = handing_out(20, queued_at=4)  # one running, four queued

    def slow_start(n: int) -> int:
        assert n or queued.wait(5)
        return work(n)

    delivered: list[Outcome] = []
    Executor(1, ahead=4).run(source, slow_start, delivered.append)
    outcomes = sorted(delivered, key=lambda o: o.task)
    assert ran == list(range(BREAKER_THRESHOLD))
    assert [o.started for o in outcomes].count(True) == BREAKER_THRESHOLD


def test_an_interrupt_hands_over_queued_tasks_as_not_started():
    tasks = iter(range(3))
    hold = threading.Event()
    ran: list[int] = []
    delivered: list[tuple[int, int | None, bool]] = []

    def work(n: int) -> int:
        ran.append(n)
        if n:
            assert hold.wait(10)  # task 1 holds the only worker: task 2 stays queued
        return n * 10

    def on_done(done: Outcome[int, int]) -> None:
        delivered.append((done.task, done.value, done.started))
        if len(delivered) == 1:
            raise KeyboardInterrupt  # Ctrl-C while the first answer is handled

    executor = Executor(1, ahead=2)
    executor.drain_s = 0  # task 1 is not awaited
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run(lambda: next(tasks, None), work, on_done)
    finally:
        hold.set()
    assert delivered[:2] == [(0, 0, True), (0, 0, True)]  # handed over again: its on_done was interrupted
    assert (2, None, False) in delivered and 2 not in ran  # cancelled in the queue, handed over not started
    assert all(started or task not in ran for task, _, started in delivered)


def test_executor_width_comes_from_the_client():
    class Settings:
        concurrency = 7

    class Client:
        settings = Settings()

    assert Executor.for_client(Client()).concurrency == 7
    assert Executor(0).concurrency == 1


def test_committed_credits_hold_the_cap_whatever_was_reported():
    budget = Budget(20)
    assert budget.reserve_items(1, 10) == 10
    budget.settle(10, 2, committed=10)  # answered, reported 2: the worst case stays counted against the cap
    assert budget.spent == 2 and budget.committed == 10 and budget.left() == 10
    assert budget.reserve_items(1, 20, wait=False) == 10
    assert "counting each request sent at its worst case" in budget.reached()


def _ledger_entries() -> tuple[list[int], object]:
    written: list[int] = []
    return written, lambda: written.append(len(written) + 1) or len(written)


@pytest.mark.parametrize(
    "cap, resends, in_doubt, answered, committed, entry",
    [
        (None, 2, 2, 3.0, 30, 3),  # two lost attempts retried, the third answered: its entry settles, 2 in doubt
        (None, 1, 2, None, 20, None),  # lost twice, no answer: both entries stay in doubt
        (None, 1, 1, None, 10, 2),  # lost once, the retry refused (4xx): the retry's entry cost nothing
        (15, 0, 1, None, 10, None),  # the cap has no room for a retry: not resent
    ],
)
def test_attempts_reserve_note_and_settle(cap, resends, in_doubt, answered, committed, entry):
    budget = Budget(cap)
    written, begin = _ledger_entries()
    assert budget.reserve_items(10, 1) == 1
    attempts = Attempts(budget, 10, begin)  # type: ignore[arg-type]
    attempts.note()
    assert [attempts.resend() for _ in range(resends or 1)] == [cap is None] * (resends or 1)
    assert attempts.entry(in_doubt) == entry
    attempts.settle(in_doubt, answered)
    assert budget.reserved == 0 and budget.committed == committed and budget.spent == (answered or 0)
    assert len(written) == 1 + (resends if cap is None else 0)


def test_a_retry_the_ledger_cannot_write_is_not_sent():
    budget = Budget(None)

    def begin() -> int:
        raise StorageError("disk full", reason="full")

    attempts = Attempts(budget, 10, begin)
    assert attempts.resend() is False and isinstance(attempts.unrecorded, StorageError)


def test_a_tripped_breaker_keeps_the_attempts_that_may_have_been_charged():
    breaker = CircuitBreaker(threshold=1)
    lost = APITimeoutError("timed out", path="people/bulk_match", attempts=4)
    lost.charged_attempts = 4
    tripped = breaker.failed(lost)
    assert isinstance(tripped, CircuitOpenError) and tripped.charged_attempts == 4
