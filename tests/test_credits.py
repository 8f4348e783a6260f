"""Estimates, the credit ledger, the confirmation gate, and the estimate/usage commands."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import apollo_frames as af
import apollo_frames.accessor  # noqa: F401  (registers df.apollo)
from apollo_frames import ApolloClient, BudgetExceededError
from apollo_frames.cli import main
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.ratelimit import WindowReading
from apollo_frames.estimates import DEFAULT_MATCH_RATE, Estimate, confirm_spend, estimate, simulate_duration
from apollo_frames.sandbox import DEFAULT_API_KEY, SCOPED_API_KEY, Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def known_people(sandbox, n, start=0):
    found = [p for p in sandbox.world.people if p.get("email")]
    assert len(found) >= start + n, "the sandbox world is too small for this test"
    return found[start : start + n]


def org_domains(sandbox, n):
    domains = [o["website_url"].split("//")[-1].removeprefix("www.") for o in sandbox.world.orgs if o.get("website_url")]
    assert len(set(domains)) >= n, "the sandbox world is too small for this test"
    return sorted(set(domains))[:n]


def leads(sandbox, n=25, start=0):
    """n known people (one duplicated), one unknown email, one invalid row."""
    people = known_people(sandbox, n, start)
    rows = [{"Email": p["email"], "First Name": p["first_name"]} for p in people]
    rows.append({"Email": people[0]["email"].upper(), "First Name": "dup"})
    rows.append({"Email": f"nobody{start}@unknown-company.example", "First Name": "Ghost"})
    rows.append({"Email": "not an email", "First Name": "Bad"})
    return pd.DataFrame(rows)


# -- estimates against the sandbox -----------------------------------------------------------------


def test_estimate_before_and_after_a_run(sandbox, client):
    frame = leads(sandbox, 25)
    requests_before = sandbox.count()
    before = frame.apollo.estimate(operation="enrich_people", client=client)
    assert sandbox.count() == requests_before, "an estimate must send nothing"

    assert isinstance(before, Estimate)
    assert (before.rows, before.invalid, before.unique, before.cached, before.to_fetch) == (28, 1, 26, 0, 26)
    assert before.api_calls == 3 and before.credits_max == 26
    assert before.match_rate == DEFAULT_MATCH_RATE and "default" in before.match_rate_source
    assert before.credits_expected == pytest.approx(26 * DEFAULT_MATCH_RATE)
    assert before.duration_s > 0

    result = frame.apollo.enrich_people(client=client, progress=False)
    spent = result.attrs["apollo"]["credits_consumed"]
    assert 0 < spent <= before.credits_max
    assert spent == sandbox.credits_consumed

    requests_mid = sandbox.count()
    after = estimate(frame, operation="enrich_people", client=client)
    assert sandbox.count() == requests_mid
    assert after.cached == after.unique == 26
    assert (after.to_fetch, after.api_calls, after.credits_max, after.credits_expected) == (0, 0, 0, 0)
    assert after.duration_s == 0
    # The run taught the ledger a match rate and the endpoint's real limits.
    assert after.match_rate == pytest.approx(25 / 26) and "ledger" in after.match_rate_source
    assert after.limits_source.startswith("headers seen")


def test_expected_credits_use_the_match_rate_of_earlier_runs(sandbox, client):
    first = leads(sandbox, 18, start=0)
    first.apollo.enrich_people(client=client, progress=False)
    history = client.ledger.match_rate("enrich_people")
    assert history is not None
    rate, records = history
    assert records == 19 and rate == pytest.approx(18 / 19)

    second = leads(sandbox, 30, start=40)
    est = second.apollo.estimate(operation="enrich_people", client=client)
    assert est.match_rate == pytest.approx(rate) and "19 records" in est.match_rate_source
    assert est.credits_expected == pytest.approx(round(est.credits_max * rate, 1))

    done = second.apollo.enrich_people(client=client, progress=False)
    spent = done.attrs["apollo"]["credits_consumed"]
    assert spent <= est.credits_max
    assert abs(spent - est.credits_expected) <= 3


def test_phone_reveal_is_priced_at_worst_and_cached_separately(sandbox, client):
    frame = leads(sandbox, 12)
    frame.apollo.enrich_people(client=client, progress=False)
    plain = frame.apollo.estimate(operation="enrich_people", client=client)
    phone = frame.apollo.estimate(operation="enrich_people", client=client, reveal_phone_number=True)
    assert plain.credits_max == 0
    assert phone.cached == 0 and phone.to_fetch == phone.unique == 13
    assert phone.credits_max == 13 * 9 and phone.worst_credits_per_record == 9


def test_estimate_orgs_and_bad_arguments(sandbox, client):
    domains = org_domains(sandbox, 15)
    frame = pd.DataFrame({"Website": [f"https://www.{d}/about" for d in domains] + [domains[0], "", "not a domain"]})
    est = estimate(frame, operation="enrich-orgs", client=client)
    assert (est.operation, est.rows, est.unique, est.to_fetch, est.api_calls) == ("enrich_orgs", 18, 15, 15, 2)
    assert est.credits_max == 15 and est.endpoint == "organizations/bulk_enrich"
    frame.apollo.enrich_orgs(client=client, progress=False)
    assert estimate(frame, operation="enrich_orgs", client=client).credits_max == 0

    with pytest.raises(ValueError, match="no estimate for operation"):
        estimate(frame, operation="push_contacts", client=client)
    with pytest.raises(TypeError, match="reveal_phone_number"):
        estimate(frame, operation="enrich_orgs", client=client, reveal_phone_number=True)


def test_estimate_repr_html_and_frame(sandbox, client):
    est = leads(sandbox, 5).apollo.estimate(operation="enrich_people", client=client)
    text = repr(est)
    assert text.splitlines()[0] == "Estimate enrich_people (nothing sent)"
    for label in ("rows", "unique records", "api calls", "credits max", "credits expected", "duration"):
        assert label in text
    assert "plan preset paid" in text and "requests in flight" in text
    assert "<table>" in est._repr_html_() and "credits max" in est._repr_html_()
    row = est.to_frame()
    assert len(row) == 1 and row.loc[0, "to_fetch"] == est.to_fetch
    assert row.loc[0, "limit_minute"] == 1000 and pd.isna(row.loc[0, "limit_day"])


def test_a_run_longer_than_a_day_when_the_daily_limit_binds(sandbox, tmp_path):
    frame = pd.DataFrame({"email": [f"lead{i}@prospect-{i % 97}.example" for i in range(10_000)]})
    with sandbox.client(cache_dir=tmp_path / "c", rate_limits=(1000, None, 600)) as c:
        est = estimate(frame, operation="enrich_people", client=c)
    assert est.api_calls == 1_000 and est.limits == {"minute": 1000, "hour": None, "day": 600}
    assert est.limits_source == "client rate_limits setting"
    assert 86_400 < est.duration_s < 2 * 86_400
    assert " d " in repr(est)  # shown in days and hours
    assert sandbox.count() == 0

    with sandbox.client(cache_dir=tmp_path / "c", plan="free") as c:
        free = estimate(frame, operation="enrich_people", client=c)
    assert free.limits_source == "plan preset free" and free.limits == {"minute": 50, "hour": 200, "day": 600}
    assert free.duration_s > est.duration_s > 86_400


def test_duration_simulation():
    assert simulate_duration(0, {"minute": 1}, concurrency=4) == 0
    # No binding limit: latency and concurrency only.
    assert simulate_duration(40, {"minute": 1000}, concurrency=4, latency_s=1.0) == 10
    # 20 a minute: 100 calls need four resets of the minute window.
    assert 4 * 60 <= simulate_duration(100, {"minute": 20, "hour": 100}, concurrency=4) < 5 * 60
    # The hour binds after 100.
    assert 3600 <= simulate_duration(101, {"minute": 20, "hour": 100}, concurrency=4) < 3700
    # A window already spent (seen in headers) waits for its reset first.
    assert simulate_duration(1, {"day": 600}, concurrency=4, left={"day": (0, 5000.0)}) == 5001


def test_ledger_total_equals_reported_and_charged_credits(sandbox, client):
    people = leads(sandbox, 31)
    with pytest.warns(UserWarning, match="skipped: credit budget reached"):
        first = people.apollo.enrich_people(client=client, progress=False, max_credits=12)
    assert first.attrs["apollo"]["credits_consumed"] <= 12 and first.attrs["apollo"]["skipped"] > 0
    second = people.apollo.enrich_people(client=client, progress=False)
    ledger = client.ledger
    for result in (first, second):
        info = result.attrs["apollo"]
        assert ledger.total_credits(run_id=info["run_id"]) == info["credits_consumed"]
    assert ledger.total_credits() == sandbox.credits_consumed == sum(
        r.attrs["apollo"]["credits_consumed"] for r in (first, second)
    )
    frame = af.ledger(client=client)
    assert list(frame.columns) == [
        "time", "operation", "endpoint", "records_sent", "records_matched", "credits", "http_status", "run_id",
        "status", "unverified",
    ]
    assert (frame["status"] == "settled").all()
    assert not frame["unverified"].any()  # the sandbox reports believable figures
    assert str(frame["time"].dt.tz) == "UTC" and frame["credits"].sum() == sandbox.credits_consumed
    assert (frame["endpoint"] == "people/bulk_match").all() and (frame["http_status"] == 200).all()
    assert frame["records_sent"].sum() == 32  # every unique record, sent once over the two runs
    assert af.ledger(since=pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1), client=client).empty
    assert len(af.ledger(since=pd.Timedelta(hours=1), client=client)) == len(frame)


def test_credit_summary_by_day_operation_and_run(sandbox, client):
    leads(sandbox, 15).apollo.enrich_people(client=client, progress=False)
    domains = org_domains(sandbox, 8)
    pd.DataFrame({"domain": domains}).apollo.enrich_orgs(client=client, progress=False)
    total = sandbox.credits_consumed

    by_op = af.credit_summary(by="operation", client=client)
    assert list(by_op["operation"]) == ["enrich_orgs", "enrich_people"]
    assert by_op["credits"].sum() == total and list(by_op["runs"]) == [1, 1]
    assert by_op.set_index("operation").loc["enrich_people", "records_sent"] == 16

    by_day = af.credit_summary(by="day", client=client)
    assert len(by_day) == 1 and by_day.loc[0, "credits"] == total and by_day.loc[0, "runs"] == 2
    assert by_day.loc[0, "day"] == pd.Timestamp.now(tz="UTC").floor("D")

    by_run = af.credit_summary(by="run", client=client)
    assert list(by_run["operation"]) == ["enrich_people", "enrich_orgs"]  # in the order they ran
    assert list(by_run.columns[:4]) == ["run_id", "operation", "started", "ended"]
    assert 0 < by_run.loc[0, "match_rate"] <= 1

    with pytest.raises(ValueError, match="by must be one of"):
        af.credit_summary(by="week", client=client)
    empty = af.credit_summary(by="run", client=sandbox.client(cache_dir=client.settings.cache_dir / "x"))
    assert empty.empty and "credits" in empty.columns


def test_plot_credits(sandbox, client, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    leads(sandbox, 12).apollo.enrich_people(client=client, progress=False)
    ax = af.plot_credits(client=client)
    line = ax.get_lines()[0]
    assert line.get_ydata()[-1] == sandbox.credits_consumed
    ax.figure.canvas.draw()  # ticks read as clock times, never as fractions of a second
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3 and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in labels), labels
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'apollo_frames\[plot\]'"):
        af.plot_credits(client=client)


# -- the ledger on its own ---------------------------------------------------------------------------


def test_ledger_limits_and_match_rate(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.match_rate("enrich_people") is None and ledger.limits() == {}
        ledger.note_limits("people/bulk_match", {})  # no headers: nothing to learn
        assert ledger.limits() == {}
        ledger.note_limits("people/bulk_match", {"minute": WindowReading(20, 3, 17)})
        seen = ledger.limits()["people/bulk_match"]
        assert (seen["minute"]["limit"], seen["minute"]["left"], seen["minute"]["source"]) == (20, 17, "headers")
        assert seen["day"]["limit"] is None  # left out of the headers: unlimited
        ledger.note_limits("people/bulk_match", {"minute": WindowReading(20, 4, 16), "day": WindowReading(600, 4, 596)})
        seen = ledger.limits()["people/bulk_match"]
        assert seen["minute"]["left"] == 16 and seen["day"]["limit"] == 600
        ledger.record(run_id="a", operation="enrich_orgs", endpoint="organizations/bulk_enrich",
                      records_sent=10, records_matched=7, credits=7, status=200)
        assert ledger.match_rate("enrich_orgs") == (0.7, 10)
    with Ledger(tmp_path / "l.sqlite") as again:  # persistent
        assert again.total_credits() == 7 and again.match_rate("enrich_orgs") == (0.7, 10)
        assert again._query("PRAGMA journal_mode")[0][0] == "wal"


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from apollo_frames.client.ledger import Ledger
    from apollo_frames.client.ratelimit import WindowReading

    path, me, rows = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ledger = Ledger(path)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":  # start writing together, when the test says so
        sys.exit("never told to go")
    for i in range(rows):
        ledger.record(run_id=me, operation="enrich_people", endpoint="people/bulk_match",
                      records_sent=10, records_matched=i % 11, credits=i % 11, status=200)
        if i % 10 == 0:
            ledger.note_limits("people/bulk_match", {"minute": WindowReading(20, i % 20, 20 - i % 20)})
    ledger.close()
    """
)


