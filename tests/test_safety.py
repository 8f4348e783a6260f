"""The send path of issue 12: claims across processes, nothing paid dropped (Ctrl-C, SIGTERM, full disks),
requests in doubt in the ledger after kill -9, store writes off the dispatching thread."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pandas as pd
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames import RunInterrupted
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.storage import storage_error
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import StorageError
from apollo_frames.engine.executor import DeferredInterrupts, Executor, StopSignal
from apollo_frames.engine.keeper import AnswerWriter, Keep
from apollo_frames.engine.runner import plan_work
from apollo_frames.engine.summary import RunSummary
from apollo_frames.ops.people import people_job
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

pytestmark = pytest.mark.slow  # real processes: killed, interrupted, raced (-m "not slow" skips them)

ROOT = Path(__file__).resolve().parents[1]
INTERRUPTED = re.compile(r"interrupted: ([\d,]+) answers saved, ([\d,]+) rows left; run the same command to resume")


def known_people(sandbox, n):
    found = [p for p in sandbox.world.people if p.get("email")]
    assert len(found) >= n, "the sandbox world is too small for this test"
    return found[:n]


def people_frame(people):
    return pd.DataFrame({"Email": [p["email"] for p in people], "n": range(len(people))})


def bulk_calls(sandbox):
    return sandbox.count(path="people/bulk_match", status=200)


class _Gate(FakeClock):
    """A sandbox clock whose latency sleeps hold answers: the first ``let_through`` pass at once, later ones wait
    for ``release``. ``reached`` is set once ``count_to`` answers are held at the same time (and, with
    ``auto_release``, they are all let go then)."""

    def __init__(self, let_through: int = 0, count_to: int | None = None, auto_release: bool = False):
        super().__init__()
        self.left = let_through
        self.count_to, self.auto_release = count_to, auto_release
        self.held = 0
        self.holding = threading.Event()
        self.reached = threading.Event()
        self.release = threading.Event()
        self._count = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._count:
            self.left -= 1
            hold = self.left < 0
            if hold:
                self.held += 1
                if self.count_to is not None and self.held >= self.count_to:
                    self.reached.set()
                    if self.auto_release:
                        self.release.set()
        if hold:
            self.holding.set()
            self.release.wait(30)
        super().sleep(seconds)


def _cli_env(base_url: str, cache: Path) -> dict:
    # No credit-meter pre-flight: its request would be held by the gates below like a bulk call.
    return dict(os.environ, APOLLO_BASE_URL=base_url, APOLLO_API_KEY=DEFAULT_API_KEY,
                APOLLO_FRAMES_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), APOLLO_FRAMES_METER_THRESHOLD="1e12")


def _enrich_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "apollo_frames.cli", "enrich-people", str(src), str(out), "--quiet"]


# -- claims across processes ---------------------------------------------------------------------


def test_two_processes_on_one_folder_pay_once(small_config, tmp_path):
    n = 200
    src = tmp_path / "in.parquet"
    people_frame(known_people(Sandbox(small_config), n)).to_parquet(src)
    ref = Sandbox(small_config)
    with ref.client(cache_dir=tmp_path / "ref") as c:
        af.enrich_parquet(src, dst=tmp_path / "ref.parquet", client=c, progress=False)
    one_run = ref.credits_consumed
    assert one_run == n

    # Answers are held until both processes have 4 requests in flight at once, so they overlap for sure.
    gate = _Gate(count_to=8, auto_release=True)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.01), clock=gate)
    with sb.serve() as base_url:
        env = _cli_env(base_url, tmp_path / "shared")
        procs = [subprocess.Popen(_enrich_cmd(src, tmp_path / f"out{i}.parquet"), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(2)]
        try:
            outs = [p.communicate(timeout=60) for p in procs]
        finally:
            gate.release.set()
    assert gate.reached.is_set(), "the two runs never had requests in flight at the same time"
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert sb.credits_consumed == one_run  # each record paid once, by one of the two
    expected = pd.read_parquet(tmp_path / "ref.parquet")
    outs = [pd.read_parquet(tmp_path / f"out{i}.parquet") for i in range(2)]
    for out in outs:
        pd.testing.assert_frame_equal(answers(out), answers(expected))
    assert outs[0]["apollo_credits"].sum() + outs[1]["apollo_credits"].sum() == one_run  # the bill: who paid

def test_a_record_another_process_holds_is_awaited_then_read_from_the_store(sandbox, tmp_path):
    people = known_people(sandbox, 30)
    clock = FakeClock()
    with sandbox.client(cache_dir=tmp_path / "c", clock=clock) as other, \
            sandbox.client(cache_dir=tmp_path / "c", clock=clock) as mine:
        # "another process" ran the first 10 people and holds a claim on the next 10 (its request in flight)
        af.enrich_people(people_frame(people[:10]), client=other, progress=False)
        held = people_frame(people[10:20])
        prepared, op, options = people_job(held)
        keys = plan_work(prepared, op, options, other).cache_keys
        assert other.cache.claim(keys, lease_s=600).claimed == keys
        before = sandbox.credits_consumed

        answered = threading.Event()

        def other_answers(seconds: float) -> None:  # the other process's answer lands while this run waits
            if not answered.is_set():
                answered.set()
                af.enrich_people(held, client=other, progress=False)
                other.cache.release(keys)
            FakeClock.sleep(clock, seconds)

        clock.sleep = other_answers  # type: ignore[method-assign]
        out = af.enrich_people(people_frame(people), client=mine, progress=False)
    assert answered.is_set()
    assert (out["apollo_status"] == "matched").all()
    # this run paid for the last 10 only: the first 10 were cached, the next 10 the other process paid for
    assert sandbox.credits_consumed - before == 20  # 10 by "the other process" while we waited, 10 by us
    assert out.attrs["apollo"]["credits_consumed"] == 10
    assert out.attrs["apollo"]["cache_hits"] == 20


def test_a_refresh_waits_for_the_new_answer_another_process_is_fetching_not_the_old_one(sandbox, tmp_path):
    people = known_people(sandbox, 10)
    clock = FakeClock()
    with sandbox.client(cache_dir=tmp_path / "c", clock=clock) as other, \
            sandbox.client(cache_dir=tmp_path / "c", clock=clock) as mine:
        frame = people_frame(people)
        af.enrich_people(frame, client=other, progress=False)  # old answers in the store
        clock.advance(3600)
        prepared, op, options = people_job(frame)
        keys = plan_work(prepared, op, options, other).cache_keys
        run = other.cache.begin_run()
        other.cache.claim(keys, lease_s=600, owner=run)  # the other process is refreshing them now
        refreshed = []

        def other_answers(seconds: float) -> None:
            if not refreshed:  # its run answers (a run of its own stands in for it), then lets its claims go
                other.cache.release(keys, owner=run)
                refreshed.append(af.enrich_people(frame, client=other, refresh=True, progress=False))
                other.cache.end_run(run)
            FakeClock.sleep(clock, seconds)

        clock.sleep = other_answers  # type: ignore[method-assign]
        out = af.enrich_people(frame, client=mine, refresh=True, progress=False)
    assert refreshed, "the refresh took the old answers at once instead of waiting for the new ones"
    assert (out["apollo_status"] == "matched").all() and out.attrs["apollo"]["credits_consumed"] == 0
    assert sandbox.credits_consumed == 20  # the first run, and the other process's refresh: not this one


def test_a_claim_left_by_an_expired_lease_is_taken_over(sandbox, tmp_path):
    people = known_people(sandbox, 20)
    clock = FakeClock()
    with sandbox.client(cache_dir=tmp_path / "c", clock=clock) as other, \
            sandbox.client(cache_dir=tmp_path / "c", clock=clock) as mine:
        prepared, op, options = people_job(people_frame(people))
        keys = plan_work(prepared, op, options, other).cache_keys
        other.cache.claim(keys[:10], lease_s=120)  # and then it never answers (a host that went away)
        out = af.enrich_people(people_frame(people), client=mine, progress=False)
    assert (out["apollo_status"] == "matched").all()
    assert sandbox.credits_consumed == 20
    # it waited for the lease, on the store's clock, then took the records over
    assert clock.slept == pytest.approx(120)


def test_a_lease_of_a_killed_process_is_free_at_once_and_its_owner_file_goes(tmp_path):
    # a process that took a claim and was killed: its owner file is left, unlocked (the kernel let the lock go)
    child = ("import sys, os\nfrom apollo_frames.client.store import AnswerStore\n"
             "s = AnswerStore(sys.argv[1]); s.claim(['k'], lease_s=3600); print(s.owner, flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, check=True)
    dead = done.stdout.strip()
    store = AnswerStore(tmp_path)
    assert not (store.directory / "owners" / dead).exists()  # swept when this store opened
    with store.transaction() as con:  # a lease from "another host", for ever, by an owner that is nowhere
        con.execute("INSERT INTO Claims (key, owner, expires) VALUES (?, ?, ?)", ("j", "0123456789abcdef", 1e18))
    got = store.claim(["k", "j"], lease_s=60)
    assert got.claimed == ["k", "j"] and got.held_by_others == {}
    store.close()


# -- nothing paid is dropped -----------------------------------------------------------------------


def test_ctrl_c_mid_run_saves_every_answer_then_the_rerun_pays_the_rest(small_config, tmp_path):
    n = 300
    src = tmp_path / "in.parquet"
    people_frame(known_people(Sandbox(small_config), n)).to_parquet(src)
    gate = _Gate(let_through=9)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.01), clock=gate)
    out = tmp_path / "out.parquet"
    with sb.serve() as base_url:
        env = _cli_env(base_url, tmp_path / "cache")
        proc = subprocess.Popen(_enrich_cmd(src, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert gate.holding.wait(60), "the run never reached its 10th request"
            os.kill(proc.pid, signal.SIGINT)
        finally:
            gate.release.set()  # the answers in flight arrive while the run winds down
        _, err = proc.communicate(timeout=60)
        first_credits = sb.credits_consumed
        assert proc.returncode == 130
        lines = err.splitlines()
        assert len(lines) == 1, err  # one line, no traceback
        saved, left = (int(x.replace(",", "")) for x in INTERRUPTED.fullmatch(lines[0]).groups())
        assert saved == first_credits  # every answer paid for was stored (each person matches: 1 credit each)
        assert left == n - saved and 0 < saved < n
        assert not out.exists()

        done = subprocess.run(_enrich_cmd(src, out), env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert sb.credits_consumed == n  # both runs together cost what one uninterrupted run costs
    assert (pd.read_parquet(out)["apollo_status"] == "matched").all()


def test_sigterm_takes_the_same_path_as_ctrl_c(small_config, tmp_path):
    src = tmp_path / "in.parquet"
    people_frame(known_people(Sandbox(small_config), 100)).to_parquet(src)
    gate = _Gate(let_through=2)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.01), clock=gate)
    with sb.serve() as base_url:
        proc = subprocess.Popen(_enrich_cmd(src, tmp_path / "out.parquet"), env=_cli_env(base_url, tmp_path / "c"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert gate.holding.wait(60)
            os.kill(proc.pid, signal.SIGTERM)
        finally:
            gate.release.set()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    (line,) = err.splitlines()
    assert int(INTERRUPTED.fullmatch(line).group(1)) == sb.credits_consumed


def test_an_interrupt_awaits_the_tasks_in_flight_and_hands_over_their_answers():
    go = threading.Event()
    calls = iter(range(10))
    delivered = []

    def source():
        i = next(calls)
        if i == 2:  # two tasks in flight: Ctrl-C while the source is asked for a third
            go.set()
            raise KeyboardInterrupt
        return i

    def work(i):
        assert go.wait(10)
        return i * 10

    with pytest.raises(KeyboardInterrupt):
        Executor(3).run(source, work, lambda done: delivered.append((done.task, done.value)))
    assert sorted(delivered) == [(0, 0), (1, 10)]


def test_ctrl_c_during_a_run_is_noted_by_the_handler_and_raised_by_the_loop_between_steps():
    # Raised by the handler itself, it could land inside concurrent.futures' lock handling and leave a lock
    # held (a worker that never finishes, a process that never exits). The handler only notes it.
    calls = iter(range(10))
    seen = []

    def source():
        i = next(calls)
        if i == 1:  # as if Ctrl-C came while the first task was in flight
            handler = signal.getsignal(signal.SIGINT)
            assert handler is not signal.default_int_handler
            handler(signal.SIGINT, None)  # noted, not raised
            seen.append("noted")
        return i

    delivered, started = [], []

    def work(i):
        started.append(i)
        return i * 10

    with pytest.raises(KeyboardInterrupt):
        Executor(2).run(source, work, lambda done: delivered.append((done.task, done.value, done.started)))
    assert seen == ["noted"]
    # raised once the task in flight was delivered; the one handed over with the Ctrl-C: delivered, or never
    # sent (then handed over as not started)
    answered = sorted((task, value) for task, value, was_started in delivered if was_started)
    assert (0, 0) in answered and answered == [(i, i * 10) for i in sorted(started)]
    assert all(task not in started and value is None for task, value, was_started in delivered if not was_started)
    assert max(started) <= 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_second_ctrl_c_raises_at_once():
    stop = StopSignal()
    with DeferredInterrupts(stop):
        handler = signal.getsignal(signal.SIGINT)
        handler(signal.SIGINT, None)
        assert stop.interrupted
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)


def test_an_application_handler_and_other_threads_are_left_alone():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with DeferredInterrupts(StopSignal()):
            assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
    got = []
    thread = threading.Thread(target=lambda: got.append(DeferredInterrupts(StopSignal()).__enter__()._previous))
    thread.start()
    thread.join()
    assert got == [{}]


def test_the_writer_flushes_everything_queued_and_keeps_the_first_storage_error(tmp_path):
    store = AnswerStore(tmp_path)
    writer = AnswerWriter(store, None, ttl=None)
    for i in range(50):
        writer.put(Keep({f"k{i}": {"id": i}}, 1))
    writer.close()
    assert writer.saved == 50 and len(store.get_many([f"k{i}" for i in range(50)])) == 50

    def full(*args, **kwargs):
        raise storage_error(OSError(28, "No space left on device"), store.path, "writing the answer store", "full")

    store.write_entries = full  # type: ignore[method-assign]
    writer = AnswerWriter(store, None, ttl=None)
    writer.put(Keep({"x": None}, 1))
    writer.close()
    assert isinstance(writer.error, StorageError) and writer.error.reason == "full" and writer.saved == 0
    store.close()


def test_a_worker_stores_its_answers_before_it_returns_and_the_writer_settles_and_releases_later(tmp_path):
    store = AnswerStore(tmp_path)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        entry = ledger.begin(run_id="r", operation="enrich_people", endpoint="people/bulk_match", records_sent=2,
                             worst_credits=2.0)
        assert store.claim(["a", "b"], 60).claimed == ["a", "b"]
        writer = AnswerWriter(store, ledger, ttl=None)
        writer.store(Keep({"a": {"id": "1"}, "b": None}, 2, ["a", "b"], (entry, {"credits": 1.0, "status": 200})))
        with AnswerStore(tmp_path) as other:  # in the store (committed) when store() returned
            assert other.get_many(["a", "b"]) == {"a": {"id": "1"}, "b": None}
        writer.close()  # the claims on stored answers go a block at a time; the last ones when it closes
        assert writer.saved == 2
        assert store.held_by_others(["a", "b"]) == [] and ledger.in_doubt() == (0, 0.0)
        assert ledger.total_credits() == 1.0
        ((count,),) = store.query("SELECT COUNT(*) FROM Claims")
        assert count == 0
    store.close()


def test_a_ledger_failure_that_is_not_a_storage_error_stops_the_run_without_losing_an_answer(sandbox, tmp_path,
                                                                                               monkeypatch):
    # "database is locked" past the timeout is not a disk fault: it once killed the writer's thread silently,
    # dropping every answer queued after it and leaving workers waiting on a full queue.
    n = 100
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=2) as client:
        real, calls = type(client.ledger).settle_many, []

        def locked_once(self, items):
            calls.append(1)
            if len(calls) == 1:
                raise sqlite3.OperationalError("database is locked")
            return real(self, items)

        monkeypatch.setattr(type(client.ledger), "settle_many", locked_once)
        with pytest.warns(UserWarning, match="could not be stored|storage"):
            out = af.enrich_people(people_frame(known_people(sandbox, n)), client=client, progress=False)
        paid = sandbox.credits_consumed
        assert len(out) == n and (out["apollo_status"] == "matched").sum() == paid > 0
        assert "database is locked" in out.attrs["apollo"]["storage_error"]
        prepared, op, options = people_job(people_frame(known_people(sandbox, n)))
        keys = plan_work(prepared, op, options, client, flatten=False).cache_keys
        assert len(client.cache.get_many(keys)) == paid  # every answer paid for was stored


def test_the_writer_outlives_any_failure_and_settles_what_it_can(tmp_path):
    class Ledger:
        settled: list = []

        def note_limits(self, endpoint, readings):
            raise OverflowError("a reading no server could mean")  # readings only: the settlements still go in

        def settle_many(self, items):
            self.settled.extend(items)

    store = AnswerStore(tmp_path)
    ledger = Ledger()
    writer = AnswerWriter(store, ledger, ttl=None, capacity=2)
    for i in range(20):  # more than the queue holds: a dead writer would leave put() waiting for ever
        writer.put(Keep({f"k{i}": {"id": i}}, 1, settle=(i, {"credits": 1.0}), limits=("people/bulk_match", {})))
    writer.close()
    assert writer.saved == 20 and len(ledger.settled) == 20 and writer.error is None
    store.write_entries = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("not a disk fault"))  # type: ignore
    writer = AnswerWriter(store, None, ttl=None, capacity=2)
    for i in range(10):
        writer.put(Keep({f"x{i}": None}, 1))
    writer.close()
    assert isinstance(writer.error, StorageError) and "not a disk fault" in str(writer.error)
    store.close()


def test_requests_refused_at_connect_are_settled_at_nothing_not_left_in_doubt(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    clock = FakeClock()
    with af.ApolloClient(DEFAULT_API_KEY, f"http://127.0.0.1:{port}/api/v1", cache_dir=tmp_path / "c",
                         clock=clock, retry_backoff=(0.001, 0.01)) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = af.enrich_people(people_frame([{"email": f"p{i}@example.com"} for i in range(30)]),
                                   client=client, progress=False)
        assert set(out["apollo_status"]) <= {"error", "skipped"}
        assert client.ledger.in_doubt() == (0, 0.0)  # nothing reached a server: nothing can have been charged


def test_ctrl_c_while_the_last_answers_are_stored_is_taken_once_they_are(sandbox, tmp_path, monkeypatch):
    n = 60
    real_close = AnswerWriter.close

    pressed = []

    def close_after_ctrl_c(self):
        if not pressed:
            pressed.append(signal.getsignal(signal.SIGINT))
            pressed[0](signal.SIGINT, None)  # still only noted while the answers are stored: no raise here
        real_close(self)

    monkeypatch.setattr(AnswerWriter, "close", close_after_ctrl_c)
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        with pytest.raises(RunInterrupted) as info:
            af.enrich_people(people_frame(known_people(sandbox, n)), client=client, progress=False)
    assert pressed[0] is not signal.default_int_handler
    assert info.value.saved == sandbox.credits_consumed == n and info.value.rows_left == 0
    monkeypatch.setattr(AnswerWriter, "close", real_close)
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        out = af.enrich_people(people_frame(known_people(sandbox, n)), client=client, progress=False)
    assert (out["apollo_status"] == "matched").all() and sandbox.credits_consumed == n  # all from the store


def test_a_store_that_fills_up_mid_run_returns_every_row_with_the_answers_received(sandbox, tmp_path, monkeypatch):
    n = 200
    frame = people_frame(known_people(sandbox, n))
    # each worker stores its own answers before it sends again: one write per batch (concurrency 1), so the third
    # fails mid-run whatever the machine's speed
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1) as client:
        real = AnswerStore.write_entries
        writes = []

        def filling(self, entries, **kwargs):
            writes.append(len(entries))
            if len(writes) > 2:
                raise storage_error(OSError(28, "No space left on device"), self.path, "writing the answer store",
                                    "full")
            return real(self, entries, **kwargs)

        monkeypatch.setattr(AnswerStore, "write_entries", filling)
        with pytest.warns(UserWarning, match="could not be stored"):
            out = af.enrich_people(frame, client=client, progress=False)
        monkeypatch.setattr(AnswerStore, "write_entries", real)
        paid = sandbox.credits_consumed
        assert len(out) == n and list(out["n"]) == list(range(n))
        matched = out["apollo_status"] == "matched"
        assert matched.sum() == paid  # every answer paid for is in the rows, stored or not
        assert out.loc[matched, "person.id"].notna().all()
        assert set(out.loc[~matched, "apollo_status"]) == {"skipped"}  # nothing more was sent
        assert out.loc[~matched, "apollo_error"].str.contains("disk full").all()
        summary = out.attrs["apollo"]
        assert "disk full" in summary["storage_error"] and "free some space" in summary["storage_error"]
        assert summary["skipped"] == n - paid and 0 < paid < n

        prepared, op, options = people_job(frame)
        stored = len(client.cache.get_many(plan_work(prepared, op, options, client, flatten=False).cache_keys))
        assert stored == paid  # the answers the full store refused were kept in memory, written once it had room
        again = af.enrich_people(frame, client=client, progress=False)
    assert (again["apollo_status"] == "matched").all()
    assert again.attrs["apollo"]["cache_hits"] == paid and sandbox.credits_consumed == n  # nothing paid twice


_FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys, warnings
    import pandas as pd
    import apollo_frames as af
    from apollo_frames.sandbox import Sandbox, SandboxConfig
    sb = Sandbox(SandboxConfig(seed=11, n_orgs=300))
    people = [p for p in sb.world.people if p.get("email")][:300]
    frame = pd.DataFrame({"Email": [p["email"] for p in people]})
    with sb.client(cache_dir=sys.argv[1]) as client:
        client.cache, client.ledger  # opened (and their files created) before the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = af.enrich_people(frame, client=client, progress=False)
    print(json.dumps({"rows": len(out), "statuses": out["apollo_status"].value_counts().to_dict(),
                      "with_answer": int(out["person.id"].notna().sum()), "paid": sb.credits_consumed,
                      "storage_error": out.attrs["apollo"]["storage_error"],
                      "warnings": [str(w.message) for w in caught]}))
""")


