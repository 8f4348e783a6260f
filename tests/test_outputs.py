"""Written outputs: formula-like cells neutralised in .csv/.xlsx (OWASP CSV injection), files private whatever
the umask."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from apollo_frames.cli import main
from apollo_frames.io.files import convert_parquet, write_frame, write_parquet

ROOT = Path(__file__).resolve().parents[1]
RISKY = ("=", "+", "-", "@", "\t", "\r")
FORMULAS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=x", "\r=y", '=HYPERLINK("http://x","y")']


def _frame() -> pd.DataFrame:
    n = len(FORMULAS)
    return pd.DataFrame({
        "text": FORMULAS,
        "=header": ["plain"] * n,
        "number": [-5] * n,  # a typed number is written as a number
        "phone": ["+15551234567"] * n,  # text that is only a signed number runs nothing
        "maybe": [None] * (n - 1) + [3],
    })


def _csv_cells(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def _xlsx_cells(path: Path) -> list:
    sheet = openpyxl.load_workbook(path).active
    return [cell for row in sheet.iter_rows() for cell in row]


def _formula_text(cell: str) -> bool:
    return cell.startswith(RISKY) and not cell.lstrip("+-").replace(".", "").isdigit()


def test_csv_and_xlsx_escape_formulas_by_default(tmp_path):
    for name in ("o.csv", "o.xlsx"):
        path = write_frame(_frame(), tmp_path / name)
        if name.endswith(".csv"):
            cells = _csv_cells(path)
            assert not [c for c in cells if _formula_text(c)]
        else:
            cells = _xlsx_cells(path)
            assert not [c for c in cells if c.data_type == "f"]
            values = [c.value for c in cells]
            assert not [v for v in values if isinstance(v, str) and _formula_text(v)]
            assert -5 in values  # numbers stay numbers
            cells = [str(v) for v in values]
        assert "'=1+2" in cells and "'=header" in cells and "'\t=x" in cells and "+15551234567" in cells


def test_keep_writes_raw_values_and_parquet_is_untouched(tmp_path):
    kept = _csv_cells(write_frame(_frame(), tmp_path / "k.csv", formulas="keep"))
    assert "=1+2" in kept and "@cmd" in kept
    book = _xlsx_cells(write_frame(_frame(), tmp_path / "k.xlsx", formulas="keep"))
    assert any(c.data_type == "f" for c in book)
    back = pd.read_parquet(write_frame(_frame(), tmp_path / "p.parquet"))
    assert back["text"].tolist() == FORMULAS and "=header" in back.columns
    with pytest.raises(ValueError, match="formulas"):
        write_frame(_frame(), tmp_path / "x.csv", formulas="no")


def test_convert_parquet_escapes_streamed_csv(tmp_path):
    src = write_parquet(_frame(), tmp_path / "s.parquet")
    out = convert_parquet(src, tmp_path / "s.csv")
    assert not [c for c in _csv_cells(out) if _formula_text(c)] and not src.exists()
    empty = write_parquet(_frame().head(0), tmp_path / "e.parquet")
    assert _csv_cells(convert_parquet(empty, tmp_path / "e.csv"))[1] == "'=header"


def _formula_people(tmp_path: Path) -> Path:
    source = pd.read_csv(ROOT / "data" / "samples" / "people.csv", dtype=str).head(20)
    source["Note"] = ["=1+1", "@SUM(A1)", "-cmd", "+x"] * 5
    path = tmp_path / "in.csv"
    source.to_csv(path, index=False)
    return path


def test_cli_outputs_hold_no_formula_even_from_a_hostile_server(tmp_path, monkeypatch):
    from apollo_frames.sandbox import Sandbox

    sandbox = Sandbox()
    sandbox.inject(*["formulas"] * 5, path="people/bulk_match")  # the server's answers carry formulas too
    monkeypatch.setattr("apollo_frames.cli._sandbox_if", lambda args: sandbox)
    src = _formula_people(tmp_path)
    for name in ("o.csv", "o.xlsx"):
        out = tmp_path / name
        main(["enrich-people", str(src), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path / "c")])
        if name.endswith(".csv"):
            assert not [c for c in _csv_cells(out) if _formula_text(c)]
            back = pd.read_csv(out, dtype=str)
            assert back["person.title"].str.startswith("'=").sum() > 0  # the server's formula, neutralised
        else:
            assert not [c for c in _xlsx_cells(out) if c.data_type == "f"]
    raw = tmp_path / "raw.csv"
    main(["enrich-people", str(src), str(raw), "--sandbox", "--quiet", "--keep-formulas", "--cache-dir",
          str(tmp_path / "c")])
    assert "=1+1" in _csv_cells(raw)


def test_outputs_are_private_whatever_the_umask(tmp_path):
    """In a child under umask 000: every output (report, converted file, parquet) is written 0600."""
    src = _formula_people(tmp_path)
    script = (
        "import os, sys; os.umask(0); from apollo_frames.cli import main; "
        f"main(['enrich-people', {str(src)!r}, {str(tmp_path / 'o.csv')!r}, '--sandbox', '--quiet', "
        f"'--cache-dir', {str(tmp_path / 'c')!r}]); "
        f"main(['push-contacts', {str(src)!r}, '--dry-run', '--quiet', '--report', {str(tmp_path / 'r.xlsx')!r}]); "
        f"main(['enrich-people', {str(src)!r}, {str(tmp_path / 'o.parquet')!r}, '--sandbox', '--quiet', "
        f"'--cache-dir', {str(tmp_path / 'c')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("o.csv", "r.xlsx", "o.parquet"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    cells = _csv_cells(tmp_path / "o.csv")  # and, written by a real process, no formula in the outputs
    assert "'=1+1" in cells and not [c for c in cells if _formula_text(c)]
    assert not [c for c in _xlsx_cells(tmp_path / "r.xlsx") if c.data_type == "f"]


def test_collect_writes_csv_escaped(tmp_path, monkeypatch):
    """collect's output is written by its suffix too (it refused .csv before), formulas escaped."""
    from apollo_frames import cli
    from apollo_frames.core.clock import FakeClock
    from apollo_frames.sandbox import Sandbox, SandboxConfig

    sb = Sandbox(SandboxConfig(seed=4, n_orgs=40), clock=FakeClock())
    monkeypatch.setattr(cli, "_sandbox_if", lambda args: sb if args.sandbox else None)
    people = [p for p in sb.world.people if p.get("email")][:5]
    pd.DataFrame({"email": [p["email"] for p in people], "note": ["=1+1"] * 5}).to_csv(tmp_path / "in.csv",
                                                                                       index=False)
    common = ["--sandbox", "--cache-dir", str(tmp_path / "c")]
    assert main(["enrich-people", str(tmp_path / "in.csv"), str(tmp_path / "e.parquet"), "--reveal-phone-number",
                 "--quiet", *common]) == 0
    assert main(["collect", str(tmp_path / "e.parquet"), str(tmp_path / "p.csv"), *common]) == 0
    cells = _csv_cells(tmp_path / "p.csv")
    assert "'=1+1" in cells and not [c for c in cells if _formula_text(c)]


def test_a_link_left_at_the_partial_path_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "o.csv.partial").symlink_to(victim)
    write_frame(_frame(), tmp_path / "o.csv")
    assert victim.read_text() == "keep me" and stat.S_IMODE(os.stat(tmp_path / "o.csv").st_mode) == 0o600
