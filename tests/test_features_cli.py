"""The command line of issue 16: estimate --pilot, collect, usage with the credit meter."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from apollo_frames.cli import main

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