def test_a_real_full_disk_keeps_every_paid_answer_in_the_rows(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path / "c"), str(96 * 1024)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["rows"] == 300
    # the answers or the ledger (whichever hits the limit first): a typed error naming the file and what to do
    error = got["storage_error"]
    assert error and "free some space" in error and str(tmp_path / "c") in error
    assert got["statuses"].get("matched", 0) == got["with_answer"] == got["paid"] > 0  # nothing paid is lost
    assert got["paid"] < 300 and got["statuses"]["skipped"] == 300 - got["paid"]
    assert any("could not be stored" in w for w in got["warnings"])


_FREED_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys, warnings
    import pandas as pd
    import apollo_frames as af
    from apollo_frames.sandbox import Sandbox, SandboxConfig
    sb = Sandbox(SandboxConfig(seed=11, n_orgs=300))
    frame = pd.DataFrame({"Email": [p["email"] for p in sb.world.people if p.get("email")][:300]})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with sb.client(cache_dir=sys.argv[1]) as client:
        client.cache, client.ledger
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))  # the disk is full ...
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = af.enrich_people(frame, client=client, progress=False)
            paid = sb.credits_consumed
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # ... then space is freed
            again = af.enrich_people(frame, client=client, progress=False)
    print(json.dumps({"first": int((first["apollo_status"] == "matched").sum()), "paid_first": paid,
                      "again": int((again["apollo_status"] == "matched").sum()), "paid": sb.credits_consumed}))
