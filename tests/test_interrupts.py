"""Ctrl-C everywhere (issue 14, item 6): every command that sends requests prints one line saying what was kept and
what is left, exits 130, and the same command resumes without paying (or pushing) anything twice.

Real subprocesses for the representative commands (a gate holds the sandbox's answers, so no test sleeps); the
rest in process, with a real SIGINT raised while a request is being answered (Python delivers it to the main thread).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from test_safety import INTERRUPTED, _cli_env, _Gate, known_people, people_frame

import apollo_frames as af
from apollo_frames import PushInterrupted, RunInterrupted, SearchInterrupted, cli
from apollo_frames.ops.journal import PushJournal
from apollo_frames.sandbox import Sandbox, SandboxConfig, client_for

pytestmark = pytest.mark.slow  # real processes: killed, interrupted, raced (-m "not slow" skips them)

PUSHED = re.compile(r"interrupted: ([\d,]+) rows pushed, ([\d,]+) rows left; run the same command to resume")
PAGES = re.compile(r"interrupted: ([\d,]+) pages saved; run the same command to resume")
CLI = [sys.executable, "-m", "apollo_frames.cli"]
SENIORITIES = ["senior", "manager", "entry", "director", "vp", "c_suite"]


def gated(config: SandboxConfig, let_through: int) -> tuple[Sandbox, _Gate]:
    gate = _Gate(let_through=let_through)
    return Sandbox(SandboxConfig(seed=config.seed, n_orgs=config.n_orgs, latency=0.01), clock=gate), gate


def interrupt(cmd: list[str], gate: _Gate, env: dict) -> tuple[int, list[str]]:
    """Run ``cmd``, Ctrl-C it once a request is held, let the held answers arrive; (exit code, stderr lines)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert gate.holding.wait(60), "the run never reached the held request"
        os.kill(proc.pid, signal.SIGINT)
    finally:
        gate.release.set()
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.splitlines()


def numbers(pattern: re.Pattern, line: str) -> tuple[int, ...]:
    match = pattern.fullmatch(line)
    assert match, line
    return tuple(int(x.replace(",", "")) for x in match.groups())


def orgs_frame(sandbox: Sandbox, n: int) -> pd.DataFrame:
    orgs = sandbox.world.orgs[:n]
    return pd.DataFrame({"Domain": [o["primary_domain"] for o in orgs], "Company": [o["name"] for o in orgs]})


# -- real subprocesses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "suffix", "quiet"), [
    ("enrich-people", ".csv", True),
    ("enrich-people", ".csv", False),  # the progress lines (no terminal: plain lines) leave no last line behind
    ("enrich-orgs", ".csv", True),
    ("enrich-orgs", ".parquet", True),
])
def test_ctrl_c_in_an_enrichment_prints_one_line_and_exits_130(small_config, tmp_path, command, suffix, quiet):
    n = 200
    world = Sandbox(small_config)
    frame = people_frame(known_people(world, n)) if command == "enrich-people" else orgs_frame(world, n)
    src = tmp_path / f"in{suffix}"
    frame.to_csv(src, index=False) if suffix == ".csv" else frame.to_parquet(src)
    sb, gate = gated(small_config, let_through=3)
    cmd = CLI + [command, str(src), str(tmp_path / f"out{suffix}")] + (["--quiet"] if quiet else [])
    with sb.serve() as base_url:
        code, lines = interrupt(cmd, gate, _cli_env(base_url, tmp_path / "cache"))
    assert code == 130 and len(lines) == 1, lines
    saved, left = numbers(INTERRUPTED, lines[0])
    per_answer = 1  # people and organizations alike: one credit per match, and every one matches
    assert saved * per_answer == sb.credits_consumed and 0 < saved < n and left == n - saved
    assert not (tmp_path / f"out{suffix}").exists()


@pytest.mark.parametrize("command", ["push-contacts", "push-accounts"])
def test_ctrl_c_in_a_push_then_the_same_command_pushes_nothing_twice(small_config, tmp_path, command):
    n = 300
    world = Sandbox(small_config)
    frame = people_frame(known_people(world, n)) if command == "push-contacts" else orgs_frame(world, n)
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    report = tmp_path / "report.parquet"
    # --no-dedupe: Apollo would create a row sent twice twice; only the run's own record prevents it
    cmd = CLI + [command, str(src), "--report", str(report), "--chunk-rows", "100", "--no-dedupe", "--quiet"]
    sb, gate = gated(small_config, let_through=1)
    kind = command.split("-")[1]
    with sb.serve() as base_url:
        env = _cli_env(base_url, tmp_path / "cache")
        code, lines = interrupt(cmd, gate, env)
        assert code == 130 and len(lines) == 1, lines
        pushed, left = numbers(PUSHED, lines[0])
        assert pushed == len(getattr(sb.store, kind)) and 0 < pushed < n and left == n - pushed
        assert not report.exists()

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"{pushed:,} pushed by the interrupted run, not sent again" in done.stdout
    assert len(getattr(sb.store, kind)) == n  # each row created once over both runs
    sent = sum(r.n_records for r in sb.requests if r.path == f"{kind}/bulk_create")
    assert sent == n
    got = pd.read_parquet(report)
    assert (got["apollo_status"] == "created").all() and got["apollo_id"].notna().all()
    assert set(got["apollo_id"]) == set(getattr(sb.store, kind))


