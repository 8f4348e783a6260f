"""The batch runner shared by the enrichment operations.

Given one prepared record (or an invalid reason) per input row, it dedupes,
answers what it can from the cache, sends the rest in bulk calls (up to the
client's concurrency at once, never past the credit budget), caches each batch
as soon as it arrives, and fans the answers back out to every input row.
It knows nothing about people or organizations: an ``Operation`` says how to
build a request and read its answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import sqlite3
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.client.flat import STORED_AT
from apollo_frames.core.columns import ColumnMapping
from apollo_frames.core.columnwise import take_columns
from apollo_frames.core.entries import canonical_json
from apollo_frames.core.errors import (
    APIError,
    RunInterrupted,
    StorageError,
    warn,
)
from apollo_frames.core.reasons import code_of, codes_of, failure_cause, joined, tagged
from apollo_frames.core.reasons import reason as coded_reason
from apollo_frames.engine import changes as changes_module
from apollo_frames.engine.answered import ANSWERED, FlatAnswers, give_back, system_pool
from apollo_frames.engine.assemble import (
    CREDITS_COLUMN,
    ERROR_CODE_COLUMN,
    FETCHED_COLUMN,
    assemble_frame,
    fetched_at,
    new_columns,
)
from apollo_frames.engine.budget import Attempts, Budget, credit_shares, trusted_credits
from apollo_frames.engine.cached import Take, hit_arrays, read_cached, save_answered
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.engine.executor import (
    WAIT,
    DeferredInterrupts,
    Executor,
    Outcome,
    StopSignal,
    Wait,
)
from apollo_frames.engine.keeper import AnswerWriter, Claims, Keep, lease_seconds, person_id
from apollo_frames.engine.meter import preflight, reconcile
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.progress import progress_bar
from apollo_frames.engine.records import ColumnRecords, pick
from apollo_frames.engine.summary import RunSummary, announce
from apollo_frames.engine.suppressing import STATUS as SUPPRESSED
from apollo_frames.engine.suppressing import STORED_REASON, Suppressor


@dataclasses.dataclass
class Unattributed:
    """A paid answer no record of its batch could be matched to (it is cached under its own identities)."""

    answer: dict
    #: what ``attrs["apollo"]["unattributed"]`` says about it (JSON-able; includes its ``credits``)
    report: dict
    #: the identities it is cached under (default: the operation's ``aliases``)
    identities: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Parsed:
    """One bulk answer, read: per record its answer (None: no match) and the credits the batch cost.

    ``errors``: batch index -> why that record has no answer although the batch
    was answered (its row ends ``error`` with that reason; nothing is cached for
    it). ``unattributed``: paid answers that could not be told apart.
    """

    results: list[dict | None]
    #: as the server reported it (the runner checks it: ``engine.budget.trusted_credits``)
    credits: Any
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    unattributed: list[Unattributed] = dataclasses.field(default_factory=list)
    #: of ``errors``, the answers that contradicted what their record asked for (counted in the run summary)
    contradicted: int = 0

    @classmethod
    def of(cls, parsed: Parsed | tuple[list[dict | None], Any]) -> Parsed:
        """An operation's parse result, which may also be the plain ``(results, credits)`` pair."""
        return parsed if isinstance(parsed, Parsed) else cls(*parsed)


@dataclasses.dataclass(frozen=True)
class Operation:
    """How one bulk endpoint is called and read."""

    name: str
    endpoint: str
    batch_size: int
    #: (records, options) -> JSON body
    build_payload: Callable[[list[dict], dict], dict]
    #: (records, response body) -> (one result or None per record, credits the server says it charged), or a
    #: :class:`Parsed`; the runner believes that figure only within [0, worst case] (``engine.budget.trusted_credits``)
    parse: Callable[[list[dict], Any], Parsed | tuple[list[dict | None], Any]]
    #: options -> worst-case credits for one record
    worst_credits: Callable[[dict], float]
    #: results -> table in the declared schema
    flatten: Callable[[Sequence[dict | None]], pa.Table]
    #: result -> further identities to cache it under (so a frame carrying Apollo ids hits the cache too)
    aliases: Callable[[dict], list[dict]] = lambda result: []
    #: (prepared, flattened answers, statuses, errors) -> further text columns after ``apollo_error``, in order;
    #: it may change a row's status and error in place (e.g. people's match-quality ``conflict``)
    review: Callable[[Prepared, pa.Table, list[str], list[str | None]], dict[str, list | pa.Array]] | None = None
    #: options -> worst-case credits for one record by Apollo credit type (default: all ``lead_credit``)
    credit_types: Callable[[dict], dict[str, float]] | None = None
    #: flattened answers -> what this run's rows show of them (people: a do-not-call number left out of
    #: ``mobile_phone`` unless ``allow_dnc``); applied to the rows, never to the stored or flattened copies
    shown: Callable[[pa.Table], pa.Table] | None = None


