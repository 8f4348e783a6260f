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
import csv
import inspect
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.core.errors import ApolloError, RateLimitError, warn
from apollo_frames.client.http import client_scope
from apollo_frames.engine.budget import check_credits
from apollo_frames.engine.executor import StopSignal
from apollo_frames.engine.summary import RunSummary
from apollo_frames.engine.runner import STATUS_COLUMNS, answer_columns, execute, finish

__all__ = ["enrich_parquet", "enrich_partition", "push_parquet", "OPERATIONS"]

#: operation name -> (enrich function, declared result schema)
OPERATIONS = ("enrich_people", "enrich_orgs")


def _operation(operation: str):
    """(enrich function, its job function, declared result schema) of an operation name."""
    from apollo_frames.ops import orgs
    from apollo_frames.ops import people
    from apollo_frames.core.schema import ORG_SCHEMA, PERSON_SCHEMA

    name = operation.replace("-", "_") if isinstance(operation, str) else operation
    if name == "enrich_people":
        return people.enrich_people, people.people_job, PERSON_SCHEMA
    if name == "enrich_orgs":
        return orgs.enrich_orgs, orgs.orgs_job, ORG_SCHEMA
    raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")


#: options of the run itself; the rest belong to the operation (columns, reveal flags, webhook_url)
_RUN_OPTIONS = ("refresh", "ledger", "confirm_over")


def _split_options(op_name: str, job, options: dict) -> tuple[dict, dict]:
    accepted = set(inspect.signature(job).parameters) - {"frame"}
    unknown = sorted(set(options) - accepted - set(_RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{op_name}() got an unexpected keyword argument {unknown[0]!r}")
    run = {k: v for k, v in options.items() if k in _RUN_OPTIONS}
    return {k: v for k, v in options.items() if k not in _RUN_OPTIONS}, run


# -- reading -------------------------------------------------------------------------------------


#: cells read as missing, as ``pandas.read_csv`` reads them (pyarrow's own list lacks "None" and "<NA>")
CSV_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            return row
    raise ValueError(f"{path.name} is empty: a CSV input needs a header line")


def open_input(src: str | Path, chunk_rows: int) -> tuple[pa.Schema, int | None, Iterator[pa.RecordBatch]]:
    """(input schema, row count if known, record batches) for a .parquet or .csv file, read lazily."""
    path = Path(src)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow  # its pandas metadata gives each chunk's frame the saved index and dtypes

        def batches():
            try:
                for batch in pf.iter_batches(batch_size=chunk_rows, use_pandas_metadata=False):
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            finally:
                pf.close()

        return schema, pf.metadata.num_rows, batches()
    if suffix in (".csv", ".txt"):
        import pyarrow.csv as pacsv

        names = _csv_header(path)
        if len(set(names)) != len(names):
            raise ValueError(f"{path.name}: the header repeats a column name")
        schema = pa.schema([pa.field(n, pa.string()) for n in names])
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=CSV_NULLS
            ),
        )

        def batches():
            try:
                for batch in reader:
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            finally:
                reader.close()

        return schema, None, batches()
    raise ValueError(f"input must be .csv or .parquet, got {path.name}")


def rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one may be shorter), in order."""
    held: list[pa.RecordBatch] = []
    n = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - n, batch.num_rows)
            held.append(batch.slice(0, take))
            n += take
            batch = batch.slice(take)
            if n == rows:
                yield pa.Table.from_batches(held)
                held, n = [], 0
    if n:
        yield pa.Table.from_batches(held)


# -- the output schema ----------------------------------------------------------------------------


def output_schema(input_schema: pa.Schema, new: pa.Schema) -> pa.Schema:
    """Input columns (minus those the new ones replace), then the ``new`` columns.

    The schema carries pandas metadata built from the schema alone, so
    ``pd.read_parquet`` gives the new columns the dtypes the in-memory
    functions give them, whatever the chunks held.
    """
    from apollo_frames.core.schema import to_pandas

    kept = [f for f in input_schema if f.name not in set(new.names)]
    # The input's pandas metadata (if any) restores its dtypes and a saved index such as an id column.
    head = pa.schema(kept, metadata=input_schema.metadata).empty_table().to_pandas()
    tail = to_pandas(new.empty_table())
    tail.index = head.index
    frame = pd.concat([head, tail], axis=1)
    saved_index = not isinstance(head.index, pd.RangeIndex)
    meta = pa.Schema.from_pandas(frame, preserve_index=saved_index).metadata
    return pa.schema(kept + list(new)).with_metadata(meta)


def _enrich_columns(declared: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(c, pa.string()) for c in STATUS_COLUMNS] + list(declared))


def _chunk_table(chunk: pa.Table, head: dict[str, list], flat: pa.Table | None, schema: pa.Schema) -> pa.Table:
    """One chunk's output rows, built column by column in Arrow: the input's columns as read, then ``head``
    (text columns from Python lists), then the columns of ``flat``."""
    new = _new_names(schema)
    arrays = []
    for field in schema:
        if field.name in head:
            arrays.append(pa.array(head[field.name], type=field.type, from_pandas=True))
        elif field.name in new:
            arrays.append(flat.column(field.name))
        else:
            arrays.append(chunk.column(field.name))
    return pa.Table.from_arrays(arrays, schema=schema)


def _new_names(schema: pa.Schema) -> frozenset:
    names = schema.names
    start = names.index(STATUS_COLUMNS[0])
    return frozenset(names[start:])


# -- the run ---------------------------------------------------------------------------------------


class _Progress:
    """One tqdm bar over rows on a terminal or in a notebook; a plain log line every ``log_every`` s otherwise."""

    def __init__(self, desc: str, total: int | None, enabled: bool, log_every: float, stream=None):
        self.desc, self.total, self.log_every = desc, total, log_every
        self.stream = stream or sys.stderr
        self.started = self.last_log = time.monotonic()
        self.done = 0
        self.bar = None
        self.logging = False
        if not enabled:
            return
        from apollo_frames.engine.progress import interactive, progress_bar

        if interactive(self.stream):
            self.bar = progress_bar(total=total, desc=desc, unit="row")
        else:
            self.logging = True

    def update(self, rows: int, counts: dict[str, str]) -> None:
        """``counts``: what to show beside the rows, e.g. {"from cache": "12", "credits": "3"}."""
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            self.bar.set_postfix(counts)
        elif self.logging and time.monotonic() - self.last_log >= self.log_every:
            self.log(counts)

    def log(self, counts: dict[str, str]) -> None:
        self.last_log = now = time.monotonic()
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            left = max(self.total - self.done, 0)
            eta = f", ETA {_duration(left / rate) if rate > 0 else '?'}"
            where = f"{self.done:,}/{self.total:,} rows ({self.done / self.total:.0%})"
        else:
            eta, where = "", f"{self.done:,} rows"
        shown = "".join(f", {value} {name}" for name, value in counts.items())
        print(f"{self.desc}: {where}, {rate:,.0f} rows/s{eta}{shown}", file=self.stream, flush=True)

    def close(self, counts: dict[str, str]) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.logging:
            self.log(counts)


@contextlib.contextmanager
def _partial_output(dst: Path, schema: pa.Schema):
    """A ParquetWriter on ``dst.partial``, renamed to ``dst`` when the block ends normally, deleted otherwise."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    writer = pq.ParquetWriter(partial, schema)
    try:
        yield writer
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, dst)


def _check_stream_args(chunk_rows: Any, dst: str | Path, options: dict, name: str) -> Path:
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if "progress" in options or "client" in options:
        raise TypeError(f"progress and client are arguments of {name} itself")
    dst = Path(dst)
    if dst.suffix.lower() != ".parquet":
        raise ValueError(f"output must be a .parquet file, got {dst.name}")
    return dst


def _file_worst_case(src, chunk_rows: int, job, job_options: dict, client, refresh: bool) -> float:
    """Worst-case credits of a whole file run: its unique records not yet cached (one read pass, nothing sent)."""
    from apollo_frames.engine.runner import check_run_args, plan_work

    check_run_args(client=client, refresh=refresh)
    to_fetch: set[bytes] = set()
    worst = 0.0
    for chunk in rechunk(open_input(src, chunk_rows)[2], chunk_rows):
        prepared, op, op_options = job(chunk.to_pandas(), **job_options)
        plan = plan_work(prepared, op, op_options, client, refresh=refresh, flatten=False)
        to_fetch.update(bytes.fromhex(plan.cache_keys[j]) for j in plan.to_fetch)  # 32 bytes, not 64 chars
        worst = float(op.worst_credits(op_options))
    return len(to_fetch) * worst


