"""The one summary base (enrichment, search, push) and the one "is someone watching" test."""

from __future__ import annotations

import io
import sys

import pytest

from apollo_frames.engine.progress import interactive
from apollo_frames.engine.summary import RunSummary
from apollo_frames.ops.push import PushSummary
from apollo_frames.ops.search import SearchSummary


def test_merge_adds_chunk_counters_but_not_time_or_text():
    total = RunSummary(operation="enrich_people", run_id="r1", elapsed_s=9.0)
    total.merge(RunSummary(operation="x", rows=10, matched=7, credits_consumed=7.0, elapsed_s=1.0, run_id="r2"))
    total.merge(RunSummary(operation="x", rows=5, matched=1, skipped=4, credits_consumed=1.5, skipped_credits_max=4))
    assert (total.rows, total.matched, total.skipped, total.credits_consumed) == (15, 8, 4, 8.5)
    assert total.skipped_credits_max == 4 and total.elapsed_s == 9.0
    assert total.operation == "enrich_people" and total.run_id == "r1"


def test_merge_takes_a_to_dict_and_leaves_flags_alone():
    total = PushSummary(operation="push_contacts", mode="insert", dry_run=True)
    part = PushSummary(operation="push_contacts", mode="insert", dry_run=True, rows=3, would_create=2, duplicate=1)
    total.merge(part.to_dict()).merge({**part.to_dict(), "output": "ignored.parquet"})
    assert (total.rows, total.would_create, total.duplicate, total.dry_run) == (6, 4, 2, True)


def test_merge_counts_an_optional_counter_from_none():
    total = SearchSummary(operation="search_people_by_row")
    total.merge(SearchSummary(operation="search_people_by_row", rows=4, results=9, truncated=True))
    assert total.rows == 4 and total.results == 9 and total.truncated is False


def test_from_dict_ignores_the_keys_a_file_run_adds():
    summary = RunSummary(operation="enrich_orgs", rows=3, matched=2)
    again = RunSummary.from_dict({**summary.to_dict(), "output": "o.parquet", "chunks": 1})
    assert again == summary and again.line() == summary.line()


def test_repr_is_the_line_and_html_shows_yes_no():
    push = PushSummary(operation="push_contacts", mode="upsert", dry_run=True, rows=2, would_create=2)
    assert repr(push) == f"PushSummary({push.line()})" and "dry run" in push.line()
    page = push._repr_html_()
    assert "<b>push_contacts (upsert)</b>" in page and "<th style='text-align:left'>dry_run</th><td style='text-align:right'>yes</td>" in page
    assert "would_create" in page and "bulk_calls" not in page and "run_id" not in page

    search = SearchSummary(operation="search_orgs", results=1200, truncated=False, query={"q": 1})
    page = search._repr_html_()
    assert ">no<" in page and ">1,200<" in page and "query" not in page and "unique_queries" not in page
    assert "rows" not in search.to_dict() and "query" in search.to_dict()

    run = RunSummary(operation="enrich_people", rows=1000, credits_consumed=2.5)
    assert repr(run).startswith("RunSummary(enrich_people: 1,000 rows") and "2.5 credits" in run.line()
    assert "skipped_credits_max" not in run._repr_html_()


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Closed(io.StringIO):
    def isatty(self):
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize("stream, expected", [(None, False), (io.StringIO(), False), (Terminal(), True), (Closed(), False)])
def test_someone_is_watching_a_terminal_stream(monkeypatch, stream, expected):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert interactive(stream) is expected


def test_the_run_summary_shows_a_match_rate_line():
    run = RunSummary(operation="enrich_people", rows=10, matched=6, no_match=2, invalid=2)
    assert run.match_rate == 0.75 and "| match rate 75% of rows answered |" in run.line()
    assert "match rate (of rows answered)</th><td style='text-align:right'>75%" in run._repr_html_()
    assert RunSummary(operation="x", rows=3, invalid=3).match_rate is None
    assert "match rate" not in RunSummary(operation="x", rows=3, invalid=3).line()