""")


def test_answers_a_full_disk_kept_from_the_store_are_not_paid_again_once_space_is_freed(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FREED_DISK_CHILD, str(tmp_path / "c"), str(96 * 1024)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert 0 < got["first"] == got["paid_first"] < 300
    assert got["again"] == 300 and got["paid"] == 300  # only the rows skipped the first time were paid for


# -- the ledger knows what is in doubt ---------------------------------------------------------------


def test_each_request_is_in_the_ledger_before_it_leaves(sandbox, tmp_path):
    people = known_people(sandbox, 40)
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1) as client:
        seen = []
        real = client.post

        def post(path, **kwargs):
            frame = client.ledger.frame()  # what the ledger holds as this request leaves
            seen.append((len(frame), frame["status"].iloc[-1], frame["credits"].iloc[-1], frame["endpoint"].iloc[-1]))
            return real(path, **kwargs)

        client.post = post  # type: ignore[method-assign]
        af.enrich_people(people_frame(people), client=client, progress=False)
        af.search_orgs(q_organization_domains_list=[sandbox.world.orgs[0]["primary_domain"]], client=client,
                       progress=False)
        frame = client.ledger.frame()
        assert client.ledger.in_doubt() == (0, 0.0)
    # each bulk call was written, in doubt at its worst case, before it left; so was the organization search page
    assert seen == [(i, "in_doubt", 10.0, "people/bulk_match") for i in range(1, 5)] + [
        (5, "in_doubt", 1.0, "mixed_companies/search")]
    assert list(frame["status"]) == ["settled"] * 5  # and settled with the server's figure when it answered
    assert frame["credits"].sum() == sandbox.credits_consumed


def test_a_request_the_ledger_cannot_write_down_is_not_sent(sandbox, tmp_path, monkeypatch):
    frame = people_frame(known_people(sandbox, 60))
    real = Ledger.begin

    def begin(self, **kwargs):
        if len(self.frame()) >= 2:
            raise storage_error(OSError(28, "No space left on device"), self.path, "writing the credit ledger", "full")
        return real(self, **kwargs)

    monkeypatch.setattr(Ledger, "begin", begin)
    with sandbox.client(cache_dir=tmp_path / "c", concurrency=1) as client:
        with pytest.warns(UserWarning, match="nothing more was sent"):
            out = af.enrich_people(frame, client=client, progress=False)
        assert len(client.ledger.frame()) == 2 and client.ledger.in_doubt() == (0, 0.0)
    assert bulk_calls(sandbox) == 2 and (out["apollo_status"] == "matched").sum() == 20 == sandbox.credits_consumed
    skipped = out["apollo_status"] == "skipped"
    assert skipped.sum() == 40 and out.loc[skipped, "apollo_error"].str.contains("disk full").all()
    assert "credit ledger" in out.attrs["apollo"]["storage_error"]


def test_kill_9_leaves_the_requests_in_flight_in_doubt_at_their_worst_case(small_config, tmp_path):
    src = tmp_path / "in.parquet"
    people_frame(known_people(Sandbox(small_config), 200)).to_parquet(src)
    let_through, concurrency = 6, 4
    gate = _Gate(let_through=let_through, count_to=concurrency)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.01), clock=gate)
    cache = tmp_path / "cache"
    with sb.serve() as base_url:
        env = _cli_env(base_url, cache)
        proc = subprocess.Popen(_enrich_cmd(src, tmp_path / "out.parquet"), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            assert gate.reached.wait(60), "the run never had a request held in every slot"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            gate.release.set()
        (ledger_path,) = cache.glob("ledger*.sqlite")
        with Ledger(ledger_path) as ledger:
            frame = ledger.frame()
            count, worst = ledger.in_doubt()
            settled = ledger.total_credits()
    sent = let_through + concurrency
    assert len(frame) == sent  # every request that left was written first
    assert count >= concurrency  # the held ones at least (one answered just before the kill may not be settled)
    assert count == (frame["status"] == "in_doubt").sum() and worst == 10.0 * count
    assert settled == 10.0 * (sent - count)
    assert settled + worst >= let_through * 10  # never less than the server charged for what it answered


# -- summary -------------------------------------------------------------------------------------


def test_quarantined_entries_are_counted_in_the_summary_and_its_line(sandbox, tmp_path):
    frame = people_frame(known_people(sandbox, 12))
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        af.enrich_people(frame, client=client, progress=False)
        prepared, op, options = people_job(frame)
        keys = plan_work(prepared, op, options, client, flatten=False).cache_keys
        with client.cache.transaction() as con:  # two poisoned entries: pickles where JSON should be
            con.executemany("UPDATE Answers SET value = ? WHERE key = ?",
                            [(sqlite3.Binary(b"\x80\x04K\x01."), key) for key in keys[:2]])
        with pytest.warns(UserWarning, match="could not be trusted"):
            out = af.enrich_people(frame, client=client, progress=False)
    assert out.attrs["apollo"]["quarantined"] == 2
    assert (out["apollo_status"] == "matched").all() and out.attrs["apollo"]["cache_hits"] == 10
    assert "2 stored answers quarantined" in RunSummary.from_dict(out.attrs["apollo"]).line()
    assert "quarantined" not in RunSummary(operation="x").line()


def test_run_interrupted_is_a_keyboard_interrupt_with_its_line():
    exc = RunInterrupted(1200, 340)
    assert isinstance(exc, KeyboardInterrupt)
    assert str(exc) == "interrupted: 1,200 answers saved, 340 rows left; run the same command to resume"


def test_two_runs_in_threads_sharing_one_client_pay_once(small_config, tmp_path):
    n = 40
    people = known_people(Sandbox(small_config), n)
    # the first run's answers are held until the second run has started and found every record claimed
    gate = _Gate(let_through=0)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.01), clock=gate)
    outs: dict[str, pd.DataFrame] = {}
    with sb.client(cache_dir=tmp_path / "c", concurrency=4) as client:
        first = threading.Thread(target=lambda: outs.update(
            first=af.enrich_people(people_frame(people), client=client, progress=False)))
        first.start()
        assert gate.holding.wait(30), "the first run never sent"
        real_claim = client.cache.claim
        second_claimed = threading.Event()

        def claim_then_let_go(*args, **kwargs):  # once the second run has claimed (and found all held)
            got = real_claim(*args, **kwargs)
            second_claimed.set()
            gate.release.set()
            return got

        client.cache.claim = claim_then_let_go  # type: ignore[method-assign]
        outs["second"] = af.enrich_people(people_frame(people), client=client, progress=False)
        first.join(30)
    assert second_claimed.is_set()
    assert sb.credits_consumed == n  # each record paid once, by the first run; the second read the store
    assert outs["second"].attrs["apollo"]["credits_consumed"] == 0
    for out in outs.values():
        assert (out["apollo_status"] == "matched").all()


def test_leases_of_a_run_of_this_process_that_ended_without_releasing_them_do_not_hold_the_next(sandbox, tmp_path):
    people = known_people(sandbox, 20)
    clock = FakeClock()
    with sandbox.client(cache_dir=tmp_path / "c", clock=clock) as client:
        prepared, op, options = people_job(people_frame(people))
        keys = plan_work(prepared, op, options, client).cache_keys
        crashed = client.cache.begin_run()
        assert client.cache.claim(keys, lease_s=600, owner=crashed).claimed == keys
        client.cache.end_run(crashed)  # the run failed before it let its claims go
        out = af.enrich_people(people_frame(people), client=client, progress=False)
    assert (out["apollo_status"] == "matched").all() and sandbox.credits_consumed == 20
    assert clock.slept == 0  # nothing waited out the 600 s lease


class _FirstHeldThenCtrlC:
    """A WSGI app before the sandbox: the first bulk call is paid at once but its answer held until ``unblock``;
    the second presses Ctrl-C."""

    def __init__(self, sandbox):
        self.sandbox, self.seen, self.lock = sandbox, 0, threading.Lock()
        self.unblock = threading.Event()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").endswith("people/bulk_match"):
            with self.lock:
                self.seen += 1
                n = self.seen
            if n == 1:
                out = self.sandbox(environ, start_response)
                self.unblock.wait(30)
                return out
            if n == 2:
                signal.raise_signal(signal.SIGINT)
        return self.sandbox(environ, start_response)


def test_a_request_still_out_after_ctrl_c_keeps_its_claims_until_it_is_answered(sandbox, tmp_path, monkeypatch):
    from apollo_frames.engine import executor as executor_mod
    from apollo_frames.sandbox import client_for

    real = executor_mod.Executor.for_client.__func__

    def short_drain(cls, client, stop=None, **kw):
        made = real(cls, client, stop, **kw)
        made.drain_s = 0.3  # the wait for requests still out ends (as after its timeout, or a second Ctrl-C)
        return made

    monkeypatch.setattr(executor_mod.Executor, "for_client", classmethod(short_drain))
    frame = people_frame(known_people(sandbox, 30))
    app = _FirstHeldThenCtrlC(sandbox)
    clock = FakeClock()
    with client_for(app, cache_dir=tmp_path / "c", clock=clock, concurrency=2) as client:
        with pytest.raises(RunInterrupted):
            af.enrich_people(frame, client=client, progress=False)
        keys = plan_work(*people_job(frame), client, flatten=False).cache_keys

        def answer_meanwhile(seconds: float) -> None:  # the re-run waits for the first batch: let it answer
            app.unblock.set()
            for _ in range(500):
                if len(client.cache.get_many(keys[:10])) == 10:
                    break
                threading.Event().wait(0.01)
            FakeClock.sleep(clock, seconds)

        clock.sleep = answer_meanwhile  # type: ignore[method-assign]
        again = af.enrich_people(frame, client=client, progress=False)  # the notebook cell run again
    assert (again["apollo_status"] == "matched").all()
    assert sandbox.credits_consumed == 30  # the batch still out was awaited and read, not paid again


def test_a_lease_holds_while_its_owner_file_is_locked_and_is_free_once_it_is_not(tmp_path):
    import fcntl

    with AnswerStore(tmp_path) as store:
        owner = "0a1b2c3d4e5f6a7b"
        fd = os.open(store.directory / "owners" / owner, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process (another host on a shared folder), running
        with store.transaction() as con:
            con.execute("INSERT INTO Claims (key, owner, expires) VALUES (?, ?, ?)",
                        ("a" * 64, owner, store.clock.time() + 600))
        assert list(store.claim(["a" * 64], 60).held_by_others) == ["a" * 64]
        os.close(fd)  # it was killed: the kernel let its lock go
        assert store.claim(["a" * 64], 60).claimed == ["a" * 64]
        assert not (store.directory / "owners" / owner).exists()  # the dead owner's file went with it


def test_owner_files_are_locked_while_their_run_lasts_and_removed_when_it_ends(tmp_path):
    import fcntl

    with AnswerStore(tmp_path) as store:
        run = store.begin_run()
        folder = store.directory / "owners"
        assert sorted(p.name for p in folder.iterdir()) == sorted([store.owner, run])
        fd = os.open(folder / run, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        store.end_run(run)
        assert [p.name for p in folder.iterdir()] == [store.owner]
    assert list(folder.iterdir()) == []  # holder files do not pile up


def test_two_processes_running_the_same_paid_org_search_pay_once(tmp_path, monkeypatch):
    from apollo_frames.ops import search

    sandbox = Sandbox(SandboxConfig(seed=5, n_orgs=400))
    countries = ["United States", "Germany", "United Kingdom", "France", "Ireland"]

    def run(folder, results: list) -> None:
        with sandbox.client(cache_dir=folder) as client:  # a store (a claim owner) of its own, as a process has
            results.append(af.search_orgs(max_results=250, client=client, progress=False,
                                          organization_locations=countries))

    before = sandbox.credits_consumed
    alone: list = []
    run(tmp_path / "alone", alone)
    paid_alone = sandbox.credits_consumed - before
    assert paid_alone == 3  # three paid pages
    waiting = threading.Event()  # a page is sent only once the other process waits for it: they overlap
    real_fetch, real_wait = search._fetch_page, AnswerStore.wait_for
    monkeypatch.setattr(search, "_fetch_page", lambda *a, **k: waiting.wait(30) and real_fetch(*a, **k))
    monkeypatch.setattr(AnswerStore, "wait_for", lambda self, *a, **k: waiting.set() or real_wait(self, *a, **k))
    results: list = []
    threads = [threading.Thread(target=run, args=(tmp_path / "shared", results)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert waiting.is_set() and len(results) == 2
    assert sandbox.credits_consumed - before - paid_alone == paid_alone  # the two paid once between them
    for result in results:
        pd.testing.assert_frame_equal(result, alone[0])


def test_a_search_page_stored_by_another_process_between_the_look_and_the_claim_is_not_paid_again(tmp_path,
                                                                                                  monkeypatch):
    sandbox = Sandbox(SandboxConfig(seed=5, n_orgs=400))
    countries = ["United States", "Germany", "United Kingdom", "France", "Ireland"]
    with sandbox.client(cache_dir=tmp_path) as client:
        first = af.search_orgs(max_results=250, client=client, progress=False, organization_locations=countries)
    paid = sandbox.credits_consumed
    real, seen = AnswerStore.get_many, set()

    def first_look_misses(self, keys, **kw):  # the other process had not stored the page yet; it has by the claim
        keys = list(keys)
        fresh = not seen.issuperset(keys)
        seen.update(keys)
        return {} if fresh else real(self, keys, **kw)

    monkeypatch.setattr(AnswerStore, "get_many", first_look_misses)
    with sandbox.client(cache_dir=tmp_path) as client:
        again = af.search_orgs(max_results=250, client=client, progress=False, organization_locations=countries)
    assert sandbox.credits_consumed == paid == 3
    pd.testing.assert_frame_equal(again, first)
