"""People and organization enrichment against the sandbox."""

from __future__ import annotations

import asyncio
import math
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames import ApolloClient
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import DEFAULT_API_KEY, Sandbox, SandboxConfig


def people_with_email(sandbox, n, start=0):
    found = [p for p in sandbox.world.people if p.get("email")]
    assert len(found) >= start + n, "the sandbox world is too small for this test"
    return found[start : start + n]


def leads_frame(sandbox, n=35, start=0):
    """A messy lead list: n known people, with case/space noise, plus duplicates and unknowns."""
    people = people_with_email(sandbox, n, start)
    rows = [{"Email": f"  {p['email'].upper()} ", "First Name": p["first_name"], "Company": None} for p in people]
    rows.append({"Email": people[0]["email"], "First Name": "dup", "Company": None})  # same person again
    rows.append({"Email": "nobody.at.all@unknown-company.example", "First Name": "Ghost", "Company": None})
    rows.append({"Email": "not an email", "First Name": "Bad", "Company": None})  # invalid: no other identifier
    rows.append({"Email": None, "First Name": None, "Company": "Acme"})  # invalid
    return pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])


def bulk_calls(sandbox, path="people/bulk_match", status=None):
    return sandbox.count(path=path, status=status)


def test_enrich_people_statuses_alignment_and_counts(sandbox, client):
    frame = leads_frame(sandbox)
    before = frame.copy(deep=True)
    result = frame.apollo.enrich_people(client=client, progress=False)

    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert list(result.index) == list(frame.index)
    assert list(result.columns[: len(frame.columns)]) == list(frame.columns)
    pd.testing.assert_frame_equal(result[frame.columns], frame)

    people = people_with_email(sandbox, 35)
    matched = result.iloc[:35]
    assert (matched["apollo_status"] == "matched").all()
    assert list(matched["person.email"]) == [p["email"] for p in people]
    assert list(matched["person.id"]) == [p["id"] for p in people]
    assert result.loc["r35", "apollo_status"] == "matched" and result.loc["r35", "person.id"] == people[0]["id"]
    assert result.loc["r36", "apollo_status"] == "no_match" and pd.isna(result.loc["r36", "person.id"])
    for label in ("r37", "r38"):
        assert result.loc[label, "apollo_status"] == "invalid"
        assert "no usable identifier" in result.loc[label, "apollo_error"]
    assert "invalid email" in result.loc["r37", "apollo_error"]

    stats = result.attrs["apollo"]
    unique = 36  # 35 people + the unknown one; the duplicate is sent once
    assert stats["rows"] == 39 and stats["unique_inputs"] == unique
    assert stats["matched"] == 36 and stats["no_match"] == 1 and stats["invalid"] == 2
    assert stats["api_calls"] == math.ceil(unique / 10) == bulk_calls(sandbox)
    assert stats["credits_consumed"] == sandbox.credits_consumed == 35
    assert stats["cache_hits"] == 0 and stats["errors"] == 0 and stats["skipped"] == 0


def test_second_run_costs_nothing(sandbox, client):
    frame = leads_frame(sandbox)
    first = frame.apollo.enrich_people(client=client, progress=False)
    calls, credits = bulk_calls(sandbox), sandbox.credits_consumed
    second = frame.apollo.enrich_people(client=client, progress=False)
    assert bulk_calls(sandbox) == calls and sandbox.credits_consumed == credits
    stats = second.attrs["apollo"]
    assert stats["api_calls"] == 0 and stats["credits_consumed"] == 0
    assert stats["cache_hits"] == stats["unique_inputs"] == 36
    cols = [c for c in answers(first).columns if c.startswith(("person.", "apollo_"))]
    pd.testing.assert_frame_equal(first[cols], second[cols])
    assert first["apollo_credits"].sum() == credits and second["apollo_credits"].sum() == 0


def test_refresh_bypasses_cached_answers(sandbox, client):
    frame = leads_frame(sandbox, n=12)
    frame.apollo.enrich_people(client=client, progress=False)
    calls = bulk_calls(sandbox)
    again = frame.apollo.enrich_people(client=client, progress=False, refresh=True)
    assert again.attrs["apollo"]["cache_hits"] == 0
    assert bulk_calls(sandbox) == calls + math.ceil(13 / 10)


