"""Every reason the library writes carries a stable code (``apollo_error_code``), and report() groups by it: a
message can be reworded without changing how its rows are grouped."""

from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core import reasons
from apollo_frames.core.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    CircuitOpenError,
    RateLimitError,
    ValidationError,
)
from apollo_frames.core.reasons import CODES, Reason, error_code, reason, tagged

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def leads(sandbox) -> pd.DataFrame:
    known = [p for p in sandbox.world.people if p.get("email")][:6]
    rows = [{"Email": p["email"], "First Name": p["first_name"], "Company": ""} for p in known]
    rows += [{"Email": "", "First Name": f"Name{i}", "Last Name": "Only", "Company": ""} for i in range(3)]
    rows += [{"Email": "not an email", "First Name": "", "Last Name": "", "Company": ""} for _ in range(2)]
    return pd.DataFrame(rows)


def _groups(result: pd.DataFrame) -> list[tuple[str, str | None, str, int, tuple]]:
    return [(g.status, g.code, g.reason, g.count, g.examples) for g in af.report(result).groups]


def test_every_reason_written_carries_a_code(leads, client):
    result = leads.apollo.enrich_people(client=client, progress=False)
    has_reason = result["apollo_error"].notna()
    assert has_reason.sum() >= 5
    assert result.loc[has_reason, "apollo_error_code"].isin(list(CODES)).all()
    assert result.loc[~has_reason, "apollo_error_code"].isna().all()
    assert set(result["apollo_error_code"].dropna()) == {"name_without_company", "no_identifier"}


def test_report_groups_by_code_so_a_reworded_message_groups_the_same(leads, client, monkeypatch):
    before = leads.apollo.enrich_people(client=client, progress=False)
    monkeypatch.setitem(CODES, "name_without_company", dataclasses.replace(
        CODES["name_without_company"], template="nobody to look up from a bare name{problems}"))
    monkeypatch.setitem(CODES, "no_identifier", dataclasses.replace(
        CODES["no_identifier"], template="cannot tell who this is{problems}"))
    after = leads.apollo.enrich_people(client=client, progress=False)
    reworded = after["apollo_error"].dropna()
    assert reworded.str.startswith(("nobody to look up", "cannot tell who")).all()  # the texts did change
    assert not set(reworded) & set(before["apollo_error"].dropna())
    assert _groups(after) == _groups(before)  # and the groups did not
    assert {g.reason for g in af.report(after).groups} == {CODES["name_without_company"].what,
                                                          CODES["no_identifier"].what}


def test_report_reads_the_code_column_not_the_text():
    frame = pd.DataFrame({"apollo_status": ["skipped", "skipped", "matched"],
                          "apollo_error": ["reworded entirely", "something else again", None],
                          "apollo_error_code": ["budget_reached", "budget_reached", None]})
    (group,) = af.report(frame).groups
    assert (group.code, group.count, group.reason, group.fix) == (
        "budget_reached", 2, CODES["budget_reached"].what, CODES["budget_reached"].fix)


def test_a_file_run_writes_the_codes(leads, client, tmp_path):
    src = tmp_path / "in.parquet"
    leads.to_parquet(src)
    af.enrich_parquet(src, dst=tmp_path / "out.parquet", client=client, progress=False, chunk_rows=4)
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert written["apollo_error_code"].dropna().isin(["name_without_company", "no_identifier"]).all()
    assert written["apollo_error_code"].notna().sum() == written["apollo_error"].notna().sum()


@pytest.mark.parametrize("error, code", [
    (RateLimitError("slow down", path="p"), "rate_limited"),
    (CircuitOpenError("breaker", path="p"), "circuit_open"),
    (APITimeoutError("late", path="p"), "timeout"),
    (APIConnectionError("refused", path="p"), "connection_failed"),
    (AuthenticationError("key", status_code=401, path="p"), "auth_refused"),
    (ValidationError("bad", status_code=422, path="p"), "request_refused"),
])
def test_a_failed_request_is_coded_by_what_failed_never_by_its_words(error, code):
    assert error_code(error) == code


def test_a_reason_is_its_text_and_keeps_its_code_through_pickle():
    made = reason("no_domain", why="'n/a' is not a domain")
    assert made == "no usable domain: 'n/a' is not a domain" and made.code == "no_domain"
    assert pickle.loads(pickle.dumps(made)).code == "no_domain"
    assert reasons.joined(made, "a note").code == "no_domain"
    with pytest.raises(KeyError):
        Reason("no_such_code", "x")
    assert tagged("suppressed", "x").code == "suppressed"


def test_the_readme_lists_every_code():
    table = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert documented == set(CODES)
