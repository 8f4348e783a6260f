"""Polars: ``pl.DataFrame.apollo`` gives the pandas path's columns, statuses and values, in Polars dtypes."""

from __future__ import annotations

import inspect

import pandas as pd
import polars as pl
import pytest
from frames import PER_RUN, answers

import apollo_frames as af
import apollo_frames.polars as afp
from apollo_frames.sandbox import Sandbox


def people_rows(sb: Sandbox, n: int) -> list[dict]:
    found = [p for p in sb.world.people if p.get("email")][:n]
    rows = [{"Email": p["email"], "First Name": p["first_name"], "n": i} for i, p in enumerate(found + found[:3])]
    rows.append({"Email": "not an email", "First Name": "Nobody", "n": 99})
    return rows


def domains(sb: Sandbox, n: int) -> list[str]:
    found = [o["website_url"].split("//")[-1].removeprefix("www.") for o in sb.world.orgs if o.get("website_url")]
    return sorted(set(found))[:n]


def same(pandas_result: pd.DataFrame, polars_result: pl.DataFrame) -> None:
    """Equal columns (names and order), statuses and values; Polars' own dtypes for the new columns."""
    assert list(pandas_result.columns) == polars_result.columns
    assert pl.from_pandas(answers(pandas_result).reset_index(drop=True)).equals(polars_result.drop(PER_RUN, strict=False))


def test_enrich_people_matches_the_pandas_path(sandbox, tmp_path):
    rows = people_rows(sandbox, 15)
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        result = pl.DataFrame(rows).apollo.enrich_people(client=c, progress=False)
        summary = pl.DataFrame().apollo.last_summary
        credits = sandbox.credits_consumed
        expected = pd.DataFrame(rows).apollo.enrich_people(client=c, progress=False)  # from the cache now
    same(expected, result)
    assert credits == 15 and sandbox.credits_consumed == 15
    assert result["apollo_status"].to_list() == ["matched"] * 18 + ["invalid"]
    assert result.schema["apollo_status"] == pl.String and result.schema["n"] == pl.Int64
    assert result.schema["person.organization.estimated_num_employees"] == pl.Int64
    assert result.schema["person.revealed_for_current_team"] == pl.Boolean
    assert summary is not None and summary["matched"] == 18 and summary["credits_consumed"] == 15
    counts = ("rows", "unique_inputs", "matched", "no_match", "invalid", "errors", "skipped", "columns")
    assert {k: summary[k] for k in counts} == {k: expected.attrs["apollo"][k] for k in counts}


def test_enrich_orgs_and_a_lazy_frame(sandbox, tmp_path):
    rows = [{"domain": d} for d in domains(sandbox, 6)] + [{"domain": ""}]
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        result = pl.LazyFrame(rows).apollo.enrich_orgs(client=c, progress=False)
        expected = af.enrich_orgs(pd.DataFrame(rows), client=c, progress=False)
    assert isinstance(result, pl.DataFrame)  # a LazyFrame is collected
    same(expected, result)
    assert result["apollo_status"].to_list() == list(expected["apollo_status"])


def test_search_and_push_come_back_as_polars(sandbox, tmp_path):
    people = pl.DataFrame([{"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}])
    queries = pl.DataFrame([{"domain": d} for d in domains(sandbox, 2)])
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        pushed = people.apollo.push_contacts(client=c, dry_run=True, progress=False)
        expected_push = af.push_contacts(people.to_pandas(), client=c, dry_run=True, progress=False)
        found = queries.apollo.search(kind="orgs", client=c, progress=False, max_results_per_row=3)
        expected_search = af.search_frame(queries.to_pandas(), kind="orgs", client=c, progress=False,
                                          max_results_per_row=3)
    same(expected_push, pushed)
    same(expected_search, found)
    assert afp.last_summary() is not None and afp.last_summary()["operation"] == expected_search.attrs["apollo"][
        "operation"]


def test_estimate_and_columns_answer_as_pandas_does(sandbox, tmp_path):
    rows = people_rows(sandbox, 5)
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        found = pl.DataFrame(rows).apollo.estimate(operation="enrich_people", client=c)
        expected = pd.DataFrame(rows).apollo.estimate(operation="enrich_people", client=c)
    assert found.to_dict() == expected.to_dict() and sandbox.count() == 0
    mapping = pl.LazyFrame(rows).apollo.columns(operation="enrich_people")
    assert mapping.to_dict() == af.columns(pd.DataFrame(rows)).to_dict() == {"first_name": ["First Name"],
                                                                             "email": ["Email"]}


def test_methods_are_the_pandas_functions(sandbox):
    ns = pl.DataFrame({"Email": ["a@b.example"]}).apollo
    for name, function in (("enrich_people", af.enrich_people), ("push_accounts", af.push_accounts),
                           ("estimate", af.estimate)):
        method = getattr(ns, name)
        assert method.__doc__ == function.__doc__
        assert list(inspect.signature(method).parameters) == list(inspect.signature(function).parameters)[1:]
    with pytest.raises(TypeError, match="colour"):
        ns.enrich_people(colour="red")
    with pytest.raises(TypeError, match="Polars DataFrame"):
        afp.enrich(pd.DataFrame({"Email": ["a@b.example"]}))


def test_suppressed_rows_end_suppressed_as_in_pandas(sandbox, tmp_path):
    """Issue 25: suppress= and the cache folder's list apply to the Polars enrichments and searches alike."""
    rows = people_rows(sandbox, 15)
    gone = [rows[0]["Email"], rows[4]["Email"].upper()]
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        af.suppress([rows[1]["Email"]], client=c)
        result = pl.DataFrame(rows).apollo.enrich_people(client=c, progress=False, suppress=gone)
        summary = afp.last_summary()
        expected = af.enrich_people(pd.DataFrame(rows), client=c, progress=False, suppress=gone)
        orgs = pl.DataFrame({"domain": domains(sandbox, 3)}).apollo.search(
            kind="orgs", client=c, progress=False, suppress=domains(sandbox, 3)[:1])
    blocked = [i for i, r in enumerate(rows) if r["Email"].lower() in {g.lower() for g in gone} | {rows[1]["Email"]}]
    assert len(blocked) == 5  # (rows 0 and 1 come back at the end: the frame repeats its first three people)
    assert [i for i, s in enumerate(result["apollo_status"]) if s == "suppressed"] == blocked
    assert result["apollo_status"].to_list() == expected["apollo_status"].tolist()
    assert summary["suppressed"] == 5 and result["person.id"].gather(blocked).is_null().all()
    assert afp.last_summary()["suppressed_rows"] == 1 and orgs.height == 2
