"""``ddf.apollo``: the enrichments and ``estimate`` on Dask DataFrames, each unique record fetched once in all.

``import apollo_frames.dask`` registers the accessor with Dask's own
mechanism (``dask.dataframe.extensions.register_dataframe_accessor``);
``import apollo_frames`` does it too when Dask is already imported. The
methods are generated from the pandas functions (same signatures, same
docstrings) and build a lazy graph with the same columns and dtypes
(``meta``) as the pandas result:

1. every row gets its number and its identity key, the answer store's key
   made from the operation's own ``prepare`` (no second normalisation);
2. the rows (only the columns the operation reads) are shuffled on that key
   with Dask's own shuffle: every copy of a key lands in one partition;
3. each of those partitions goes through the engine as one frame, so each
   key is answered once in the whole computation (cache first, then bulk
   calls), within one :class:`~apollo_frames.io.shared.SharedBudget`
   (``max_credits`` caps the whole computation) and one
   :class:`~apollo_frames.io.shared.SharedLimiter` per API key;
4. the answers are joined back to the rows: put back in their partitions
   and order (``set_index`` on the row number, with known divisions) and
   assembled beside the input columns by the one assembler.

Workers build their clients from the caller's client settings, or from their
own environment when no client is given. The run summary is not carried
back (Dask frames have no ``attrs``): the ledger beside each worker's cache
folder records every call under the computation's one run id.
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from typing import Any

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
from dask.dataframe.extensions import register_dataframe_accessor

from apollo_frames.accessor import frame_method
from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.client.suppression import suppression_values
from apollo_frames.core.columns import Columns
from apollo_frames.core.entries import entry_key
from apollo_frames.core.schema import to_pandas
from apollo_frames.engine.assemble import assemble_frame
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.runner import answer_columns, execute, finish
from apollo_frames.engine.work import Work, work_from_plan
from apollo_frames.estimates import Estimate, estimate_from_work
from apollo_frames.estimates import estimate as pandas_estimate
from apollo_frames.io.shared import SharedBudget, WorkerClient, tally
from apollo_frames.ops import registry
from apollo_frames.ops.registry import RUN_OPTIONS, Spec

__all__ = ["DaskApolloAccessor", "enrich", "estimate"]

#: the columns the graph carries between its steps (never in the result)
KEY, ROW = "_apollo_key", "_apollo_row"
#: a row's number: its partition times this, plus its position in the partition
ROW_STRIDE = 1 << 40


# -- options ---------------------------------------------------------------------------------------


def _options(spec: Spec, options: dict, meta: pd.DataFrame) -> tuple[dict, RunOptions]:
    """(the job's options, the run's); checked now, before anything is computed."""
    unknown = sorted(set(options) - set(spec.options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {unknown[0]!r}")
    if options.get("ledger") is not None:
        raise TypeError("ledger= cannot travel to Dask workers: each records in the ledger beside its cache folder")
    job = {k: v for k, v in options.items() if k in spec.options}
    run = RunOptions(**{k: v for k, v in options.items() if k not in spec.options})
    run = dataclasses.replace(run, progress=False)  # ``progress`` is checked, and ignored: workers show no bars
    assert spec.job is not None
    spec.job(meta, **job)  # the column mapping and the options, checked on the empty frame
    # a file of values is read once, here; the values travel to the workers (each adds its folder's list)
    if run.suppress is not None:
        run = dataclasses.replace(run, suppress=suppression_values(run.suppress))
    return job, run


def _result_meta(meta: pd.DataFrame, spec: Spec, job: dict) -> pd.DataFrame:
    return assemble_frame(meta, spec.schema(job).empty_table(), spec.replaces)


# -- the steps (each runs on one pandas partition) --------------------------------------------------


def _keyed(frame: pd.DataFrame, name: str, job: dict, namespace: str,
           partition_info: dict | None = None) -> pd.DataFrame:
    """The columns the operation reads, with each row's number and identity key (an invalid row: its own)."""
    spec = registry.get(name)
    assert spec.job is not None
    prepared, op, op_options = spec.job(frame, **job)
    used = list(dict.fromkeys(c.column for c in prepared.columns.choices)) if prepared.columns is not None else []
    out = frame[used].copy() if used else pd.DataFrame(index=frame.index)
    rows = pd.RangeIndex(len(frame)) + (partition_info or {}).get("number", 0) * ROW_STRIDE
    out[ROW] = rows
    out[KEY] = pd.array(
        [f"row:{row}" if identity is None else entry_key(namespace, op.endpoint, identity, op_options)
         for row, identity in zip(rows, prepared.identities, strict=True)], dtype=object,
    )
    return out