def test_faults_lose_no_row_and_credits_match_the_server(tmp_path):
    clock = FakeClock()  # shared by the sandbox and its client: the 429s' Retry-After waits take no real time
    sandbox = Sandbox(
        SandboxConfig(seed=11, n_orgs=300, error_rate=0.25, rate_429=0.25, fault_seed=3, windows=(1, 3600, 86400)),
        clock=clock,
    )
    with sandbox.client(cache_dir=tmp_path, max_retries=8, retry_backoff=(0.001, 0.01)) as client:
        frame = leads_frame(sandbox, n=80)
        result = frame.apollo.enrich_people(client=client, progress=False)
    statuses = result["apollo_status"].value_counts().to_dict()
    assert statuses == {"matched": 81, "invalid": 2, "no_match": 1}
    stats = result.attrs["apollo"]
    assert stats["credits_consumed"] == sandbox.credits_consumed == 80
    successful = bulk_calls(sandbox, status=200)
    assert successful == math.ceil(81 / 10)  # the faults cost retries, never a duplicate successful batch
    assert stats["api_calls"] == bulk_calls(sandbox) > successful
    assert clock.slept >= 1  # the 429s were waited out on the clock


def test_failed_batch_marks_rows_error_and_the_run_goes_on(sandbox, tmp_path):
    with sandbox.client(cache_dir=tmp_path, max_retries=1, retry_backoff=(0.001, 0.01), concurrency=1) as client:
        sandbox.inject("500", "500", path="people/bulk_match")  # the first batch fails twice: out of retries
        frame = leads_frame(sandbox, n=25)
        result = frame.apollo.enrich_people(client=client, progress=False)
    status = result["apollo_status"]
    assert (status.iloc[:10] == "error").all()
    assert result["apollo_error"].iloc[0].startswith("Apollo answered 500")
    assert (status.iloc[10:25] == "matched").all()
    assert result.attrs["apollo"]["errors"] == 11  # the 10 rows of the failed batch and the duplicate of its first


def test_bad_key_stops_the_run_with_authentication_error(sandbox, tmp_path):
    with sandbox.client(api_key="wrong-key-000000000000", cache_dir=tmp_path) as client:
        with pytest.raises(af.AuthenticationError, match="APOLLO_API_KEY"):
            leads_frame(sandbox, n=5).apollo.enrich_people(client=client, progress=False)


def test_budget_caps_spend_and_a_rerun_finishes_without_paying_twice(sandbox, client):
    frame = leads_frame(sandbox, n=60)
    with pytest.warns(UserWarning, match="skipped"):
        partial = frame.apollo.enrich_people(client=client, progress=False, max_credits=25)
    stats = partial.attrs["apollo"]
    assert sandbox.credits_consumed <= 25 and stats["credits_consumed"] == sandbox.credits_consumed
    assert stats["skipped"] > 0
    skipped = partial[partial["apollo_status"] == "skipped"]
    assert skipped["apollo_error"].str.contains("budget").all()

    finished = frame.apollo.enrich_people(client=client, progress=False, max_credits=1000)
    assert (finished["apollo_status"].isin(["matched", "no_match", "invalid"])).all()
    assert sandbox.credits_consumed == 60  # every person paid exactly once across both runs


def test_zero_budget_sends_nothing(sandbox, client):
    with pytest.warns(UserWarning):
        result = leads_frame(sandbox, n=5).apollo.enrich_people(client=client, progress=False, max_credits=0)
    assert bulk_calls(sandbox) == 0 and (result["apollo_status"].isin(["skipped", "invalid"])).all()


def test_key_never_lands_on_disk(sandbox, tmp_path):
    with sandbox.client(cache_dir=tmp_path / "cache") as client:
        result = leads_frame(sandbox, n=20).apollo.enrich_people(client=client, progress=False)
    result.to_parquet(tmp_path / "out.parquet")
    needle = DEFAULT_API_KEY.encode()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and len(files) > 1
    for path in files:
        assert needle not in path.read_bytes(), path


