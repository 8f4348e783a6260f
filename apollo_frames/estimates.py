"""Estimates before a run, and the gate that asks before a large spend.

``estimate(frame, operation="enrich_people")`` answers, without sending a request: how
many rows are invalid, how many unique records there are, how many the cache
already holds, how many calls and credits the rest would take (worst case, and
expected from the match rate the ledger has seen), and roughly how long the
rate limits would make it last. It reuses what a run does before its first
request (the operation's ``prepare`` and ``runner.plan_work``, which only
reads the cache), so it counts exactly what a run would send.
``estimate_file(path, operation="enrich_people")`` counts a whole .csv or .parquet file
the way ``enrich_parquet`` (and ``apollo-frames enrich-people``) reads and
runs it: streamed in chunks, so it never holds the file in memory.

Each operation says how it is estimated in its registry entry
(:mod:`apollo_frames.ops.registry`): its ``job`` counted by the runner's own
plan, or its own ``planner``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.core.clock import WINDOW_SECONDS, WINDOWS
from apollo_frames.core.columns import Columns
from apollo_frames.core.errors import InputError
from apollo_frames.core.settings import PLAN_PRESETS
from apollo_frames.engine.confirm import confirm_spend  # noqa: F401  (re-exported for callers of estimate)
from apollo_frames.engine.meter import CreditBalance, last_balance, try_read
from apollo_frames.engine.work import Work
from apollo_frames.io.files import check_chunk_rows
from apollo_frames.io.stream import file_work
from apollo_frames.ops import registry
from apollo_frames.ops.pilot import PilotResult, check_pilot, run_pilot

#: The share of sent records assumed to match (and so to be charged) when the ledger has no history.
DEFAULT_MATCH_RATE = 0.8
#: Seconds one bulk request is assumed to take, for the duration estimate (Apollo's bulk calls
#: usually answer in well under that; the rate limits, not latency, bind on most plans).
ASSUMED_LATENCY_S = 1.0


# -- rate limits and duration --------------------------------------------------------------------


def _seen_limits(seen: dict, now: float) -> tuple[dict[str, int | None], dict[str, tuple[int, float]], str]:
    """assumed_limits from what the ledger saw for an endpoint: the limits, what is left, when it was seen."""
    limits = {w: seen[w]["limit"] if w in seen else None for w in WINDOWS}
    left: dict[str, tuple[int, float]] = {}
    for w, info in seen.items():
        if info["limit"] is None or info["left"] is None or w not in WINDOW_SECONDS:
            continue
        # Fixed windows and no reset header: that count holds until, at the latest,
        # a full window after it was seen.
        remaining = info["seen_at"].timestamp() + WINDOW_SECONDS[w] - now
        if remaining > 0:
            left[w] = (int(info["left"]), remaining)
    newest = max(info["seen_at"] for info in seen.values())
    kind = {info["source"] for info in seen.values()}
    label = "headers" if kind == {"headers"} else "/".join(sorted(kind))
    return limits, left, f"{label} seen {newest.strftime('%Y-%m-%d %H:%M UTC')}"


def assumed_limits(
    client, endpoint: str, plan: str | None = None
) -> tuple[dict[str, int | None], dict[str, tuple[int, float]], str]:
    """(limit per window, {window: (left, seconds until it resets at the latest)}, where they came from).

    Real limits first: the last headers (or usage_stats answer) the ledger saw
    for this endpoint, then this client's live rate limiter if responses
    corrected it; otherwise ``plan``'s preset when given, else the client's
    plan preset (or ``rate_limits=``).
    """
    if plan is not None and plan not in PLAN_PRESETS:
        raise InputError(f"plan must be one of {sorted(PLAN_PRESETS)}, got {plan!r}")
    preset = dict(zip(WINDOWS, client.settings.limits, strict=True))
    now = client.clock.time()
    try:
        seen = client.ledger.limits().get(endpoint)
    except Exception:  # noqa: BLE001  (an unreadable ledger must not stop an estimate)
        seen = None
    if seen:
        return _seen_limits(seen, now)
    live = client.limiter.snapshot().get(endpoint)
    if live:
        limits = {w: live[w]["limit"] for w in WINDOWS if w in live}
        if limits != preset:
            return limits, {}, "this client's rate limiter (from response headers)"
    if plan is not None:
        return dict(zip(WINDOWS, PLAN_PRESETS[plan], strict=True)), {}, f"plan preset {plan} (plan={plan!r} given)"
    if client.settings.rate_limits is not None:
        return preset, {}, "client rate_limits setting"
    return preset, {}, f"plan preset {client.settings.plan}"


def simulate_duration(
    calls: int,
    limits: dict[str, int | None],
    *,
    concurrency: int,
    latency_s: float = ASSUMED_LATENCY_S,
    left: dict[str, tuple[int, float]] | None = None,
) -> float:
    """Seconds to send ``calls`` requests under fixed minute/hour/day windows.

    Requests go ``concurrency`` at a time, each taking ``latency_s``. A window
    opens with the first request sent in it and resets a full length later;
    when any window is spent, sending waits for it to reset. ``left`` gives a
    window's remaining count and the seconds until it resets, if known.
    """
    if calls <= 0:
        return 0.0
    windows = [_window(name, limit, (left or {}).get(name)) for name, limit in limits.items()
               if name in WINDOW_SECONDS and limit is not None]
    concurrency = max(int(concurrency), 1)
    t = 0.0
    remaining = calls
    while remaining > 0:
        for w in windows:
            if w.reset_at is not None and t >= w.reset_at:
                w.left, w.reset_at = w.limit, None
        resets = [w.reset_at for w in windows if w.left <= 0 and w.reset_at is not None]
        if resets:
            t = max(resets)
            continue
        k = min([remaining] + [w.left for w in windows])
        for w in windows:
            if w.reset_at is None:
                w.reset_at = t + w.length
            w.left -= k
        t += math.ceil(k / concurrency) * latency_s
        remaining -= k
    return t


@dataclasses.dataclass
class _Window:
    """A fixed rate-limit window while simulating: requests left, and when it resets (None: not opened yet)."""

    length: float
    limit: int
    left: int
    reset_at: float | None = None


def _window(name: str, limit: int, known: tuple[int, float] | None) -> _Window:
    limit = max(int(limit), 1)
    if known is None:
        return _Window(WINDOW_SECONDS[name], limit, limit)
    return _Window(WINDOW_SECONDS[name], limit, min(max(known[0], 0), limit), known[1])


def format_duration(seconds: float) -> str:
    if seconds <= 0:
        return "0 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    days, rest = divmod(seconds, 86400)
    return f"{days:.0f} d {rest / 3600:.0f} h"


def _limits_text(limits: dict[str, int | None]) -> str:
    short = {"minute": "min", "hour": "h", "day": "day"}
    return ", ".join(
        f"{limits[w]:,}/{short[w]}" if limits.get(w) is not None else f"no {w} limit" for w in WINDOWS
    )


# -- the estimate ----------------------------------------------------------------------------------


def _fmt_num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


@dataclasses.dataclass
class Estimate:
    """What a run would cost, worked out from the cache and the ledger without sending a request."""

    operation: str
    rows: int
    invalid: int
    unique: int
    cached: int
    to_fetch: int
    api_calls: int
    credits_max: float
    credits_expected: float
    match_rate: float
    match_rate_source: str
    duration_s: float
    #: requests allowed per window, None = unlimited
    limits: dict[str, int | None]
    limits_source: str
    duration_assumption: str
    endpoint: str = ""
    worst_credits_per_record: float = 1.0
    #: with ``pilot=``: the 90 % interval of ``credits_expected``, and what the pilot spent and saw
    credits_interval: tuple[float, float] | None = None
    pilot: PilotResult | None = None
    #: what Apollo's credit meter says is left, per credit type the run spends (None: not read)
    balance_left: dict[str, float] | None = None
    balance_read_at: str | None = None

    def _title(self) -> str:
        if self.pilot is not None:
            return f"Estimate {self.operation} (after a pilot of {self.pilot.records:,} records)"
        return f"Estimate {self.operation} (nothing sent)"

    def _balance_lines(self) -> list[tuple[str, str, str]]:
        if not self.balance_left:
            return []
        when = f", read {self.balance_read_at}" if self.balance_read_at else ""
        return [("balance left", _fmt_num(left), f"{kind} (Apollo's credit meter{when})")
                for kind, left in self.balance_left.items()]

    def _pilot_lines(self) -> list[tuple[str, str, str]]:
        if self.pilot is None or self.credits_interval is None:
            return []
        low, high = self.credits_interval
        kinds = ", ".join(f"{k} {r:.0%}" for k, r in self.pilot.match_rate_by_kind.items())
        return [
            ("90% interval", f"{_fmt_num(low)}-{_fmt_num(high)}", "credits for the whole frame, pilot included"),
            ("pilot", _fmt_num(self.pilot.credits_spent),
             f"credits spent on {self.pilot.records:,} records (answers stored); match rate {kinds}"),
        ]

    def _lines(self) -> list[tuple[str, str, str]]:
        per = _fmt_num(self.worst_credits_per_record)
        return self._pilot_lines() + self._balance_lines() + [
            ("rows", f"{self.rows:,}", f"{self.invalid:,} invalid (never sent)"),
            ("unique records", f"{self.unique:,}", f"{self.cached:,} cached, {self.to_fetch:,} to fetch"),
            ("api calls", f"{self.api_calls:,}", f"to {self.endpoint}" if self.endpoint else ""),
            ("credits max", _fmt_num(self.credits_max), f"{per} per record fetched, at worst"),
            (
                "credits expected",
                _fmt_num(self.credits_expected),
                f"match rate {self.match_rate:.0%}: {self.match_rate_source}",
            ),
            ("duration", ("~" if self.duration_s > 0 else "") + format_duration(self.duration_s),
             f"{_limits_text(self.limits)} ({self.limits_source})"),
            ("", "", self.duration_assumption),
        ]

    def __repr__(self) -> str:
        lines = self._lines()
        w0 = max(len(a) for a, _, _ in lines)
        w1 = max(len(b) for _, b, _ in lines)
        body = "\n".join(f"  {a.ljust(w0)}  {b.rjust(w1)}  {c}".rstrip() for a, b, c in lines)
        return f"{self._title()}\n{body}"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        import html

        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(a)}</th><td style='text-align:right'>{html.escape(b)}</td>"
            f"<td style='text-align:left'>{html.escape(c)}</td></tr>"
            for a, b, c in self._lines()
        )
        title = html.escape(self._title())
        return f"<table><caption style='text-align:left'><b>{title}</b></caption>{cells}</table>"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """One row, flat columns (``limit_minute``, ``limit_hour``, ``limit_day`` for the limits)."""
        data = self.to_dict()
        data.pop("pilot")
        interval = data.pop("credits_interval") or (None, None)
        data["credits_low"], data["credits_high"] = interval
        limits = data.pop("limits")
        for w in WINDOWS:
            data[f"limit_{w}"] = limits.get(w)
        frame = pd.DataFrame([data])
        for w in WINDOWS:
            frame[f"limit_{w}"] = frame[f"limit_{w}"].astype("Int64")
        return frame


def _estimable(operation: Any) -> registry.Spec:
    try:
        spec = registry.get(operation)
    except ValueError:
        spec = None
    if spec is None or not spec.estimable:
        raise InputError(f"no estimate for operation {operation!r}; known: {registry.estimable_names()}")
    return spec


def estimate(
    frame: pd.DataFrame,
    *,
    operation: str = "enrich_people",
    client: ApolloClient | None = None,
    columns: Columns = None,
    pilot: int | None = None,
    seed: int = 0,
    balance: bool = False,
    plan: str | None = None,
    **options: Any,
) -> Estimate:
    """Estimate ``operation`` ("enrich_people", "enrich_orgs", "search") on ``frame`` without sending a request.

    Options are the operation's own (people: ``reveal_personal_emails``,
    ``reveal_phone_number``, ``webhook_url``; all: ``refresh``, ``max_age``): they change
    the cache keys and the worst-case credits. ``credits_max`` is what the run
    could spend at worst; ``credits_expected`` scales it by the match rate the
    ledger has seen for this operation (else ``DEFAULT_MATCH_RATE``).

    ``pilot=N`` (enrich operations) first enriches a stratified random sample
    (by identifier kind; ``seed``) spending at most N credits, keeps its
    answers in the store, and bases ``credits_expected`` (for the whole frame,
    pilot included, with ``credits_interval`` at 90 %) on what it matched;
    the rest of the estimate counts what is left to fetch after the pilot.
    See :mod:`apollo_frames.ops.pilot`.

    ``balance=True`` reads Apollo's credit meter (0 credits) and shows
    ``balance_left``; otherwise the last reading this client made, if any.
    ``plan``: "free" or "paid", the rate limits the duration assumes until
    Apollo's headers have told the real ones (``limits_source`` says which was used).

    ``client``: whose store and ledger are read (default: the session's); ``columns``: as the operation takes them.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> leads = pd.DataFrame({"email": ["new.person@unseen-co.example", "new.person@unseen-co.example", "?"]})
    >>> est = af.estimate(leads, operation="enrich_people")
    >>> est.rows, est.unique, est.invalid, est.to_fetch, est.credits_max
    (3, 1, 1, 1, 1.0)
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"estimate needs a pandas DataFrame, got {type(frame).__name__}")
    spec = _estimable(operation)
    if pilot is not None:
        check_pilot(pilot)
        if spec.kind != "enrich":
            raise InputError(f"pilot= needs an enrich operation, not {spec.name!r}")
    with client_scope(client, need_key=pilot is not None or balance) as c:
        tried = run_pilot(frame, spec.name, pilot, client=c, columns=columns, seed=seed, **options) if pilot else None
        result = estimate_from_work(spec.plan(frame, columns, options, c), c, plan)
        result = with_pilot(result, tried) if tried is not None else result
        return with_balance(result, try_read(c) if balance else last_balance(c))