def _enrich_rows(frame: pd.DataFrame, name: str, job: dict, run: RunOptions, client: WorkerClient, run_id: str,
                 new_meta: pd.DataFrame) -> pd.DataFrame:
    """One partition of rows, every copy of its keys in it: the engine's run (each key once), the rows' answers."""
    spec = registry.get(name)
    assert spec.job is not None
    if not len(frame):
        return new_meta
    budget = (None if run.max_credits is None
              else SharedBudget(run.max_credits, tally(f"apollo-frames-budget-{run_id}")))
    with client.open() as api:
        prepared, op, op_options = spec.job(frame.drop(columns=[ROW, KEY]), **job)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped rows say why in apollo_error
            # asked once, before the graph was built (confirm_over)
            done = execute(len(frame), prepared, op, op_options, client=api, run_id=run_id, budget=budget,
                           run=dataclasses.replace(run, confirm_over=None))
            new = answer_columns(prepared, done)
            finish(done, progress=False)
    out = to_pandas(new)
    out.insert(0, ROW, frame[ROW].to_numpy())
    return out


def _assemble(frame: pd.DataFrame, answers: pd.DataFrame, name: str, job: dict) -> pd.DataFrame:
    """A partition's result: its rows as given, then their answers (in row order: ``answers`` is indexed by row)."""
    spec = registry.get(name)
    if len(answers) != len(frame):
        raise RuntimeError(f"{name}: {len(answers)} answers for {len(frame)} rows in a partition")
    schema = spec.schema(job)
    new = pa.Table.from_pandas(answers, schema=schema, preserve_index=False)
    return assemble_frame(frame, new, spec.replaces)


# -- the graph -------------------------------------------------------------------------------------


def _by_key(ddf: dd.DataFrame, name: str, job: dict, namespace: str) -> dd.DataFrame:
    """The rows (the columns the operation reads), shuffled so that every copy of a key is in one partition."""
    meta = _keyed(ddf._meta, name, job, namespace)
    keyed = ddf.map_partitions(_keyed, name, job, namespace, meta=meta)
    return keyed.shuffle(on=KEY, npartitions=max(ddf.npartitions, 1))


def enrich(ddf: dd.DataFrame, *, operation: str = "enrich_people", client: ApolloClient | None = None,
           **options: Any) -> dd.DataFrame:
    """Enrich ``ddf`` lazily (see the module doc); ``options`` are the pandas function's.

    ``suppress`` (values or a file, read once here) and the suppression list of each worker's cache folder set
    rows aside as the pandas run does (``suppressed``). ``max_credits`` caps the whole computation.
    ``confirm_over`` counts the work first (an eager ``estimate``) and asks before the graph is built.
    ``progress`` is accepted and ignored (workers show no bars); ``ledger``
    cannot travel to workers. Without ``client=``, each worker builds its
    client from its own environment.
    """
    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"enrich needs a Dask DataFrame, got {type(ddf).__name__}")
    spec = registry.get(operation, kind="enrich")
    job, run = _options(spec, dict(options), ddf._meta)
    if run.confirm_over is not None:
        found = estimate(ddf, operation=spec.name, client=client, refresh=run.refresh, max_age=run.max_age, **job)
        confirm_spend(spec.name, run.worst_allowed(found.credits_max), run.confirm_over)
    worker = WorkerClient.of(client)
    new_meta = to_pandas(spec.schema(job).empty_table())
    new_meta.insert(0, ROW, pd.Series([], dtype="int64"))
    answers = _by_key(ddf, spec.name, job, worker.cache_namespace).map_partitions(
        _enrich_rows, spec.name, job, run, worker, uuid.uuid4().hex[:12], new_meta, meta=new_meta)
    n = max(ddf.npartitions, 1)
    divisions = [p * ROW_STRIDE for p in range(n)] + [n * ROW_STRIDE - 1]
    ordered = answers.set_index(ROW, divisions=divisions)
    return dd.map_partitions(_assemble, ddf, ordered, spec.name, job, meta=_result_meta(ddf._meta, spec, job),
                             align_dataframes=False)


