"""Apollo's credit meter as a guard and a cross-check (issue 16 §2)."""

from __future__ import annotations

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.engine import meter
from apollo_frames.sandbox import SCOPED_API_KEY, Sandbox, SandboxConfig


def _sb(**limits: float) -> Sandbox:
    return Sandbox(SandboxConfig(seed=2, n_orgs=80, credit_limits={"lead_credit": 1000, "direct_dial_credit": 500,
                                                                   **limits}), clock=FakeClock())


def _frame(sb: Sandbox, n: int) -> pd.DataFrame:
    return pd.DataFrame({"email": [p["email"] for p in sb.world.people if p.get("email")][:n]})


def test_credit_balance_reads_the_meter(tmp_path):
    sb = _sb()
    sb.charge_outside(40)
    with sb.client(cache_dir=tmp_path / "c") as c:
        balance = af.credit_balance(client=c)
    lead = balance.lines["lead_credit"]
    assert (lead.limit, lead.consumed, lead.left_over) == (1000, 40, 960)
    assert balance.cycle_start and balance.cycle_end
    table = balance.to_frame()
    assert list(table.columns[:4]) == ["credit_type", "limit", "consumed", "left_over"]
    assert "lead_credit" in repr(balance) and "<table>" in balance._repr_html_()
    assert sb.credits_consumed == 0


def test_a_run_whose_worst_case_exceeds_the_balance_is_refused_before_any_request(tmp_path):
    sb = _sb(lead_credit=150)
    sb.charge_outside(100)  # 50 left
    frame = _frame(sb, 120)
    with sb.client(cache_dir=tmp_path / "c") as c:
        with pytest.raises(af.BudgetExceededError, match=r"120 lead_credit .* 50 left"):
            frame.apollo.enrich_people(client=c, progress=False)
        assert sb.count(path="people/bulk_match") == 0 and sb.credits_consumed == 0
        with pytest.warns(UserWarning, match="skipped"):  # within what is left: the budget caps the run
            capped = frame.apollo.enrich_people(client=c, progress=False, max_credits=50)
    assert sb.credits_consumed == 50 and (capped["apollo_status"] == "matched").sum() == 50


def test_phones_are_checked_against_direct_dial_credits(tmp_path):
    sb = _sb(direct_dial_credit=100)
    with sb.client(cache_dir=tmp_path / "c") as c, pytest.raises(af.BudgetExceededError, match="direct_dial_credit"):
        _frame(sb, 20).apollo.enrich_people(client=c, progress=False, reveal_phone_number=True)
    assert sb.count(path="people/bulk_match") == 0


def test_small_runs_and_keys_that_may_not_read_the_meter_skip_the_check(tmp_path):
    sb = _sb(lead_credit=10)
    with sb.client(cache_dir=tmp_path / "c") as c:
        _frame(sb, 30).apollo.enrich_people(client=c, progress=False)  # worst 30 <= 100: no meter read
    assert sb.count(path="usage_stats/credit_usage_stats") == 0
    with sb.client(cache_dir=tmp_path / "d", api_key=SCOPED_API_KEY) as c:
        with pytest.warns(UserWarning, match="403"):
            _frame(sb, 150).apollo.enrich_people(client=c, progress=False)
        _frame(sb, 160).apollo.enrich_people(client=c, progress=False)  # noted once: no second warning, no read
    assert sb.count(path="usage_stats/credit_usage_stats") == 1
    with sb.client(cache_dir=tmp_path / "e") as c:
        c.meter_threshold = 1_000
        _frame(sb, 150).apollo.enrich_people(client=c, progress=False)
    assert sb.count(path="usage_stats/credit_usage_stats") == 1


def test_reconciliation_records_both_figures_and_warns_on_drift(tmp_path, monkeypatch):
    sb = _sb()
    frame = _frame(sb, 130)
    with sb.client(cache_dir=tmp_path / "c") as c:
        frame.iloc[:110].apollo.enrich_people(client=c, progress=False)
        checks = c.ledger.meter_checks()
        assert checks[["ledger_credits", "meter_change", "drift"]].values.tolist() == [[110, 110, 0]]
        real = meter.read_meter

        def others_spend(client):  # someone else on the team spends while the run is under way
            balance = real(client)
            sb.charge_outside(30)
            return balance

        monkeypatch.setattr(meter, "read_meter", others_spend)
        with pytest.warns(UserWarning, match="at least 30 more"):
            frame.apollo.enrich_people(client=c, progress=False, refresh=True)
        assert c.ledger.meter_checks()["meter_change"].tolist() == [110, 160]


def test_estimate_shows_the_balance_when_read(tmp_path):
    sb = _sb()
    frame = _frame(sb, 20)
    with sb.client(cache_dir=tmp_path / "c") as c:
        quiet = af.estimate(frame, operation="enrich_people", client=c)
        assert quiet.balance_left is None and sb.count() == 0
        est = af.estimate(frame, operation="enrich_people", client=c, balance=True)
    assert est.balance_left == {"lead_credit": 1000}
    assert "balance left" in repr(est)
