"""Batch runs at scale: stream a Parquet or CSV file through an enrichment, chunk by chunk.

:func:`enrich_parquet` reads the input in record batches (Parquet:
``ParquetFile.iter_batches``; CSV: ``pyarrow.csv.open_csv`` with every column
read as text), runs the ordinary per-frame operation on each chunk of
``chunk_rows`` rows, and appends each enriched chunk to ``dst + ".partial"``
with a ``ParquetWriter``; the file is renamed to ``dst`` only when every row
is written. Neither the whole input nor the whole output is held in memory.

* **Order and schema.** Output rows are the input rows, in order. The output
  schema is fixed before the first chunk: the input's columns (as the file
  declares them; CSV columns are strings), ``apollo_status``,
  ``apollo_error``, then the declared ``person.*`` / ``org.*`` schema. Input
  columns named like ours are replaced, as in the in-memory functions.
* **Shuffled files.** When the first chunk's records are scattered over the
  store's flattened blocks (a file in another order than the run that stored
  them), the stored rows of every chunk are read ahead, once, in block order,
  and spilled per chunk to a private folder in the store's folder, deleted as
  the run goes and when it ends, or by the next run, store opened or
  ``forget`` after a kill (:mod:`apollo_frames.io.spill`); a file in store
  order reads each chunk's rows from the store.
* **Dedupe and resume** go through the response cache: a record fetched in
  one chunk is a cache hit in a later one, and a run killed at any point
  (``kill -9`` included) and started again with the same arguments re-spends
  no credit for batches whose answers had arrived (each batch is cached as
  soon as it arrives), then writes the same file an uninterrupted run would.
* **Budget.** ``max_credits`` covers the whole file: each chunk gets what is
  left of it. So does ``confirm_over``: the file's worst case (its unique
  records not cached yet) is counted in one read pass before anything is sent.
* **Rate limits.** When the client gives up waiting on a rate limit (a spent
  daily window, :class:`~apollo_frames.core.errors.RateLimitError`), nothing more is
  sent: the remaining chunks are still read and written, their rows answered
  from the cache where possible and ``skipped`` otherwise (never dropped), and
  the summary says when the window resets and how many rows remain.

:func:`enrich_partition` is the per-partition function for running the same
operation on a cluster (Dask ``map_partitions``): a frame in, the enriched
frame out, with the same columns and dtypes on every call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.client.suppression import suppression_values
from apollo_frames.core.errors import (
    ApolloError,
    InputError,
    RateLimitError,
    RunInterrupted,
    StorageError,
    warn,
)
from apollo_frames.core.reasons import tagged
from apollo_frames.engine.assemble import ERROR_CODE_COLUMN, assemble_table
from apollo_frames.engine.budget import Budget
from apollo_frames.engine.cached import Take, copies_for
from apollo_frames.engine.changes import empty as empty_changes
from apollo_frames.engine.changes import extend, shifted
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.engine.executor import StopSignal
from apollo_frames.engine.meter import capped_reading, reconcile
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.progress import interactive, progress_bar
from apollo_frames.engine.runner import (
    Keyed,
    answer_columns,
    check_client,
    execute,
    finish,
    host_of,
    key_rows,
    plan_work,
    set_aside,
)
from apollo_frames.engine.summary import RunSummary
from apollo_frames.engine.suppressing import Suppressor
from apollo_frames.engine.work import Work
from apollo_frames.io.files import (
    approximate_rows,
    check_chunk_rows,
    output_schema,
    parquet_output,
    partial_output,
    pop_line_errors,
    read_chunks,
)
from apollo_frames.io.spill import ReadAhead, StoredKeys, read_ahead, scattered
from apollo_frames.ops import registry
from apollo_frames.ops.journal import PushJournal, file_identity, fingerprint
from apollo_frames.ops.push import PushSummary
from apollo_frames.ops.registry import RUN_OPTIONS, Spec

__all__ = ["enrich_parquet", "enrich_partition", "file_work", "push_parquet"]

# -- the run ---------------------------------------------------------------------------------------


class _Progress:
    """One tqdm bar over rows on a terminal or in a notebook; a plain log line every ``log_every`` s otherwise.

    ``clock``: what the seconds are read from (``monotonic()``; the client's clock, so tests can inject one).
    """

    def __init__(self, desc: str, total: int | None, enabled: bool, log_every: float, stream=None, clock: Any = None):
        self.desc, self.total, self.log_every = desc, total, log_every
        self.stream = stream or sys.stderr
        self.monotonic = getattr(clock, "monotonic", time.monotonic)
        self.started = self.last_log = self.monotonic()
        self.done = 0
        self.bar = None
        self.logging = False
        if not enabled:
            return
        if interactive(self.stream):
            self.bar = progress_bar(total=total, desc=desc, unit="row")
        else:
            self.logging = True

    def update(self, rows: int, counts: dict[str, str]) -> None:
        """``counts``: what to show beside the rows, e.g. {"from cache": "12", "credits": "3"}."""
        self.done += rows
        if self.bar is not None:
            if rows:
                self.bar.update(rows)
            self.bar.set_postfix(counts)
        elif self.logging and rows and self.monotonic() - self.last_log >= self.log_every:
            self.log(counts)

    def log(self, counts: dict[str, str]) -> None:
        self.last_log = now = self.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            left = max(self.total - self.done, 0)
            eta = f", ETA {_duration(left / rate) if rate > 0 else '?'}"
            where = f"{self.done:,}/{self.total:,} rows ({self.done / self.total:.0%})"
        else:
            eta, where = "", f"{self.done:,} rows"
        shown = "".join(f", {value} {name}" for name, value in counts.items())
        print(f"{self.desc}: {where}, {rate:,.0f} rows/s{eta}{shown}", file=self.stream, flush=True)

    def close(self, counts: dict[str, str], interrupted: bool = False) -> None:
        """The last line; after an interrupt none (the bar is cleared): the run's one line says where it stopped."""
        if self.bar is not None:
            self.bar.leave = self.bar.leave and not interrupted
            self.bar.close()
        elif self.logging and not interrupted:
            self.log(counts)


class _ChunkBar:
    """The bar a chunk's :func:`execute` moves: each answered batch moves the file's :class:`_Progress`.

    Rows finish a chunk at a time, so while a chunk is fetched its rows count
    in proportion to its records answered; requests and credits are the file's so far.
    """

    def __init__(self, progress: _Progress, rows: int, summary: Any, client: Any, requests_before: int):
        self.progress, self.rows, self.summary, self.client = progress, rows, summary, client
        self.requests_before = requests_before
        self.total = self.done = 0
        self.shown = 0  # rows of this chunk already counted
        self.credits = 0.0

    def __call__(self, *, total: int, initial: int, **_: Any) -> _ChunkBar:
        self.total, self.done = total, initial
        return self

    def counts(self) -> dict[str, str]:
        return {"from cache": f"{self.summary.cache_hits:,}",
                "requests": f"{self.client.stats.requests - self.requests_before:,}",
                "credits": f"{self.summary.credits_consumed + self.credits:g}"}

    def update(self, n: int) -> None:
        self.done += n
        rows = self.rows * self.done // self.total if self.total else 0
        self.progress.update(rows - self.shown, self.counts())
        self.shown = rows

    def set_postfix(self, credits: Any = 0, **_: Any) -> None:
        """Called after each answered batch's :meth:`update`: the credits it cost (on the bar at once)."""
        self.credits = float(credits)
        if self.progress.bar is not None:
            self.progress.bar.set_postfix(self.counts())

    def finish(self) -> None:
        """The chunk is written: its rows all count, its credits are in the summary."""
        self.credits = 0.0
        self.progress.update(self.rows - self.shown, self.counts())

    def close(self) -> None:
        """Called by execute when the chunk's sending ends; the rows count when written (:meth:`finish`)."""


def _check_stream_args(chunk_rows: Any, dst: str | Path, options: dict, name: str) -> Path:
    check_chunk_rows(chunk_rows)
    if "progress" in options or "client" in options:
        raise TypeError(f"progress and client are arguments of {name} itself")
    return parquet_output(dst)


def _split_options(spec: Spec, options: dict, progress: bool) -> tuple[dict, RunOptions]:
    """(the operation's own options, the run's, checked), by the names the registry declares; TypeError for any
    other."""
    unknown = sorted(set(options) - set(spec.options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {unknown[0]!r}")
    own = {k: v for k, v in options.items() if k in spec.options}
    return own, RunOptions(progress=progress, **{k: v for k, v in options.items() if k not in spec.options})


def file_work(src: str | Path, spec: Spec, chunk_rows: int, job_options: dict, client: Any,
              run: RunOptions) -> Work:
    """What running ``spec`` over the file ``src`` would do, counted chunk by chunk as a file run goes; sends nothing.

    A record repeated across chunks counts once (by its cache key: 32 bytes
    each in memory, never the rows) and is fetched by the first chunk holding
    it; each chunk's new records go in bulk calls of their own, as in a run.
    """
    if spec.job is None:
        raise InputError(f"{spec.name} does not run row by row from a file")
    input_schema, _, tables = read_chunks(src, chunk_rows)
    # the options and the column mapping are checked on the first chunk (a column may be recognised by content)
    op: Any = None
    op_options: dict = {}
    seen: set[bytes] = set()
    rows = invalid = cached = to_fetch = api_calls = 0
    take: Take | None = None
    for n, chunk in enumerate(tables):
        prepared, op, op_options = _prepare_chunk(chunk, spec, job_options)
        keys, take = _count_reader(prepared, op, op_options, client, run) if n == 0 else (None, take)
        plan = plan_work(prepared, op, op_options, client, refresh=run.refresh, flatten=False, max_age=run.max_age,
                         take=take, keys=keys)
        first = first_seen(plan, seen)
        new = len(first)
        fetch = sum(j not in plan.cached for j in first)
        rows += chunk.num_rows
        invalid += plan.row_unique.count(-1)
        cached += new - fetch
        to_fetch += fetch
        api_calls += math.ceil(fetch / op.batch_size)
    if op is None:  # a file of no rows: its header alone is checked
        _, op, op_options = spec.job(input_schema.empty_table().to_pandas(), **job_options)
    return Work(operation=spec.name, endpoint=op.endpoint, rows=rows, invalid=invalid, unique=len(seen),
                cached=cached, to_fetch=to_fetch, batch_size=op.batch_size,
                worst_credits=float(op.worst_credits(op_options)), api_calls=api_calls)


def _count_reader(prepared: Any, op: Any, op_options: dict, client: Any, run: RunOptions
                  ) -> tuple[Keyed | None, Take | None]:
    """(the first chunk's keys, what every chunk's count reads the copies with): the store's live keys read once
    (:class:`~apollo_frames.io.spill.StoredKeys`) when the first chunk's keys are scattered over its blocks, as a
    run reads ahead (a shuffled file: reading each chunk's blocks would decode the whole store once per chunk);
    else None, each chunk reading the blocks its keys point at. Counts with ``max_age`` read rows: per chunk."""
    if run.refresh or run.max_age is not None:
        return None, None
    keys = key_rows(prepared, op, op_options, client)
    copies = copies_for(op, client.cache)
    if not scattered(copies, keys.cache_keys):
        return keys, None
    stored = StoredKeys.read(copies)
    return keys, None if stored is None else stored.take


def first_seen(plan: Any, seen: set[bytes]) -> list[int]:
    """The plan's unique records no earlier chunk of the file held (their keys go in ``seen``: 32 bytes each)."""
    first = []
    for j, key in enumerate(plan.cache_keys):
        digest = bytes.fromhex(key)
        if digest not in seen:
            seen.add(digest)
            first.append(j)
    return first


def _count_once(summary: RunSummary, plan: Any, seen: set[bytes] | Callable[[list[str]], list[int]]) -> None:
    """A record an earlier chunk held is neither unique again nor a cache hit here: a file run counts its unique
    records as ``estimate`` does. ``seen``: the keys held so far, or what tells (and notes) those of a plan's keys
    held by no earlier chunk (a read-ahead's flags)."""
    first = set(first_seen(plan, seen) if isinstance(seen, set) else seen(plan.cache_keys))
    summary.unique_inputs = len(first)
    summary.cache_hits = sum(j in first for j in plan.cached)


def _enrich_counts(summary: RunSummary) -> dict[str, str]:
    return {"from cache": f"{summary.cache_hits:,}", "requests": f"{summary.api_calls:,}",
            "credits": f"{summary.credits_consumed:g}"}


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def _confirm_file_run(src: str | Path, spec: Spec, chunk_rows: int, job_options: dict, run: RunOptions,
                      client: Any) -> None:
    """Ask before a file run whose worst case (its records not stored yet, read once) is above ``confirm_over``."""
    check_client(client)
    if run.confirm_over is not None:
        work = file_work(src, spec, chunk_rows, job_options, client, run)
        confirm_spend(spec.name, run.worst_allowed(work.to_fetch * work.worst_credits), run.confirm_over)


@dataclasses.dataclass
class _Done:
    """How far a file run got: for the line a Ctrl-C prints (answers saved, rows left)."""

    total_rows: int | None
    #: the input: a CSV's rows are counted when a Ctrl-C comes before they were
    src: str | Path | None = None
    rows: int = 0
    saved: int = 0

    def interrupted(self, exc: KeyboardInterrupt, chunk_rows: int) -> RunInterrupted:
        """The file run's :class:`RunInterrupted`, from the interrupt of the chunk of ``chunk_rows`` rows under way."""
        kind = type(exc) if isinstance(exc, RunInterrupted) else RunInterrupted  # a push's says "rows pushed"
        saved = self.saved + getattr(exc, "saved", 0)
        total = self.total_rows if self.total_rows is not None or self.src is None else approximate_rows(self.src)
        if total is None:
            return kind(saved, None)
        in_chunk = getattr(exc, "rows_left", None)
        later = max(total - self.rows - chunk_rows, 0)
        return kind(saved, later + (chunk_rows if in_chunk is None else in_chunk))


def _prepare_chunk(chunk: pa.Table, spec: Spec, job_options: dict, frame: pd.DataFrame | None = None) -> Any:
    """The operation's job on one chunk; a CSV line that did not fit the header is an invalid row naming its line."""
    assert spec.job is not None
    frame = chunk.to_pandas() if frame is None else frame
    bad = pop_line_errors(frame)
    prepared, op, op_options = spec.job(frame, **job_options)
    if bad is not None:
        for i in np.flatnonzero(bad.notna().to_numpy()).tolist():
            prepared.records[i] = prepared.identities[i] = None
            prepared.reasons[i] = tagged("malformed_line", str(bad.iat[i]))
    return prepared, op, op_options


def _enrich_chunk(
    chunk: pa.Table, spec: Spec, job_options: dict, client: Any, run: RunOptions, budget: Budget | None,
    run_id: str, stop: StopSignal, bar: _ChunkBar, seen: set[bytes], reasons: dict[str, str],
    ahead: tuple[ReadAhead, int] | None = None,
) -> tuple[pa.Table, RunSummary, int, dict[str, list]]:
    """One chunk through the engine: its new columns, its summary, the answers it saved and what changed (row
    positions in the chunk); each answered batch moves ``bar``.

    ``budget``: the file run's, shared by its chunks (what one commits, the next cannot spend).
    ``ahead``: the file's stored rows read ahead, and this chunk's number (from 0)."""
    frame = chunk.to_pandas()
    prepared, op, op_options = _prepare_chunk(chunk, spec, job_options, frame)
    with warnings.catch_warnings():
        # one warning for the whole file at the end, not one per chunk
        warnings.simplefilter("ignore", UserWarning)
        if budget is not None:  # the meter's pre-flight check reads what the file run has left
            run = dataclasses.replace(run, max_credits=budget.left())
        reader, chunk = ahead if ahead is not None else (None, 0)
        keys = None if reader is None else reader.keys
        done = execute(len(frame), prepared, op, op_options, client=client, run=run, budget=budget, run_id=run_id,
                       stop=stop, make_bar=bar, take=None if reader is None else reader.take_for(chunk),
                       keys=None if keys is None else keys.keyed(chunk))
        new = answer_columns(prepared, done, host_of(client))
        finish(done, progress=False)
    _count_once(done.summary, done.plan, seen if keys is None else keys.first_seen)
    if prepared.columns is not None and not reasons:  # the first chunk's guesses, for the run's fix text
        reasons.update(prepared.columns.reasons())
    return new, done.summary, done.saved, done.changes


def _chunk_keys(src: str | Path, spec: Spec, chunk_rows: int, job_options: dict, run: RunOptions,
                client: Any) -> Iterator[tuple[Keyed, Any]]:
    """Per chunk of the file, its rows deduped and the store keys its run will read (rows the run sets aside, e.g.
    suppressed, left out) and its operation: what the chunk's run starts from, computed as it computes them."""
    _, _, tables = read_chunks(src, chunk_rows)
    suppressor = Suppressor.for_run(client.settings.cache_dir, run.suppress, client.clock)
    for chunk in tables:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the chunk's run tells them
            prepared, op, op_options = _prepare_chunk(chunk, spec, job_options)
        set_aside(prepared, suppressor)
        yield key_rows(prepared, op, op_options, client), op


def _read_ahead(src: str | Path, spec: Spec, chunk_rows: int, job_options: dict, run: RunOptions,
                client: Any) -> contextlib.AbstractContextManager[ReadAhead | None]:
    """The file's stored rows read ahead into a spill folder of the store's when its chunks' keys are scattered
    over the store (:mod:`apollo_frames.io.spill`); none for a run that reads nothing stored (``refresh``), which
    still deletes the spills killed runs left."""
    keys = iter(()) if run.refresh else _chunk_keys(src, spec, chunk_rows, job_options, run, client)
    return read_ahead(keys, client.cache,
                      lambda: Suppressor.for_run(client.settings.cache_dir, run.suppress, client.clock))


def _file_result(summary: dict, dst: Path, chunks: int, limit: RateLimitError | None) -> dict:
    """A file run's summary: the chunks' counts summed, where it went, and whether a rate limit stopped it."""
    out = dict(summary)
    out.update(
        output=str(dst),
        chunks=chunks,
        stopped_by_rate_limit=limit is not None,
        rate_limit_window=getattr(limit, "window", None),
        reset_at=getattr(limit, "reset_at", None),
        rows_remaining=summary["skipped"],
        message=None,
    )
    return out


def enrich_parquet(
    src: str | Path,
    *,
    dst: str | Path,
    operation: str = "enrich_people",
    chunk_rows: int = 10_000,
    client: ApolloClient | None = None,
    progress: bool = True,
    log_every: float = 5,
    **options: Any,
) -> dict:
    """Enrich the .parquet or .csv file ``src`` into the Parquet file ``dst``, streaming; return the run summary.

    ``operation`` is ``"enrich_people"`` or ``"enrich_orgs"``; ``options`` are
    that function's (``columns``, ``max_credits``, ``refresh``, reveal flags,
    ``webhook_url``...). ``max_credits`` is the budget of the whole file run.
    See the module docstring for order, schema, resume and rate limits.
    ``progress``: a bar on a terminal or in a notebook, else a line every
    ``log_every`` seconds; either moves with every answered request (rows,
    requests, credits so far, ETA), not only once per chunk.

    The returned dict has the :class:`~apollo_frames.engine.summary.RunSummary` fields
    summed over chunks (``unique_inputs`` and ``cache_hits`` count a record
    repeated in several chunks once, as ``estimate`` does), plus
    ``output``, ``chunks``, ``stopped_by_rate_limit``, ``rate_limit_window``,
    ``reset_at`` (POSIX time, or None), ``rows_remaining`` (rows ``skipped``,
    to be done by a later run), ``message`` and ``column_reasons`` (as
    ``attrs["apollo"]["column_reasons"]``, from the first chunk) and ``changes`` (as
    ``attrs["apollo"]["changes"]``, rows counted from the file's first row).
    Every chunk is recorded in the ledger under the summary's one ``run_id``.

    ``chunk_rows``: rows read, enriched and written at a time (memory stays bounded); ``client``: the client to use
    (default: the session's, else one from the environment).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> pd.DataFrame({"Email": ["mary.wright@sable-health.example", ""]}).to_parquet("leads.parquet")
    >>> summary = af.enrich_parquet("leads.parquet", dst="leads.out.parquet", chunk_rows=1000, progress=False)
    >>> summary["rows"], summary["chunks"], pd.read_parquet("leads.out.parquet")["apollo_status"].tolist()
    (2, 1, ['matched', 'invalid'])
    """
    dst = _check_stream_args(chunk_rows, dst, options, "enrich_parquet")
    spec = registry.get(operation, kind="enrich")
    job_options, run = _split_options(spec, options, progress)
    if run.suppress is not None:  # a file of values is read once, not once per chunk
        run = dataclasses.replace(run, suppress=suppression_values(run.suppress))
    summary = RunSummary(operation=spec.name, run_id=uuid.uuid4().hex[:12])
    started = time.monotonic()
    chunks = 0
    with client_scope(client) as api:  # no key: refused before the file is opened
        input_schema, total_rows, tables = read_chunks(src, chunk_rows)
        schema = output_schema(input_schema, spec.schema(job_options), spec.replaces)
        if total_rows is None and progress:
            total_rows = approximate_rows(src)  # for the ETA
        _confirm_file_run(src, spec, chunk_rows, job_options, run, api)
        # each chunk: no bar of its own, no question (asked once, above); the file's budget caps them all
        chunk_run = dataclasses.replace(run, progress=False, confirm_over=None)
        stop = StopSignal()  # after a rate-limit stop or a refused key, no chunk sends anything more
        bar = _Progress(spec.name, total_rows, progress, log_every, clock=api.clock)
        # phones (asked, or by the waterfall) are charged when produced, later than the run: not reconciled
        phones = job_options.get("reveal_phone_number") or job_options.get("waterfall")
        meter = None if phones else capped_reading(api, run.max_credits)
        requests_before = api.stats.requests
        done, rows = _Done(total_rows, src), 0
        interrupted = False
        seen: set[bytes] = set()  # the file's unique records so far (32 bytes each), counted once
        reasons: dict[str, str] = {}  # columns guessed or almost fitting (ColumnMapping.reasons)
        changes = empty_changes()  # what the answers replaced said before (row positions in the file)
        try:
            with partial_output(dst, schema) as writer, _read_ahead(src, spec, chunk_rows, job_options, run,
                                                                    api) as ahead:
                budget = None if run.max_credits is None else Budget(run.max_credits)
                for chunk in tables:
                    rows = chunk.num_rows
                    moving = _ChunkBar(bar, chunk.num_rows, summary, api, requests_before)
                    new, part, saved, changed = _enrich_chunk(
                        chunk, spec, job_options, api, chunk_run, budget, summary.run_id, stop, moving, seen,
                        reasons, None if ahead is None else (ahead, chunks),
                    )
                    summary.merge(part)
                    extend(changes, shifted(changed, done.rows))
                    done.saved += saved
                    writer.write_table(assemble_table(chunk, new, schema))
                    chunks += 1
                    moving.finish()
                    done.rows, rows = done.rows + chunk.num_rows, 0
                    del new
                    pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise
        except KeyboardInterrupt as exc:
            interrupted = True
            raise done.interrupted(exc, rows) from None
        finally:
            summary.elapsed_s = round(time.monotonic() - started, 3)
            bar.close(_enrich_counts(summary), interrupted)
        summary.credits_in_doubt += reconcile(api, meter, run_id=summary.run_id, operation=spec.name,
                                              ledger_credits=summary.credits_consumed, credit_types=["lead_credit"],
                                              in_doubt=summary.credits_in_doubt,
                                              ledger=run.ledger if run.ledger is not None else api.ledger)

    if isinstance(stop.error, StorageError):
        raise stop.error  # the output holds every row, with the answers received; the store could not keep them
    limit = stop.rate_limit
    out = _file_result(summary.to_dict(), dst, chunks, limit)
    out["column_reasons"] = reasons
    out["changes"] = changes
    if limit is not None:
        out["message"] = _rate_limit_message(limit, summary.skipped, "what is done comes from the cache.")
    elif summary.skipped and stop.stopped:  # e.g. the circuit breaker: the host did not answer
        out["message"] = f"{summary.skipped:,} rows were skipped: {stop.reason}. What is done comes from the cache."
    elif summary.skipped:
        out["message"] = (
            f"{summary.skipped:,} rows were skipped (credit budget); finishing them would cost at most "
            f"{summary.skipped_credits_max:g} credits. Run again with a larger max_credits: what is done comes "
            f"from the cache."
        )
    if out["message"]:
        warn(f"{spec.name}: {out['message']}")
    return out




@dataclasses.dataclass
class _PushRun:
    """What a file push carries from chunk to chunk."""

    #: key -> (row label, Apollo id) of the row that pushed it
    seen: dict = dataclasses.field(default_factory=dict)
    #: warning text -> category, told once for the file
    said: dict[str, type[Warning]] = dataclasses.field(default_factory=dict)
    fatal: ApolloError | None = None
    offset: int = 0
    #: after a rate-limit stop or a refused key, no chunk sends anything more
    stop: StopSignal = dataclasses.field(default_factory=StopSignal)
    chunks: int = 0
    #: what the file run pushed, so that the same command after an interruption sends only the rest
    journal: PushJournal | None = None


def _push_spec(target: Any) -> Spec:
    specs = {spec.target: spec for spec in registry.operations("push")}
    if target not in specs:
        raise InputError(f"target must be one of {', '.join(map(repr, specs))}, got {target!r}")
    return specs[target]


def _push_chunk(spec: Spec, chunk: pa.Table, client: Any, options: dict, state: _PushRun,
                bar: _ChunkBar | None = None) -> pd.DataFrame:
    """One chunk pushed: its report frame (a refused key's partial report, the error kept for the end); each
    answered request moves ``bar``."""
    assert spec.run is not None
    frame = chunk.to_pandas()
    bad = pop_line_errors(frame)
    if bad is not None:  # a line that did not fit the header: nothing of it is sent
        frame.loc[bad.notna().to_numpy()] = None
    if isinstance(frame.index, pd.RangeIndex):  # no saved index: duplicates name file row numbers
        frame.index = pd.RangeIndex(state.offset, state.offset + len(frame))
    state.offset += len(frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = spec.run(frame, client=client, progress=False, seen=state.seen, stop=state.stop,
                              journal=state.journal, make_bar=bar, **options)
        except ApolloError as exc:
            if not isinstance(exc.partial_result, pd.DataFrame):
                raise
            result = exc.partial_result
            state.fatal = state.fatal or exc
    for w in caught:  # the same advice once for the file, not once per chunk
        state.said.setdefault(str(w.message), w.category)
    if bad is not None:
        _mark_invalid(result, bad)
    return result


def _mark_invalid(report: pd.DataFrame, bad: pd.Series) -> None:
    """Rows read from lines that did not fit the header: their reason is the line's (blanked, they are ``invalid``)."""
    rows = bad.notna().to_numpy()
    report.loc[rows, "apollo_status"] = "invalid"
    report.loc[rows, "apollo_error"] = bad[rows].to_numpy()
    report.loc[rows, ERROR_CODE_COLUMN] = "malformed_line"


def _push_counts(summary: Any, requests: int | None = None) -> dict[str, str]:
    """What a push's progress shows beside the rows: ``requests`` as they are answered, else the summary's."""
    sent = summary.api_calls if requests is None else requests
    return {"requests": f"{sent:,}", "errors": f"{summary.errors:,}"}


class _PushChunkBar(_ChunkBar):
    """A chunk's push moves the file's progress with each answered request (rows in proportion to its records)."""

    def counts(self) -> dict[str, str]:
        live = None if self.client is None else self.client.stats.requests - self.requests_before
        return _push_counts(self.summary, live)


def _push_journal(src: str | Path, spec: Spec, chunk_rows: int, options: dict, api: Any) -> PushJournal | None:
    """The file run's journal: the file (path, size, modification time) and the options identify it."""
    if api is None:
        return None
    run = {**file_identity(src), "operation": spec.name, "chunk_rows": chunk_rows,
           "options": repr(sorted(options.items()))}
    return PushJournal(api.cache, str(spec.target), fingerprint(run))


def push_parquet(
    src: str | Path,
    *,
    dst: str | Path,
    target: str = "contacts",
    chunk_rows: int = 10_000,
    client: ApolloClient | None = None,
    progress: bool = True,
    log_every: float = 5,
    **options: Any,
) -> dict:
    """Push the rows of the .parquet or .csv file ``src`` to Apollo as ``target`` ("contacts" or "accounts"),
    streaming, and write the per-row report to the Parquet file ``dst``; return the summary.

    ``options`` are those of ``push_contacts`` / ``push_accounts`` (``mode``,
    ``columns``, ``run_dedupe``, ``labels``, ``dry_run``, ``default_region``).
    The report holds the input rows in order with their columns, then
    ``apollo_status``, ``apollo_id``, ``apollo_error`` (and ``apollo_payload``
    in a dry run). A key repeated anywhere later in the file is ``duplicate``
    of its first row, named by its row number in the file. A rate-limit stop
    or a refused key stops the sending: the rows left are written ``skipped``,
    then a refused key's error is raised. What was pushed is recorded as it
    is answered (:mod:`apollo_frames.ops.journal`): after a stop, a kill or
    Ctrl-C (:class:`~apollo_frames.ops.push.PushInterrupted`, "N rows pushed,
    M rows left") the same call on the same file sends only the rows left.
    ``progress``: a bar on a terminal or in a notebook, else a line every
    ``log_every`` seconds; either moves with every answered request (rows,
    requests, errors, ETA), not only once per chunk.

    The dict has the :class:`~apollo_frames.ops.push.PushSummary` fields summed
    over chunks, plus ``output``, ``chunks``, ``stopped_by_rate_limit``,
    ``reset_at``, ``rows_remaining`` and ``message``.

    ``chunk_rows``: rows read, pushed and written at a time; ``client``: the client to use (default: the session's;
    none needed for a dry run).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> pd.DataFrame({"Email": ["ann@acme.example"], "First Name": ["Ann"]}).to_parquet("crm.parquet")
    >>> summary = af.push_parquet("crm.parquet", dst="crm.report.parquet", target="contacts", dry_run=True,
    ...                           progress=False)
    >>> summary["rows"], pd.read_parquet("crm.report.parquet")["apollo_status"].tolist()
    (1, ['would_create'])
    """
    dst = _check_stream_args(chunk_rows, dst, options, "push_parquet")
    spec = _push_spec(target)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise TypeError(f"push_parquet() got an unexpected keyword argument {unknown[0]!r}")
    dry_run = options.get("dry_run", False) is True
    started = time.monotonic()
    summary = PushSummary(operation=spec.name, mode=options.get("mode", "upsert"), dry_run=dry_run,
                          run_id=uuid.uuid4().hex[:12])
    state = _PushRun()
    # a dry run sends nothing and needs no key; a real one without a key is refused before the file is opened
    with contextlib.nullcontext(None) if dry_run else client_scope(client) as api:
        input_schema, total_rows, tables = read_chunks(src, chunk_rows)
        new_schema = spec.schema(options)
        schema = output_schema(input_schema, new_schema, spec.replaces)
        if total_rows is None and progress:
            total_rows = approximate_rows(src)  # for the ETA
        bar = _Progress(spec.name, total_rows, progress, log_every, clock=getattr(api, "clock", None))
        state.journal = _push_journal(src, spec, chunk_rows, options, api)
        done, rows, interrupted = _Done(total_rows, src), 0, False
        requests_before = 0 if api is None else api.stats.requests
        try:
            with partial_output(dst, schema) as writer:
                for chunk in tables:
                    rows = chunk.num_rows
                    moving = _PushChunkBar(bar, rows, summary, api, requests_before)
                    result = _push_chunk(spec, chunk, api, options, state, None if dry_run else moving)
                    summary.merge(result.attrs["apollo"])
                    new = pa.Table.from_pandas(result[new_schema.names], preserve_index=False)
                    writer.write_table(assemble_table(chunk, new, schema))
                    state.chunks += 1
                    moving.finish()
                    done.rows, rows = done.rows + chunk.num_rows, 0
                    done.saved = summary.created + summary.existing + summary.updated
        except KeyboardInterrupt as exc:
            interrupted = True
            raise done.interrupted(exc, rows) from None
        finally:
            summary.elapsed_s = round(time.monotonic() - started, 3)
            bar.close(_push_counts(summary), interrupted)
    if state.journal is not None and state.fatal is None and not summary.skipped and not summary.unknown:
        state.journal.close()  # every row settled: pushing the file again later sends it again
    limit = state.stop.rate_limit
    for message, category in state.said.items():
        if limit is None or ": stopped early (" not in message:  # a rate-limit stop is told once, below
            warn(message, category)
    if state.fatal is not None:
        raise state.fatal
    out = _file_result(summary.to_dict(), dst, state.chunks, limit)
    if limit is not None:
        out["message"] = _rate_limit_message(
            limit, summary.skipped, "with run_dedupe the rows already created come back as existing."
        )
        warn(f"{summary.operation}: {out['message']}")
    return out


def _rate_limit_message(limit: RateLimitError, skipped: int, rerun: str) -> str:
    """What a file run stopped by a rate limit tells: rows left, when the window resets, what a re-run does."""
    when = (time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(limit.reset_at)) if limit.reset_at
            else "an unknown time")
    return (
        f"stopped by the {limit.window or 'current'} rate limit: {skipped:,} rows remain (skipped); "
        f"the window resets at {when}. Run the same command again then: {rerun}"
    )


def enrich_partition(frame: pd.DataFrame, *, operation: str = "enrich_people", **options: Any) -> pd.DataFrame:
    """Enrich one partition (a pandas frame) and return it; the columns and dtypes are the same on every call.

    For Dask: ``ddf.map_partitions(enrich_partition, operation="enrich_people", meta=enrich_partition(ddf._meta))``
    (an empty frame sends nothing). ``progress`` defaults to False; without
    ``client=`` each call builds a client from the environment, so every worker
    shares ``APOLLO_FRAMES_CACHE_DIR``. ``max_credits`` applies per partition.

    ``frame``: one partition; ``operation``: ``"enrich_people"`` or ``"enrich_orgs"``; ``options``: that function's.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> partition = pd.DataFrame({"email": ["mary.wright@sable-health.example"]})
    >>> part = af.enrich_partition(partition, operation="enrich_people")
    >>> part["apollo_status"].tolist(), part.attrs
    (['matched'], {})
    """
    spec = registry.get(operation, kind="enrich")
    options.setdefault("progress", False)
    result = spec.function(frame, **options)
    result.attrs = {}  # Dask compares metadata; the summary stays in the ledger
    return result