def test_ctrl_c_in_a_search_saves_its_pages_and_the_rerun_reads_them(small_config, tmp_path):
    sb, gate = gated(small_config, let_through=3)
    cmd = CLI + ["search-people", str(tmp_path / "out.parquet"), "--max-results", "1000", "--quiet"] + [
        arg for s in SENIORITIES for arg in ("--filter", f"person_seniorities={s}")]
    with sb.serve() as base_url:
        env = _cli_env(base_url, tmp_path / "cache")
        code, lines = interrupt(cmd, gate, env)
        assert code == 130 and len(lines) == 1, lines
        (saved,) = numbers(PAGES, lines[0])
        first = sb.count(path="mixed_people/api_search", status=200)
        assert saved == first and 3 <= saved < 10  # it stopped paging: the pages it received were kept
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert f"{saved:,} from cache" in done.stdout
    assert sb.count(path="mixed_people/api_search") == 10  # each page asked once over both runs
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 1000


# -- in process: a real SIGINT while a request is answered ---------------------------------------------------------


class CtrlC:
    """A WSGI wrapper around a sandbox: raises SIGINT while answering the ``at``-th request to ``path``."""

    def __init__(self, sandbox: Sandbox, path: str, at: int):
        self.sandbox, self.path, self.at, self.seen = sandbox, path, at, 0

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").endswith(self.path):
            self.seen += 1
            if self.seen == self.at:
                signal.raise_signal(signal.SIGINT)  # handled on the main thread, which is waiting for answers
        return self.sandbox(environ, start_response)


def ctrl_c_client(sandbox: Sandbox, cache: Path, path: str, at: int, **kwargs):
    return client_for(CtrlC(sandbox, path, at), cache_dir=cache, clock=sandbox.clock, **kwargs)


def test_a_notebook_enrichment_interrupted_raises_run_interrupted_saying_what_was_saved(sandbox, tmp_path):
    frame = people_frame(known_people(sandbox, 120))
    with ctrl_c_client(sandbox, tmp_path / "c", "people/bulk_match", at=4, concurrency=2) as client:
        with pytest.raises(RunInterrupted) as caught:
            frame.apollo.enrich_people(client=client, progress=False)
        # no lease left behind, even on a batch claimed but never started: a re-run in this process waits for none
        assert client.cache.query("SELECT COUNT(*) FROM Claims") == [(0,)]
    exc = caught.value
    assert isinstance(exc, KeyboardInterrupt)  # a notebook shows it as an interrupt, with its line
    saved, left = numbers(INTERRUPTED, str(exc))
    assert saved == exc.saved == sandbox.credits_consumed and left == 120 - saved and 0 < saved < 120
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        out = frame.apollo.enrich_people(client=client, progress=False)
    assert (out["apollo_status"] == "matched").all() and out.attrs["apollo"]["cache_hits"] == saved
    assert sandbox.credits_consumed == 120


def ctrl_c_at(monkeypatch, at: int) -> None:
    """Every sandbox raises SIGINT while answering the ``at``-th request (the command builds its own sandbox)."""
    real = Sandbox.__call__
    seen = Counter()

    def answer(self, environ, start_response):
        seen[environ.get("PATH_INFO", "")] += 1
        if sum(seen.values()) == at:
            signal.raise_signal(signal.SIGINT)
        return real(self, environ, start_response)

    monkeypatch.setattr(Sandbox, "__call__", answer)


def test_ctrl_c_while_the_main_thread_handles_an_answer_is_raised_once_it_is_handled():
    from apollo_frames.engine.executor import Executor

    handled, tasks = [], iter(range(20))

    def on_done(done):
        if done.task == 3:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of handling an answer (storing it, say)
        handled.append(done.task)  # ... which is finished all the same

    with pytest.raises(KeyboardInterrupt):
        Executor(1).run(lambda: next(tasks, None), lambda i: i, on_done)
    assert handled == [0, 1, 2, 3]  # raised where the run waits, before anything more was started


def test_the_demo_interrupted_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys):
    ctrl_c_at(monkeypatch, 3)
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quiet"]) == 130
    (line,) = capsys.readouterr().err.splitlines()
    saved, left = numbers(INTERRUPTED, line)
    assert saved > 0 and left > 0
    assert not (tmp_path / "demo" / "people_enriched.parquet").exists()


