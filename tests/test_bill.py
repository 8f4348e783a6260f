"""A bill per row (issue 24 §5): ``apollo_credits`` is what each row's answer cost in this run."""

from __future__ import annotations

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.engine.budget import credit_shares
from apollo_frames.sandbox import Sandbox, SandboxConfig


@pytest.mark.parametrize(("total", "paid", "expected"), [
    (3.0, [True, False, True, True], [1.0, 0.0, 1.0, 1.0]),
    (0.0, [True, True], [0.0, 0.0]),
    (2.0, [False, False], [1.0, 1.0]),          # charged but nothing matched: shared by all
    (1.01, [True, True], None),                 # Apollo's fractions
    (10.0, [], []),
])
def test_shares_add_back_up_to_the_requests_credits(total, paid, expected):
    shares = credit_shares(total, paid)
    if expected is not None:
        assert shares == expected
    assert sum(shares) == pytest.approx(total, abs=1e-12) or not paid
    assert all(s == 0 for s, p in zip(shares, paid, strict=True) if not p) or not any(paid)


def _frame(sb: Sandbox, n: int) -> pd.DataFrame:
    """``n`` people by e-mail, 7 repeated, 9 unknown, 12 without an e-mail by LinkedIn URL, one invalid row."""
    people = [p for p in sb.world.people if p.get("email")][:n]
    emails = [p["email"] for p in people]
    no_email = [p["linkedin_url"] for p in sb.world.people if not p.get("email")][:12]
    return pd.DataFrame({"email": emails + emails[:7] + [f"ghost{i}@nowhere.example" for i in range(9)]
                         + [None] * 12 + ["bad"],
                         "linkedin_url": [None] * (n + 16) + no_email + [None]})


@pytest.mark.parametrize("fractional", [False, True])
def test_the_column_sums_to_the_runs_credits_and_the_ledger(tmp_path, fractional):
    sb = Sandbox(SandboxConfig(seed=3, n_orgs=60, fractional_credits=0.01 if fractional else None), clock=FakeClock())
    frame = _frame(sb, 43)
    with sb.client(cache_dir=tmp_path / "c") as client:
        out = af.enrich_people(frame, client=client, progress=False)
        run = out.attrs["apollo"]
        book = af.ledger(client=client)
        again = af.enrich_people(frame, client=client, progress=False)
    bill = out["apollo_credits"]
    assert str(bill.dtype) == "Float64" and bill.notna().all()
    assert bill.sum() == pytest.approx(run["credits_consumed"], abs=1e-9)
    assert bill.sum() == pytest.approx(book.loc[book["run_id"] == run["run_id"], "credits"].sum(), abs=1e-9)
    assert bill.sum() == pytest.approx(sb.credits_consumed, abs=1e-9)
    assert (bill.sum() % 1 != 0) == fractional     # the fractions reach the rows
    assert (bill.iloc[43:50] == 0).all()            # duplicates: paid by their first row
    assert bill.iloc[-1] == 0                       # invalid: never sent
    assert (bill[out["apollo_status"] == "no_match"] == 0).all()
    if not fractional:
        assert (bill[:43][out["apollo_status"][:43] == "matched"] == 1).all()
    assert (again["apollo_credits"] == 0).all() and again.attrs["apollo"]["credits_consumed"] == 0


def test_a_streamed_file_carries_the_bill_too(tmp_path):
    sb = Sandbox(SandboxConfig(seed=3, n_orgs=60), clock=FakeClock())
    src, dst = tmp_path / "in.csv", tmp_path / "out.parquet"
    _frame(sb, 43).to_csv(src, index=False)
    with sb.client(cache_dir=tmp_path / "c") as client:
        summary = af.enrich_parquet(src, dst=dst, chunk_rows=13, client=client, progress=False)
    written = pd.read_parquet(dst)
    assert written["apollo_credits"].sum() == pytest.approx(summary["credits_consumed"], abs=1e-9)
    assert written["apollo_credits"].sum() == pytest.approx(sb.credits_consumed, abs=1e-9) and sb.credits_consumed > 0


def test_the_cli_names_the_run_and_usage_by_run_traces_it_to_the_file(tmp_path, monkeypatch, capsys):
    from apollo_frames import cli

    src, dst = tmp_path / "in.csv", tmp_path / "out.parquet"
    _frame(Sandbox(), 20).to_csv(src, index=False)  # the world `--sandbox` serves
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "c"))
    assert cli.main(["enrich-people", str(src), str(dst), "--sandbox"]) == 0
    line = capsys.readouterr().out
    run_id = line.split("| run ")[1].split()[0]
    assert cli.main(["usage", "--by-run", "--sandbox"]) == 0
    table = capsys.readouterr().out
    row = next(r for r in table.splitlines() if run_id in r)
    billed = pd.read_parquet(dst)["apollo_credits"].sum()
    assert billed > 0
    assert f"{billed:g}" in row.split() or f"{billed:.1f}" in row.split()
