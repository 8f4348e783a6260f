"""``ddf.apollo``: the enrichments and ``estimate`` on Dask DataFrames, each unique record fetched once in all.

``import apollo_frames.dask`` registers the accessor with Dask's own
mechanism (``dask.dataframe.extensions.register_dataframe_accessor``);
``import apollo_frames`` does it too when Dask is already imported. The
methods are generated from the pandas functions (same signatures, same
docstrings) and build a lazy graph with the same columns and dtypes
(``meta``) as the pandas result:

1. every partition's rows get their identity key, the answer store's key
   made from the operation's own ``prepare`` (no second normalisation);
2. the rows with a key are reduced to one row per key with Dask's shuffle
   (``drop_duplicates(split_out=...)``): every key lives in exactly one partition;
3. those partitions are enriched: cache first, then bulk calls, within one
   :class:`~apollo_frames.io.shared.SharedBudget` (``max_credits`` caps the whole
   computation) and one :class:`~apollo_frames.io.shared.SharedLimiter` per API key;
4. the answers are joined back to the rows (``merge``), put back in their
   partitions and order (``set_index`` on a row number with known divisions),
   and assembled beside the input columns by the one assembler.

Workers build their clients from the caller's client settings, or from their
own environment when no client is given. The run summary is not carried
back (Dask frames have no ``attrs``): the ledger beside each worker's cache
folder records every call under the computation's one run id.
"""

from __future__ import annotations

import math
import uuid
import warnings
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
from dask.dataframe.extensions import register_dataframe_accessor

from apollo_frames.accessor import frame_method
from apollo_frames.client.store import entry_key
from apollo_frames.core.schema import to_pandas
from apollo_frames.engine.assemble import assemble_frame
from apollo_frames.engine.budget import check_credits
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.engine.runner import answer_columns, check_flags, execute, finish, plan_work
from apollo_frames.engine.work import Work
from apollo_frames.estimates import Estimate, _from_work
from apollo_frames.estimates import estimate as pandas_estimate
from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.io.shared import SharedBudget, WorkerClient, tally
from apollo_frames.ops import registry
from apollo_frames.ops.registry import RUN_OPTIONS, Spec

__all__ = ["DaskApolloAccessor", "enrich", "estimate"]

#: the columns the graph carries between its steps (never in the result)
KEY, ROW, REASON = "_apollo_key", "_apollo_row", "_apollo_reason"
#: a row's number: its partition times this, plus its position in the partition
ROW_STRIDE = 1 << 40


# -- options ---------------------------------------------------------------------------------------


def _options(spec: Spec, options: dict, meta: pd.DataFrame) -> tuple[dict, dict]:
    """(the job's options, the run's); checked now, before anything is computed."""
    unknown = sorted(set(options) - set(spec.options) - set(RUN_OPTIONS) - {"progress"})
    if unknown:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {unknown[0]!r}")
    if options.get("ledger") is not None:
        raise TypeError("ledger= cannot travel to Dask workers: each records in the ledger beside its cache folder")
    check_flags(refresh=options.get("refresh", False), progress=options.get("progress", False))
    check_credits("max_credits", options.get("max_credits"))
    check_credits("confirm_over", options.get("confirm_over"))
    job = {k: v for k, v in options.items() if k in spec.options}
    assert spec.job is not None
    spec.job(meta, **job)  # the column mapping and the options, checked on the empty frame
    return job, {k: v for k, v in options.items() if k in ("max_credits", "refresh", "confirm_over")}


def _result_meta(meta: pd.DataFrame, spec: Spec, job: dict) -> pd.DataFrame:
    return assemble_frame(meta, spec.schema(job).empty_table(), spec.replaces)


# -- the steps (each runs on one pandas partition) --------------------------------------------------


def _keyed(frame: pd.DataFrame, name: str, job: dict, namespace: str, partition_info: dict | None = None) -> pd.DataFrame:
    """The partition with its rows' numbers, identity keys (None: invalid) and invalid reasons."""
    spec = registry.get(name)
    assert spec.job is not None
    prepared, op, op_options = spec.job(frame, **job)
    number = (partition_info or {}).get("number", 0)
    out = frame.copy()
    out[ROW] = pd.RangeIndex(len(frame)) + number * ROW_STRIDE
    out[KEY] = pd.array(
        [None if identity is None else entry_key(namespace, op.endpoint, identity, op_options)
         for identity in prepared.identities], dtype=object,
    )
    out[REASON] = pd.array(prepared.reasons, dtype=object)
    return out


