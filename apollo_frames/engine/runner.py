"""The batch runner shared by the enrichment operations.

Given one prepared record (or an invalid reason) per input row, it dedupes,
answers what it can from the cache, sends the rest in bulk calls (up to the
client's concurrency at once, never past the credit budget), caches each batch
as soon as it arrives, and fans the answers back out to every input row.
It knows nothing about people or organizations: an ``Operation`` says how to
build a request and read its answer.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import pandas as pd
import pyarrow as pa

from apollo_frames.client.store import canonical_json
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.core.columns import ColumnMapping
from apollo_frames.core.errors import ApolloError, AuthenticationError, PermissionDeniedError, RateLimitError, warn
from apollo_frames.engine.progress import progress_bar
from apollo_frames.client.ratelimit import parse_rate_headers
from apollo_frames.engine.summary import RunSummary, announce
from apollo_frames.engine.assemble import assemble_frame, new_columns


@dataclasses.dataclass(frozen=True)
class Operation:
    """How one bulk endpoint is called and read."""

    name: str
    endpoint: str
    batch_size: int
    #: (records, options) -> JSON body
    build_payload: Callable[[list[dict], dict], dict]
    #: (records, response body) -> (one result or None per record, credits charged)
    parse: Callable[[list[dict], Any], tuple[list[dict | None], float]]
    #: options -> worst-case credits for one record
    worst_credits: Callable[[dict], float]
    #: results -> table in the declared schema
    flatten: Callable[[Sequence[dict | None]], pa.Table]
    #: result -> further identities to cache it under (so a frame carrying Apollo ids hits the cache too)
    aliases: Callable[[dict], list[dict]] = lambda result: []


@dataclasses.dataclass
class Prepared:
    """Per input row: the record to send and its identity, or why the row is invalid."""

    records: list[dict | None]
    identities: list[dict | None]
    reasons: list[str | None]
    #: the columns the rows were read from (for ``attrs["apollo"]["columns"]``)
    columns: ColumnMapping | None = None


@dataclasses.dataclass
class Plan:
    """The unique work behind a frame: what is cached and what must be fetched.

    Cached answers are flattened as they are read, a block at a time, so a
    large frame never holds every cached record as Python objects at once.
    """

    row_unique: list[int]
    unique_records: list[dict]
    cache_keys: list[str]
    #: cache hits: unique index -> whether the cached answer is a match (False: a cached no-match)
    cached: dict[int, bool]
    #: the cached answers flattened, one row per hit (None when read without flattening)
    cached_table: pa.Table | None = None
    #: unique index -> its row in ``cached_table``
    cached_rows: dict[int, int] = dataclasses.field(default_factory=dict)

    @property
    def to_fetch(self) -> list[int]:
        return [j for j in range(len(self.unique_records)) if j not in self.cached]


#: cache keys read (and answers flattened) per block
READ_BLOCK = 1_000


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_run_args(*, client, max_credits=None, refresh=False, progress=True, confirm_over=None) -> None:
    """Refuse arguments that would otherwise fail late or spend credits by accident (``refresh="no"`` is truthy)."""
    if not all(hasattr(client, name) for name in ("post", "cache", "settings", "stats")):
        raise TypeError(f"client must be an apollo_frames.ApolloClient or None, got {type(client).__name__}")
    for name, value in (("max_credits", max_credits), ("confirm_over", confirm_over)):
        if value is not None and not _is_number(value):
            raise ValueError(f"{name} must be a finite number of credits >= 0 (or None), got {value!r}")
    for name, value in (("refresh", refresh), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def plan_work(
    prepared: Prepared, op: Operation, options: dict, client, *, refresh: bool = False, flatten: bool = True
) -> Plan:
    """Dedupe the valid rows and look them up in the cache (batched reads; ``flatten`` keeps the answers)."""
    row_unique: list[int] = []
    seen: dict[str, int] = {}
    unique_records: list[dict] = []
    identities: list[dict] = []
    for record, identity in zip(prepared.records, prepared.identities):
        if record is None:
            row_unique.append(-1)
            continue
        key = canonical_json(identity)
        j = seen.get(key)
        if j is None:
            j = seen[key] = len(unique_records)
            unique_records.append(record)
            identities.append(identity)
        row_unique.append(j)
    cache = client.cache
    cache_keys = [cache.key(op.endpoint, identity, options) for identity in identities]
    plan = Plan(row_unique, unique_records, cache_keys, {})
    if refresh or not cache_keys:
        return plan
    tables: list[pa.Table] = []
    for start in range(0, len(cache_keys), READ_BLOCK):
        block = cache_keys[start:start + READ_BLOCK]
        hits = cache.get_many(block)
        values: list[dict | None] = []
        for j, key in enumerate(block, start):
            if key in hits:
                value = hits[key]
                plan.cached[j] = value is not None
                if flatten:
                    plan.cached_rows[j] = len(plan.cached_rows)
                    values.append(value)
        if values:
            tables.append(op.flatten(values))
    if tables:
        plan.cached_table = pa.concat_tables(tables)
    return plan


def run_operation(
    frame: pd.DataFrame,
    prepared: Prepared,
    op: Operation,
    options: dict,
    *,
    client,
    max_credits: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    ledger=None,
    ttl: float | None = None,
    confirm_over: float | None = None,
    run_id: str | None = None,
) -> pd.DataFrame:
    """Run ``op`` for every prepared row of ``frame`` and return the enriched frame.

    ``confirm_over``: when the call's worst-case spend is above it, ask first
    (or refuse, when nobody can be asked) before anything is sent.
    ``run_id``: the ledger's run id (a streaming file run passes one for all its chunks).
    """
    done = execute(
        len(frame), prepared, op, options, client=client, max_credits=max_credits, refresh=refresh,
        progress=progress, ledger=ledger, ttl=ttl, confirm_over=confirm_over, run_id=run_id,
    )
    result = assemble_frame(frame, answer_columns(prepared, done))
    finish(done, progress)
    result.attrs["apollo"] = done.summary.to_dict()
    return result


@dataclasses.dataclass
class Executed:
    """What :func:`execute` did: per unique record its answer, outcome and message; the summary so far."""

    op: Operation
    plan: Plan
    results: list[dict | None]
    outcome: list[str | None]
    messages: list[str | None]
    summary: RunSummary
    worst: float
    stop_reason: str | None
    started: float


def execute(
    rows: int,
    prepared: Prepared,
    op: Operation,
    options: dict,
    *,
    client,
    max_credits: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    ledger=None,
    ttl: float | None = None,
    confirm_over: float | None = None,
    run_id: str | None = None,
) -> Executed:
    """Dedupe, read the cache, send the rest in bulk calls and cache each answer (see :func:`run_operation`)."""
    check_run_args(client=client, max_credits=max_credits, refresh=refresh, progress=progress, confirm_over=confirm_over)
    started = time.monotonic()
    ledger = ledger if ledger is not None else client.ledger
    run_id = run_id or uuid.uuid4().hex[:12]
    summary = RunSummary(operation=op.name, rows=rows, run_id=run_id)
    plan = plan_work(prepared, op, options, client, refresh=refresh)
    n_unique = len(plan.unique_records)
    summary.unique_inputs = n_unique
    summary.cache_hits = len(plan.cached)
    worst = float(op.worst_credits(options))
    credits_max = len(plan.to_fetch) * worst
    if max_credits is not None:
        credits_max = min(credits_max, max_credits)
    confirm_spend(op.name, credits_max, confirm_over)

    results: list[dict | None] = [None] * n_unique
    outcome: list[str | None] = [None] * n_unique
    messages: list[str | None] = [None] * n_unique
    for j, matched in plan.cached.items():
        outcome[j] = "matched" if matched else "no_match"

    pending = deque(plan.to_fetch)
    requests_before = client.stats.requests
    spent = 0.0
    stop_reason: str | None = None
    fatal: BaseException | None = None
    concurrency = client.settings.concurrency
    ttl = client.settings.cache_ttl if ttl is None else ttl
    bar = progress_bar(total=n_unique, initial=len(plan.cached), desc=op.name, enabled=progress)
    bar.set_postfix(cached=len(plan.cached), credits=0)

    def send(batch: list[int]):
        records = [plan.unique_records[j] for j in batch]
        response = client.post(op.endpoint, json=op.build_payload(records, options))
        return records, response

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apollo")
    inflight: dict[Any, tuple[list[int], float]] = {}
    try:
        while pending or inflight:
            while pending and len(inflight) < concurrency and stop_reason is None and fatal is None:
                n = min(op.batch_size, len(pending))
                if max_credits is not None and worst > 0:
                    committed = spent + sum(cost for _, cost in inflight.values())
                    room = math.floor((max_credits - committed) / worst + 1e-9)
                    if room < n:
                        if inflight:
                            break  # in-flight batches may cost less than their worst case: wait and see
                        if room <= 0:
                            stop_reason = (
                                f"credit budget reached (max_credits={max_credits:g}, spent {spent:g})"
                            )
                            break
                        n = room
                batch = [pending.popleft() for _ in range(n)]
                inflight[pool.submit(send, batch)] = (batch, n * worst)
            if not inflight:
                break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in done:
                batch, _ = inflight.pop(future)
                try:
                    records, response = future.result()
                    batch_results, credits = op.parse(records, response.data)
                except (AuthenticationError, PermissionDeniedError) as exc:
                    fatal = fatal or exc
                    stop_reason = stop_reason or f"stopped: {exc}"
                    for j in batch:
                        outcome[j], messages[j] = "skipped", f"not sent: {exc}"
                    continue
                except RateLimitError as exc:
                    stop_reason = stop_reason or f"rate limit: {exc}"
                    for j in batch:
                        outcome[j], messages[j] = "skipped", str(exc)
                    continue
                except ApolloError as exc:
                    for j in batch:
                        outcome[j], messages[j] = "error", str(exc)
                    if ledger is not None:
                        ledger.record(
                            run_id=run_id, operation=op.name, endpoint=op.endpoint, records_sent=len(batch),
                            records_matched=0, credits=0.0, status=getattr(exc, "status_code", None) or 0,
                        )
                    bar.update(len(batch))
                    continue
                entries = {}
                for j, value in zip(batch, batch_results):
                    if value is not None:
                        for alias in op.aliases(value):
                            entries[client.cache.key(op.endpoint, alias, options)] = value
                    entries[plan.cache_keys[j]] = value
                client.cache.set_many(entries, ttl=ttl)
                spent += credits
                matched = 0
                for j, value in zip(batch, batch_results):
                    results[j] = value
                    outcome[j] = "matched" if value is not None else "no_match"
                    matched += value is not None
                if ledger is not None:
                    ledger.note_limits(op.endpoint, parse_rate_headers(response.headers))
                    ledger.record(
                        run_id=run_id,
                        operation=op.name,
                        endpoint=op.endpoint,
                        records_sent=len(batch),
                        records_matched=matched,
                        credits=credits,
                        status=response.status_code,
                    )
                bar.update(len(batch))
                bar.set_postfix(cached=len(plan.cached), credits=f"{spent:g}")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    for j in pending:
        outcome[j], messages[j] = "skipped", stop_reason or "not sent"
    summary.api_calls = client.stats.requests - requests_before
    summary.credits_consumed = spent
    if fatal is not None:
        raise fatal
    return Executed(op, plan, results, outcome, messages, summary, worst, stop_reason, started)


def finish(done: Executed, progress: bool) -> None:
    """Warn about skipped rows, stamp the elapsed time, print the summary line when asked."""
    summary = done.summary
    skipped_unique = sum(1 for o in done.outcome if o == "skipped")
    if skipped_unique:
        summary.skipped_credits_max = skipped_unique * done.worst
        warn(
            f"{done.op.name}: {summary.skipped:,} rows ({skipped_unique:,} unique records) were skipped: "
            f"{done.stop_reason}. Finishing them would cost at most {summary.skipped_credits_max:g} credits; run "
            f"again (with a larger max_credits if the budget stopped it) and the rows already done come from the cache."
        )
    summary.elapsed_s = round(time.monotonic() - done.started, 3)
    if progress:
        announce(summary)


def answer_columns(prepared: Prepared, done: Executed) -> pa.Table:
    """The new columns, one row per input row in order: status, reason, flattened answer; counts go to the summary."""
    plan, outcome, messages, summary = done.plan, done.outcome, done.messages, done.summary
    # One table: the cached answers (flattened when read), then the fetched ones, then a null row for the rest.
    fetched = plan.to_fetch
    parts = [plan.cached_table] if plan.cached_table is not None else []
    parts.append(done.op.flatten([done.results[j] for j in fetched] + [None]))
    row_of = dict(plan.cached_rows)
    offset = len(row_of)
    row_of.update((j, offset + i) for i, j in enumerate(fetched))
    null_row = offset + len(fetched)
    take = [row_of[j] if j >= 0 else null_row for j in plan.row_unique]
    flat = pa.concat_tables(parts).take(pa.array(take, type=pa.int64()))
    status: list[str] = []
    error: list[str | None] = []
    for j, reason in zip(plan.row_unique, prepared.reasons):
        if j < 0:
            status.append("invalid")
            error.append(reason)
        else:
            status.append(outcome[j] or "skipped")
            error.append(messages[j])
    counts = pd.Series(status, dtype="object").value_counts()
    summary.matched = int(counts.get("matched", 0))
    summary.no_match = int(counts.get("no_match", 0))
    summary.invalid = int(counts.get("invalid", 0))
    summary.errors = int(counts.get("error", 0))
    summary.skipped = int(counts.get("skipped", 0))
    return new_columns({"apollo_status": status, "apollo_error": error}, flat)
