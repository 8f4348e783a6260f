"""The cap is a cap: over loopback, answers lost on the way (reset, close, trickle, truncation, deep JSON, broken
gzip) and servers that under-report never let the server's charge pass ``max_credits``; the ledger counts every
attempt the server may have charged."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client.ledger import Ledger
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig

LOST = ["reset", "close", "truncate", "trickle=0.3", "deep_json", "bad_gzip"]


@pytest.fixture
def served():
    """A sandbox on a fake clock, served over loopback (the client shares the clock: trickling costs no time)."""
    sb = Sandbox(SandboxConfig(seed=11, n_orgs=300), clock=FakeClock())
    with sb.serve() as url:
        yield sb, url


def loopback_client(sb: Sandbox, url: str, tmp_path: Path, **kw: Any) -> af.ApolloClient:
    return af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=url, cache_dir=str(tmp_path / "c"), clock=sb.clock,
                           plan="paid", cache_namespace="sandbox", retry_backoff=(0.01, 0.05), timeout=2, **kw)


def people(sb: Sandbox, n: int, misses: int = 0) -> pd.DataFrame:
    """``n`` people the sandbox knows, then ``misses`` e-mails it does not."""
    known = [p["email"] for p in sb.world.people if p.get("email")][:n]
    return pd.DataFrame({"email": known + [f"nobody{i}@unknown{i}.example" for i in range(misses)]})


def enrich(frame: pd.DataFrame, client: af.ApolloClient, **kw: Any) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frame.apollo.enrich_people(client=client, progress=False, **kw)


def ledger_total(client: af.ApolloClient) -> float:
    """Settled credits plus the worst case of every attempt in doubt."""
    return float(client.ledger.frame()["credits"].sum())


@pytest.mark.parametrize("retries", [3, 0])
@pytest.mark.parametrize("fault", LOST)
def test_lost_answers_never_take_the_charge_past_the_cap(served, tmp_path, fault, retries):
    sb, url = served
    sb.inject(*[fault] * 40, path="people/bulk_match")  # every attempt loses its answer
    with loopback_client(sb, url, tmp_path, max_retries=retries) as client:
        result = enrich(people(sb, 40), client, max_credits=12)
        total = ledger_total(client)
    statuses = result["apollo_status"]
    assert len(result) == 40 and statuses.isin(["error", "skipped"]).all()  # every row back, with a reason
    assert result["apollo_error"].notna().all()
    assert 0 < sb.credits_consumed <= 12
    assert total >= sb.credits_consumed


@pytest.mark.parametrize("fault", ["reset", "close", "trickle=0.3"])
def test_a_retry_after_a_lost_answer_is_counted_in_the_ledger(served, tmp_path, fault):
    sb, url = served
    sb.inject(fault, path="people/bulk_match")  # the first attempt is charged and lost, the retry answered
    with loopback_client(sb, url, tmp_path) as client:
        result = enrich(people(sb, 10), client)
        ledger = client.ledger.frame()
    assert (result["apollo_status"] == "matched").all()
    assert sb.credits_consumed == 20  # the server charged both attempts
    assert ledger["status"].tolist() == ["in_doubt", "settled"] and ledger["credits"].sum() == 20
    assert result.attrs["apollo"]["credits_consumed"] == 10 and result.attrs["apollo"]["credits_in_doubt"] == 10


def test_no_retry_when_the_cap_has_no_room_for_it(served, tmp_path):
    sb, url = served
    sb.inject("reset", path="people/bulk_match")
    with loopback_client(sb, url, tmp_path) as client:
        result = enrich(people(sb, 10), client, max_credits=15)
        ledger = client.ledger.frame()
    assert (result["apollo_status"] == "error").all() and sb.credits_consumed == 10
    assert result["apollo_error"].str.contains("Not retried: max_credits has no room").all()
    assert ledger["status"].tolist() == ["in_doubt"] and ledger["credits"].sum() == 10


def test_a_plausible_under_report_cannot_lift_the_cap(served, tmp_path):
    """The server charges every record asked (found or not) and reports 1 per record found: a figure that passes
    every check. The budget counts every batch sent at its worst case, so the charge stays within the cap."""
    sb, url = served
    sb.config.overcharge = True
    frame = people(sb, 20, misses=20).sample(frac=1, random_state=3).reset_index(drop=True)
    with loopback_client(sb, url, tmp_path) as client:
        result = enrich(frame, client, max_credits=25)
        total, settled = ledger_total(client), client.ledger.total_credits()
    assert sb.credits_consumed == 25  # without the rule: about 50
    assert result["apollo_status"].isin(["matched", "no_match", "skipped"]).all()
    assert (result["apollo_status"] == "skipped").sum() == 15
    # the answers reported less than was charged; the meter, read before and after a capped run, saw the rest
    assert settled < sb.credits_consumed <= total
    assert settled + result.attrs["apollo"]["credits_in_doubt"] == total


def test_an_uncapped_run_under_the_meter_threshold_believes_the_answers(served, tmp_path):
    """Without a cap and with a worst case under the threshold the meter is not read (two requests saved): the
    ledger holds the answers' figures."""
    sb, url = served
    sb.config.overcharge = True
    with loopback_client(sb, url, tmp_path) as client:
        enrich(people(sb, 5, misses=5), client)
        total = ledger_total(client)
    assert sb.count(path="usage_stats/credit_usage_stats") == 0
    assert total == 5 and sb.credits_consumed == 10