def _enrich_unique(frame: pd.DataFrame, name: str, job: dict, run: dict, client: WorkerClient, run_id: str,
                   new_meta: pd.DataFrame) -> pd.DataFrame:
    """One partition of unique records enriched: their keys and new columns (under the shared budget)."""
    spec = registry.get(name)
    assert spec.job is not None
    rows = frame.drop(columns=[KEY])
    max_credits = run.get("max_credits")
    budget = None if max_credits is None else SharedBudget(max_credits, tally(f"apollo-frames-budget-{run_id}"))
    with client.open() as api:
        prepared, op, op_options = spec.job(rows, **job)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped rows say why in apollo_error
            done = execute(len(rows), prepared, op, op_options, client=api, progress=False,
                           refresh=run.get("refresh", False), run_id=run_id, budget=budget)
            new = answer_columns(prepared, done)
            finish(done, progress=False)
    out = to_pandas(new) if len(rows) else new_meta.drop(columns=[KEY]).copy()
    out.insert(0, KEY, frame[KEY].to_numpy())
    return out


def _assemble(frame: pd.DataFrame, answers: pd.DataFrame, name: str, job: dict) -> pd.DataFrame:
    """A partition's result: its rows as given, then the answers joined to them (invalid rows say why)."""
    spec = registry.get(name)
    schema = spec.schema(job)
    if len(answers) != len(frame):
        raise RuntimeError(f"{name}: {len(answers)} answers for {len(frame)} rows in a partition")
    answers = answers.reset_index(drop=True)
    status = answers["apollo_status"].astype(object)
    invalid = answers[KEY].isna()
    status[invalid] = "invalid"
    status[~invalid & status.isna()] = "skipped"  # a key without an answer: never a lost row
    error = answers["apollo_error"].astype(object).where(~invalid, answers[REASON])
    answers["apollo_status"], answers["apollo_error"] = status, error
    columns = {n: pa.array(answers[n].astype(object).where(answers[n].notna(), None), type=schema.field(n).type,
                           from_pandas=True) for n in schema.names}
    return assemble_frame(frame, pa.table(columns, schema=schema), spec.replaces)


# -- the graph -------------------------------------------------------------------------------------


def _unique_rows(ddf: dd.DataFrame, name: str, job: dict, namespace: str) -> tuple[dd.DataFrame, dd.DataFrame]:
    """(every row's number, key and reason; one input row per key, each key in exactly one partition)."""
    meta = _keyed(ddf._meta, name, job, namespace)
    keyed = ddf.map_partitions(_keyed, name, job, namespace, meta=meta)
    unique = keyed[keyed[KEY].notnull()].drop(columns=[ROW, REASON])
    unique = unique.drop_duplicates(subset=[KEY], split_out=max(ddf.npartitions, 1))
    return keyed[[ROW, KEY, REASON]], unique


def enrich(ddf: dd.DataFrame, operation: str = "enrich_people", *, client: ApolloClient | None = None,
           **options: Any) -> dd.DataFrame:
    """Enrich ``ddf`` lazily (see the module doc); ``options`` are the pandas function's.

    ``max_credits`` caps the whole computation. ``confirm_over`` counts the
    work first (an eager ``estimate``) and asks before the graph is built.
    ``progress`` is accepted and ignored (workers show no bars); ``ledger``
    cannot travel to workers. Without ``client=``, each worker builds its
    client from its own environment.
    """
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"enrich needs a Dask DataFrame, got {type(ddf).__name__}")
    spec = registry.get(operation, kind="enrich")
    job, run = _options(spec, dict(options), ddf._meta)
    if run.get("confirm_over") is not None:
        found = estimate(ddf, spec.name, client=client, refresh=run.get("refresh", False), **job)
        worst = found.credits_max if run.get("max_credits") is None else min(found.credits_max, run["max_credits"])
        confirm_spend(spec.name, worst, run["confirm_over"])
    worker = WorkerClient.of(client)
    rows, unique = _unique_rows(ddf, spec.name, job, worker.cache_namespace)
    new_meta = to_pandas(spec.schema(job).empty_table())
    new_meta.insert(0, KEY, pd.Series([], dtype=object))
    answers = unique.map_partitions(_enrich_unique, spec.name, job, run, worker, uuid.uuid4().hex[:12], new_meta,
                                    meta=new_meta)
    joined = rows.merge(answers, on=KEY, how="left")
    n = max(ddf.npartitions, 1)
    divisions = [p * ROW_STRIDE for p in range(n)] + [n * ROW_STRIDE - 1]
    ordered = joined.set_index(ROW, divisions=divisions)
    return dd.map_partitions(_assemble, ddf, ordered, spec.name, job, meta=_result_meta(ddf._meta, spec, job),
                             align_dataframes=False)


