"""The operation registry: each operation described once, read by the CLI, the accessor, estimate and streaming.

An operation module builds one :class:`Spec` (its name, in-memory function,
output columns, declared options, and what the streaming path and the
estimator need) and passes it to :func:`register` when it is imported. The
registry imports every module of ``apollo_frames.ops`` itself the first time
it is read, so adding an operation (of a kind the CLI and the streaming path
know: ``enrich``, ``search``, ``push``) touches its own module and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

from apollo_frames.core.errors import InputError
from apollo_frames.engine.options import RUN_OPTION_NAMES, RunOptions
from apollo_frames.engine.runner import Operation, Prepared
from apollo_frames.engine.work import Work, check_options, work_from_plan

#: Options every ``enrich`` run takes besides its operation's own: the engine's (budget, cache, ledger, gate, bar).
RUN_OPTIONS = RUN_OPTION_NAMES
KINDS = ("enrich", "search", "push")

Job = Callable[..., "tuple[Prepared, Operation, dict]"]
Planner = Callable[[pd.DataFrame, Any, dict, Any], Work]


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``apollo-frames`` subcommand of an operation; ``call`` is what it runs when not the streaming path."""

    name: str
    help: str
    call: Callable[..., pd.DataFrame] | None = None
    #: optional command-line features, e.g. ("max_credits",)
    flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Spec:
    """One registered operation.

    ``kind`` says which path runs it: ``enrich`` (row-aligned, through the
    runner: ``job`` prepares a frame), ``search`` (one search per row, a long
    result), ``push`` (row-aligned writes: ``run`` pushes one chunk, carrying
    ``seen`` keys across chunks).
    """

    name: str
    kind: str
    #: the in-memory entry point, frame first: also the accessor method
    function: Callable[..., pd.DataFrame]
    #: options -> the columns the operation adds after the input's, in order
    schema: Callable[[Mapping[str, Any]], pa.Schema]
    #: the operation's own option names (``enrich``: the job's; run options are ``RUN_OPTIONS``)
    options: tuple[str, ...]
    #: accessor method name (default: ``name``)
    method: str = ""
    #: enrich: (frame, **options) -> (prepared rows, runner Operation, request options)
    job: Job | None = None
    #: push: (frame, *, seen, client, progress, **options) -> report frame
    run: Callable[..., pd.DataFrame] | None = None
    #: push: the ``target`` name ``push_parquet`` takes
    target: str | None = None
    #: estimate for operations without a ``job``: (frame, columns, options, client) -> Work
    planner: Planner | None = None
    #: enrich: estimate's (checked) options -> the job's (e.g. a placeholder webhook to price a phone reveal)
    estimate_options: Callable[[dict], dict] | None = None
    #: input columns dropped from the result besides those named like a new column
    replaces: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "enrich" and self.job is None:
            raise ValueError(f"{self.name}: an enrich operation needs a job")
        if self.kind == "push" and (self.run is None or self.target is None):
            raise ValueError(f"{self.name}: a push operation needs run and target")

    @property
    def method_name(self) -> str:
        return self.method or self.name

    @property
    def estimable(self) -> bool:
        return self.planner is not None or self.job is not None

    def estimate_job_options(self, options: Mapping[str, Any]) -> tuple[dict, RunOptions]:
        """(the job's options, the run's: ``refresh`` and ``max_age``) for estimating with ``options``; TypeError
        for one it does not take."""
        options = dict(options)
        run = RunOptions(refresh=options.pop("refresh", False), max_age=options.pop("max_age", None))
        check_options(self.name, options, tuple(o for o in self.options if o != "columns") + ("refresh", "max_age"))
        return (self.estimate_options(options) if self.estimate_options else options), run

    def plan(self, frame: pd.DataFrame, columns: Any, options: dict, client: Any) -> Work:
        """What this operation would do for ``frame``, counted without sending anything (reads the cache)."""
        if self.planner is not None:
            return self.planner(frame, columns, options, client)
        if self.job is None:
            raise InputError(f"no estimate for operation {self.name!r}; known: {estimable_names()}")
        job_options, run = self.estimate_job_options(options)
        prepared, op, op_options = self.job(frame, columns=columns, **job_options)
        return work_from_plan(frame, prepared, op, op_options, client, refresh=run.refresh, max_age=run.max_age)


_SPECS: dict[str, Spec] = {}
_loaded = False


def register(spec: Spec) -> Spec:
    """Add ``spec`` (an operation module calls this once, at import); a name is registered once."""
    held = _SPECS.get(spec.name)
    if held is not None and held.function.__module__ != spec.function.__module__:
        raise ValueError(f"operation {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def load() -> None:
    """Import every operation module of this package, so each registers itself."""
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__ or "apollo_frames.ops")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def operations(kind: str | None = None) -> list[Spec]:
    """Every registered operation (of ``kind``), in registration order."""
    load()
    return [spec for spec in _SPECS.values() if kind is None or spec.kind == kind]


def estimable_names() -> list[str]:
    return sorted(spec.name for spec in operations() if spec.estimable)


def get(name: Any, kind: str | None = None) -> Spec:
    """The operation named ``name`` ("enrich_people" or "enrich-people"); ValueError naming the known ones."""
    load()
    spec = _SPECS.get(name.replace("-", "_")) if isinstance(name, str) else None
    if spec is None or (kind is not None and spec.kind != kind):
        known = ", ".join(s.name for s in operations(kind))
        raise InputError(f"operation must be one of {known}, got {name!r}")
    return spec
