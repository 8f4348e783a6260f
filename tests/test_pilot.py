"""Estimates from a pilot (issue 16 §4): a stratified sample measured, then extrapolated."""

from __future__ import annotations

import random

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.clock import FakeClock
from apollo_frames.ops.pilot import allocate
from apollo_frames.sandbox import Sandbox, SandboxConfig


def _frame(sb: Sandbox, n: int = 600, seed: int = 1) -> pd.DataFrame:
    """About 60 % matchable: real people by e-mail or name + domain, and people who do not exist.

    As in real lists, the kinds differ: e-mails nearly all match, names at unknown companies rarely do.
    """
    rng = random.Random(seed)
    real = [p for p in sb.world.people if p.get("email")]
    rng.shuffle(real)
    rows = []
    for i in range(n):
        p, u = real[i], rng.random()
        domain = p["organization"]["primary_domain"]
        if u < 0.58:
            rows.append({"email": p["email"]})
        elif u < 0.60:
            rows.append({"email": f"nobody{i}@{domain}"})
        elif u < 0.62:
            rows.append({"first_name": p["first_name"], "last_name": p["last_name"], "domain": domain})
        else:
            rows.append({"first_name": f"Ghost{i}", "last_name": "Person", "domain": f"ghost{i % 40}.example"})
    return pd.DataFrame(rows, columns=["email", "first_name", "last_name", "domain"])


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(SandboxConfig(seed=3, n_orgs=200), clock=FakeClock())


def test_a_pilot_of_50_predicts_the_full_run_within_15_percent_and_is_not_paid_twice(sb, tmp_path):
    frame = _frame(sb)
    with sb.client(cache_dir=tmp_path / "c") as c:
        est = frame.apollo.estimate(operation="enrich_people", pilot=50, client=c)
        pilot_credits = sb.credits_consumed
        sent_in_pilot = sum(r.n_records for r in sb.requests if r.path == "people/bulk_match")
        out = frame.apollo.enrich_people(client=c, progress=False)
    matched = int((out["apollo_status"] == "matched").sum())
    assert 0.55 <= matched / len(frame) <= 0.65
    total = sb.credits_consumed
    assert total == matched  # each matched person paid once: pilot rows came from the store
    assert 0 < pilot_credits <= 50 and est.pilot.credits_spent == pilot_credits
    assert sent_in_pilot == est.pilot.records == 50
    assert sum(r.n_records for r in sb.requests if r.path == "people/bulk_match") == len(frame)
    assert abs(est.credits_expected - total) / total <= 0.15
    low, high = est.credits_interval
    assert low <= est.credits_expected <= high and low <= total <= high
    assert est.to_fetch == len(frame) - 50 and est.cached == 50
    assert set(est.pilot.match_rate_by_kind) == {"email", "name + domain"}
    assert "90% interval" in repr(est) and "pilot" in est._repr_html_()
    for seed in range(1, 6):  # not one lucky sample: other pilots of 50 land within 15 % too
        with sb.client(cache_dir=tmp_path / f"s{seed}") as c:
            again = af.estimate(frame, operation="enrich_people", pilot=50, client=c, seed=seed)
        assert abs(again.credits_expected - total) / total <= 0.15, seed


def test_the_pilot_is_stratified_seeded_and_never_spends_more_than_its_budget(sb, tmp_path):
    frame = _frame(sb, n=200)
    with sb.client(cache_dir=tmp_path / "c") as c:
        est = af.estimate(frame, operation="enrich_people", pilot=9, client=c, reveal_phone_number=True,
                          webhook_url="https://hooks.example/x", seed=5)
    assert est.pilot.records == 1  # 9 credits at worst per record (+8 for a mobile)
    assert sb.credits_consumed <= 9
    with sb.client(cache_dir=tmp_path / "d") as c1, sb.client(cache_dir=tmp_path / "e") as c2:
        a = af.estimate(frame, operation="enrich_people", pilot=20, client=c1, seed=2).pilot
        b = af.estimate(frame, operation="enrich_people", pilot=20, client=c2, seed=2).pilot
    assert {k: s.sampled for k, s in a.strata.items()} == {k: s.sampled for k, s in b.strata.items()}
    assert a.strata["email"].sampled > a.strata["name + domain"].sampled > 0


def test_allocate_is_proportional_and_gives_every_kind_a_draw():
    assert allocate({"email": 600, "name + domain": 390, "linkedin": 10}, 50) == {
        "email": 30, "name + domain": 19, "linkedin": 1}
    assert allocate({"a": 3, "b": 2}, 10) == {"a": 3, "b": 2}
    assert sum(allocate({"a": 1, "b": 1, "c": 100}, 2).values()) == 2


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_bad_pilot_is_refused(bad, sb, tmp_path):
    with sb.client(cache_dir=tmp_path / "c") as c, pytest.raises(ValueError, match="pilot"):
        af.estimate(pd.DataFrame({"email": ["a@b.example"]}), operation="enrich_people", pilot=bad, client=c)
    assert sb.count() == 0
