"""Streaming batch runs: enrich_parquet, the CLI's streaming path, resume after kill -9, rate-limit stops."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames.cli import EXIT_RATE_LIMITED, main
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.schema import PERSON_SCHEMA
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig


def known_people(sandbox, n, start=0):
    found = [p for p in sandbox.world.people if p.get("email")]
    assert len(found) >= start + n, "the sandbox world is too small for this test"
    return found[start : start + n]


def frame_of(people, extra=()):
    rows = [{"Email": p["email"], "First Name": p["first_name"], "n": i} for i, p in enumerate(people)]
    rows += list(extra)
    return pd.DataFrame(rows)


def sandbox_client(sandbox, cache_dir):
    return sandbox.client(cache_dir=cache_dir, retry_backoff=(0.001, 0.01))


def bulk_calls(sandbox, status=200):
    return sandbox.count(path="people/bulk_match", status=status)


def test_streaming_equals_in_memory_and_leaves_no_partial(small_config, tmp_path):
    sb = Sandbox(small_config)
    people = known_people(sb, 45)
    extra = [
        {"Email": people[3]["email"], "First Name": "dup", "n": 100},
        {"Email": "nobody@unknown-company.example", "First Name": "Ghost", "n": 101},
        {"Email": "not an email", "First Name": "Bad", "n": 102},
    ]
    frame = frame_of(people, extra)
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    with sandbox_client(sb, tmp_path / "c1") as c:
        summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=7, client=c, progress=False)
    with sandbox_client(Sandbox(small_config), tmp_path / "c2") as c:
        expected = af.enrich_people(pd.read_parquet(src), client=c, progress=False)

    out = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(answers(out), answers(expected.reset_index(drop=True)))  # values, order, dtypes
    assert list(out["n"]) == list(frame["n"])
    assert summary["rows"] == len(frame) and summary["chunks"] == math.ceil(len(frame) / 7)
    assert summary["matched"] == 46 and summary["no_match"] == 1 and summary["invalid"] == 1
    assert summary["credits_consumed"] == sb.credits_consumed == 45
    assert not summary["stopped_by_rate_limit"] and summary["rows_remaining"] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["in.parquet", "out.parquet"]


def test_duplicates_across_chunks_are_sent_once(small_config, tmp_path):
    sb = Sandbox(small_config)
    people = known_people(sb, 55)
    # chunk 1: people 0-24 (25 new); chunk 2: 0-9 again + 25-39 (15 new); chunk 3: 20-29 again + 40-54 (15 new)
    order = list(range(25)) + list(range(10)) + list(range(25, 40)) + list(range(20, 30)) + list(range(40, 55))
    frame = frame_of([people[i] for i in order])
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    with sandbox_client(sb, tmp_path / "c") as c:
        summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=25, client=c, progress=False)
    # Each unique record is sent once (the cache answers repeats in later chunks), but batches do not span
    # chunks: each chunk's new records go in ceil(new/10) calls, so 3 + 2 + 2 = 7, one more than ceil(55/10).
    assert bulk_calls(sb, status=None) == math.ceil(25 / 10) + math.ceil(15 / 10) + math.ceil(15 / 10) == 7
    assert sum(r.n_records for r in sb.requests if r.path == "people/bulk_match") == 55
    assert sb.credits_consumed == 55 and summary["credits_consumed"] == 55
    # a record repeated in a later chunk is counted once, as estimate counts it: not unique again, not a cache hit
    assert summary["unique_inputs"] == 55 and summary["cache_hits"] == 0 and summary["api_calls"] == 7
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert (out["apollo_status"] == "matched").all()
    assert list(out["person.email"]) == [people[i]["email"] for i in order]
    by_run = af.credit_summary(by="run", client=c)
    assert len(by_run) == 1 and by_run["credits"].sum() == 55  # one file run is one ledger run, whatever its chunks


def test_cached_answers_read_in_blocks_equal_one_read(small_config, tmp_path, monkeypatch):
    from apollo_frames.engine import runner

    sb = Sandbox(small_config)
    people = known_people(sb, 40)
    frame = frame_of([people[i % 40] for i in range(70)])
    frame.loc[70] = ["not an email"] + [None] * (frame.shape[1] - 1)
    with sandbox_client(sb, tmp_path / "c") as c:
        first = af.enrich_people(frame, client=c, progress=False)
        monkeypatch.setattr(runner, "READ_BLOCK", 7)  # 40 cached answers read and flattened 7 at a time
        again = af.enrich_people(frame, client=c, progress=False)
    assert again.attrs["apollo"]["api_calls"] == 0 and again.attrs["apollo"]["cache_hits"] == 40
    pd.testing.assert_frame_equal(answers(again), answers(first))
    assert again["apollo_credits"].sum() == 0


def test_schema_identical_across_inputs_and_chunks(small_config, tmp_path):
    sb = Sandbox(small_config)
    good = frame_of(known_people(sb, 12))
    # no match and invalid only: every person.* column is null in every chunk
    bad = pd.DataFrame({"Email": ["ghost@unknown-company.example", "nope", None], "First Name": ["a", "b", "c"],
                        "n": [1, 2, 3]})
    schemas = []
    with sandbox_client(sb, tmp_path / "c") as c:
        for name, frame, rows in (("good", good, 5), ("bad", bad, 2), ("good1", good, 100)):
            frame.to_parquet(tmp_path / f"{name}.parquet")
            af.enrich_parquet(tmp_path / f"{name}.parquet", dst=tmp_path / f"{name}.out.parquet", chunk_rows=rows,
                              client=c, progress=False)
            schemas.append(pq.read_schema(tmp_path / f"{name}.out.parquet"))
    assert schemas[0].equals(schemas[1], check_metadata=True)
    assert schemas[0].equals(schemas[2], check_metadata=True)
    assert schemas[0].names[:9] == ["Email", "First Name", "n", "apollo_status", "apollo_error", "apollo_error_code",
                                    "apollo_credits", "apollo_fetched_at", "apollo_match_flags"]
    assert schemas[0].names[9:] == PERSON_SCHEMA.names


def test_csv_input_is_read_as_text(small_config, tmp_path):
    sb = Sandbox(small_config)
    people = known_people(sb, 13)
    frame = frame_of(people).assign(zip=["01234"] * 13)
    frame.loc[2, "First Name"] = None
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    with sandbox_client(sb, tmp_path / "c1") as c:
        af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=4, client=c, progress=False)
    with sandbox_client(Sandbox(small_config), tmp_path / "c2") as c:
        expected = af.enrich_people(pd.read_csv(src, dtype=str), client=c, progress=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    schema = pq.read_schema(tmp_path / "out.parquet")
    assert all(str(schema.field(c).type) == "string" for c in ("Email", "First Name", "n", "zip"))
    assert list(out["zip"]) == ["01234"] * 13 and list(out["n"]) == [str(i) for i in range(13)]
    assert pd.isna(out.loc[2, "First Name"])
    pd.testing.assert_frame_equal(answers(out), answers(expected.reset_index(drop=True)), check_dtype=False)


def test_budget_applies_to_the_whole_file(small_config, tmp_path):
    sb = Sandbox(small_config)
    frame = frame_of(known_people(sb, 30))
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    with sandbox_client(sb, tmp_path / "c") as c:
        with pytest.warns(UserWarning, match="15 rows were skipped"):
            summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=10, client=c, progress=False,
                                        max_credits=15)
    # chunk 1 spends 10, chunk 2 gets the 5 left, chunk 3 gets nothing
    assert sb.credits_consumed == 15 == summary["credits_consumed"]
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["apollo_status"]) == ["matched"] * 15 + ["skipped"] * 15
    assert summary["skipped"] == summary["rows_remaining"] == 15
    # run again with the rest of the budget: the first 15 come from the cache
    with sandbox_client(sb, tmp_path / "c") as c:
        summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=10, client=c, progress=False,
                                    max_credits=15)
    assert sb.credits_consumed == 30 and summary["cache_hits"] == 15 and summary["matched"] == 30


def test_daily_limit_stops_sending_writes_every_row_and_exit_code_4(monkeypatch, tmp_path, capsys):
    config = SandboxConfig(seed=11, n_orgs=300, limits={"people/bulk_match": (None, None, 3)})
    sb = Sandbox(config)
    frame = frame_of(known_people(sb, 60))
    src = tmp_path / "in.parquet"
    out = tmp_path / "out.parquet"
    frame.to_parquet(src)
    with sb.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", DEFAULT_API_KEY)
        args = ["enrich-people", str(src), str(out), "--quiet", "--cache-dir", str(tmp_path / "c"), "--chunk-rows", "20"]
        started = time.time()
        assert main(args) == EXIT_RATE_LIMITED
        err = capsys.readouterr().err
        # The client paces from the day headers, so it may stop itself before spending the last request
        # (two batches in flight see the headers out of order); either way nothing is sent after the stop.
        sent = bulk_calls(sb)
        assert sent in (2, 3) and bulk_calls(sb, status=None) <= 4
        done = 10 * sent
        result = pd.read_parquet(out)
        assert len(result) == 60 and list(result["n"]) == list(range(60))
        assert list(result["apollo_status"]) == ["matched"] * done + ["skipped"] * (60 - done)
        assert result["apollo_error"].iloc[done:].str.contains("day").all()
        assert f"{60 - done} rows remain" in err and "resets at" in err and "day" in err
        assert not (tmp_path / "out.parquet.partial").exists()

        # a new day (and no limit left to hit): the same command finishes the job from the cache
        sb.config.limits.clear()
        sb.reset_limits()
        credits_before = sb.credits_consumed
        assert main(args) == 0
        result = pd.read_parquet(out)
        assert (result["apollo_status"] == "matched").all()
        assert sb.credits_consumed - credits_before == 60 - done
    assert time.time() - started < 60


def test_enrich_parquet_returns_rate_limit_details(tmp_path):
    config = SandboxConfig(seed=11, n_orgs=300, limits={"people/bulk_match": (None, None, 1)})
    sb = Sandbox(config)
    frame = frame_of(known_people(sb, 25))
    frame.to_parquet(tmp_path / "in.parquet")
    with sandbox_client(sb, tmp_path / "c") as c, pytest.warns(UserWarning, match="rate limit"):
        summary = af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "out.parquet", chunk_rows=10, client=c,
                                    progress=False)
    assert summary["stopped_by_rate_limit"] and summary["rate_limit_window"] == "day"
    assert summary["reset_at"] > time.time() + 3600
    assert summary["rows_remaining"] == 15 and summary["matched"] == 10
    assert bulk_calls(sb) == 1


class _AnswerGate(FakeClock):
    """A sandbox clock: the first ``let_through`` latency sleeps pass at once, later ones wait for ``release``."""

    def __init__(self, let_through: int):
        super().__init__()
        self.left = let_through
        self.holding = threading.Event()  # set when an answer is first held back
        self.release = threading.Event()
        self._count_lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._count_lock:
            self.left -= 1
            hold = self.left < 0
        if hold:
            self.holding.set()
            self.release.wait(60)
        super().sleep(seconds)


def test_kill_9_then_resume_gives_the_uninterrupted_output(small_config, tmp_path):
    frame = frame_of(known_people(Sandbox(small_config), 400))
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)

    # the uninterrupted run, against its own sandbox and cache
    ref_sb = Sandbox(small_config)
    with sandbox_client(ref_sb, tmp_path / "ref-cache") as c:
        af.enrich_parquet(src, dst=tmp_path / "ref.parquet", chunk_rows=100, client=c, progress=False)
    expected = pd.read_parquet(tmp_path / "ref.parquet")
    ref_credits = ref_sb.credits_consumed
    assert ref_credits == 400

    # The sandbox answers 12 requests, then holds every answer until the run has been killed.
    gate = _AnswerGate(let_through=12)
    sb = Sandbox(SandboxConfig(seed=small_config.seed, n_orgs=small_config.n_orgs, latency=0.1), clock=gate)
    out = tmp_path / "out.parquet"
    with sb.serve() as base_url:
        env = dict(os.environ, APOLLO_BASE_URL=base_url, APOLLO_API_KEY=DEFAULT_API_KEY,
                   APOLLO_FRAMES_CACHE_DIR=str(tmp_path / "cache"))
        cmd = [sys.executable, "-m", "apollo_frames.cli", "enrich-people", str(src), str(out), "--quiet",
               "--chunk-rows", "100"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert gate.holding.wait(60), "the run never reached its 13th request"
            assert proc.poll() is None, "the run finished before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            gate.release.set()
        answered_before_kill = bulk_calls(sb)
        assert 12 <= answered_before_kill < 40
        assert not out.exists()  # only the .partial can be left behind

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    result = pd.read_parquet(out)
    pd.testing.assert_frame_equal(answers(result), answers(expected))
    assert result["apollo_credits"].sum() <= expected["apollo_credits"].sum()  # the resumed run's bill: the rest
    assert not (tmp_path / "out.parquet.partial").exists()
    # answers that arrived before the kill were cached: at most the in-flight batches are paid twice
    concurrency = 4
    assert sb.credits_consumed <= ref_credits + concurrency * 10
    assert bulk_calls(sb) <= 40 + concurrency


def test_enrich_partition_schema_is_stable(small_config, tmp_path):
    sb = Sandbox(small_config)
    frame = frame_of(known_people(sb, 12))
    with sandbox_client(sb, tmp_path / "c") as c:
        full = af.enrich_partition(frame, client=c)
        empty = af.enrich_partition(frame.iloc[:0], client=c)
        misses = af.enrich_partition(pd.DataFrame({"Email": ["x@unknown-company.example"], "First Name": ["a"],
                                                   "n": [1]}), client=c)
    assert list(full.columns) == list(empty.columns) == list(misses.columns)
    assert list(full.dtypes) == list(empty.dtypes) == list(misses.dtypes)
    assert (full["apollo_status"] == "matched").all() and full.attrs == {}


def test_dask_map_partitions(tmp_path, monkeypatch):
    import dask.dataframe as dd  # in the dev extras: this runs in CI, never skipped
    from distributed import Client, LocalCluster

    config = SandboxConfig(seed=11, n_orgs=300)
    sb = Sandbox(config)
    frame = frame_of(known_people(sb, 40))
    with sb.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", DEFAULT_API_KEY)
        monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "shared-cache"))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, Client(cluster):
            ddf = dd.from_pandas(frame, npartitions=4)
            meta = af.enrich_partition(ddf._meta)
            result = ddf.map_partitions(af.enrich_partition, operation="enrich_people", meta=meta).compute()
    assert len(result) == 40 and (result["apollo_status"] == "matched").all()
    assert list(result["person.email"]) == [p["email"] for p in known_people(sb, 40)]
    assert sb.credits_consumed == 40


def test_progress_without_a_terminal_logs_plain_lines(small_config, tmp_path, capsys):
    sb = Sandbox(small_config)
    frame_of(known_people(sb, 12)).to_parquet(tmp_path / "in.parquet")
    with sandbox_client(sb, tmp_path / "c") as c:
        af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "out.parquet", chunk_rows=4, client=c, log_every=0)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("enrich_people:")]
    assert len(lines) == 4  # one per chunk with log_every=0, and a last one
    assert "12/12 rows (100%)" in lines[-1] and "rows/s" in lines[-1] and "12 credits" in lines[-1]
    assert "ETA" in lines[0] and "from cache" in lines[0]


def test_a_failed_run_leaves_neither_output_nor_partial(small_config, tmp_path):
    pd.DataFrame({"nothing": ["a"]}).to_parquet(tmp_path / "in.parquet")
    with sandbox_client(Sandbox(small_config), tmp_path / "c") as c, pytest.raises(ValueError):
        af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "out.parquet", client=c, progress=False,
                          columns={"missing": "email"})
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["in.parquet"]


def push_rows(n, repeat_every=0):
    rows = [{"email": f"Stream{i}@push{i % 5}.example", "first_name": f"F{i}", "last_name": f"L{i}",
             "title": "Analyst"} for i in range(n)]
    if repeat_every:
        rows += [dict(rows[i], title="Repeat") for i in range(0, n, repeat_every)]
    return pd.DataFrame(rows)


def test_push_streams_with_duplicates_across_chunks(small_config, tmp_path):
    frame = push_rows(23, repeat_every=4)  # rows 23..28 repeat rows 0, 4, ..., 20 in later chunks
    frame.to_parquet(tmp_path / "in.parquet")
    sb = Sandbox(small_config)
    with sandbox_client(sb, tmp_path / "c") as c:
        summary = af.push_parquet(tmp_path / "in.parquet", dst=tmp_path / "report.parquet", target="contacts", chunk_rows=5,
                                  client=c, progress=False, mode="insert")
    report = pd.read_parquet(tmp_path / "report.parquet")
    assert list(report["email"]) == list(frame["email"])  # every row, in order
    assert summary["chunks"] == 6 and summary["created"] == 23 and summary["duplicate"] == 6
    assert len(sb.store.contacts) == 23  # each key created once, repeats across chunks never sent
    for k, first in enumerate(range(0, 23, 4)):
        row = report.iloc[23 + k]
        assert row["apollo_status"] == "duplicate" and row["apollo_error"] == f"duplicate of row {first} (same email)"
        assert row["apollo_id"] == report.iloc[first]["apollo_id"] and row["apollo_id"]

    # the same frame in memory gives the same statuses and reasons
    with sandbox_client(Sandbox(small_config), tmp_path / "c2") as c:
        in_memory = af.push_contacts(frame, mode="insert", client=c, progress=False)
    pd.testing.assert_series_equal(report["apollo_status"], in_memory["apollo_status"].reset_index(drop=True))
    pd.testing.assert_series_equal(report["apollo_error"], in_memory["apollo_error"].reset_index(drop=True))


def test_push_stream_refused_key_writes_every_row_then_raises(small_config, tmp_path):
    from apollo_frames.sandbox import SCOPED_API_KEY

    accounts = pd.DataFrame({"domain": [f"acct{i}.example" for i in range(7)], "name": [f"A{i}" for i in range(7)]})
    accounts.to_parquet(tmp_path / "in.parquet")
    sb = Sandbox(small_config)
    with sb.client(api_key=SCOPED_API_KEY, cache_dir=tmp_path / "c") as c:
        with pytest.raises(af.PermissionDeniedError):
            af.push_parquet(tmp_path / "in.parquet", dst=tmp_path / "r.parquet", target="accounts", chunk_rows=3, client=c,
                            progress=False)
    report = pd.read_parquet(tmp_path / "r.parquet")
    assert len(report) == 7 and (report["apollo_status"] == "skipped").all()
    assert report["apollo_error"].str.startswith("not sent: Apollo refused to write accounts").all()
    assert sum(1 for r in sb.requests if "accounts" in r.path) == 1  # nothing sent after the refusal


def test_push_cli_streams_a_csv_dry_run(tmp_path, capsys):
    push_rows(12, repeat_every=6).to_csv(tmp_path / "in.csv", index=False)
    code = main(["push-contacts", str(tmp_path / "in.csv"), "--report", str(tmp_path / "r.parquet"), "--dry-run",
                 "--chunk-rows", "5", "--quiet"])
    assert code == 0
    report = pd.read_parquet(tmp_path / "r.parquet")
    assert list(report["apollo_status"]) == ["would_create"] * 12 + ["duplicate"] * 2
    assert report["apollo_payload"].notna().sum() == 12
    assert "12 would create" in capsys.readouterr().out


def test_confirm_over_is_checked_once_for_the_whole_file(small_config, tmp_path):
    sb = Sandbox(small_config)
    people = known_people(sb, 30)
    frame_of(people[:10] + people[:10] + people[10:30]).to_parquet(tmp_path / "in.parquet")
    with sandbox_client(sb, tmp_path / "c") as c:
        af.enrich_people(frame_of(people[:5]), client=c, progress=False)  # 5 cached: the file's worst case is 25
        sent = len(sb.requests)
        with pytest.raises(af.BudgetExceededError, match="up to 25 credits"):
            af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "out.parquet", chunk_rows=10, client=c,
                              progress=False, confirm_over=24)
        assert len(sb.requests) == sent and not (tmp_path / "out.parquet").exists()
        summary = af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "out.parquet", chunk_rows=10, client=c,
                                    progress=False, confirm_over=25)  # each chunk alone is far below 25
    assert summary["credits_consumed"] == 25 and summary["matched"] == 40


def test_stream_keeps_a_saved_index_and_dtypes_and_reads_csv_nulls_like_pandas(tmp_path):
    frame = push_rows(4)
    frame["employees"] = pd.array([10, None, 30, None], dtype="Int64")
    frame.index = pd.Index([f"crm{i}" for i in range(4)], name="crm_id")
    frame.to_parquet(tmp_path / "in.parquet")
    af.push_parquet(tmp_path / "in.parquet", dst=tmp_path / "r.parquet", chunk_rows=3, progress=False, dry_run=True,
                    columns={"employees": None})
    report = pd.read_parquet(tmp_path / "r.parquet")
    assert list(report.index) == list(frame.index) and report.index.name == "crm_id"
    assert str(report["employees"].dtype) == "Int64" and report["employees"].isna().sum() == 2

    csv = tmp_path / "in.csv"
    csv.write_text("email,first_name,title\na@x1.example,None,<NA>\nb@x1.example,NULL,Analyst\n")
    af.push_parquet(csv, dst=tmp_path / "r2.parquet", progress=False, dry_run=True)
    payloads = [json.loads(p)["record"] for p in pd.read_parquet(tmp_path / "r2.parquet")["apollo_payload"]]
    expected = af.push_contacts(pd.read_csv(csv, dtype=str), dry_run=True, progress=False)
    assert payloads == [json.loads(p)["record"] for p in expected["apollo_payload"]]
    assert payloads[0] == {"email": "a@x1.example"} and payloads[1] == {"email": "b@x1.example", "title": "Analyst"}


def test_push_cli_daily_limit_writes_every_row_says_so_once_and_exits_4(monkeypatch, tmp_path, capsys):
    sb = Sandbox(SandboxConfig(seed=11, n_orgs=50, limits={"contacts/bulk_create": (None, None, 2)}))
    push_rows(250).to_parquet(tmp_path / "in.parquet")
    with sb.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", DEFAULT_API_KEY)
        code = main(["push-contacts", str(tmp_path / "in.parquet"), "--report", str(tmp_path / "r.parquet"),
                     "--mode", "insert", "--chunk-rows", "120", "--quiet", "--cache-dir", str(tmp_path / "c")])
    assert code == EXIT_RATE_LIMITED
    report = pd.read_parquet(tmp_path / "r.parquet")
    assert len(report) == 250 and list(report["email"]) == list(push_rows(250)["email"])
    counts = report["apollo_status"].value_counts().to_dict()
    assert counts.get("created", 0) == len(sb.store.contacts) and counts.get("created", 0) + counts["skipped"] == 250
    err = capsys.readouterr().err
    assert err.count("rows remain (skipped)") == 1 and "resets at" in err and "stopped early" not in err


def test_a_file_run_counts_unique_records_as_estimate_does(small_config, tmp_path):
    """Repeats across chunks count once in a run, cold and warm, as estimate_file counts them."""
    sb = Sandbox(small_config)
    people = known_people(sb, 30)
    frame = frame_of([people[i % 30] for i in range(90)])  # each person in each of 3 chunks
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    with sandbox_client(sb, tmp_path / "c") as c:
        before = af.estimate_file(src, operation="enrich_people", chunk_rows=30, client=c)
        cold = af.enrich_parquet(src, dst=tmp_path / "a.parquet", chunk_rows=30, client=c, progress=False)
        warm = af.enrich_parquet(src, dst=tmp_path / "b.parquet", chunk_rows=30, client=c, progress=False)
    assert before.unique == cold["unique_inputs"] == warm["unique_inputs"] == 30
    assert cold["cache_hits"] == 0 and warm["cache_hits"] == 30 and warm["api_calls"] == 0