def test_parquet_schema_is_stable_across_different_runs(sandbox, client, tmp_path):
    a = leads_frame(sandbox, n=10).apollo.enrich_people(client=client, progress=False)
    b = pd.DataFrame({"Email": ["nobody@nowhere.example"]}).apollo.enrich_people(client=client, progress=False)
    person_cols = [c for c in a.columns if c.startswith(("person.", "apollo_"))]
    assert person_cols == [c for c in b.columns if c.startswith(("person.", "apollo_"))]
    a[person_cols].reset_index(drop=True).to_parquet(tmp_path / "a.parquet")
    b[person_cols].reset_index(drop=True).to_parquet(tmp_path / "b.parquet")
    assert pq.read_schema(tmp_path / "a.parquet").remove_metadata() == pq.read_schema(tmp_path / "b.parquet").remove_metadata()
    both = pd.concat([pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")])
    assert len(both) == len(a) + len(b)


def test_enrich_orgs_joins_on_domain_and_dedupes_spellings(sandbox, client):
    orgs = sandbox.world.orgs[:12]
    domains = [o["primary_domain"] for o in orgs]
    frame = pd.DataFrame(
        {
            "Website": [f"https://www.{d.upper()}/about?x=1" for d in domains]
            + [domains[0], "no-such-company-zz.example", "", None, "not a domain"],
        }
    )
    result = frame.apollo.enrich_orgs(client=client, progress=False)
    assert list(result["org.primary_domain"].iloc[:12]) == domains
    assert list(result["org.id"].iloc[:12]) == [o["id"] for o in orgs]
    assert result["apollo_status"].tolist()[12:] == ["matched", "no_match", "invalid", "invalid", "invalid"]
    stats = result.attrs["apollo"]
    assert stats["unique_inputs"] == 13 and stats["api_calls"] == 2 == bulk_calls(sandbox, "organizations/bulk_enrich")
    assert stats["credits_consumed"] == 12 == sandbox.credits_consumed


def test_columns_override_and_unknown_target(sandbox, client):
    person = people_with_email(sandbox, 1)[0]
    frame = pd.DataFrame({"contact mail": [person["email"]]})
    result = frame.apollo.enrich_people(columns={"contact mail": "email"}, client=client, progress=False)
    assert result["person.id"].iloc[0] == person["id"]
    with pytest.raises(ValueError, match="email"):
        frame.apollo.enrich_people(columns={"contact mail": "emial"}, client=client, progress=False)


def test_name_and_domain_identify_a_person(sandbox, client):
    person = people_with_email(sandbox, 1, start=3)[0]
    frame = pd.DataFrame(
        {
            "first_name": [person["first_name"]],
            "last_name": [person["last_name"]],
            "domain": ["https://" + person["organization"]["primary_domain"]],
        }
    )
    result = frame.apollo.enrich_people(client=client, progress=False)
    assert result["apollo_status"].iloc[0] == "matched" and result["person.id"].iloc[0] == person["id"]


@pytest.mark.parametrize(
    "frame, expect",
    [
        (pd.DataFrame({"email": pd.Series([], dtype=object)}), "empty"),
        (pd.DataFrame({"colour": ["red"]}), "no-columns"),
        (pd.DataFrame([["a@b.example", "c@d.example"]], columns=["email", "email"]), "dup-columns"),
    ],
)
def test_bad_frames_give_clear_answers(client, sandbox, frame, expect):
    if expect == "empty":
        result = frame.apollo.enrich_people(client=client, progress=False)
        assert len(result) == 0 and "apollo_status" in result.columns and "person.id" in result.columns
        assert bulk_calls(sandbox) == 0
    else:
        with pytest.raises(ValueError) as info:
            frame.apollo.enrich_people(client=client, progress=False)
        assert ("email" in str(info.value)) if expect == "dup-columns" else ("recogni" in str(info.value).lower())


def test_odd_values_get_a_status_each(sandbox, client):
    person = people_with_email(sandbox, 1)[0]
    values = [person["email"], 42, 3.5, None, np.nan, pd.NA, "x" * 10_000, "Zoë.Łukasz@example.example", True]
    frame = pd.DataFrame({"email": pd.Series(values, dtype=object, index=[7, 7, 7, 8, 8, 9, 9, 9, 10])})
    result = frame.apollo.enrich_people(client=client, progress=False)
    assert len(result) == len(frame) and list(result.index) == list(frame.index)
    assert result["apollo_status"].iloc[0] == "matched"
    assert result["apollo_status"].notna().all()
    invalid = result[result["apollo_status"] == "invalid"]
    assert len(invalid) >= 6 and invalid["apollo_error"].notna().all()
    assert "too long" in result["apollo_error"].iloc[6]


def test_runs_inside_a_running_event_loop(sandbox, client):
    frame = leads_frame(sandbox, n=5)

    async def cell():
        return frame.apollo.enrich_people(client=client, progress=False)

    result = asyncio.run(cell())
    assert (result["apollo_status"].iloc[:5] == "matched").all()


def test_enrich_over_real_loopback_http(sandbox, tmp_path):
    with sandbox.serve() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        with ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=tmp_path, plan="paid") as client:
            result = leads_frame(sandbox, n=15).apollo.enrich_people(client=client, progress=False)
    assert (result["apollo_status"].iloc[:15] == "matched").all()
    assert result.attrs["apollo"]["api_calls"] == 2


def test_plain_functions_work_without_the_accessor(sandbox, client):
    frame = leads_frame(sandbox, n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = af.enrich_people(frame, client=client, progress=False)
    assert result.attrs["apollo"]["matched"] == 4  # three people and the duplicate of the first


def test_confirm_over_refuses_in_a_non_interactive_run(sandbox, client):
    frame = leads_frame(sandbox, n=30)
    with pytest.raises(af.BudgetExceededError, match="confirm_over"):
        frame.apollo.enrich_people(client=client, progress=False, confirm_over=10)
    assert bulk_calls(sandbox) == 0
    capped = frame.apollo.enrich_people(client=client, progress=False, confirm_over=10, max_credits=10)
    assert capped.attrs["apollo"]["credits_consumed"] <= 10


def test_failed_batches_stay_in_the_ledger_in_doubt(sandbox, tmp_path):
    with sandbox.client(cache_dir=tmp_path, max_retries=0, concurrency=1) as client:
        sandbox.inject("500", path="people/bulk_match")
        result = leads_frame(sandbox, n=15).apollo.enrich_people(client=client, progress=False)
        rows = client.ledger.frame()
    run = rows[rows["run_id"] == result.attrs["apollo"]["run_id"]]
    # a 500 may have been run (and charged) before it failed: in doubt at its worst case, 1 per record
    assert run["status"].tolist() == ["in_doubt", "settled"] and run["credits"].iloc[0] == 10
    assert result.attrs["apollo"]["credits_in_doubt"] == 10
    settled = run[run["status"] == "settled"]
    assert settled["credits"].sum() == result.attrs["apollo"]["credits_consumed"] == sandbox.credits_consumed
    assert client.ledger.match_rate("enrich_people")[1] == 6  # only the answered batch counts towards the rate


def test_re_enriching_an_enriched_frame_costs_nothing(sandbox, client):
    first = leads_frame(sandbox, n=25).apollo.enrich_people(client=client, progress=False)
    calls, credits = bulk_calls(sandbox), sandbox.credits_consumed
    again = first.apollo.enrich_people(client=client, progress=False)  # carries person.id now
    assert bulk_calls(sandbox) == calls and sandbox.credits_consumed == credits
    assert again.attrs["apollo"]["api_calls"] == 0
    assert again["person.id"].tolist() == first["person.id"].tolist()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"max_credits": float("nan")}, ValueError, "max_credits"),
        ({"max_credits": True}, ValueError, "max_credits"),
        ({"max_credits": -1}, ValueError, "max_credits"),
        ({"confirm_over": "5"}, ValueError, "confirm_over"),
        ({"refresh": "no"}, TypeError, "refresh"),
        ({"progress": "no"}, TypeError, "progress"),
        ({"columns": ["Email"]}, ValueError, "columns="),
        ({"client": "x"}, TypeError, "client"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(sandbox, client, kwargs, error, words):
    kwargs = {"client": client, **kwargs}
    with pytest.raises(error, match=words):
        leads_frame(sandbox, n=3).apollo.enrich_people(**kwargs)
    assert bulk_calls(sandbox) == 0


def test_a_name_without_company_says_what_is_missing(client):
    frame = pd.DataFrame({"first_name": ["John"], "last_name": ["Smith"]})
    result = frame.apollo.enrich_people(client=client, progress=False)
    assert result["apollo_status"].iloc[0] == "invalid"
    assert "add a domain or organization_name" in result["apollo_error"].iloc[0]