def test_a_command_with_nothing_to_count_says_only_that_it_was_interrupted(monkeypatch, capsys):
    ctrl_c_at(monkeypatch, 2)
    assert cli.main(["doctor", "--sandbox"]) == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted; run the same command to resume"]


def test_a_push_interrupted_in_process_resumes_and_a_finished_one_starts_afresh(sandbox, tmp_path):
    frame = people_frame(known_people(sandbox, 250)).drop(columns="n")
    with ctrl_c_client(sandbox, tmp_path / "c", "contacts/bulk_create", at=2, concurrency=1) as client, \
            pytest.raises(PushInterrupted) as caught:
        af.push_contacts(frame, mode="insert", run_dedupe=False, client=client, progress=False)
    pushed, left = numbers(PUSHED, str(caught.value))
    assert pushed == len(sandbox.store.contacts) == 200 and left == 50  # the batch in flight was answered, kept
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        again = af.push_contacts(frame, mode="insert", run_dedupe=False, client=client, progress=False)
        assert again.attrs["apollo"]["resumed"] == 200 and again.attrs["apollo"]["sent"] == 50
        assert (again["apollo_status"] == "created").all() and len(sandbox.store.contacts) == 250
        assert set(again["apollo_id"]) == set(sandbox.store.contacts)
        # that run finished: pushing the same rows again is a new push (the records may have gone meanwhile)
        third = af.push_contacts(frame, mode="insert", client=client, progress=False)
    assert third.attrs["apollo"]["resumed"] == 0 and (third["apollo_status"] == "existing").all()


def test_an_upsert_interrupted_between_create_and_update_resumes_with_the_updates(sandbox, tmp_path):
    frame = people_frame(known_people(sandbox, 150)).drop(columns="n")
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        af.push_contacts(frame.head(100), mode="insert", client=client, progress=False)  # these exist already
    frame["Title"] = "Head of Data"
    with ctrl_c_client(sandbox, tmp_path / "c", "contacts/bulk_update", at=1, concurrency=1) as client, \
            pytest.raises(PushInterrupted):
        af.push_contacts(frame, client=client, progress=False)
    creates = sandbox.count(path="contacts/bulk_create")
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        again = af.push_contacts(frame, client=client, progress=False)
    assert sandbox.count(path="contacts/bulk_create") == creates  # nothing created (or sent to create) again
    statuses = again["apollo_status"].value_counts().to_dict()
    assert statuses == {"updated": 100, "created": 50}
    assert {c["title"] for c in sandbox.store.contacts.values()} == {"Head of Data"}


def test_a_search_by_row_interrupted_raises_search_interrupted(sandbox, tmp_path):
    frame = pd.DataFrame({"domain": [o["primary_domain"] for o in sandbox.world.orgs[:12]]})
    with ctrl_c_client(sandbox, tmp_path / "c", "mixed_people/api_search", at=3, concurrency=1) as client, \
            pytest.raises(SearchInterrupted) as caught:
        af.search_frame(frame, kind="people", client=client, progress=False)
    (saved,) = numbers(PAGES, str(caught.value))
    assert saved == sandbox.count(path="mixed_people/api_search") == 3


def test_a_journal_that_cannot_be_written_warns_once_and_the_push_goes_on(sandbox, tmp_path, monkeypatch):
    from apollo_frames.client.store import AnswerStore
    from apollo_frames.core.errors import StorageError

    def full(self, items, *, ttl):
        raise StorageError("disk full", path=str(tmp_path), reason="full")

    frame = people_frame(known_people(sandbox, 30)).drop(columns="n")
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        monkeypatch.setattr(AnswerStore, "set_many", full)
        with pytest.warns(UserWarning, match="could not be recorded") as caught:
            out = af.push_contacts(frame, mode="insert", client=client, progress=False)
    assert (out["apollo_status"] == "created").all()
    assert sum("could not be recorded" in str(w.message) for w in caught) == 1


def test_the_journal_reads_back_only_an_unfinished_run(tmp_path):
    from apollo_frames.client.store import AnswerStore

    store = AnswerStore(tmp_path)
    first = PushJournal(store, "contacts", "run-a")
    assert not first.resuming and first.earlier(["x"]) == {}
    first.record({"x": {"status": "created", "id": "1"}, "y": {"status": "error"}})
    second = PushJournal(store, "contacts", "run-a")
    assert second.resuming and set(second.earlier(["x", "y", "z"])) == {"x"}  # an error is never kept as done
    assert not PushJournal(store, "contacts", "run-b").resuming
    second.close()
    assert not PushJournal(store, "contacts", "run-a").resuming
    store.close()
