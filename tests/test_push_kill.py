"""kill -9 during a push without run_dedupe, then the same command: nothing is created twice and every row says
truthfully what happened (issue 22 item 2). The journal records each batch before it is sent; on resume, a batch
whose answer never arrived is looked up (contacts/accounts search, free) before anything is created again."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pandas as pd
import pytest
from test_interrupts import CLI, gated, orgs_frame
from test_push import assert_each_once, contacts_frame, push
from test_safety import _cli_env, known_people, people_frame

from apollo_frames.ops.lookup import LOOKBACK_S, created_since
from apollo_frames.ops.push import FOUND
from apollo_frames.sandbox import Sandbox

pytestmark = pytest.mark.slow  # real processes: killed, interrupted, raced (-m "not slow" skips them)


def _client(sandbox: Sandbox, tmp_path, **kw):
    return sandbox.client(cache_dir=tmp_path / "cache", retry_backoff=(0.001, 0.005), **kw)


def _keys(sandbox: Sandbox, kind: str) -> Counter:
    field = "email" if kind == "contacts" else "domain"
    return Counter(str(r.get(field)).lower() for r in getattr(sandbox.store, kind).values())


@pytest.mark.parametrize("command", ["push-contacts", "push-accounts"])
@pytest.mark.parametrize("let_through", [0, 1, 2])  # killed while the 1st, 2nd or 3rd batch is in flight
def test_kill_9_in_a_no_dedupe_push_then_the_same_command_creates_nothing_twice(
    small_config, tmp_path, command, let_through
):
    n = 300
    world = Sandbox(small_config)
    frame = people_frame(known_people(world, n)) if command == "push-contacts" else orgs_frame(world, n)
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    report = tmp_path / "report.csv"
    cmd = CLI + [command, str(src), "--report", str(report), "--chunk-rows", "100", "--no-dedupe", "--quiet"]
    sb, gate = gated(small_config, let_through=let_through)
    kind = command.split("-")[1]
    with sb.serve() as base_url:
        env = _cli_env(base_url, tmp_path / "cache")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert gate.holding.wait(60), "the run never reached the held request"
            # the held batch was written by the server; its answer never reaches the killed process
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            gate.release.set()
        assert proc.returncode == -signal.SIGKILL and not report.exists()
        before = len(getattr(sb.store, kind))
        assert before == 100 * (let_through + 1)  # the batches answered, and the one in flight

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    counts = _keys(sb, kind)
    assert len(counts) == n and max(counts.values()) == 1  # 0 duplicates
    got = pd.read_csv(report, dtype=str)
    assert len(got) == n and (got["apollo_status"] == "created").all()
    assert set(got["apollo_id"]) == set(getattr(sb.store, kind))  # every row names its own record
    found = got["apollo_error"].fillna("") == FOUND
    assert found.sum() == 100  # the batch in flight at the kill: found, not created again
    assert f"{100 * let_through:,} pushed by the interrupted run" in done.stdout or let_through == 0
    assert "100 found in Apollo after the interruption, not created again" in done.stdout
    sent = sum(r.n_records for r in sb.requests if r.path == f"{kind}/bulk_create")
    assert sent == n  # each row sent once over both runs


def test_an_answer_lost_in_process_is_looked_up_by_the_same_push(sandbox, tmp_path):
    """A write whose answer was lost (written) and one that never reached the server (502): the first run reports
    both unknown and sends neither again; the same push finds the first, creates the second, duplicates nothing."""
    client = _client(sandbox, tmp_path, concurrency=1)
    frame = contacts_frame(250)
    sandbox.inject("lost_write", "502", path="contacts/bulk_create")
    first = push(frame, client, mode="insert", run_dedupe=False)
    assert (first["apollo_status"] == "error").sum() == 200 and first.attrs["apollo"]["unknown"] == 200
    again = push(frame, client, mode="insert", run_dedupe=False)
    assert (again["apollo_status"] == "created").all()
    assert (again["apollo_error"] == FOUND).sum() == 100 and again.attrs["apollo"]["found"] == 100
    assert again.attrs["apollo"]["resumed"] == 50
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])
    assert set(again["apollo_id"]) == set(sandbox.store.contacts)
    third = push(frame, client, mode="insert", run_dedupe=False)  # the journal closed: a new push sends again
    assert (third["apollo_status"] == "created").all() and third.attrs["apollo"]["found"] == 0


def test_a_failed_lookup_leaves_the_rows_unknown_and_sends_nothing(sandbox, tmp_path):
    client = _client(sandbox, tmp_path, concurrency=1, max_retries=0)
    frame = contacts_frame(100)
    sandbox.inject("lost_write", path="contacts/bulk_create")
    push(frame, client, mode="insert", run_dedupe=False)
    sandbox.inject("500", path="contacts/search")
    again = push(frame, client, mode="insert", run_dedupe=False)
    assert (again["apollo_status"] == "error").all() and again["apollo_error"].str.contains("looking it up failed").all()
    assert again.attrs["apollo"]["unknown"] == 100
    finally_ = push(frame, client, mode="insert", run_dedupe=False)  # the journal stayed open: looked up again
    assert (finally_["apollo_error"] == FOUND).all()
    assert_each_once(sandbox, [e.strip().lower() for e in frame["Email"]])


def test_the_search_stops_at_the_first_record_older_than_the_batch(sandbox, tmp_path):
    client = _client(sandbox, tmp_path)
    push(contacts_frame(150), client, mode="insert")
    newest = max(c["created_at"] for c in sandbox.store.contacts.values())
    from apollo_frames.ops.lookup import parse_time

    since = parse_time(newest) + LOOKBACK_S + 1  # after every record: the first page's first record is older
    before = sandbox.count(path="contacts/search")
    assert created_since(client, "contacts", "contact", since, {"person0@push0.example"},
                         lambda r: r.get("email")) == {}
    assert sandbox.count(path="contacts/search") == before + 1
    everything = created_since(client, "contacts", "contact", 0.0, {"nobody@x.example"}, lambda r: r.get("email"))
    assert everything == {} and sandbox.count(path="contacts/search") == before + 3  # 150 records: 2 pages