def with_balance(base: Estimate, meter: CreditBalance | None) -> Estimate:
    """``base`` with what the meter says is left of the credit types the run spends."""
    if meter is None:
        return base
    kinds = ["lead_credit"] + (["direct_dial_credit"] if base.worst_credits_per_record > 1 else [])
    left = {k: meter.left(k) for k in kinds}
    read_at = pd.Timestamp(meter.read_at, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    return dataclasses.replace(base, balance_left={k: v for k, v in left.items() if v is not None} or None,
                               balance_read_at=read_at)


def with_pilot(base: Estimate, tried: PilotResult) -> Estimate:
    """``base`` (counted after the pilot) with the pilot's expectation for the whole frame."""
    kinds = ", ".join(f"{k} {s.sampled}" for k, s in tried.strata.items() if s.sampled)
    return dataclasses.replace(
        base,
        credits_expected=tried.credits_expected,
        credits_interval=tried.interval,
        match_rate=round(tried.match_rate, 4),
        match_rate_source=f"pilot of {tried.records:,} records (stratified: {kinds}; seed {tried.seed})",
        pilot=tried,
    )


def estimate_file(
    src: str | Path,
    *,
    operation: str = "enrich_people",
    chunk_rows: int = 10_000,
    client: ApolloClient | None = None,
    columns: Columns = None,
    plan: str | None = None,
    **options: Any,
) -> Estimate:
    """Estimate ``operation`` on the .csv or .parquet file ``src`` as ``enrich_parquet`` would run it; sends nothing.

    The file is read as a file run reads it (CSV cells as text, the same
    missing values) and streamed ``chunk_rows`` at a time: a record repeated
    across chunks counts once, and the calls are counted per chunk, as sent.
    Options as in :func:`estimate`.

    ``client`` and ``columns`` as in :func:`estimate`; ``plan``: "free" or "paid" rate limits for the duration.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> leads = pd.DataFrame({"email": ["new.person@unseen-co.example", "other@unseen-co.example"]})
    >>> leads.to_csv("leads.csv", index=False)
    >>> est = af.estimate_file("leads.csv", operation="enrich_people", chunk_rows=1)
    >>> est.rows, est.to_fetch, est.api_calls
    (2, 2, 2)
    """
    check_chunk_rows(chunk_rows)
    spec = _estimable(operation)
    if spec.job is None:
        raise InputError(f"no file estimate for operation {operation!r}: it does not run row by row from a file")
    job_options, run = spec.estimate_job_options(options)
    with client_scope(client, need_key=False) as c:
        work = file_work(src, spec, chunk_rows, dict(job_options, columns=columns), c, run)
        return estimate_from_work(work, c, plan)


def estimate_from_work(work: Work, c: Any, plan: str | None = None) -> Estimate:
    """The estimate of ``work``: credits, expected spend from the ledger's match rate, duration under the limits."""
    credits_max = work.to_fetch * work.worst_credits
    try:
        history = c.ledger.match_rate(work.operation)
    except Exception:  # noqa: BLE001  (an unreadable ledger must not stop an estimate)
        history = None
    if history is not None:
        rate, records = history
        rate_source = f"ledger, {records:,} records sent by earlier {work.operation} runs"
    else:
        rate, rate_source = DEFAULT_MATCH_RATE, "default (no history in the ledger yet)"
    limits, left, limits_source = assumed_limits(c, work.endpoint, plan)
    concurrency = c.settings.concurrency
    api_calls = int(work.api_calls or 0)
    duration = simulate_duration(api_calls, limits, concurrency=concurrency, left=left)
    assumption = (
        f"assumes {concurrency} requests in flight, ~{ASSUMED_LATENCY_S:g} s each; a spent window waits for its reset"
    )
    if limits_source.startswith("plan preset") and plan is None:
        assumption += "; no rate-limit headers seen yet: pass plan='paid' (--plan paid) if that is yours"
    return Estimate(
        operation=work.operation,
        rows=work.rows,
        invalid=work.invalid,
        unique=work.unique,
        cached=work.cached,
        to_fetch=work.to_fetch,
        api_calls=api_calls,
        credits_max=float(credits_max),
        credits_expected=float(round(credits_max * rate, 1)),
        match_rate=float(rate),
        match_rate_source=rate_source,
        duration_s=round(float(duration), 1),
        limits=limits,
        limits_source=limits_source,
        duration_assumption=assumption,
        endpoint=work.endpoint,
        worst_credits_per_record=work.worst_credits,
    )