@dataclasses.dataclass
class Prepared:
    """Per input row: the record to send and its identity, or why the row is invalid."""

    #: a list, or the same records kept as columns (:class:`~apollo_frames.engine.records.ColumnRecords`)
    records: list[dict | None] | ColumnRecords
    identities: list[dict | None] | ColumnRecords
    reasons: list[str | None]
    #: the columns the rows were read from (for ``attrs["apollo"]["columns"]``)
    columns: ColumnMapping | None = None
    #: per row, ``canonical_json`` of its identity when prepare wrote it already (else None: computed here); an
    #: Arrow string array when prepare built every row's text by columns
    identity_texts: list[str | None] | pa.Array | None = None
    #: when prepare built the records by columns: per field, each row's value in its record (null: not in it),
    #: so a review can read the rows a column at a time
    fields: dict[str, pa.Array] | None = None
    #: rows set aside with a status of their own (not ``invalid``): row -> status (``suppressed``)
    statuses: dict[int, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan:
    """The unique work behind a frame: what is cached and what must be fetched.

    Cached answers are flattened as they are read, a block at a time, so a
    large frame never holds every cached record as Python objects at once.
    """

    row_unique: list[int]
    unique_records: Sequence[dict]
    cache_keys: list[str]
    #: cache hits: unique index -> whether the cached answer is a match (False: a cached no-match)
    cached: MutableMapping[int, bool]
    #: the cached answers flattened, one row per hit (None when read without flattening); after
    #: :func:`execute`, also the answers it received
    cached_table: pa.Table | None = None
    #: unique index -> its row in ``cached_table``
    cached_rows: MutableMapping[int, int] = dataclasses.field(default_factory=dict)
    #: answers older than ``max_age``, fetched again: unique index -> its old row in ``cached_table`` (what the
    #: row shows, beside its status and reason, when it could not be fetched again)
    stale: dict[int, int] = dataclasses.field(default_factory=dict)

    @property
    def sends(self) -> bool:
        """Whether some unique record has no cached answer (``cached`` holds unique indices only)."""
        return len(self.cached) < len(self.unique_records)

    @property
    def to_fetch(self) -> list[int]:
        if not self.sends:
            return []
        return [j for j in range(len(self.unique_records)) if j not in self.cached]


#: the flattened columns a stored answer is checked by against the suppression list
SUPPRESS_COLUMNS = ("person.email", "person.linkedin_url", "person.id", "person.organization.primary_domain",
                    "org.primary_domain", "org.id")
#: cache keys read (and answers flattened) per block; also the rows of a saved flattened copy
READ_BLOCK = 1_000


def check_client(client: Any) -> None:
    """Refuse what is not a client before anything is read (an operation would fail late, on its first use)."""
    if not all(hasattr(client, name) for name in ("post", "cache", "settings", "stats")):
        raise TypeError(f"client must be an apollo_frames.ApolloClient or None, got {type(client).__name__}")


@dataclasses.dataclass
class Keyed:
    """A frame's rows deduped and keyed (what :func:`plan_work` starts from): per row its unique index (-1: not
    valid or set aside), per unique index its first row and store key; ``statuses``: the rows set aside then."""

    row_unique: list[int]
    first_rows: list[int]
    cache_keys: list[str]
    statuses: dict[int, str]


def key_rows(prepared: Prepared, op: Operation, options: dict, client: Any) -> Keyed:
    """Dedupe the valid rows and compute their store keys (SHA-256 each: the costly part of a cached re-run)."""
    row_unique, first_rows, texts = dedupe(prepared)
    return Keyed(row_unique, first_rows, client.cache.keys(op.endpoint, texts, options), dict(prepared.statuses))


def plan_work(
    prepared: Prepared, op: Operation, options: dict, client, *, refresh: bool = False, flatten: bool = True,
    max_age: float | None = None, take: Take | None = None, keys: Keyed | None = None,
) -> Plan:
    """Dedupe the valid rows and look them up in the cache (batched reads; ``flatten`` keeps the answers).

    ``max_age``: seconds; an answer stored longer ago than that is not a hit (it is fetched again).
    ``take``: what reads the flattened copies (:func:`~apollo_frames.engine.cached.read_cached`).
    ``keys``: :func:`key_rows` of these rows computed before (a file run's key pass), used when the same rows are
    set aside now and the rows are as many (else, e.g. a person suppressed since, they are computed again).
    """
    if keys is None or keys.statuses != prepared.statuses or len(keys.row_unique) != len(prepared.records):
        keys = key_rows(prepared, op, options, client)
    unique_records: Sequence[Any] = pick(prepared.records, keys.first_rows)
    plan = Plan(keys.row_unique, unique_records, keys.cache_keys, {})
    if refresh or not keys.cache_keys:
        return plan
    read = read_cached(keys.cache_keys, op, client.cache, flatten=flatten or max_age is not None,
                       block_size=READ_BLOCK, take=take)
    plan.cached, plan.cached_rows, plan.cached_table = read.cached, read.rows, read.table()
    if max_age is not None:
        drop_stale(plan, client.cache.clock.time() - max_age)
    if not flatten:
        plan.cached_rows, plan.stale, plan.cached_table = {}, {}, None
    return plan


def drop_stale(plan: Plan, cutoff: float) -> None:
    """Take the hits stored before ``cutoff`` (POSIX seconds) out of the plan: they are fetched again (their
    flattened rows stay in the table, unused). Column-wise: Python only touches the stale ones."""
    if plan.cached_table is None or not plan.cached_rows:
        return
    js, rows = hit_arrays(plan.cached_rows, np.int64)
    stored = plan.cached_table.column(STORED_AT).to_numpy()
    for j in js[stored[rows] < cutoff].tolist():
        del plan.cached[j]
        plan.stale[j] = plan.cached_rows.pop(j)


def set_aside(prepared: Prepared, suppressor: Suppressor | None) -> None:
    """Rows naming a suppressed identifier leave the plan before anything is read or sent: status
    ``suppressed``, the reason without the value."""
    if suppressor is None:
        return
    for i, record in enumerate(prepared.records):
        reason = suppressor.row(record) if record is not None else None
        if reason is not None:
            prepared.records[i] = prepared.identities[i] = None
            prepared.reasons[i] = reason
            prepared.statuses[i] = SUPPRESSED


def stored_reasons(table: pa.Table, suppressor: Suppressor) -> Callable[[int], str | None]:
    """Why row i of ``table`` (flattened stored answers) must not be served or kept (it names a suppressed
    identifier), or None."""
    columns = {c: table.column(c).to_pylist() for c in table.column_names if c in SUPPRESS_COLUMNS}
    return lambda row: suppressor.row({c: values[row] for c, values in columns.items()}, STORED_REASON)


def drop_suppressed_cached(plan: Plan, suppressor: Suppressor | None) -> dict[int, str]:
    """Stored answers (read for this plan) that name a suppressed identifier: taken out of the plan's rows, so
    they are never returned; unique index -> reason."""
    table = plan.cached_table
    if suppressor is None or table is None or not (plan.cached_rows or plan.stale):
        return {}
    why = stored_reasons(table, suppressor)
    blocked = {j: reason for j, row in plan.cached_rows.items() if (reason := why(row)) is not None}
    for j in blocked:
        del plan.cached_rows[j]
    # a stale answer is fetched again all the same; it is never shown should that fail
    for j in [j for j, row in plan.stale.items() if why(row) is not None]:
        del plan.stale[j]
    return blocked


def dedupe(prepared: Prepared) -> tuple[list[int], list[int], pa.Array]:
    """(per row: its unique index, -1 for an invalid row; per unique index: its first row and its identity text),
    unique indices in order of first appearance. Rows are the same record when their identity texts are equal."""
    texts = _identity_texts(prepared)
    encoded = pc.dictionary_encode(texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string()))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    valid = np.flatnonzero(encoded.indices.is_valid().to_numpy(zero_copy_only=False))
    codes = codes[valid].astype(np.int64)
    row_unique = np.full(len(texts), -1, np.int64)
    if len(encoded.dictionary) == len(codes) and np.array_equal(codes, np.arange(len(codes))):
        row_unique[valid] = codes  # every row distinct, codes in order of appearance: nothing to sort
        return row_unique.tolist(), valid.tolist(), encoded.dictionary
    _, first = np.unique(codes, return_index=True)  # per code, its first position among the valid rows
    order = np.argsort(first)  # codes by first appearance
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    row_unique[valid] = rank[codes]
    distinct = encoded.dictionary.take(pa.array(order))
    return row_unique.tolist(), valid[first[order]].tolist(), distinct