def _enrich_counts(summary: RunSummary) -> dict[str, str]:
    return {"from cache": f"{summary.cache_hits:,}", "requests": f"{summary.api_calls:,}",
            "credits": f"{summary.credits_consumed:g}"}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def enrich_parquet(
    src: str | Path,
    dst: str | Path,
    operation: str = "enrich_people",
    *,
    chunk_rows: int = 10_000,
    client=None,
    progress: bool = True,
    log_every: float = 30,
    **options,
) -> dict:
    """Enrich the .parquet or .csv file ``src`` into the Parquet file ``dst``, streaming; return the run summary.

    ``operation`` is ``"enrich_people"`` or ``"enrich_orgs"``; ``options`` are
    that function's (``columns``, ``max_credits``, ``refresh``, reveal flags,
    ``webhook_url``...). ``max_credits`` is the budget of the whole file run.
    See the module docstring for order, schema, resume and rate limits.

    The returned dict has the :class:`~apollo_frames.engine.summary.RunSummary` fields
    summed over chunks (``unique_inputs`` counts per chunk, so a record repeated
    in two chunks counts twice and is a cache hit the second time), plus
    ``output``, ``chunks``, ``stopped_by_rate_limit``, ``rate_limit_window``,
    ``reset_at`` (POSIX time, or None), ``rows_remaining`` (rows ``skipped``,
    to be done by a later run) and ``message``.
    Every chunk is recorded in the ledger under the summary's one ``run_id``.
    """
    dst = _check_stream_args(chunk_rows, dst, options, "enrich_parquet")
    run, job, declared = _operation(operation)
    op_name = run.__name__
    max_credits = check_credits("max_credits", options.pop("max_credits", None))
    job_options, run_options = _split_options(op_name, job, options)
    confirm_over = run_options.pop("confirm_over", None)
    started = time.monotonic()
    if confirm_over is not None:
        with client_scope(client) as api:
            worst = _file_worst_case(src, chunk_rows, job, job_options, api, run_options.get("refresh", False))
        confirm_spend(op_name, worst if max_credits is None else min(worst, max_credits), confirm_over)
    input_schema, total_rows, batches = open_input(src, chunk_rows)
    schema = output_schema(input_schema, _enrich_columns(declared))
    summary = RunSummary(operation=op_name, run_id=uuid.uuid4().hex[:12])
    chunks = 0
    bar = _Progress(op_name, total_rows, progress, log_every)
    stop = StopSignal()  # after a rate-limit stop or a refused key, no chunk sends anything more
    try:
        with client_scope(client) as api, _partial_output(dst, schema) as writer:
            for chunk in rechunk(batches, chunk_rows):
                budget = None if max_credits is None else max(max_credits - summary.credits_consumed, 0.0)
                frame = chunk.to_pandas()
                prepared, op, op_options = job(frame, **job_options)
                with warnings.catch_warnings():
                    # one warning for the whole file at the end, not one per chunk
                    warnings.simplefilter("ignore", UserWarning)
                    done = execute(
                        len(frame), prepared, op, op_options, client=api, progress=False, max_credits=budget,
                        run_id=summary.run_id, stop=stop, **run_options,
                    )
                    status, error, flat = answer_columns(prepared, done)
                    finish(done, progress=False)
                del frame, prepared
                summary.merge(done.summary)
                writer.write_table(_chunk_table(chunk, {"apollo_status": status, "apollo_error": error}, flat, schema))
                chunks += 1
                bar.update(chunk.num_rows, _enrich_counts(summary))
                del done, status, error, flat
                pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise
    finally:
        summary.elapsed_s = round(time.monotonic() - started, 3)
        bar.close(_enrich_counts(summary))

    limit = stop.rate_limit
    out = summary.to_dict()
    out.update(
        output=str(dst),
        chunks=chunks,
        stopped_by_rate_limit=limit is not None,
        rate_limit_window=getattr(limit, "window", None),
        reset_at=getattr(limit, "reset_at", None),
        rows_remaining=summary.skipped,
        message=None,
    )
    if limit is not None:
        out["message"] = _rate_limit_message(limit, summary.skipped, "what is done comes from the cache.")
    elif summary.skipped:
        out["message"] = (
            f"{summary.skipped:,} rows were skipped (credit budget); finishing them would cost at most "
            f"{summary.skipped_credits_max:g} credits. Run again with a larger max_credits: what is done comes "
            f"from the cache."
        )
    if out["message"]:
        warn(f"{op_name}: {out['message']}")
    return out


_PUSH_OPTIONS = ("mode", "columns", "run_dedupe", "labels", "dry_run", "default_region")