# -- estimate --------------------------------------------------------------------------------------


_COUNTS = ("rows", "invalid", "unique", "cached", "to_fetch", "api_calls")


def _count(frame: pd.DataFrame, name: str, job: dict, run: RunOptions, client: WorkerClient) -> pd.DataFrame:
    """One partition of rows (every copy of its keys in it): its work, counted as the engine's estimate counts it."""
    spec = registry.get(name)
    assert spec.job is not None
    rows = frame.drop(columns=[ROW, KEY])
    with client.open() as api:
        prepared, op, op_options = spec.job(rows, **job)
        work = work_from_plan(rows, prepared, op, op_options, api, refresh=run.refresh, max_age=run.max_age)
    return pd.DataFrame({name: [int(getattr(work, name) or 0)] for name in _COUNTS})


def estimate(ddf: dd.DataFrame, *, operation: str = "enrich_people", client: ApolloClient | None = None,
             columns: Columns = None, **options: Any) -> Estimate:
    """Estimate ``operation`` on ``ddf`` as :func:`enrich` would run it (computed now; sends nothing).

    Each record counts once across partitions; the bulk calls are counted as
    the run makes them (per partition of keys).
    """
    spec = registry.get(operation, kind="enrich")
    job, run = spec.estimate_job_options(options)
    job = dict(job, columns=columns)
    _options(spec, job, ddf._meta)
    worker = WorkerClient.of(client)
    meta = pd.DataFrame({name: pd.Series([], dtype="int64") for name in _COUNTS})
    counts = _by_key(ddf, spec.name, job, worker.cache_namespace).map_partitions(
        _count, spec.name, job, run, worker, meta=meta)
    totals = counts.sum().compute()
    assert spec.job is not None
    with client_scope(client) as api:
        _, op, op_options = spec.job(ddf._meta, **job)
        work = Work(operation=spec.name, endpoint=op.endpoint, batch_size=op.batch_size,
                    worst_credits=float(op.worst_credits(op_options)), **{n: int(totals[n]) for n in _COUNTS})
        return estimate_from_work(work, api)


# -- the accessor ----------------------------------------------------------------------------------


@register_dataframe_accessor("apollo")
class DaskApolloAccessor:
    """``ddf.apollo``: the enrichments (lazy) and ``estimate`` (computed now) on this Dask DataFrame."""

    def __init__(self, frame: dd.DataFrame):
        self._frame = frame


def _enrich_call(name: str) -> Any:
    return lambda frame, **options: enrich(frame, operation=name, **options)


for _spec in registry.operations("enrich"):
    setattr(DaskApolloAccessor, _spec.method_name,
            frame_method(_spec.function, _spec.method_name, call=_enrich_call(_spec.name), owner=DaskApolloAccessor))
DaskApolloAccessor.estimate = frame_method(  # type: ignore[attr-defined]
    pandas_estimate, "estimate", call=lambda frame, **options: estimate(frame, **options), owner=DaskApolloAccessor)