def test_two_processes_write_at_once_without_losing_a_row(tmp_path):
    path = tmp_path / "shared" / "ledger.sqlite"
    path.parent.mkdir()
    rows = 400
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(rows)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("p1", "p2")
    ]
    try:
        for proc in procs:  # both have opened the ledger ...
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:  # ... then both write at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with Ledger(path) as ledger:
        frame = ledger.frame()
        assert len(frame) == 2 * rows
        assert frame["run_id"].value_counts().to_dict() == {"p1": rows, "p2": rows}
        assert ledger.total_credits() == 2 * sum(i % 11 for i in range(rows))
        assert frame["time"].is_monotonic_increasing
        assert list(ledger.limits()) == ["people/bulk_match"]


# -- the confirmation gate -----------------------------------------------------------------------------


def test_confirm_spend_within_threshold_does_nothing():
    asked = []
    confirm_spend("enrich_people", 500, None, interactive=True, ask=asked.append)
    confirm_spend("enrich_people", 500, 500, interactive=True, ask=asked.append)
    assert asked == []


def test_confirm_spend_non_interactive_raises_with_what_to_do():
    with pytest.raises(BudgetExceededError) as info:
        confirm_spend("enrich_people", 1234, 1000, interactive=False, ask=lambda _: pytest.fail("must not ask"))
    message = str(info.value)
    assert "1,234 credits" in message and "confirm_over=1,000" in message
    assert "not interactive" in message and "nothing was sent" in message
    assert "raise confirm_over" in message and "max_credits" in message