def push_parquet(
    src: str | Path,
    dst: str | Path,
    target: str = "contacts",
    *,
    chunk_rows: int = 10_000,
    client=None,
    progress: bool = True,
    log_every: float = 30,
    **options,
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
    then a refused key's error is raised. Writes are not cached: run again
    with ``run_dedupe=True`` (the default) and what was created comes back as
    ``existing``.

    The dict has the :class:`~apollo_frames.ops.push.PushSummary` fields summed
    over chunks, plus ``output``, ``chunks``, ``stopped_by_rate_limit``,
    ``reset_at``, ``rows_remaining`` and ``message``.
    """
    from apollo_frames.ops import push as pushing

    dst = _check_stream_args(chunk_rows, dst, options, "push_parquet")
    targets = {"contacts": pushing.CONTACTS, "accounts": pushing.ACCOUNTS}
    if target not in targets:
        raise ValueError(f"target must be 'contacts' or 'accounts', got {target!r}")
    unknown = sorted(set(options) - set(_PUSH_OPTIONS))
    if unknown:
        raise TypeError(f"push_parquet() got an unexpected keyword argument {unknown[0]!r}")
    dry_run = options.get("dry_run", False)
    started = time.monotonic()
    input_schema, total_rows, batches = open_input(src, chunk_rows)
    names = pushing.OUTPUT_COLUMNS if dry_run is True else pushing.OUTPUT_COLUMNS[:3]
    schema = output_schema(input_schema, pa.schema([pa.field(c, pa.string()) for c in names]))
    summary = pushing.PushSummary(operation=targets[target].operation, mode=options.get("mode", "upsert"),
                                  dry_run=dry_run is True, run_id=uuid.uuid4().hex[:12])
    seen: dict = {}
    fatal: ApolloError | None = None
    said: dict[str, type[Warning]] = {}
    chunks = offset = 0
    bar = _Progress(summary.operation, total_rows, progress, log_every)

    def counts() -> dict[str, str]:
        return {"sent": f"{summary.sent:,}", "requests": f"{summary.api_calls:,}", "errors": f"{summary.errors:,}"}

    # a dry run sends nothing and needs no key
    scope = contextlib.nullcontext(None) if dry_run is True else client_scope(client)
    stop = StopSignal()  # after a rate-limit stop or a refused key, no chunk sends anything more
    try:
        with scope as api, _partial_output(dst, schema) as writer:
            for chunk in rechunk(batches, chunk_rows):
                frame = chunk.to_pandas()
                if isinstance(frame.index, pd.RangeIndex):  # no saved index: duplicates name file row numbers
                    frame.index = pd.RangeIndex(offset, offset + len(frame))
                offset += len(frame)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        result = pushing.push(frame, targets[target], client=api, progress=False, seen=seen,
                                              stop=stop, **options)
                    except ApolloError as exc:
                        result = getattr(exc, "partial_result", None)
                        if result is None:
                            raise
                        fatal = fatal or exc
                for w in caught:  # the same advice once for the file, not once per chunk
                    said.setdefault(str(w.message), w.category)
                summary.merge(result.attrs["apollo"])
                writer.write_table(_chunk_table(chunk, {c: result[c].tolist() for c in names}, None, schema))
                chunks += 1
                bar.update(len(frame), counts())
    finally:
        summary.elapsed_s = round(time.monotonic() - started, 3)
        bar.close(counts())
    limit = stop.rate_limit
    for message, category in said.items():
        if limit is None or ": stopped early (" not in message:  # a rate-limit stop is told once, below
            warn(message, category)
    if fatal is not None:
        raise fatal
    out = summary.to_dict()
    out.update(output=str(dst), chunks=chunks, stopped_by_rate_limit=limit is not None,
               reset_at=getattr(limit, "reset_at", None), rows_remaining=summary.skipped, message=None)
    if limit is not None:
        out["message"] = _rate_limit_message(
            limit, summary.skipped, "with run_dedupe the rows already created come back as existing."
        )
        warn(f"{summary.operation}: {out['message']}")
    return out


def _rate_limit_message(limit: RateLimitError, skipped: int, rerun: str) -> str:
    """What a file run stopped by a rate limit tells: rows left, when the window resets, what a re-run does."""
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(limit.reset_at)) if limit.reset_at else "an unknown time"
    return (
        f"stopped by the {limit.window or 'current'} rate limit: {skipped:,} rows remain (skipped); "
        f"the window resets at {when}. Run the same command again then: {rerun}"
    )


def enrich_partition(frame: pd.DataFrame, operation: str = "enrich_people", **options) -> pd.DataFrame:
    """Enrich one partition (a pandas frame) and return it; the columns and dtypes are the same on every call.

    For Dask: ``ddf.map_partitions(enrich_partition, "enrich_people", meta=enrich_partition(ddf._meta))``
    (an empty frame sends nothing). ``progress`` defaults to False; without
    ``client=`` each call builds a client from the environment, so every worker
    shares ``APOLLO_FRAMES_CACHE_DIR``. ``max_credits`` applies per partition.
    """
    run, _, _ = _operation(operation)
    options.setdefault("progress", False)
    result = run(frame, **options)
    result.attrs = {}  # Dask compares metadata; the summary stays in the ledger
    return result
