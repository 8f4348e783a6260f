"""Dask: each unique record paid once across partitions, one budget and one rate limit across worker processes.

One LocalCluster (2 worker processes, 1 thread each, loopback only) is shared
by the module; each test serves its own sandbox over loopback and the workers
build their clients from the caller's client settings.
"""

from __future__ import annotations

import importlib
import random

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from frames import answers

import apollo_frames as af
import apollo_frames.dask as afd
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import InputError
from apollo_frames.engine.budget import Budget
from apollo_frames.io.shared import LocalTally, SharedBudget, WorkerClient
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

NEW = ("apollo_", "person.")


@pytest.fixture(scope="module")
def cluster():
    with dask.config.set({"dataframe.convert-string": False}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as lc, Client(lc) as dask_client:
            dask_client.run(importlib.import_module, "apollo_frames.dask")  # the workers' imports, paid once here
            yield dask_client


@pytest.fixture
def served():
    sandboxes: list[Sandbox] = []

    def start(**config):
        sb = Sandbox(SandboxConfig(seed=11, n_orgs=300, **config))
        sandboxes.append(sb)
        return sb, sb.start()

    yield start
    for sb in sandboxes:
        sb.stop()


def threads_only():
    """The threads scheduler in this process (the module's cluster stays the default otherwise)."""
    return dask.config.set({"scheduler": "threads", "dataframe.shuffle.method": "tasks"})


def people(sb: Sandbox, n: int) -> list[dict]:
    found = [p for p in sb.world.people if p.get("email")]
    assert len(found) >= n, "the sandbox world is too small for this test"
    return found[:n]


def leads(sb: Sandbox, unique: int, copies: int, seed: int = 3) -> pd.DataFrame:
    """``unique`` known people, each ``copies`` times (spelled differently), shuffled, plus one invalid row."""
    rows = []
    for p in people(sb, unique):
        for c in range(copies):
            email = p["email"].upper() if c % 2 else f"  {p['email']} "
            rows.append({"Email": email, "First Name": p["first_name"]})
    random.Random(seed).shuffle(rows)
    rows.append({"Email": "not an email", "First Name": "Nobody"})
    frame = pd.DataFrame(rows)
    frame["n"] = range(len(frame))
    return frame


def client_for(base_url: str, tmp_path, **kw):
    kw.setdefault("cache_dir", str(tmp_path / "shared-cache"))
    return af.ApolloClient(DEFAULT_API_KEY, base_url, retry_backoff=(0.001, 0.01), **kw)


def test_each_unique_person_is_paid_once_across_partitions(cluster, served, tmp_path):
    sb, url = served()
    frame = leads(sb, 200, 4)  # 801 rows over 4 partitions: every person in several of them
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    with client_for(url, tmp_path) as c:
        lazy = ddf.apollo.enrich_people(client=c)
        assert sb.count() == 0  # lazy: nothing sent yet
        result = lazy.compute()
        expected = af.enrich_people(frame, client=c, progress=False)  # now every answer is cached
    assert sb.credits_consumed == 200
    assert sb.count(path="people/bulk_match") <= 200 // 10 + 4  # bulk calls, at most one short one per partition
    assert len(result) == len(frame) and list(result["n"]) == list(frame["n"])  # every row, in order
    new = [c for c in answers(expected).columns if c.startswith(NEW)]
    pd.testing.assert_frame_equal(result[new].reset_index(drop=True), expected[new].reset_index(drop=True))
    assert result["apollo_credits"].sum() == 200 and expected["apollo_credits"].sum() == 0
    assert list(lazy._meta.dtypes) == list(result.dtypes)
    assert result["apollo_status"].value_counts().to_dict() == {"matched": 800, "invalid": 1}


def test_max_credits_caps_the_whole_computation(cluster, served, tmp_path):
    sb, url = served()
    frame = leads(sb, 200, 2)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    with client_for(url, tmp_path) as c:
        result = ddf.apollo.enrich_people(client=c, max_credits=40).compute()
    assert 0 < sb.credits_consumed <= 40
    counts = result["apollo_status"].value_counts().to_dict()
    assert counts["matched"] == 2 * sb.credits_consumed  # each person twice
    skipped = result[result["apollo_status"] == "skipped"]
    assert len(skipped) + counts["matched"] + 1 == len(frame)  # no row lost
    assert skipped["apollo_error"].str.contains("credit budget reached").all()


def test_workers_share_one_rate_limit(cluster, served, tmp_path):
    # 20 bulk calls a minute for the key; 8 partitions want 40 calls at once from 2 processes.
    sb, url = served(limits={"people/bulk_match": (20, None, None)})
    frame = leads(sb, 400, 1)
    ddf = dd.from_pandas(frame, npartitions=8, sort=False)
    with client_for(url, tmp_path, rate_limits=(20, None, None), max_rate_limit_wait=0.001, concurrency=4) as c:
        result = ddf.apollo.enrich_people(client=c).compute()
    assert sb.count(path="people/bulk_match", status=429) == 0
    assert sb.count(path="people/bulk_match", status=200) == 20  # the window used to the last request
    sent = sum(r.n_records for r in sb.requests if r.status == 200)
    counts = result["apollo_status"].value_counts().to_dict()
    assert counts["matched"] == sent and counts["skipped"] == 400 - sent and counts["invalid"] == 1
    assert result.loc[result["apollo_status"] == "skipped", "apollo_error"].str.lower().str.contains("rate limit").all()


def test_a_rerun_on_the_shared_cache_costs_nothing(cluster, served, tmp_path):
    sb, url = served()
    frame = leads(sb, 60, 3)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    with client_for(url, tmp_path) as c:
        first = ddf.apollo.enrich_people(client=c).compute()
        spent, calls = sb.credits_consumed, sb.count()
        again = ddf.apollo.enrich_people(client=c).compute()
        estimate = ddf.apollo.estimate(operation="enrich_people", client=c)
    assert spent == 60 and sb.credits_consumed == spent and sb.count() == calls
    pd.testing.assert_frame_equal(answers(first), answers(again))
    assert (estimate.rows, estimate.unique, estimate.cached, estimate.credits_max) == (len(frame), 60, 60, 0)


def test_estimate_counts_each_record_once_across_partitions(served, tmp_path):
    sb, _ = served()
    frame = leads(sb, 30, 3)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    with sb.client(cache_dir=tmp_path / "c") as c, threads_only():
        found = ddf.apollo.estimate(operation="enrich_people", client=c)
        pandas = af.estimate(frame, operation="enrich_people", client=c)
    assert (found.rows, found.invalid, found.unique, found.to_fetch) == (pandas.rows, 1, 30, 30)
    assert found.api_calls >= pandas.api_calls and sb.count() == 0


def test_options_are_checked_before_anything_runs(served, tmp_path):
    sb, _ = served()
    ddf = dd.from_pandas(leads(sb, 4, 1), npartitions=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        ddf.apollo.enrich_people(colour="red")
    with pytest.raises(TypeError, match="refresh must be True or False"):
        ddf.apollo.enrich_people(refresh="no")
    with pytest.raises(ValueError, match="max_credits"):
        ddf.apollo.enrich_people(max_credits=-1)
    with pytest.raises(TypeError, match="ledger"):
        ddf.apollo.enrich_people(ledger=object())
    with pytest.raises(TypeError, match="Dask DataFrame"):
        afd.enrich(leads(sb, 2, 1))
    with sb.client(cache_dir=tmp_path / "c", api_key="secret-key-for-the-repr") as c:
        assert "secret-key-for-the-repr" not in repr(WorkerClient.of(c))  # it travels pickled, never shown


def test_the_threads_scheduler_shares_the_callers_client_and_budget(served, tmp_path):
    sb, _ = served()
    frame = leads(sb, 50, 2)
    ddf = dd.from_pandas(frame, npartitions=5, sort=False)
    with sb.client(cache_dir=tmp_path / "c") as c:
        with threads_only():
            result = ddf.apollo.enrich_people(client=c, max_credits=25).compute()
    assert sb.credits_consumed == 25  # every person matches: the budget is spent to the credit
    assert (result["apollo_status"] == "matched").sum() == 50


class _SettlesWhenWaited(FakeClock):
    """A clock whose first sleep is the moment another task's request comes back (cheaper than its worst case)."""

    def __init__(self, settle):
        super().__init__()
        self._settle = settle

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self._settle()
        self._settle = lambda: None


def test_shared_budget_counts_every_task_and_waits_for_the_others():
    shared = LocalTally()
    a = SharedBudget(10, shared)
    assert isinstance(a, Budget) and a.reserve_items(1.0, 6, wait=False) == 6
    clock = _SettlesWhenWaited(lambda: a.settle(6.0, 2.0))  # a's 6 in flight come back as 2 credits
    b = SharedBudget(10, shared, clock=clock)
    assert b.reserve_items(1.0, 6, wait=False) == 6  # it waited for a rather than taking the 4 that fit
    assert clock.slept > 0
    assert b.reserve_items(1.0, 6, wait=False) is None  # its own are in flight: the engine waits for them
    b.settle(6.0, 6.0)
    assert (a.spent, b.spent) == (2.0, 6.0)
    assert b.reserve_items(1.0, 6, wait=False) == 2 and b.reserve_items(1.0, 1, wait=False) is None
    b.settle(2.0, 2.0)
    assert b.reserve_items(1.0, 1) == 0 and "spent 10 across the computation" in b.reached()


def test_max_age_reaches_the_workers(served, tmp_path):
    """A Dask run takes max_age as the pandas one does: answers older than it are fetched again, the others not."""
    sb, _ = served()
    frame = leads(sb, 20, 1)
    ddf = dd.from_pandas(frame, npartitions=2, sort=False)
    with sb.client(cache_dir=tmp_path / "c") as c, threads_only():
        ddf.apollo.enrich_people(client=c).compute()
        spent = sb.credits_consumed
        ddf.apollo.enrich_people(client=c, max_age="1d").compute()
        assert sb.credits_consumed == spent  # all fresh
        ddf.apollo.enrich_people(client=c, max_age=0).compute()
    assert sb.credits_consumed == 2 * spent  # all fetched again
    with pytest.raises(InputError, match="max_age"):
        ddf.apollo.enrich_people(max_age="soon")


def test_suppressed_rows_end_suppressed_on_the_workers(cluster, served, tmp_path):
    """Issue 25: suppress= and the cache folder's list reach every worker; the same rows as pandas end suppressed."""
    sb, url = served()
    frame = leads(sb, 60, 2)
    listed, by_argument = people(sb, 60)[:5], people(sb, 60)[5:8]
    optouts = tmp_path / "optouts.txt"
    optouts.write_text("\n".join(p["email"] for p in by_argument) + "\n")
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    with client_for(url, tmp_path) as c:
        af.suppress([p["email"] for p in listed], client=c)
        result = ddf.apollo.enrich_people(client=c, suppress=optouts).compute()
        expected = af.enrich_people(frame, client=c, progress=False, suppress=optouts)
    blocked = frame["Email"].str.strip().str.lower().isin([p["email"] for p in listed + by_argument])
    assert blocked.sum() == 16
    assert (result.loc[blocked.to_numpy(), "apollo_status"] == "suppressed").all()
    assert result["apollo_status"].tolist() == expected["apollo_status"].tolist()
    assert result.loc[blocked.to_numpy(), "person.id"].isna().all()
    assert sb.credits_consumed == 60 - 8  # the suppressed were never sent
    stored = b"".join(p.read_bytes() for p in (tmp_path / "shared-cache").rglob("*") if p.is_file())
    assert all(p["email"].encode() not in stored for p in listed + by_argument)
