"""An analyst's first hour (issue 14): no key, a dead network, files as analysts keep them, help, the sandbox line."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.cli import EXAMPLES, build_parser, main
from apollo_frames.client.http import client_scope, default_client
from apollo_frames.core.filters import names_for
from apollo_frames.core.reasons import failure_cause, group_reasons, tagged
from apollo_frames.core.settings import PLAN_PRESETS
from apollo_frames.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture
def people(sandbox) -> pd.DataFrame:
    known = [p for p in sandbox.world.people if p.get("email")][:12]
    rows = [{"Email": p["email"], "First Name": p["first_name"], "Company": ""} for p in known]
    rows += [{"Email": "", "First Name": f"Name{i}", "Last Name": "Only", "Company": ""} for i in range(4)]
    return pd.DataFrame(rows)


@pytest.fixture
def no_default_client():
    af.reset()
    yield
    af.reset()


# -- 1. no key, or a base URL that is not a URL: refused before anything is read or sent ------------------------------


def _keyless(sandbox: Sandbox, tmp_path: Path) -> af.ApolloClient:
    return af.ApolloClient(api_key=None, base_url="http://sandbox.invalid/api/v1", cache_dir=str(tmp_path / "c"),
                           allow_insecure_http=True, transport=httpx.WSGITransport(app=sandbox))


@pytest.mark.parametrize("call", [
    lambda frame, c: frame.apollo.enrich_people(client=c, progress=False),
    lambda frame, c: af.enrich_orgs(frame.assign(Website=frame["Email"].str.split("@").str[1]), client=c,
                                    progress=False),
    lambda frame, c: af.search_people(person_titles=["CEO"], client=c, progress=False),
    lambda frame, c: af.push_contacts(frame, client=c, progress=False),
    lambda frame, c: frame.apollo.enrich_people(progress=False),  # the client made from the environment
])
def test_no_key_raises_before_any_request(call, people, sandbox, tmp_path, no_default_client):
    with pytest.raises(af.ConfigurationError, match="No Apollo API key"):
        call(people, _keyless(sandbox, tmp_path))
    assert sandbox.requests == []


def test_no_key_streaming_run_refuses_before_opening_the_file(sandbox, tmp_path):
    missing = tmp_path / "not-there.csv"  # opening it would raise FileNotFoundError instead
    for run in (
        lambda: af.enrich_parquet(missing, dst=tmp_path / "o.parquet", client=_keyless(sandbox, tmp_path), progress=False),
        lambda: af.push_parquet(missing, dst=tmp_path / "r.parquet", client=_keyless(sandbox, tmp_path), progress=False),
    ):
        with pytest.raises(af.ConfigurationError, match="No Apollo API key"):
            run()
    assert sandbox.requests == [] and not list(tmp_path.glob("*.parquet*"))


def test_a_dry_run_push_still_needs_no_key(people, tmp_path):
    report = af.push_contacts(people, dry_run=True, progress=False)
    assert len(report) == len(people)


def test_base_url_that_is_not_a_url_is_refused(people, monkeypatch):
    with pytest.raises(af.ConfigurationError, match="base_url"):
        af.ApolloClient(api_key="k" * 20, base_url="api.apollo.io")
    monkeypatch.setenv("APOLLO_API_KEY", "k" * 20)
    monkeypatch.setenv("APOLLO_BASE_URL", "api.apollo.io/v1")
    with pytest.raises(af.ConfigurationError, match="base_url"):
        people.apollo.enrich_people(progress=False)


@pytest.mark.parametrize("env", [{}, {"APOLLO_API_KEY": "k" * 20, "APOLLO_BASE_URL": "not a url"}])
def test_cli_without_key_or_url_prints_one_line_and_exits_2(env, tmp_path, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "o.parquet"
    assert main(["enrich-people", str(SAMPLES / "people.csv"), str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ("API key" in lines[0] or "base_url" in lines[0])
    assert not out.exists() and captured.out == ""


# -- 2. a dead network names its cause, in one line -------------------------------------------------------------------


def _dead_client(tmp_path: Path) -> af.ApolloClient:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    return af.ApolloClient(api_key="k" * 20, base_url="https://api.apollo.io/api/v1", cache_dir=str(tmp_path / "c"),
                           max_retries=0, transport=httpx.MockTransport(refuse))


def test_dead_network_summary_names_host_and_failure(people, tmp_path):
    with _dead_client(tmp_path) as client:
        result = people.apollo.enrich_people(client=client, progress=False)
    summary = af.RunSummary.from_dict(result.attrs["apollo"])
    assert summary.errors == 12 and summary.cause == "could not connect to api.apollo.io (ConnectError)"
    assert summary.line().endswith("| 12 rows not done: could not connect to api.apollo.io (ConnectError)")
    assert "could not connect to api.apollo.io" in summary._repr_html_()


def test_dead_network_cli_final_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("apollo_frames.cli._client", lambda args, sandbox=None: _dead_client(tmp_path))
    out = tmp_path / "o.parquet"
    assert main(["enrich-people", str(SAMPLES / "people.csv"), str(out), "--quiet"]) == 1
    assert not out.exists() and "nothing reached the server" in capsys.readouterr().err  # no result-looking file
    assert main(["enrich-people", str(SAMPLES / "people.csv"), str(out), "--quiet", "--partial-output"]) == 1
    printed = capsys.readouterr().out
    statuses = pd.read_parquet(tmp_path / "o.partial.parquet")["apollo_status"].value_counts()
    not_done = int(statuses["error"] + statuses.get("skipped", 0))
    assert not_done > 500  # every row but the invalid ones: a few batches error, the circuit breaker skips the rest
    assert f"{not_done:,} rows not done: could not connect to api.apollo.io (ConnectError)" in printed
    assert f"{statuses['error']:,} error rows could not connect to api.apollo.io (ConnectError): check the network" \
        in printed


def test_no_cause_when_errors_differ():
    statuses = ["error", "error", "matched"]
    reasons = [tagged("connection_failed", "Request to x failed to connect (ConnectError)"),
               tagged("server_error", "HTTP 500 oops"), None]
    assert failure_cause(statuses, reasons) == ""
    assert failure_cause(["matched"], [None]) == ""
    budget = tagged("budget_reached", "credit budget reached (max_credits=10, spent 10)")
    assert failure_cause(["skipped", "skipped"], [budget, budget]) == ""  # a stop with a message of its own


def test_cause_counts_rows_the_circuit_breaker_skipped():
    breaker = tagged("circuit_open",
                     "Apollo at h.example did not answer 5 requests in a row (failed to connect): stopped sending")
    statuses = ["error"] * 2 + ["skipped"] * 8 + ["error"]
    refused = tagged("connection_failed", "Request to p failed to connect (ConnectError) after 1 attempt(s).")
    reasons = [refused] * 2 + [breaker] * 8 + [tagged("server_error", "HTTP 500")]
    assert failure_cause(statuses, reasons, "h.example") == "could not connect to h.example (ConnectError)"
    # the codes decide, not the words: the same rows reworded count the same
    assert failure_cause(statuses, ["it broke"] * 11, "h.example", codes=[r.code for r in reasons]) == \
        "could not connect to h.example"


def test_cause_reads_no_reason_when_no_row_is_an_error():
    """A run without an error row (a cached re-run: every row matched or no_match) names no cause without reading
    its reasons row by row."""

    class Unread(list):
        def __iter__(self):
            raise AssertionError("reasons read")

    assert failure_cause(["matched", "skipped", "no_match"], Unread([None, "budget", None])) == ""
    with pytest.raises(AssertionError, match="reasons read"):  # (a row in error: they are read)
        failure_cause(["error", "skipped"], Unread(["x", "y"]))


# -- 7. why rows failed, grouped; 8. flat names ------------------------------------------------------------------------


def test_report_groups_reasons_with_counts_examples_and_fix(people, client):
    result = people.apollo.enrich_people(client=client, progress=False)
    found = result.apollo.report()
    by_reason = {g.reason: g for g in found.groups}
    name_only = by_reason["have a name but no company"]
    assert name_only.count == 4 and name_only.status == "invalid"
    assert name_only.examples == (12, 13, 14) and "add a Company" in (name_only.fix or "")
    assert found.statuses["invalid"] == 4 and sum(found.statuses.values()) == len(people)
    assert "4 invalid rows have a name but no company: add a Company" in repr(found)
    assert "<table>" in found._repr_html_() and len(found.to_frame()) == len(found.groups)


def test_group_reasons_folds_line_numbers():
    reasons = ["line 12: expected 9 columns, got 1", "line 13: expected 9 columns, got 1", None]
    groups = group_reasons(["invalid", "invalid", "matched"], reasons, ["a", "b", "c"])
    assert len(groups) == 1 and groups[0].count == 2 and groups[0].examples == ("a", "b")
    assert groups[0].sample == "line 12: expected 9 columns, got 1"


def test_flat_gives_snake_case_names_for_query(people, client):
    result = people.apollo.enrich_people(client=client, progress=False)
    flat = result.apollo.flat()
    assert "person.title" in result.columns and "person_title" in flat.columns and "first_name" in flat.columns
    assert len(flat.query("apollo_status == 'matched'")) == int((result["apollo_status"] == "matched").sum())
    assert len(af.flat(pd.DataFrame([[1, 2]], columns=["a.b", "a b"])).columns.unique()) == 2


# -- 6. one line to try it in a notebook ------------------------------------------------------------------------------


def test_use_sandbox_is_the_session_default_until_reset(people, tmp_path, no_default_client):
    client = af.use_sandbox(cache_dir=tmp_path / "c")
    assert default_client() is client
    people = pd.read_csv(SAMPLES / "people.csv", dtype=str).head(40)
    first = people.apollo.enrich_people(progress=False)
    assert first.attrs["apollo"]["matched"] > 20
    with client_scope() as a, client_scope() as b:
        assert a is b is client  # one client: its rate-limit state lasts between cells
    again = people.apollo.enrich_people(progress=False)
    assert again.attrs["apollo"]["cache_hits"] == again.attrs["apollo"]["unique_inputs"]
    af.reset()
    assert default_client() is None
    with pytest.raises(af.ConfigurationError, match="No Apollo API key"):
        people.apollo.enrich_people(progress=False)


# -- 5. estimates that fit the user; help with examples ----------------------------------------------------------------


def test_estimate_plan_is_used_and_named(people, tmp_path):
    client = af.ApolloClient(api_key=None, base_url="https://sandbox.invalid/api/v1", cache_dir=str(tmp_path / "c"))
    free = people.apollo.estimate(operation="enrich_people", client=client)
    paid = people.apollo.estimate(operation="enrich_people", client=client, plan="paid")
    assert paid.limits == dict(zip(("minute", "hour", "day"), PLAN_PRESETS["paid"], strict=True))
    assert "plan preset paid" in paid.limits_source and "plan='paid'" in paid.limits_source
    assert "pass plan='paid'" in free.duration_assumption and "pass plan" not in paid.duration_assumption
    with pytest.raises(ValueError, match="plan must be one of"):
        people.apollo.estimate(operation="enrich_people", client=client, plan="gold")


def test_cli_estimate_plan(tmp_path, capsys):
    args = ["estimate", str(SAMPLES / "people.csv"), "--op", "enrich-people", "--sandbox", "--cache-dir", str(tmp_path)]
    assert main(args + ["--plan", "paid"]) == 0
    assert "plan preset paid" in capsys.readouterr().out


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_help_has_a_description_and_an_example():
    commands = _subcommands()
    assert {"enrich-people", "enrich-orgs", "search-orgs", "demo", "notebooks"} <= set(commands)
    for name, p in commands.items():
        text = p.format_help()
        assert p.description, f"{name}: no description"
        assert name in EXAMPLES, f"{name}: add its examples to cli.EXAMPLES"
        assert "examples:" in text and f"apollo-frames {name}" in text, f"{name}: no example in --help"


def test_search_orgs_examples_use_organisation_filters():
    p = _subcommands()["search-orgs"]
    used = [part.split("=")[0] for part in EXAMPLES["search-orgs"].split() if "=" in part]
    assert used and all(name in names_for("orgs") for name in used)
    assert "person_titles" not in p.format_help()


def test_enrich_people_takes_reveal_and_confirm_flags(tmp_path, capsys):
    out = tmp_path / "o.parquet"
    base = ["enrich-people", str(SAMPLES / "people.csv"), str(out), "--sandbox", "--quiet",
            "--cache-dir", str(tmp_path)]
    assert main(base + ["--confirm-over", "1"]) == 1  # nobody can confirm here: refused, nothing sent
    assert "--confirm-over" in capsys.readouterr().err and not out.exists()
    assert main(base + ["--reveal-personal-emails", "--max-credits", "5"]) == 5  # rows past the budget left skipped
    assert "credits" in capsys.readouterr().out
    assert main(base + ["--reveal-phone-number", "--max-credits", "20"]) == 5  # without a webhook: polled; the budget leaves rows
    assert "apollo_request_id" in pd.read_parquet(out).columns
    assert "--reveal-phone-number" not in _subcommands()["enrich-orgs"].format_help()


# -- 3. files as analysts keep them -----------------------------------------------------------------------------------


def test_xlsx_in_csv_and_xlsx_out(tmp_path, capsys):
    source = pd.read_csv(SAMPLES / "companies.csv", dtype=str).head(40)
    workbook = tmp_path / "companies.xlsx"
    source.to_excel(workbook, index=False)
    for out in (tmp_path / "out.csv", tmp_path / "out.xlsx"):
        assert main(["enrich-orgs", str(workbook), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path)]) == 0
        back = pd.read_csv(out, dtype=str) if out.suffix == ".csv" else pd.read_excel(out, dtype=str)
        assert len(back) == len(source) and list(back.columns[:2]) == list(source.columns)
        assert (back["apollo_status"] == "matched").sum() > 20 and "org.name" in back.columns
        assert not list(tmp_path.glob(".out*")) and not list(tmp_path.glob("*.partial"))
    assert "wrote" in capsys.readouterr().out


def test_csv_output_is_plain_text_a_crm_reads(tmp_path, client):
    frame = pd.DataFrame({"Email": ["a@b.co"], "tags": [["x", "y"]], "when": [pd.Timestamp("2026-01-02", tz="UTC")]})
    path = af.io.files.write_frame(frame, tmp_path / "o.csv")
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "Email,tags,when" and text[1] == 'a@b.co,"[""x"", ""y""]",2026-01-02 00:00:00+00:00'


def test_missing_openpyxl_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    assert main(["enrich-orgs", str(SAMPLES / "companies.csv"), str(tmp_path / "o.xlsx"), "--sandbox"]) == 2
    assert "apollo_frames[excel]" in capsys.readouterr().err


# -- 9. installed, not only cloned ------------------------------------------------------------------------------------


def test_demo_runs_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "people statuses" in printed and (tmp_path / "apollo_demo" / "people_enriched.parquet").exists()
    for name in ("people.csv", "companies.csv"):  # the samples written are the committed ones
        assert (tmp_path / "apollo_demo" / "samples" / name).read_bytes() == (SAMPLES / name).read_bytes()


def test_notebooks_command_copies_the_notebooks_and_the_data_they_read(tmp_path, capsys):
    assert main(["notebooks", str(tmp_path / "nb")]) == 0
    copied = sorted((tmp_path / "nb" / "notebooks").glob("*.ipynb"))
    assert [p.name for p in copied] == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) and copied
    for notebook in copied:  # every relative path a notebook reads is there beside it, as in the repository
        for relative in re.findall(r"\.\./data/samples/[\w.]+", notebook.read_text()):
            assert (notebook.parent / relative).read_bytes() == (ROOT / "notebooks" / relative).read_bytes()
    assert main(["notebooks", str(tmp_path / "nb")]) == 0
    assert "kept" in capsys.readouterr().out


# -- 3b. ragged and footer lines become invalid rows naming their line -------------------------------------------------

SALESFORCE = ROOT / "tests" / "fixtures" / "exports_experience" / "salesforce_leads_report.csv"
#: (file line, first cell) of the lines that do not fit the 9-column header, in file order
BAD_LINES = [(4, "Cleo"), (7, "Total"), (8, "Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."),
             (9, "Confidential Information - Do Not Distribute"), (10, "Generated By:  Jane Doe  11/29/2026, 7:02 AM"),
             (11, "Example Corp")]


def _check_bad_lines(result: pd.DataFrame) -> None:
    assert result["First Name"].tolist() == ["Ana", "Ben", "Cleo", "Dev"] + [c for _, c in BAD_LINES[1:]]
    bad = result[result["apollo_error"].fillna("").str.startswith("line ")]
    assert (bad["apollo_status"] == "invalid").all()
    expected = [f"line {n}: expected 9 columns, got {6 if n == 4 else 1}" for n, _ in BAD_LINES]
    assert bad["apollo_error"].tolist() == expected and bad["First Name"].tolist() == [c for _, c in BAD_LINES]


@pytest.mark.parametrize("chunk_rows", ["1", "3", "100"])
def test_footer_and_ragged_lines_are_invalid_rows_in_file_order(chunk_rows, tmp_path, capsys):
    out = tmp_path / "o.parquet"
    args = ["enrich-people", str(SALESFORCE), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path),
            "--chunk-rows", chunk_rows]
    assert main(args) == 0
    _check_bad_lines(pd.read_parquet(out))
    assert "6 invalid rows are ragged or footer lines of the file" in capsys.readouterr().out


def test_a_push_never_sends_a_ragged_line(tmp_path, client):
    with pytest.warns(UserWarning, match="not pushed"):
        summary = af.push_parquet(SALESFORCE, dst=tmp_path / "r.parquet", target="contacts", dry_run=True, progress=False)
    report = pd.read_parquet(tmp_path / "r.parquet")
    _check_bad_lines(report)
    assert summary["invalid"] == 6 and report["apollo_payload"][report["apollo_status"] == "invalid"].isna().all()
    assert af.estimate_file(SALESFORCE, operation="enrich_people", client=client).invalid >= 6


# -- 4. progress that moves with every request ------------------------------------------------------------------------


def test_streaming_progress_moves_with_each_request_within_one_chunk(client, sandbox, tmp_path, capsys):
    people = pd.DataFrame({"Email": [p["email"] for p in sandbox.world.people if p.get("email")][:200]})
    src = tmp_path / "people.csv"
    people.to_csv(src, index=False)
    client.meter_threshold = float("inf")  # count only the enrichment's requests (no credit-meter pre-flight read)
    af.enrich_parquet(src, dst=tmp_path / "o.parquet", client=client, chunk_rows=10_000, log_every=0)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("enrich_people: ")]
    requests = [int(line.split(" requests")[0].rsplit(", ", 1)[1].replace(",", "")) for line in lines]
    rows = [int(line.split(" rows")[0].split(": ")[1].split("/")[0].replace(",", "")) for line in lines]
    assert len(lines) >= 10 and requests == sorted(requests) and rows == sorted(rows)  # one chunk, many lines
    assert requests[-1] == client.stats.requests and rows[-1] == 200 and 0 < rows[len(rows) // 2] < 200
    assert all("ETA" in line and "credits" in line for line in lines)


def test_ledger_reports_show_times_to_the_second(people, client):
    people.apollo.enrich_people(client=client, progress=False)
    people.head(3).apollo.enrich_people(client=client, progress=False, refresh=True)
    times = af.ledger(client=client)["time"]
    runs = af.credit_summary(by="run", client=client)
    assert len(times) >= 2 and (times == times.dt.floor("s")).all()
    assert len(runs) == 2 and (runs["started"] == runs["started"].dt.floor("s")).all()
    assert runs["records_sent"].tolist() == [12, 3]  # still in the order they ran