def test_confirm_spend_under_pytest_is_not_interactive():
    # stdin is not a terminal under pytest (captured), so no prompt can hang a batch job.
    with pytest.raises(BudgetExceededError, match="not interactive"):
        confirm_spend("enrich_orgs", 20, 10)


def test_confirm_spend_asks_when_interactive():
    prompts = []

    def answer(text):
        prompts.append(text)
        return " Yes "

    confirm_spend("enrich_people", 900, 100, interactive=True, ask=answer)
    assert prompts == ["enrich_people may spend up to 900 credits, more than confirm_over=100. Continue? [y/N] "]
    for reply in ("", "n", "no", "sure"):
        with pytest.raises(BudgetExceededError, match="not confirmed"):
            confirm_spend("enrich_people", 900, 100, interactive=True, ask=lambda _: reply)

    def no_stdin(_):
        raise EOFError

    with pytest.raises(BudgetExceededError, match="cannot ask"):
        confirm_spend("enrich_people", 900, 100, interactive=True, ask=no_stdin)


# -- command line ----------------------------------------------------------------------------------------


def test_cli_estimate_before_and_after_enrich(tmp_path, capsys):
    cache = str(tmp_path / "c")
    source = SAMPLES / "people.csv"
    n_rows = len(pd.read_csv(source, dtype=str))
    assert main(["estimate", str(source), "--op", "enrich-people", "--sandbox", "--cache-dir", cache]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Estimate enrich_people (nothing sent)")
    assert f"{n_rows:,}" in out and "credits max" in out and " 0 cached" in out

    assert main(["enrich-people", str(source), str(tmp_path / "o.parquet"), "--sandbox", "--quiet", "--cache-dir", cache]) == 0
    capsys.readouterr()
    assert main(["estimate", str(source), "--op", "enrich-people", "--sandbox", "--cache-dir", cache]) == 0
    out = capsys.readouterr().out
    api_calls = next(line for line in out.splitlines() if line.strip().startswith("api calls"))
    max_line = next(line for line in out.splitlines() if line.strip().startswith("credits max"))
    assert api_calls.split()[2] == "0" and max_line.split()[2] == "0" and "0 to fetch" in out

    assert main(["estimate", str(source), "--op", "enrich-people", "--reveal-phone-number", "--sandbox", "--cache-dir", cache]) == 0
    assert "9 per record" in capsys.readouterr().out
    assert main(["estimate", str(source), "--op", "enrich-orgs", "--reveal-phone-number", "--sandbox", "--cache-dir", cache]) == 2


def test_cli_usage_with_master_key(tmp_path, monkeypatch, capsys):
    sandbox = Sandbox(SandboxConfig(n_orgs=50))
    with sandbox.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", DEFAULT_API_KEY)
        assert main(["usage", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "usage_stats" in out and "minute limit" in out
    line = next(line for line in out.splitlines() if line.startswith("people/bulk_match "))
    assert any(ch.isdigit() for ch in line)
    assert DEFAULT_API_KEY not in out
    with ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=tmp_path) as client:  # remembered for estimates
        seen = client.ledger.limits()["people/bulk_match"]
        assert seen["minute"]["source"] == "usage_stats" and seen["minute"]["limit"]


def test_cli_usage_with_scoped_key_falls_back_to_ledger_headers(tmp_path, monkeypatch, capsys):
    sandbox = Sandbox(SandboxConfig(n_orgs=50))
    with sandbox.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", SCOPED_API_KEY)
        assert main(["usage", "--cache-dir", str(tmp_path)]) == 0
        first = capsys.readouterr().out
        assert "not available to this key (403)" in first and "none recorded yet" in first
        frame = pd.DataFrame({"email": [p["email"] for p in known_people(sandbox, 12)]})
        src = tmp_path / "in.csv"
        frame.to_csv(src, index=False)
        assert main(["enrich-people", str(src), str(tmp_path / "o.parquet"), "--quiet", "--cache-dir", str(tmp_path)]) == 0
        capsys.readouterr()
        assert main(["usage", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "403" in out and "last rate-limit headers recorded in the ledger" in out
    line = next(line for line in out.splitlines() if line.startswith("people/bulk_match "))
    assert "(headers)" in line and "UTC" in line
    assert SCOPED_API_KEY not in out
