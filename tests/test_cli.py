"""The apollo-frames command line, the demo, and the README's promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from apollo_frames import __version__
from apollo_frames.cli import main
from apollo_frames.sandbox import DEFAULT_API_KEY, SCOPED_API_KEY, Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_enrich_people_with_embedded_sandbox(tmp_path, capsys):
    out = tmp_path / "out.parquet"
    code = main(["enrich-people", str(SAMPLES / "people.csv"), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "matched" in printed and "credits" in printed
    result = pd.read_parquet(out)
    source = pd.read_csv(SAMPLES / "people.csv", dtype=str)
    assert len(result) == len(source)
    assert set(result["apollo_status"]) <= {"matched", "no_match", "invalid"}
    assert (result["apollo_status"] == "matched").sum() > len(result) / 2


def test_enrich_orgs_with_map_and_budget(tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.read_csv(SAMPLES / "companies.csv", dtype=str).rename(columns={"Website": "web addr"}).to_csv(src, index=False)
    out = tmp_path / "orgs.parquet"
    code = main(
        ["enrich-orgs", str(src), str(out), "--sandbox", "--quiet", "--map", "web addr=domain", "--max-credits", "5",
         "--cache-dir", str(tmp_path / "c")]
    )
    assert code == 5  # rows left skipped by the budget: not a complete run
    result = pd.read_parquet(out)
    matched = result[result["apollo_status"] == "matched"]
    assert 0 < matched["org.id"].nunique() <= 5  # duplicated rows share a paid answer
    assert (result["apollo_status"] == "skipped").sum() > 0


def test_bad_key_exits_3_over_loopback(tmp_path, monkeypatch, capsys):
    sandbox = Sandbox(SandboxConfig(n_orgs=50))
    with sandbox.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", "definitely-not-the-key-123")
        code = main(["enrich-people", str(SAMPLES / "people.csv"), str(tmp_path / "o.parquet"), "--quiet", "--cache-dir", str(tmp_path)])
    assert code == 3 and not (tmp_path / "o.parquet").exists()  # nothing reached the server: no result-looking file
    err = capsys.readouterr().err
    assert "APOLLO_API_KEY" in err and "definitely-not-the-key-123" not in err


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["enrich-people", str(tmp_path / "missing.csv"), str(tmp_path / "o.parquet"), "--sandbox"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["enrich-people", str(SAMPLES / "people.csv"), str(tmp_path / "o.json"), "--sandbox"]) == 2
    assert main(["enrich-people", str(SAMPLES / "people.csv"), str(tmp_path / "o.parquet"), "--sandbox", "--map", "nonsense"]) == 2


def test_doctor_reports_access_and_limits(tmp_path, monkeypatch, capsys):
    sandbox = Sandbox(SandboxConfig(n_orgs=50))
    with sandbox.serve() as base_url:
        monkeypatch.setenv("APOLLO_BASE_URL", base_url)
        monkeypatch.setenv("APOLLO_API_KEY", SCOPED_API_KEY)
        assert main(["doctor", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "auth       ok" in out
    usage_line = next(line for line in out.splitlines() if line.startswith("usage_stats/api_usage_stats"))
    assert "403" in usage_line
    match_line = next(line for line in out.splitlines() if line.startswith("people/bulk_match"))
    assert "ok" in match_line and "minute=" in match_line  # limits read even from the refused empty probe
    assert SCOPED_API_KEY not in out


def test_doctor_without_key(tmp_path, capsys):
    assert main(["doctor", "--cache-dir", str(tmp_path)]) == 3
    assert "NOT SET" in capsys.readouterr().out


def test_sandbox_command_serves_real_http(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apollo_frames.cli", "sandbox", "--port", "0", "--orgs", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base_url = key = None
        for _ in range(10):
            line = proc.stdout.readline()
            if line.startswith("APOLLO_BASE_URL="):
                base_url = line.strip().split("=", 1)[1]
            if line.startswith("APOLLO_API_KEY="):
                key = line.strip().split("=", 1)[1]
                break
        assert base_url and re.match(r"http://127\.0\.0\.1:\d+/api/v1$", base_url)
        assert key == DEFAULT_API_KEY
        ok = httpx.get(f"{base_url}/auth/health", headers={"X-Api-Key": key}, timeout=10)
        assert ok.status_code == 200 and ok.json()["is_logged_in"] is True
        assert httpx.get(f"{base_url}/auth/health", headers={"X-Api-Key": "nope"}, timeout=10).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_writes_parquet_and_shows_the_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet", "--samples", str(SAMPLES)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "apollo_demo" / "people_enriched.parquet").exists()
    assert (tmp_path / "apollo_demo" / "companies_enriched.parquet").exists()
    rerun = out.split("re-run of people")[1]
    assert "0 requests" in rerun and "0 credits" in rerun


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .+?)\n```", readme)
    assert len(commands) == 2, "the Quickstart has exactly two commands"
    demo, tests = commands
    assert "apollo-frames demo" in demo and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_progress_bars_stay_silent_when_nobody_watches(monkeypatch):
    import io
    import sys

    from apollo_frames.engine.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file, CI, cron
    assert progress_bar(total=3, enabled=True).disable
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress_bar(total=3, enabled=True)
    assert not bar.disable
    bar.close()
    assert progress_bar(total=3, enabled=False).disable


def test_cli_warnings_print_their_text_not_the_launcher_line(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("email,first_name,shoe_size\na@x1.example,A,9\n")
    assert main(["push-contacts", str(tmp_path / "in.csv"), "--report", str(tmp_path / "r.parquet"), "--dry-run",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: push_contacts: 1 column(s) are not pushed" in err and "'shoe_size'" in err
    assert "UserWarning" not in err