@pytest.mark.parametrize("reported", [-5, 1000, float("nan")])
def test_an_implausible_figure_is_counted_at_the_worst_case(served, tmp_path, reported):
    """A figure outside 0..worst case (Apollo's fractions are inside it) is not believed: the ledger keeps the
    worst case, never less than the server charged, and the cap holds."""
    sb, url = served
    sb.config.credits_consumed_override = reported
    with loopback_client(sb, url, tmp_path) as client:
        enrich(people(sb, 40), client, max_credits=25)
        total = ledger_total(client)
    assert sb.credits_consumed == 25 and total >= sb.credits_consumed


def test_a_file_run_keeps_one_cap_across_its_chunks(served, tmp_path):
    """A file run's chunks share one budget: what one chunk committed at its worst case, the next cannot spend."""
    sb, url = served
    sb.config.overcharge = True
    src = tmp_path / "in.csv"
    people(sb, 20, misses=20).sample(frac=1, random_state=5).to_csv(src, index=False)
    with loopback_client(sb, url, tmp_path) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=10, client=client, progress=False,
                                    max_credits=25)
        total = ledger_total(client)
    assert sb.credits_consumed <= 25 and summary["skipped"] == 15
    # the meter is read once before the file and once after it (not per chunk); the ledger holds what was charged
    assert sb.count(path="usage_stats/credit_usage_stats") == 2
    assert total >= sb.credits_consumed and summary["credits_consumed"] < sb.credits_consumed


@pytest.mark.parametrize("fault", LOST)
def test_without_a_cap_the_ledger_counts_every_lost_attempt(served, tmp_path, fault):
    sb, url = served
    sb.inject(*[fault] * 8, path="people/bulk_match")  # both batches lose every attempt (4 each at most)
    with loopback_client(sb, url, tmp_path) as client:
        result = enrich(people(sb, 20), client)
        total = ledger_total(client)
        in_doubt = result.attrs["apollo"]["credits_in_doubt"]
    assert sb.credits_consumed > 0 and total >= sb.credits_consumed and in_doubt >= sb.credits_consumed
    assert len(result) == 20 and result["apollo_error"].notna().all()


def test_a_search_page_retried_after_a_lost_answer_stays_within_the_cap(served, tmp_path):
    sb, url = served
    sb.inject("reset", path="mixed_companies/search")  # charged (the page has results), then lost
    with loopback_client(sb, url, tmp_path) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(af.APIConnectionError):
            af.search_orgs(max_results=10, max_credits=1, client=client, progress=False,
                           organization_locations="Germany")
        ledger = client.ledger.frame()
    assert sb.credits_consumed == 1  # the retry would have needed a second credit
    assert ledger["status"].tolist() == ["in_doubt"] and ledger["credits"].sum() == 1


def test_without_a_cap_each_lost_search_attempt_is_in_the_ledger(served, tmp_path):
    sb, url = served
    sb.inject("reset", path="mixed_companies/search")
    with loopback_client(sb, url, tmp_path) as client:
        found = af.search_orgs(max_results=10, client=client, progress=False, organization_locations="Germany")
        ledger = client.ledger.frame()
    assert len(found) > 0 and sb.credits_consumed == 2
    assert ledger["status"].tolist() == ["in_doubt", "settled"] and ledger["credits"].sum() == 2


def test_a_capped_file_run_within_what_the_meter_has_left_is_not_refused(tmp_path):
    """A chunk's worst case above the meter's balance: the file's cap (within the balance) keeps it, as for a frame."""
    sb = Sandbox(SandboxConfig(seed=11, n_orgs=300, credit_limits={"lead_credit": 80}), clock=FakeClock())
    src = tmp_path / "in.csv"
    people(sb, 300).to_csv(src, index=False)
    with sb.serve() as url, loopback_client(sb, url, tmp_path) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", chunk_rows=200, client=client,
                                    progress=False, max_credits=50)
    assert sb.credits_consumed == 50 and summary["skipped"] == 250


def test_the_meter_gap_goes_to_the_ledger_the_run_was_given(served, tmp_path):
    sb, url = served
    sb.config.credits_consumed_override = 0  # a believable figure, below what is charged
    mine = Ledger(tmp_path / "mine.sqlite")
    with loopback_client(sb, url, tmp_path) as client:
        enrich(people(sb, 20), client, max_credits=50, ledger=mine)
        theirs = client.ledger.frame()
    ours = mine.frame()
    assert theirs.empty
    assert ours["credits"].sum() >= sb.credits_consumed == 20
    assert set(ours["status"]) == {"settled", "in_doubt"}
