"""Estimates from a pilot: enrich a small stratified sample, then extrapolate to the whole frame.

Without history the estimate assumes a match rate; a pilot measures it.
:func:`run_pilot` picks unique records still to fetch, stratified by
identifier kind (an e-mail matches far more often than a name and a company,
so each kind is sampled in proportion to its share), with a seeded random
generator; sends them through the ordinary engine with ``max_credits`` set to
the pilot's budget (so the pilot never spends more, even at worst); and keeps
the answers in the store, so the full run does not pay for them again.

The extrapolation is the stratified estimator: for each kind, the pilot's
credits per record times the records of that kind still to fetch, plus what
the pilot spent. Its 90 % interval comes from the binomial variance of each
kind's match rate (with the finite-population correction and a +1/+2
adjustment, so a kind where all or none matched still has some spread).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from typing import Any

import pandas as pd

from apollo_frames.core.columns import Columns
from apollo_frames.core.errors import InputError
from apollo_frames.engine.runner import Prepared, execute, plan_work
from apollo_frames.ops import registry
from apollo_frames.ops.quality import identifier_kind

#: z for a two-sided 90 % interval
Z90 = 1.6449


@dataclasses.dataclass
class Stratum:
    """One identifier kind: records still to fetch, records piloted, matched, credits spent on them."""

    kind: str
    to_fetch: int
    sampled: int = 0
    matched: int = 0
    credits: float = 0.0

    @property
    def match_rate(self) -> float | None:
        return self.matched / self.sampled if self.sampled else None


@dataclasses.dataclass
class PilotResult:
    """What a pilot spent and saw, and the whole frame's expected credits with a 90 % interval."""

    operation: str
    pilot_budget: float
    records: int
    credits_spent: float
    credits_expected: float
    interval: tuple[float, float]
    strata: dict[str, Stratum]
    seed: int

    @property
    def match_rate(self) -> float:
        sampled = sum(s.sampled for s in self.strata.values())
        return sum(s.matched for s in self.strata.values()) / sampled if sampled else 0.0

    @property
    def match_rate_by_kind(self) -> dict[str, float]:
        return {k: s.match_rate for k, s in self.strata.items() if s.match_rate is not None}


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` draws over strata in proportion to ``sizes`` (largest remainders), at least one each if possible."""
    total = sum(sizes.values())
    if total == 0 or n <= 0:
        return {k: 0 for k in sizes}
    n = min(n, total)
    shares = {k: n * size / total for k, size in sizes.items()}
    out = {k: min(sizes[k], math.floor(v)) for k, v in shares.items()}
    for k in sorted(sizes, key=lambda k: sizes[k]):  # a small kind gets one draw before a large one gets more
        if out[k] == 0 and sizes[k] and sum(out.values()) < n:
            out[k] = 1
    for k in sorted(shares, key=lambda k: shares[k] - math.floor(shares[k]), reverse=True):
        if sum(out.values()) >= n:
            break
        if out[k] < sizes[k]:
            out[k] += 1
    while sum(out.values()) > n:  # the "at least one" step overshot: take from the largest
        out[max(out, key=lambda k: out[k])] -= 1
    return out


def _sample(kinds: list[str], to_fetch: list[int], n: int, seed: int) -> tuple[dict[str, list[int]], list[int]]:
    """(unique indices to fetch by kind, the stratified sample of them)."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for j in to_fetch:
        by_kind[kinds[j]].append(j)
    rng = random.Random(seed)
    counts = allocate({k: len(v) for k, v in by_kind.items()}, n)
    picked: list[int] = []
    for kind in sorted(by_kind):
        picked += rng.sample(by_kind[kind], counts[kind])
    return dict(by_kind), sorted(picked)


def check_pilot(pilot: Any) -> int:
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 1:
        raise InputError(f"pilot must be a positive whole number of credits, got {pilot!r}")
    return pilot


def run_pilot(frame: pd.DataFrame, operation: str, pilot: int, *, client: Any, columns: Columns = None,
              seed: int = 0, **options: Any) -> PilotResult:
    """Enrich a stratified sample of ``frame`` spending at most ``pilot`` credits; extrapolate to the whole frame."""
    check_pilot(pilot)
    spec = registry.get(operation, kind="enrich")
    assert spec.job is not None
    job_options, run = spec.estimate_job_options(options)
    prepared, op, op_options = spec.job(frame, columns=columns, **job_options)
    plan = plan_work(prepared, op, op_options, client, refresh=run.refresh, flatten=False, max_age=run.max_age)
    worst = float(op.worst_credits(op_options))
    kinds = [identifier_kind(r) for r in plan.unique_records]
    by_kind, picked = _sample(kinds, plan.to_fetch, int(pilot // worst), seed)
    first_row: dict[int, int] = {}
    for i, j in enumerate(plan.row_unique):
        first_row.setdefault(j, i)
    sub = Prepared([plan.unique_records[j] for j in picked], [prepared.identities[first_row[j]] for j in picked],
                   [None] * len(picked))
    done = execute(len(picked), sub, op, op_options, client=client,
                   run=dataclasses.replace(run, max_credits=pilot, progress=False))
    strata = {k: Stratum(k, len(v)) for k, v in by_kind.items()}
    per_credit = _credits_per_match(done)
    for i, j in enumerate(picked):
        if done.outcome[i] in ("matched", "no_match"):
            s = strata[kinds[j]]
            s.sampled += 1
            s.matched += done.outcome[i] == "matched"
            s.credits += per_credit if done.outcome[i] == "matched" else 0.0
    expected, low, high = _extrapolate(strata, done.summary.credits_consumed, worst)
    return PilotResult(op.name, float(pilot), len(picked), float(done.summary.credits_consumed), expected,
                       (low, high), strata, seed)


def _credits_per_match(done: Any) -> float:
    matched = sum(1 for o in done.outcome if o == "matched")
    return done.summary.credits_consumed / matched if matched else 0.0


def _extrapolate(strata: dict[str, Stratum], spent: float, worst: float) -> tuple[float, float, float]:
    """(expected, low, high) credits for the whole frame: the pilot's spend plus each kind's remaining records."""
    expected, variance, remaining_max = spent, 0.0, 0.0
    for s in strata.values():
        left = s.to_fetch - s.sampled
        remaining_max += left * worst
        if left <= 0:
            continue
        if not s.sampled:  # a kind the pilot could not reach: assume its worst case
            expected += left * worst
            continue
        per_match = s.credits / s.matched if s.matched else worst
        p = s.matched / s.sampled
        adjusted = (s.matched + 1) / (s.sampled + 2)
        fpc = max(0.0, 1 - s.sampled / s.to_fetch)
        expected += left * p * per_match
        variance += (left * per_match) ** 2 * adjusted * (1 - adjusted) / s.sampled * fpc
    half = Z90 * math.sqrt(variance)
    low, high = max(spent, expected - half), min(spent + remaining_max, expected + half)
    return round(expected, 1), round(low, 1), round(high, 1)