# -- estimate --------------------------------------------------------------------------------------


def _count(frame: pd.DataFrame, name: str, job: dict, refresh: bool, client: WorkerClient) -> pd.DataFrame:
    """One partition of unique records: how many, how many cached, how many calls the rest need."""
    spec = registry.get(name)
    assert spec.job is not None
    with client.open() as api:
        prepared, op, op_options = spec.job(frame.drop(columns=[KEY]), **job)
        plan = plan_work(prepared, op, op_options, api, refresh=refresh, flatten=False) if len(frame) else None
    cached = len(plan.cached) if plan is not None else 0
    fetch = len(frame) - cached
    return pd.DataFrame({"unique": [len(frame)], "cached": [cached], "calls": [math.ceil(fetch / op.batch_size)]})


def estimate(ddf: dd.DataFrame, operation: str, *, client: ApolloClient | None = None,
             columns: dict[str, str] | None = None, **options: Any) -> Estimate:
    """Estimate ``operation`` on ``ddf`` as :func:`enrich` would run it (computes now; sends nothing).

    Counts each record once across partitions, and the bulk calls as the
    run makes them (per partition of unique records).
    """
    spec = registry.get(operation, kind="enrich")
    job, refresh = spec.estimate_job_options(options)
    job = dict(job, columns=columns)
    _options(spec, job, ddf._meta)
    worker = WorkerClient.of(client)
    rows, unique = _unique_rows(ddf, spec.name, job, worker.cache_namespace)
    counts_meta = pd.DataFrame({"unique": pd.Series([], dtype="int64"), "cached": pd.Series([], dtype="int64"),
                                "calls": pd.Series([], dtype="int64")})
    counts = unique.map_partitions(_count, spec.name, job, refresh, worker, meta=counts_meta)
    n_rows, n_invalid, totals = dask.compute(rows[ROW].count(), rows[KEY].isna().sum(), counts.sum())
    with client_scope(client) as api:
        _, op, op_options = spec.job(ddf._meta, **job)
        work = Work(operation=spec.name, endpoint=op.endpoint, rows=int(n_rows), invalid=int(n_invalid),
                    unique=int(totals["unique"]), cached=int(totals["cached"]),
                    to_fetch=int(totals["unique"] - totals["cached"]), batch_size=op.batch_size,
                    worst_credits=float(op.worst_credits(op_options)), api_calls=int(totals["calls"]))
        return _from_work(work, api)


# -- the accessor ----------------------------------------------------------------------------------


@register_dataframe_accessor("apollo")
class DaskApolloAccessor:
    """``ddf.apollo``: the enrichments (lazy) and ``estimate`` (computed now) on this Dask DataFrame."""

    def __init__(self, frame: dd.DataFrame):
        self._frame = frame


def _enrich_call(name: str) -> Any:
    return lambda frame, **options: enrich(frame, name, **options)


for _spec in registry.operations("enrich"):
    setattr(DaskApolloAccessor, _spec.method_name,
            frame_method(_spec.function, _spec.method_name, call=_enrich_call(_spec.name), owner=DaskApolloAccessor))
setattr(DaskApolloAccessor, "estimate",
        frame_method(pandas_estimate, "estimate", call=lambda frame, **options: estimate(frame, **options),
                     owner=DaskApolloAccessor))