def _identity_texts(prepared: Prepared) -> list[str | None] | pa.Array:
    """Per row, its identity text; None (null) for an invalid row."""
    records, identities, given = prepared.records, prepared.identities, prepared.identity_texts
    if isinstance(records, ColumnRecords) and isinstance(identities, ColumnRecords) and given is not None:
        # records kept as columns: the texts were written for every row; rows set since can only be unset
        unset = {*records.none_rows(), *identities.none_rows()}
        if len(unset) == len(records.set_rows.keys() | identities.set_rows.keys()):
            texts = _unset(given, sorted(unset))
            if texts.null_count == len(unset):
                return texts
    if isinstance(given, pa.Array):
        given = given.to_pylist()
    rows = zip(records, identities, given or itertools.repeat(None), strict=False)
    return [None if r is None or i is None else t or identity_text(i) for r, i, t in rows]  # prepare gives both


def _unset(texts: list[str | None] | pa.Array, rows: list[int]) -> pa.Array:
    """``texts`` as an Arrow string array, null at ``rows``."""
    texts = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    if not rows:
        return texts
    mask = np.zeros(len(texts), bool)
    mask[rows] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), texts)


def identity_text(identity: dict) -> str:
    """``canonical_json(identity)``, written directly for the common one-field plain-text identity."""
    if len(identity) == 1:
        ((field, value),) = identity.items()
        plain = type(value) is str and value.isascii() and value.isprintable()
        if plain and field.isidentifier() and '"' not in value and "\\" not in value:
            return f'{{"{field}":"{value}"}}'
    return canonical_json(identity)


def run_operation(
    frame: pd.DataFrame,
    prepared: Prepared,
    op: Operation,
    options: dict,
    *,
    client,
    run: RunOptions,
) -> pd.DataFrame:
    """Run ``op`` for every prepared row of ``frame`` and return the enriched frame (``run``: see
    :class:`~apollo_frames.engine.options.RunOptions`)."""
    done = execute(len(frame), prepared, op, options, client=client, run=run)
    with system_pool(done.plan.sends):  # (a run that sent nothing has little to give back)
        new = [answer_columns(prepared, done, host_of(client))]
        if done.plan.sends:
            give_back()
        result = assemble_frame(frame, new)  # (handed over)
    finish(done, run.progress)
    result.attrs["apollo"] = done.summary.to_dict()
    # (by label: a subset or a reordered copy of the result, which keeps its attrs, still names the right rows)
    result.attrs["apollo"]["changes"] = dict(done.changes, row=frame.index[done.changes["row"]].tolist())
    if prepared.columns is not None:
        result.attrs["apollo"]["columns"] = prepared.columns.to_dict()
        result.attrs["apollo"]["column_reasons"] = prepared.columns.reasons()
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
    #: answers this run received and stored
    saved: int = 0
    #: per unique record, what its answer cost in this run (:func:`~apollo_frames.engine.budget.credit_shares`)
    credits: list[float] = dataclasses.field(default_factory=list)
    #: the answers this run replaced that changed: row position, field, old, new (:mod:`apollo_frames.engine.changes`)
    changes: dict[str, list] = dataclasses.field(default_factory=changes_module.empty)


def credit_types(op: Operation, options: dict) -> dict[str, float]:
    """Credit type -> worst-case credits per record of ``op`` with ``options`` (types that cost nothing left out)."""
    per_type = op.credit_types(options) if op.credit_types else {"lead_credit": float(op.worst_credits(options))}
    return {t: c for t, c in per_type.items() if c}


def metered_now(per_type: Mapping[str, float]) -> bool:
    """Whether a run's charges are on Apollo's meter when it ends (phones are charged later, when produced)."""
    return set(per_type) == {"lead_credit"}


