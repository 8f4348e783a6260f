"""The command line of issue 16: estimate --pilot, collect, usage with the credit meter."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from apollo_frames import cli
from apollo_frames.cli import main
from apollo_frames.core.clock import FakeClock
from apollo_frames.sandbox import Sandbox, SandboxConfig

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_estimate_with_a_pilot_spends_at_most_n_and_reuses_its_answers(tmp_path, capsys):
    args = ["estimate", str(SAMPLES / "people.csv"), "--op", "enrich-people", "--sandbox",
            "--cache-dir", str(tmp_path / "c")]
    assert main([*args, "--pilot", "12"]) == 0
    shown = capsys.readouterr().out
    assert "90% interval" in shown
    spent = float(re.search(r"pilot\s+(\d+)\s+credits spent on (\d+) records", shown).group(1))
    assert 0 < spent <= 12
    assert main(args) == 0  # the plain estimate finds the pilot's answers in the store
    rows = len(pd.read_csv(SAMPLES / "people.csv", dtype=str))
    cached = int(re.search(r"([\d,]+) cached", capsys.readouterr().out).group(1))
    assert cached == 12 and rows > 12
    with pytest.raises(SystemExit) as info:
        main([*args, "--pilot", "0"])
    assert info.value.code == 2


def _embedded(tmp_path, monkeypatch, n: int):
    """A sandbox on a fake clock that ``--sandbox`` commands share, and an input of ``n`` known people."""
    sb = Sandbox(SandboxConfig(seed=4, n_orgs=40), clock=FakeClock())
    monkeypatch.setattr(cli, "_sandbox_if", lambda args: sb if args.sandbox else None)
    people = [p for p in sb.world.people if p.get("email")][:n]
    pd.DataFrame({"email": [p["email"] for p in people]}).to_csv(tmp_path / "in.csv", index=False)
    return sb, people, ["--sandbox", "--cache-dir", str(tmp_path / "c")]


def test_enrich_with_phones_then_collect_in_a_later_command(tmp_path, capsys, monkeypatch):
    sb, people, common = _embedded(tmp_path, monkeypatch, 25)
    assert main(["enrich-people", str(tmp_path / "in.csv"), str(tmp_path / "e.parquet"), "--reveal-phone-number",
                 "--quiet", *common]) == 0
    enriched = pd.read_parquet(tmp_path / "e.parquet")
    assert (enriched["apollo_async_status"] == "pending").all()
    assert main(["collect", str(tmp_path / "e.parquet"), str(tmp_path / "p.parquet"), *common]) == 0
    assert "phones" in capsys.readouterr().out
    phones = pd.read_parquet(tmp_path / "p.parquet")
    # each person's own status in the result: done with a mobile, not_found without one
    has_mobile = phones["person.mobile_phone"].notna()
    assert (phones.loc[has_mobile, "apollo_async_status"] == "done").all()
    assert (phones.loc[~has_mobile, "apollo_async_status"] == "not_found").all()
    mobiles = {p["email"] for p in people if p["id"] in sb.world.mobile_phones}
    assert set(phones.loc[phones["person.mobile_phone"].notna(), "email"]) == mobiles


def test_usage_shows_the_meter_beside_the_ledgers_month(tmp_path, capsys, monkeypatch):
    sb, people, common = _embedded(tmp_path, monkeypatch, 7)
    assert main(["enrich-people", str(tmp_path / "in.csv"), str(tmp_path / "e.parquet"), "--quiet", *common]) == 0
    capsys.readouterr()
    assert main(["usage", *common]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"ledger: 7 credits recorded since \d{4}-\d\d-01", shown)
    assert re.search(r"lead_credit\s+[\d,]+\s+7\s+[\d,]+", shown)
