"""``pl.DataFrame.apollo``: every operation on Polars frames, returning Polars frames.

``import apollo_frames.polars`` registers the namespace with Polars' own
mechanism (``pl.api.register_dataframe_namespace``, and the same on
``pl.LazyFrame``); ``import apollo_frames`` does it too when Polars is already
imported. The methods are generated from the pandas functions (same
signatures, same docstrings), so the two cannot drift; the results have the
same columns and statuses as the pandas path, in Polars' own dtypes
(String, Int64, Float64, Boolean, Datetime).

* **Enrichments run on the Arrow path.** Only the columns the operation
  reads are handed to its ``prepare`` step (it reads Python values); the
  new columns are built by the engine in Arrow and joined to the caller's
  frame without a copy (``pl.from_arrow``): the input columns never leave Polars.
* ``search``, ``push_contacts`` and ``push_accounts`` build pandas frames in
  their engines today: they run on ``frame.to_pandas()`` and come back as
  ``pl.from_pandas``. ``estimate`` and ``columns`` return what the pandas
  ones return (an ``Estimate``, a ``ColumnMapping``).
* **The summary.** Polars frames carry no ``attrs``: the summary of the last
  call made in this thread is ``df.apollo.last_summary`` (on any frame) and
  :func:`last_summary`, the dict pandas puts in ``attrs["apollo"]``.
* **A LazyFrame** is collected first: the engine needs every row's key to
  dedupe and fill bulk calls. For data larger than memory, use
  ``enrich_parquet`` (streams a file) or ``apollo_frames.dask``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import polars as pl

from apollo_frames.accessor import frame_method
from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.engine.assemble import kept_columns
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.runner import answer_columns, execute, finish
from apollo_frames.estimates import estimate
from apollo_frames.ops import registry
from apollo_frames.ops.mapping import columns
from apollo_frames.ops.registry import RUN_OPTIONS, Spec

__all__ = ["PolarsApolloNamespace", "enrich", "last_summary"]

_LAST = threading.local()


def last_summary() -> dict | None:
    """The summary of the last Polars ``apollo`` call made in this thread (None before the first)."""
    return getattr(_LAST, "summary", None)


def _eager(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"expected a Polars DataFrame or LazyFrame, got {type(frame).__name__}")
    return frame


def _read_columns(spec: Spec, frame: pl.DataFrame, job: dict) -> list[str]:
    """The columns ``spec`` reads from ``frame`` (its column mapping, worked out on the labels alone)."""
    assert spec.job is not None
    prepared, _, _ = spec.job(pd.DataFrame(columns=frame.columns), **job)
    if prepared.columns is None:
        return list(frame.columns)
    return list(dict.fromkeys(c.column for c in prepared.columns.choices))


def enrich(frame: pl.DataFrame | pl.LazyFrame, *, operation: str = "enrich_people",
           client: ApolloClient | None = None, **options: Any) -> pl.DataFrame:
    """Run the enrichment ``operation`` on a Polars frame (see the module doc); ``options`` are the pandas one's."""
    frame = _eager(frame)
    spec = registry.get(operation, kind="enrich")
    unknown = sorted(set(options) - set(spec.options) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {unknown[0]!r}")
    job = {k: v for k, v in options.items() if k in spec.options}
    run = RunOptions(**{k: v for k, v in options.items() if k not in spec.options})
    assert spec.job is not None
    prepared, op, op_options = spec.job(frame.select(_read_columns(spec, frame, job)).to_pandas(), **job)
    with client_scope(client) as api:
        done = execute(frame.height, prepared, op, op_options, client=api, run=run)
        new = answer_columns(prepared, done)
        finish(done, run.progress)
    summary = done.summary.to_dict()
    if prepared.columns is not None:
        summary["columns"] = prepared.columns.to_dict()
    _LAST.summary = summary
    kept = kept_columns(frame.columns, new.column_names, spec.replaces)
    return pl.concat([frame.select(kept), pl.DataFrame(pl.from_arrow(new))], how="horizontal")


def _through_pandas(frame: pl.DataFrame | pl.LazyFrame, operation: str, **arguments: Any) -> pl.DataFrame:
    """A search or push on a Polars frame, through the operation's pandas function (its engine builds pandas)."""
    spec = registry.get(operation)
    result = spec.function(_eager(frame).to_pandas(), **arguments)
    _LAST.summary = dict(result.attrs.get("apollo", {}))
    return pl.from_pandas(result.reset_index(drop=True))


class PolarsApolloNamespace:
    """``df.apollo``: the operations of :mod:`apollo_frames` on this Polars frame (see each method's help)."""

    def __init__(self, frame: pl.DataFrame | pl.LazyFrame):
        self._frame = frame

    @property
    def last_summary(self) -> dict | None:
        """The summary of the last ``apollo`` call made in this thread (Polars frames have no ``attrs``)."""
        return last_summary()


def _call(spec: Spec) -> Callable[..., Any]:
    if spec.kind == "enrich":
        return lambda frame, **arguments: enrich(frame, operation=spec.name, **arguments)
    return lambda frame, **arguments: _through_pandas(frame, spec.name, **arguments)


for _spec in registry.operations():
    setattr(PolarsApolloNamespace, _spec.method_name,
            frame_method(_spec.function, _spec.method_name, call=_call(_spec), owner=PolarsApolloNamespace))
_OTHERS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "estimate": (estimate, lambda frame, **arguments: estimate(_eager(frame).to_pandas(), **arguments)),
    # a mapping needs the labels alone: a LazyFrame is not collected for it
    "columns": (columns, lambda frame, **arguments: columns(frame.collect_schema().names(), **arguments)),
}
for _name, (_function, _run) in _OTHERS.items():
    setattr(PolarsApolloNamespace, _name, frame_method(_function, _name, call=_run, owner=PolarsApolloNamespace))

pl.api.register_dataframe_namespace("apollo")(PolarsApolloNamespace)
pl.api.register_lazyframe_namespace("apollo")(PolarsApolloNamespace)