def execute(
    rows: int,
    prepared: Prepared,
    op: Operation,
    options: dict,
    *,
    client,
    run: RunOptions,
    ttl: float | None = None,
    run_id: str | None = None,
    stop: StopSignal | None = None,
    budget: Budget | None = None,
    make_bar: Callable[..., Any] = progress_bar,
    take: Take | None = None,
    keys: Keyed | None = None,
) -> Executed:
    """Dedupe, read the cache, send the rest in bulk calls and cache each answer (see :func:`run_operation`).

    ``run``: the checked options (:class:`~apollo_frames.engine.options.RunOptions`); its ``suppress`` values
    are kept from sending, storing and returning beside the folder's suppression list (raw values:
    :func:`apollo_frames.client.suppression.suppression_values` reads the sources).
    ``run_id``: the ledger's run id (a streaming file run passes one for all its chunks).
    ``stop``: a stop signal shared with other runs (a file run's chunks): once
    one stops on a rate limit or a refused key, the others send nothing more.
    ``budget``: a budget shared with other runs (a Dask computation's), instead of one of ``run.max_credits``.
    ``make_bar``: builds the progress bar each answered batch moves (a file run passes its own, over the file).
    ``take``: what reads the stored flattened copies (a file run's rows read ahead; default: the store's blocks).
    ``keys``: the rows' dedupe and store keys computed before (see :func:`plan_work`).
    Ctrl-C raises :class:`~apollo_frames.engine.keeper.RunInterrupted` once every
    answer received (those in flight awaited briefly) is stored. When the store
    or the ledger cannot be written, sending stops, the answers received stay in
    the rows and ``summary.storage_error`` says why.
    """
    check_client(client)
    started = time.monotonic()
    run_id = run_id or uuid.uuid4().hex[:12]
    quarantined = client.cache.quarantined
    suppressor = Suppressor.for_run(client.settings.cache_dir, run.suppress, client.clock)
    set_aside(prepared, suppressor)
    plan = plan_work(prepared, op, options, client, refresh=run.refresh, max_age=run.max_age, take=take, keys=keys)
    with system_pool(plan.sends):  # a run that sends: Arrow from the system allocator
        blocked = drop_suppressed_cached(plan, suppressor)
        summary = RunSummary(operation=op.name, rows=rows, run_id=run_id, unique_inputs=len(plan.unique_records),
                             cache_hits=len(plan.cached))
        worst = float(op.worst_credits(options))
        credits_max = len(plan.to_fetch) * worst
        per_type = credit_types(op, options)
        # a run sharing a budget (a file run's chunk; ``run.max_credits`` is what the budget has left) is checked
        # against the meter as before, but reconciled by its caller, who reads the meter around the whole run
        meter = preflight(client, {t: c * len(plan.to_fetch) for t, c in per_type.items()}, run.max_credits,
                          read_capped=budget is None)
        meter = meter if budget is None else None
        confirm_spend(op.name, run.worst_allowed(credits_max), run.confirm_over)

        bar = make_bar(total=len(plan.unique_records), initial=len(plan.cached), desc=op.name, enabled=run.progress)
        bar.set_postfix(cached=len(plan.cached), credits=0)
        executor = Executor.for_client(client, stop)
        executor.ahead = max(1, executor.concurrency // 2)  # a worker that finishes starts the next batch at once
        sender = _Sender(op, plan, options, client, run=run, run_id=run_id,
                         ttl=client.settings.cache_ttl if ttl is None else ttl,
                         budget=budget if budget is not None else Budget(run.max_credits), worst=worst,
                         bar=bar, stop=executor.stop, handed=executor.concurrency + executor.ahead,
                         suppressor=suppressor)
        for j, why in blocked.items():
            sender.outcome[j], sender.messages[j] = SUPPRESSED, why
        requests_before, sending = client.stats.requests, time.monotonic()
        try:
            _send_all(executor, sender, client, plan)
        finally:
            bar.close()
        summary.send_s = round(time.monotonic() - sending, 3)
        reason = sender.budget_reason or executor.stop.reason
        sender.skip_pending(reason or coded_reason("not_sent"))
        summary.api_calls = client.stats.requests - requests_before
        summary.credits_consumed = sender.spent
        summary.credits_in_doubt = sender.in_doubt
        summary.cache_hits += sender.from_store
        summary.stopped_reason = reason
        summary.quarantined = client.cache.quarantined - quarantined
        sender.warn_unverified()
        sender.warn_storage(summary)
        summary.unattributed = sender.unattributed
        summary.contradicted = sender.contradicted
        summary.identifier_conflicts = sender.identifier_conflicts
        if metered_now(per_type):
            summary.credits_in_doubt += reconcile(client, meter, run_id=run_id, operation=op.name,
                                                  ledger_credits=summary.credits_consumed, credit_types=list(per_type),
                                                  in_doubt=summary.credits_in_doubt, ledger=sender.ledger)
        executor.stop.raise_fatal()
        if plan.sends:  # what the sending freed, before the copies are saved
            give_back()
        flatten_answered(plan, op, sender.flat, sender.outcome, client.cache)
        changes = changes_module.replaced_answers(plan, op, sender.outcome, client.cache, sender.started_at)
        return Executed(op, plan, sender.results, sender.outcome, sender.messages, summary, worst, reason, started,
                        sender.writer.saved, sender.credits, changes)


def _send_all(executor: Executor, sender: _Sender, client, plan: Plan) -> None:
    """Run the sender to the end; on Ctrl-C raise :class:`RunInterrupted` once every answer received is stored.

    Ctrl-C is only noted until then (:class:`DeferredInterrupts`), also while the last answers are stored:
    raised in the middle of that, it would leave them unwritten. A second Ctrl-C stops waiting.
    """
    try:
        with DeferredInterrupts(executor.stop, executor.interrupted.set):
            try:
                executor.run(sender.next_batch, sender.send, sender.on_done)
                sender.settle_deferred()
            finally:
                sender.close()  # every answer received is stored before anything leaves this call
            executor.stop.check_interrupt()  # noted while the last answers were stored
    except KeyboardInterrupt:
        sender.close()
        # a batch claimed but never started (cancelled by the interrupt) keeps no lease: a re-run in this same
        # process (a notebook cell run again) would otherwise wait for it to expire
        with contextlib.suppress(StorageError, sqlite3.Error):  # (not those of requests still out)
            client.cache.release((plan.cache_keys[j] for j in plan.to_fetch if j not in sender.flying),
                                 owner=sender.owner)
        raise RunInterrupted(sender.writer.saved, sender.rows_left()) from None


def flatten_answered(plan: Plan, op: Operation, flat: FlatAnswers, outcome: list[str | None], cache) -> None:
    """Put the answers this run received, flattened as they came (``flat``), into the plan's rows and keep their
    flattened copies."""
    table, answered, found = flat.done(outcome)
    if table is None:
        return
    keys = [plan.cache_keys[j] for j in answered]
    stored = save_answered(cache, op, keys, found, table, block_size=READ_BLOCK)
    stored[np.isnan(stored)] = cache.clock.time()  # (an answer the store could not keep: received now)
    table = table.append_column(STORED_AT, pa.array(stored, pa.float64()))
    offset = plan.cached_table.num_rows if plan.cached_table is not None else 0
    plan.cached_rows.update(zip(answered, range(offset, offset + len(answered)), strict=True))
    plan.cached_table = table if plan.cached_table is None else pa.concat_tables([plan.cached_table, table])


@dataclasses.dataclass
class _Answer:
    """One bulk call's answer, parsed on the worker thread."""

    response: Any
    results: list[dict | None]
    credits: float
    #: False when the server's credit figure was not believable (``credits`` is then the worst case)
    verified: bool = True
    reported: Any = None
    #: batch index -> why that record has no answer although the batch was answered (nothing stored for it)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    #: paid answers no record could be matched to (stored under their own identities, reported)
    unattributed: list[Unattributed] = dataclasses.field(default_factory=list)
    contradicted: int = 0
    #: earlier attempts of the request that may have been charged without a usable answer (in doubt)
    in_doubt: int = 0
    #: batch index -> why its answer was dropped (it names a suppressed identifier): paid, never stored or returned
    suppressed: dict[int, str] = dataclasses.field(default_factory=dict)


def charged_attempts(error: BaseException | None) -> int:
    """How many attempts of a failed request the server may have charged (the client counts them)."""
    return int(getattr(error, "charged_attempts", 0))


@dataclasses.dataclass(eq=False)
class _Batch:
    """One batch of unique indices (claimed before it was made), and its ledger entries."""

    sent: list[int]
    #: their records (made on the dispatching thread: the worker only sends)
    records: list[Any]
    #: its attempts' budget reservations and ledger entries
    attempts: Attempts
    #: why the request was not sent: the ledger could not be written (the run stops)
    unsent: StorageError | None = None
    #: the budget was settled for it, its outcome handled (an interrupt may hand the same outcome over twice)
    settled: bool = False
    handled: bool = False


class _Sender:
    """The send half of one :func:`execute`: batches within the budget, claimed, sent, stored off this thread.

    The dispatching thread claims a batch's records in the store (setting
    aside those another process holds or has stored meanwhile); a worker
    writes the request to the ledger as sent, sends it, parses the answer and
    stores it through the :class:`~apollo_frames.engine.keeper.AnswerWriter`
    (a group commit, which releases the batch's claims in the same transaction;
    the writer's thread settles the ledger); the dispatching thread fans the
    answers into the results.
    """

    def __init__(self, op: Operation, plan: Plan, options: dict, client, *, run: RunOptions, run_id: str,
                 ttl: float | None, budget: Budget, worst: float, bar: Any, stop: StopSignal, handed: int = 1,
                 suppressor: Suppressor | None = None):
        self.op, self.plan, self.options, self.client = op, plan, options, client
        self.suppressor = suppressor
        ledger = run.ledger if run.ledger is not None else client.ledger
        self.ledger, self.run_id, self.ttl, self.budget, self.worst, self.bar = ledger, run_id, ttl, budget, worst, bar
        self.stop, self.refresh, self.cache = stop, run.refresh, client.cache
        #: (store clock) a refresh takes from other processes only answers stored after this
        self.started_at = client.cache.clock.time()
        #: (store clock) an answer stored before this is too old to take (refresh: the run's start; ``max_age``)
        self.fresh_after = (self.started_at if run.refresh else None if run.max_age is None
                            else self.started_at - run.max_age)
        n = len(plan.unique_records)
        self.results: list[dict | None] = [None] * n
        #: the answers received, flattened a block at a time (``results[j]`` is then None again)
        self.flat = FlatAnswers(op.flatten, self.results, plan.to_fetch, READ_BLOCK)
        #: per unique record, its share of the credits its request reported (the bill per row)
        self.credits: list[float] = [0.0] * n
        self.outcome: list[str | None] = [None] * n
        self.messages: list[str | None] = [None] * n
        js, matched = hit_arrays(plan.cached, bool)
        if len(js):  # (one take of the three outcomes: no Python per hit)
            codes = np.zeros(n, np.int8)
            codes[js] = np.where(matched, 1, 2)
            self.outcome = np.array([None, "matched", "no_match"], dtype=object)[codes].tolist()
        self.pending = deque(plan.to_fetch)  # not claimed yet
        self.ready: deque[int] = deque()  # claimed, to send
        self.picked: dict[int, Any] = {}  # the records of those ready, picked a claimed block at a time
        self.handed = max(1, handed)  # batches handed to the executor at once (running and queued)
        self.budget_reason: str | None = None
        self.unverified: list[Any] = []  # the unbelievable credit figures reported, one per batch
        #: this run's lease owner: runs sharing the client's store keep apart as processes do
        self.owner = self.cache.begin_run()
        #: unique indices of the batches handed out and not handled yet (sent, or queued to be)
        self.flying: set[int] = set()
        self._sending = 0  # requests being sent now (a worker may outlive an interrupt's wait for it)
        self._closed = False
        self._ending = threading.Lock()  # for the two above: the run's owner ends once both are done
        self.writer = AnswerWriter(self.cache, ledger, ttl=ttl, owner=self.owner)
        self.claims = Claims(self.cache, lease_seconds(client.settings), self.owner)
        self.deferred: dict[int, None] = {}  # ordered set: held by another process
        self.in_flight = 0
        #: answers another process stored while this run went on (not paid by this run)
        self.from_store = 0
        self.storage_error: StorageError | None = None
        self.unattributed: list[dict] = []
        #: answers rejected as contradicting what their record asked for
        self.contradicted = 0
        #: credits this run's answers reported (believed), and the worst case of its attempts that got no usable
        #: answer but may have been charged (the budget may be shared with other runs)
        self.spent = 0.0
        self.in_doubt = 0.0

    @property
    def identifier_conflicts(self) -> int:
        """Identifiers an answer proved but another person's answer holds (kept out of the store)."""
        return self.writer.conflicts

    def next_batch(self) -> _Batch | Wait | None:
        """The next batch to send (claimed, written to the ledger), WAIT, or None when there is none.

        Records another process holds are set aside and awaited once nothing
        else is left; a batch is full unless the budget allows only a smaller last one.
        """
        self._check_writer()
        while not self.stop.stopped:
            if len(self.ready) < self.op.batch_size and self.pending:
                self._claim_ahead()
                continue
            if not self.ready:
                if not self.deferred:
                    return None
                if self.in_flight:
                    return WAIT
                self.await_others()
                continue
            n = self.budget.reserve_items(self.worst, min(self.op.batch_size, len(self.ready)), wait=False)
            if n is None:
                return WAIT  # in-flight batches may cost less than their worst case: wait and see
            if n == 0:
                self.budget_reason = tagged("budget_reached", self.budget.reached())
                return None
            self.in_flight += 1
            sent = [self.ready.popleft() for _ in range(n)]
            self.flying.update(sent)
            return _Batch(sent, self._records(sent), self._attempts(n))
        return None

    def _records(self, sent: list[int]) -> list[Any]:
        """The records of ``sent``, picked when claimed (one columnar take per claimed block rather than per batch,
        on the dispatching thread); one sent again or awaited from another process is picked here."""
        missing = [j for j in sent if j not in self.picked]
        if missing:
            self.picked.update(zip(missing, pick(self.plan.unique_records, missing), strict=True))
        return [self.picked.pop(j) for j in sent]

    def _claim_ahead(self) -> None:
        """Claim the next records (enough for every slot) in one transaction; set aside those another process
        holds, answer those another process stored meanwhile; the rest are ready to send, in planned order."""
        size = max(self.op.batch_size * self.handed - len(self.ready), self.op.batch_size)
        block = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
        keys = {self.plan.cache_keys[j]: j for j in block}
        claimed, held = self.claims.claim(list(keys))
        stored: dict[str, Any] = {}
        if claimed and not self.refresh and self.claims.failed is None:
            stamps: dict[str, tuple[float, float | None]] = {}
            with contextlib.suppress(StorageError):  # a store that cannot be read: send, as planned
                stored = self.cache.get_many(claimed, stamps=stamps)
            if self.fresh_after is not None:  # (max_age: the old answer this run replaces is no answer)
                stored = {k: v for k, v in stored.items() if stamps[k][0] >= self.fresh_after}
        for key, value in stored.items():
            self._answered_elsewhere(keys[key], value)
        if stored:
            self.writer.put(Keep({}, 0, list(stored)))
            self.bar.update(len(stored))
        self.deferred.update(dict.fromkeys(keys[k] for k in held))
        free = [j for k, j in keys.items() if k not in held and k not in stored]
        self.ready.extend(free)
        self.picked.update(zip(free, pick(self.plan.unique_records, free), strict=True))

    def _begin(self, batch: _Batch) -> bool:
        """Write the batch to the ledger as sent, at its worst case, just before it leaves (on the worker thread:
        the dispatching thread never waits on the disk); False when the ledger cannot be written (not sent)."""
        try:
            batch.attempts.note()
        except StorageError as exc:  # a request the ledger cannot write down is not sent
            batch.unsent = exc
            return False
        return True

    def _attempts(self, n: int) -> Attempts:
        """The attempts of a batch of ``n`` records, whose first worst case was just reserved."""
        begin = None if self.ledger is None else functools.partial(
            self.ledger.begin, run_id=self.run_id, operation=self.op.name, endpoint=self.op.endpoint,
            records_sent=n, worst_credits=n * self.worst)
        return Attempts(self.budget, n * self.worst, begin)

    def send(self, batch: _Batch) -> _Answer | None:
        """One bulk call (on a worker thread), parsed and kept; None when it was not sent.

        The answers are stored here, before this worker takes another batch (see ``AnswerWriter.store``);
        the writer's thread settles the ledger.
        """
        with self._ending:
            self._sending += 1
        try:
            return self._send(batch)
        finally:
            with self._ending:
                self._sending -= 1
            self._end_run_if_idle()  # the run may have closed while this request was out

    def _send(self, batch: _Batch) -> _Answer | None:
        if not self._begin(batch):
            return None
        records = batch.records
        response = self.client.post(self.op.endpoint, json=self.op.build_payload(records, self.options),
                                    abandon=self._abandon, before_resend=batch.attempts.resend)
        try:
            parsed = Parsed.of(self.op.parse(records, response.data))
        except APIError as exc:  # an answer received but unusable: the server ran it and may have charged it
            exc.charged_attempts = response.charged_attempts + 1
            raise
        # any finite figure from 0 to the batch's worst case is believed: Apollo charges fractions (a match
        # without an e-mail costs less than 1), so "1 per record returned" is no floor.
        credits, verified = trusted_credits(parsed.credits, len(batch.sent) * self.worst)
        answer = _Answer(response, parsed.results, credits, verified, parsed.credits, parsed.errors,
                         parsed.unattributed, contradicted=parsed.contradicted, in_doubt=response.charged_attempts)
        if self.suppressor is not None:
            self._drop_suppressed(answer, records)
        self.writer.store(self._to_store(batch, answer))
        return answer

    def _abandon(self) -> bool:
        """Whether a request not sent yet (a retry, one waiting for the rate limit) is given up: Ctrl-C was noted."""
        return self.stop.interrupted

    def _drop_suppressed(self, answer: _Answer, records: Sequence[dict]) -> None:
        """Answers naming a suppressed identifier are neither stored nor returned (they were paid: the ledger and
        the row's bill keep the credit); the identifiers their rows were named by join the list, so the next run
        sets those rows aside instead of paying again."""
        assert self.suppressor is not None
        for n, value in enumerate(answer.results):
            reason = self.suppressor.answer(value) if value is not None and n not in answer.errors else None
            if reason is not None:
                answer.suppressed[n] = reason
                self.suppressor.learn(records[n])
        answer.unattributed = [u for u in answer.unattributed if self.suppressor.answer(u.answer) is None]

    def _to_store(self, batch: _Batch, answer: _Answer) -> Keep:
        """What the writer does for an answered batch: store its answers, release its claims, settle its entry."""
        settle = None
        entry = batch.attempts.entry(answer.in_doubt)  # the attempt answered (those before stay in doubt)
        if entry is not None:
            matched = sum(v is not None for v in answer.results) + len(answer.unattributed)
            settle = (entry, {"credits": answer.credits, "status": answer.response.status_code,
                              "records_matched": matched, "unverified": not answer.verified})
        entries, aliases = self._entries(batch.sent, answer.results, {**answer.errors, **answer.suppressed},
                                         answer.unattributed)
        keys = self._keys(batch.sent)
        return Keep(entries, len(batch.sent), keys, settle, (self.op.endpoint, answer.response.headers),
                    aliases=aliases)

    def _entries(self, sent: list[int], results: list[dict | None], errors: dict[int, str],
                 unattributed: list[Unattributed]) -> tuple[dict[str, dict | None], dict[str, dict]]:
        """What to store for an answered batch: each answer under its key (nothing for a record answered without
        certainty); and the keys of the identifiers each answer proves (its id, e-mail, LinkedIn URL), and those of
        paid answers no record matched (their own identities), which the writer checks and stores beside them."""
        op, cache = self.op, self.cache
        answered = [(j, value) for n, (j, value) in enumerate(zip(sent, results, strict=False)) if n not in errors]
        entries: dict[str, dict | None] = {self.plan.cache_keys[j]: value for j, value in answered}
        claims: dict[str, dict] = {}
        proved = [(value, identity_text(alias)) for _, value in answered if value is not None
                  for alias in op.aliases(value)]
        keys = cache.keys(op.endpoint, [text for _, text in proved], self.options)  # the batch's keys in one call
        for (value, _), key in zip(proved, keys, strict=True):
            if key not in entries:  # a row's own identity: its own answer stands
                claims.setdefault(key, {})[person_id(value)] = value
        for extra in unattributed:  # (through the writer's guard too: another person's answer may hold the key)
            for alias in extra.identities or op.aliases(extra.answer):
                if (key := cache.key(op.endpoint, alias, self.options)) not in entries:
                    claims.setdefault(key, {})[person_id(extra.answer)] = extra.answer
        return entries, claims

    def on_done(self, done: Outcome[_Batch, _Answer | None]) -> None:
        batch, answer = done.task, done.value
        if batch.handled:  # handed over again after an interrupt, once it had been handled
            return
        if not batch.settled:
            batch.settled = True
            self.in_flight -= 1
            self.flying.difference_update(batch.sent)
            self._settle_budget(batch, done)
            if batch.unsent is not None or not done.started:
                self.ready.extendleft(reversed(batch.sent))  # not sent: skipped with the reason when the run ends
        if batch.unsent is not None:  # the run stops
            self._storage_failed(batch.unsent)
        elif not done.started:  # queued when the run stopped
            pass
        elif answer is None:
            self._failed(batch, done)
        else:
            self._keep(batch, answer)
        self._check_writer()
        self.bar.update(sum(self.outcome[j] is not None for j in batch.sent))
        self.bar.set_postfix(cached=len(self.plan.cached) + self.from_store, credits=f"{self.spent:g}")
        batch.handled = True

    def _settle_budget(self, batch: _Batch, done: Outcome[_Batch, _Answer | None]) -> None:
        """Release the batch's reservations. Every attempt the server may have charged counts against the cap at
        its worst case, the one answered too: a plausible low figure cannot be told from an honest one, so only
        the worst case keeps the server's charge within max_credits. The spend is the answer's figure; the
        attempts without a usable answer are in doubt at their worst case (as in the ledger)."""
        answer = done.value
        if answer is not None:
            in_doubt = answer.in_doubt
        else:
            in_doubt = charged_attempts(done.error) if done.started and batch.unsent is None else 0
        self.in_doubt += in_doubt * batch.attempts.worst
        self.spent += answer.credits if answer is not None else 0.0
        batch.attempts.settle(in_doubt, answer.credits if answer is not None else None)
        if batch.attempts.unrecorded is not None:
            self._storage_failed(batch.attempts.unrecorded)

    def _keep(self, batch: _Batch, answer: _Answer) -> None:
        """Fan the answers into the results (the worker queued them for the writer)."""
        results = answer.results
        paid = [n < len(results) and results[n] is not None and n not in answer.errors for n in range(len(batch.sent))]
        for j, share in zip(batch.sent, credit_shares(answer.credits, paid), strict=True):
            self.credits[j] = share
        for n, (j, value) in enumerate(zip(batch.sent, answer.results, strict=False)):
            if n in answer.suppressed:  # paid for, dropped: nothing stored or returned
                self.outcome[j], self.messages[j] = SUPPRESSED, answer.suppressed[n]
                continue
            if n in answer.errors:  # answered, but not for sure: nothing stored, the row says why
                self.outcome[j], self.messages[j] = "error", answer.errors[n]
                continue
            self.results[j] = value
            self.outcome[j] = "matched" if value is not None else "no_match"
        self.flat.took(j for j in batch.sent if self.outcome[j] in ANSWERED)
        self.unattributed.extend(extra.report for extra in answer.unattributed)
        self.contradicted += answer.contradicted
        if not answer.verified:
            self.unverified.append(answer.reported)

    def _keys(self, indices: Iterable[int]) -> list[str]:
        return [self.plan.cache_keys[j] for j in indices]

    def _answered_elsewhere(self, j: int, value: Any) -> None:
        """Another process paid for this record and stored its answer while this run went on (an answer naming a
        suppressed identifier is not returned, as one this run fetched)."""
        reason = None if self.suppressor is None or value is None else self.suppressor.answer(value)
        if reason is not None:
            self.outcome[j], self.messages[j] = SUPPRESSED, reason
            return
        if self.outcome[j] is None:
            self.from_store += 1
        self.results[j] = value
        self.outcome[j] = "matched" if value is not None else "no_match"
        self.flat.took((j,))

    def _failed(self, batch: _Batch, done: Outcome[_Batch, _Answer | None]) -> None:
        status, message = done.row_status("sent")
        if batch.attempts.capped:
            message = tagged(code_of(message) or "api_error",
                             f"{message} Not retried: max_credits has no room for another attempt at its worst case.")
        for j in batch.sent:
            self.outcome[j], self.messages[j] = status, message
        # each attempt the server may have run stays in the ledger as in doubt, at its worst case; an entry beyond
        # them (an attempt refused, never sent, or given up before it left) cost nothing
        entry = batch.attempts.entry(charged_attempts(done.error))
        http_status = getattr(done.error, "status_code", None)
        settle = None if entry is None else (entry, {"credits": 0.0, "status": http_status})
        self.writer.put(Keep({}, 0, self._keys(batch.sent), settle))

    def _storage_failed(self, error: StorageError) -> None:
        if self.storage_error is None:
            self.storage_error = error
            self.stop.stop(tagged("storage_failed", f"not sent: {error}"), error)

    def _check_writer(self) -> None:
        if self.writer.error is not None:
            self._storage_failed(self.writer.error)

    def await_others(self) -> None:
        """Wait (at most a lease) for the answers other processes are fetching; take over those they gave up."""
        keys = {self.plan.cache_keys[j]: j for j in self.deferred}
        self.deferred.clear()
        try:
            waited = self.cache.wait_for(list(keys), self.claims.lease_s, sleep=self._sleep,
                                         stored_after=self.fresh_after, owner=self.owner)
        except StorageError:
            self.pending.extend(keys.values())  # the store cannot be read: fetch them here
            return
        for key, value in waited.found.items():
            self._answered_elsewhere(keys[key], value)
        self.pending.extend(keys[k] for k in waited.free)  # claimed again before they are sent
        for key in waited.still_held:
            self.outcome[keys[key]] = "skipped"
            self.messages[keys[key]] = coded_reason("held_elsewhere")

    def _sleep(self, seconds: float) -> None:
        """The store clock's sleep, after a look at a noted Ctrl-C (this wait can last a whole lease)."""
        self.stop.check_interrupt()
        self.cache.clock.sleep(seconds)

    def settle_deferred(self) -> None:
        """After a stop (budget, rate limit): the answers others fetched meanwhile still come free."""
        if self.deferred and not self.storage_error:
            self.await_others()

    def close(self) -> None:
        """Release the claims on records never sent, store everything queued (idempotent)."""
        if self.ready and self.writer.alive:
            self.writer.put(Keep({}, 0, self._keys(self.ready)))
        self.writer.close()
        with self._ending:
            self._closed = True
        self._end_run_if_idle()
        self._check_writer()

    def _end_run_if_idle(self) -> None:
        """Once the run is closed and no request of it is still out, a lease it could not release is free."""
        with self._ending:
            idle = self._closed and not self._sending
        if idle:
            self.cache.end_run(self.owner)

    def rows_left(self) -> int:
        """Input rows without an answer yet (a re-run sends them)."""
        done = ("matched", "no_match")
        return sum(1 for j in self.plan.row_unique if j >= 0 and self.outcome[j] not in done)

    def warn_unverified(self) -> None:
        """One warning for the batches whose credit figure was not believed (counted at their worst case)."""
        if self.unverified:
            shown = ", ".join(repr(v) for v in self.unverified[:3]) + (", ..." if len(self.unverified) > 3 else "")
            warn(
                f"{self.op.name}: Apollo reported credits_consumed {shown} for {len(self.unverified)} batch(es): not a "
                f"finite number from 0 to the batch's worst case. Each was counted at its worst case "
                f"({self.worst:g} credits "
                "per record) against max_credits and recorded in the ledger flagged unverified."
            )

    def warn_storage(self, summary: RunSummary) -> None:
        """Say when claims could not be taken, or answers could not be stored (they are in the rows only)."""
        note = self.claims.warning()
        if note is not None:
            warn(f"{self.op.name}: {note}")
        if self.storage_error is not None:
            summary.storage_error = str(self.storage_error)
            unsaved = sum(1 for j in self.plan.to_fetch if self.outcome[j] in ("matched", "no_match")) - (
                self.writer.saved + self.from_store)
            warn(f"{self.op.name}: {max(unsaved, 0):,} answers received could not be stored and are only in the rows "
                 f"returned; nothing more was sent. {self.storage_error}")

    def skip_pending(self, reason: str) -> None:
        for j in (*self.ready, *self.pending, *self.deferred):
            self.outcome[j], self.messages[j] = "skipped", reason


def finish(done: Executed, progress: bool) -> None:
    """Warn about skipped rows, stamp the elapsed time, print the summary line when asked."""
    summary = done.summary
    if summary.unattributed:
        warn(
            f"{done.op.name}: Apollo charged for {len(summary.unattributed):,} answers that could not be matched to "
            f"a row (they are cached under their own ids and listed in attrs['apollo']['unattributed'])."
        )
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


def host_of(client: Any) -> str | None:
    """The API host a client sends to (named in a run's cause line)."""
    return urlsplit(str(client.settings.base_url)).hostname


#: at most this many runs of consecutive rows are put together as slices (no copy) rather than taken (a cold
#: run whose answers waited for a slow batch now and then has a few hundred: a take would copy every row)
MAX_RUNS = 1024


def rows_in_order(parts: list[pa.Table], take: np.ndarray) -> pa.Table:
    """The rows ``take`` of ``parts`` (one table after the other), in that order: slices when they are a few
    runs of consecutive rows (a cold run's answers, cached rows then fetched ones), else one take
    (:func:`~apollo_frames.core.columnwise.take_columns`: each column let go of once taken). ``parts`` is emptied:
    when the caller keeps no other reference, the rows are held about once, not three times (a cold run's peak,
    issue 27)."""
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    parts.clear()
    if len(take) == 0:
        return table.slice(0, 0)
    starts = np.flatnonzero(np.diff(take) != 1) + 1
    if len(starts) < MAX_RUNS:
        bounds = [0, *starts.tolist(), len(take)]
        runs = [table.slice(int(take[a]), b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return runs[0] if len(runs) == 1 else pa.concat_tables(runs)
    schema, columns = table.schema, table.columns
    del table
    return pa.Table.from_arrays(take_columns(columns, take), schema=schema)


def _row_credits(unique: np.ndarray, credits: list[float]) -> pa.Array:
    """Per row, what its answer cost in this run: the first row of each record bears its share, a duplicate row
    (and a row answered from the store, or never sent) 0, so the column adds up to the run's credits."""
    out = np.zeros(len(unique), dtype=np.float64)
    if credits:
        seen, first = np.unique(unique, return_index=True)
        keep = seen >= 0
        out[first[keep]] = np.asarray(credits, dtype=np.float64)[seen[keep]]
    return pa.array(out, pa.float64())


def _objects(values: Sequence[Any]) -> np.ndarray:
    """``values`` as an object array; all None (a re-run's messages and reasons) without reading each (numpy
    reads 100,000 Nones in about 5 ms)."""
    out = np.full(len(values), None, dtype=object)
    if values.count(None) != len(values):
        out[:] = values
    return out


def answer_columns(prepared: Prepared, done: Executed, host: str | None = None) -> pa.Table:
    """The new columns, one row per input row in order: status, reason, flattened answer; counts go to the summary.

    ``host``: the API host, named in the summary's cause when most failed rows failed the same way.
    """
    plan, outcome, messages, summary = done.plan, done.outcome, done.messages, done.summary
    # One table: the cached answers (flattened when read), then the fetched ones, then a null row for the rest.
    fetched = [j for j in plan.to_fetch if j not in plan.cached_rows]
    parts = [plan.cached_table] if plan.cached_table is not None else []
    plan.cached_table = None  # handed over to the output (rows_in_order lets go of it column by column)
    rest = done.op.flatten([done.results[j] for j in fetched] + [None])
    offset = parts[0].num_rows if parts else 0  # rows taken out stay in it
    parts.append(rest.append_column(STORED_AT, pa.nulls(rest.num_rows, pa.float64())))
    del rest
    # Per unique index (and, last, for the -1 of invalid rows): its row, status and message.
    unique = np.asarray(plan.row_unique, dtype=np.int64)
    rows = np.full(len(plan.unique_records) + 1, offset + len(fetched), dtype=np.int64)
    js, at = hit_arrays(plan.cached_rows, np.int64)
    rows[js] = at
    rows[np.asarray(fetched, np.int64)] = np.arange(offset, offset + len(fetched), dtype=np.int64)
    for j in [j for j in fetched if j in plan.stale]:  # not fetched again: the old answer
        rows[j] = plan.stale[j]
    flat = rows_in_order(parts, rows[unique])
    stored_at, flat = flat.column(STORED_AT), flat.drop_columns([STORED_AT])
    if done.op.shown is not None:
        flat = done.op.shown(flat)
    status = np.array([o or "skipped" for o in outcome] + ["invalid"], dtype=object)[unique]
    message = _objects([*messages, None])[unique]
    reasons = _objects(prepared.reasons)
    error = np.where(unique < 0, reasons, message).tolist()
    for i in np.flatnonzero((unique >= 0) & (reasons != None)):  # noqa: E711 - a note on a sent row
        error[i] = joined(error[i], reasons[i]) if error[i] else reasons[i]
    status = status.tolist()
    for row, own in prepared.statuses.items():
        status[row] = own
    head: dict[str, Any] = {"apollo_status": status, "apollo_error": error, ERROR_CODE_COLUMN: [],
                            CREDITS_COLUMN: _row_credits(unique, done.credits), FETCHED_COLUMN: fetched_at(stored_at)}
    if done.op.review is not None:  # may turn statuses into "conflict" (on_conflict="reject")
        head.update(done.op.review(prepared, flat, status, error))
    codes = codes_of(error)
    head[ERROR_CODE_COLUMN] = codes
    counts = Counter(status)
    summary.matched = int(counts.get("matched", 0))
    summary.no_match = int(counts.get("no_match", 0))
    summary.invalid = int(counts.get("invalid", 0))
    summary.errors = int(counts.get("error", 0))
    summary.skipped = int(counts.get("skipped", 0))
    summary.suppressed = int(counts.get(SUPPRESSED, 0))
    summary.cause = failure_cause(status, error, host, codes) or None
    return new_columns(head, flat)
