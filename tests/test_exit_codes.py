"""The command line's exit codes tell cron the truth (issue 26 item 3): real subprocesses, one per row of the table."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from apollo_frames.cli import EXIT_HELP, EXIT_TABLE

pytestmark = pytest.mark.slow  # real processes: killed, interrupted, raced (-m "not slow" skips them)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apollo_frames.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def _env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APOLLO")}
    return {**env, "APOLLO_FRAMES_CACHE_DIR": str(tmp_path / "cache"), **extra}


@pytest.fixture
def people(tmp_path) -> Path:
    src = tmp_path / "people.csv"
    pd.read_csv(SAMPLES / "people.csv", dtype=str).head(30).to_csv(src, index=False)
    return src


def test_every_row_answered_is_0(people, tmp_path):
    done = _cli("enrich-people", str(people), str(tmp_path / "out.csv"), "--sandbox", "--quiet", env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert set(pd.read_csv(tmp_path / "out.csv")["apollo_status"]) <= {"matched", "no_match", "invalid"}
    assert done.stderr == ""  # a plain UTF-8 CSV needs no word about how it was read


def test_rows_left_skipped_by_the_budget_is_5_and_allow_partial_makes_it_0(people, tmp_path):
    args = ("enrich-people", str(people), str(tmp_path / "out.parquet"), "--sandbox", "--quiet", "--max-credits", "3")
    capped = _cli(*args, env=_env(tmp_path))
    assert capped.returncode == 5, capped.stderr
    assert (pd.read_parquet(tmp_path / "out.parquet")["apollo_status"] == "skipped").sum() > 0
    assert "--max-credits" in capped.stderr and "max_credits" not in capped.stderr  # CLI advice as flags
    allowed = _cli(*args, "--allow-partial", env=_env(tmp_path, APOLLO_FRAMES_CACHE_DIR=str(tmp_path / "c2")))
    assert allowed.returncode == 0, allowed.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_nothing_reached_the_server_is_1_and_writes_no_result(tmp_path):
    src = tmp_path / "one.csv"
    pd.read_csv(SAMPLES / "people.csv", dtype=str).head(1).to_csv(src, index=False)
    env = _env(tmp_path, APOLLO_API_KEY="a-key-nobody-checks", APOLLO_BASE_URL=f"http://127.0.0.1:{_closed_port()}/api/v1")
    dead = _cli("enrich-people", str(src), str(tmp_path / "out.csv"), "--quiet", env=env)
    assert dead.returncode == 1 and not (tmp_path / "out.csv").exists()
    assert "nothing reached the server" in dead.stderr and "--partial-output" in dead.stderr
    assert not list(tmp_path.glob(".out*"))  # no staged file left either
    kept = _cli("enrich-people", str(src), str(tmp_path / "out.csv"), "--quiet", "--partial-output", env=env)
    assert kept.returncode == 1 and not (tmp_path / "out.csv").exists()
    assert (pd.read_csv(tmp_path / "out.partial.csv")["apollo_status"] == "error").all()


def test_a_file_of_no_rows_is_2_never_0(tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text("First Name,Last Name,Email\n")
    done = _cli("enrich-people", str(src), str(tmp_path / "out.csv"), "--sandbox", "--quiet", env=_env(tmp_path))
    assert done.returncode == 2 and "no data rows" in done.stderr and not (tmp_path / "out.csv").exists()


def test_a_workbook_with_its_data_on_the_second_sheet(people, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.append(["Exported 2026-12-01"])
    sheet = book.create_sheet("People")
    frame = pd.read_csv(people, dtype=str).fillna("")
    for row in [list(frame.columns), *frame.values.tolist()]:
        sheet.append(row)
    book.save(tmp_path / "two.xlsx")
    done = _cli("enrich-people", str(tmp_path / "two.xlsx"), str(tmp_path / "out.parquet"), "--sandbox", "--quiet",
                env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "sheet 'People' of 2" in done.stderr.splitlines()[0]
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == len(frame)


def test_a_closed_pipe_ends_quietly(people, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "apollo_frames.cli", "estimate", str(people), "--op",
                             "enrich-people", "--sandbox"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(tmp_path))
    proc.stdout.close()  # as `| head` does once it has its lines: long before the estimate is printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "Traceback" not in err and "BrokenPipe" not in err


def test_the_table_is_in_help_and_the_readme():
    done = _cli("--help")
    assert EXIT_HELP in done.stdout
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code, _ in EXIT_TABLE:
        assert f"| {code} |" in readme


def test_usage_prints_no_pandas_warning(tmp_path, capsys):
    from apollo_frames.cli import main

    assert main(["usage", "--sandbox", "--cache-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "ledger: 0 credits recorded since" in captured.out and "warning" not in captured.err.lower()


def test_advice_is_flags_on_the_command_line_and_python_in_a_notebook(people, tmp_path, monkeypatch, capsys):
    import apollo_frames as af
    from apollo_frames.cli import main

    monkeypatch.delenv("APOLLO_API_KEY", raising=False)
    assert main(["enrich-people", str(people), str(tmp_path / "o.csv"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "add --sandbox" in err and "use_sandbox" not in err and "ApolloClient(" not in err
    with pytest.raises(af.ConfigurationError, match=r"apollo_frames\.use_sandbox\(\)"):
        af.ApolloClient(api_key=None, cache_dir=str(tmp_path)).settings.require_key()
    frame = pd.DataFrame({"Full Name": ["Ann Lee"] * 5, "E-mail (if known)": ["a@x.example", "?", "?", "?", "-"]})
    frame.to_csv(tmp_path / "f.csv", index=False)
    assert main(["enrich-people", str(tmp_path / "f.csv"), str(tmp_path / "f.parquet"), "--sandbox", "--quiet",
                 "--cache-dir", str(tmp_path)]) == 0
    assert "--map 'E-mail (if known)=email'" in capsys.readouterr().out
