"""One credit budget and one rate limit for every task of a computation spread over processes (Dask).

A Dask computation runs the engine once per partition, in several worker
processes at once. Left alone, each task would budget and pace as if it were
alone: ``max_credits`` would apply per partition and eight workers would each
spend the key's whole minute window. Here the shared numbers live in a
:class:`Tally`, a small JSON-able dict read and written under one lock:

* on a ``distributed`` worker, a named ``distributed.Lock`` and a JSON
  text in the scheduler's metadata store (``Client.set_metadata``), both
  held by the scheduler (nothing of ours listens);
* elsewhere (the threads scheduler, one process), a threading lock and a
  dict in this process: the process-local equivalent. With the
  multiprocessing scheduler each process has its own (documented).

:class:`SharedBudget` is the engine's :class:`~apollo_frames.engine.budget.Budget`
whose cap covers every task; :class:`SharedLimiter` is the client's
:class:`~apollo_frames.client.ratelimit.RateLimiter` whose windows every task
reads and updates. :class:`WorkerClient` is how a task gets its client: the
caller's own one in the caller's process, else one rebuilt from its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from apollo_frames.client.http import ApolloClient
from apollo_frames.client.ratelimit import RateLimiter, RateWindow, WindowBucket
from apollo_frames.core.clock import DEFAULT_WINDOW_LENGTHS, SYSTEM_CLOCK, Clock, SystemClock
from apollo_frames.core.errors import ConfigurationError
from apollo_frames.core.settings import Settings
from apollo_frames.engine.budget import EPSILON, Budget, items_that_fit, reached_text

__all__ = ["SharedBudget", "SharedLimiter", "Tally", "WorkerClient", "on_distributed_worker", "tally"]


class Tally(Protocol):
    """A dict of JSON values shared by the tasks of a computation, read and written under one lock."""

    def held(self) -> contextlib.AbstractContextManager[dict[str, Any]]: ...


class LocalTally:
    """The tally of the tasks running in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}

    @contextlib.contextmanager
    def held(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._state


class DistributedTally:
    """The tally of every task of a ``distributed`` cluster: a ``distributed.Lock`` and the scheduler's metadata."""

    def __init__(self, name: str):
        from distributed import Lock, get_client

        self.name = name
        self._lock = Lock(f"{name}:lock")
        # the worker's client, named now: the engine's sending threads are not task threads
        self._client = get_client()
        self._local = threading.Lock()  # one scheduler round trip at a time per process

    @contextlib.contextmanager
    def held(self) -> Iterator[dict[str, Any]]:
        with self._local, self._lock:
            state = json.loads(self._client.get_metadata(["apollo_frames", self.name], default=None) or "{}")
            yield state
            self._client.set_metadata(["apollo_frames", self.name], json.dumps(state))


def on_distributed_worker() -> bool:
    """Is this code running in a task of a ``distributed`` worker?"""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


_TALLIES: dict[tuple[str, bool], Tally] = {}
_TALLIES_LOCK = threading.Lock()


def tally(name: str) -> Tally:
    """This process's handle on the tally ``name``: the cluster's on a distributed worker, else this process's."""
    distributed = on_distributed_worker()
    with _TALLIES_LOCK:
        found = _TALLIES.get((name, distributed))
        if found is None:
            found = _TALLIES[(name, distributed)] = DistributedTally(name) if distributed else LocalTally()
        return found


# -- the budget ------------------------------------------------------------------------------------


class SharedBudget(Budget):
    """One task's view of a budget shared by every task: ``spent`` and ``reserved`` are its own, the cap everyone's.

    A request fits when everyone's spend, plus everyone's worst cases in
    flight, plus its own worst case stays within ``max_credits``. When it does
    not fit and this task has requests in flight, ``reserve_items(wait=False)``
    returns None as the engine's Budget does (the engine waits for them); when
    only other tasks have requests in flight it polls every ``poll`` seconds
    until they settle (they may come in cheaper), at most ``patience`` seconds
    (a worker that died holding a reservation never settles), then takes what fits.
    """

    def __init__(self, max_credits: float | None, shared: Tally, *, clock: Clock = SYSTEM_CLOCK,
                 poll: float = 0.05, patience: float = 120.0):
        super().__init__(max_credits)
        self._shared, self._clock, self._poll, self._patience = shared, clock, poll, patience

    def __repr__(self) -> str:
        with self._shared.held() as state:
            total = float(state.get("spent", 0.0))
        return f"Shared{super().__repr__()[:-1]}, everyone spent {total:g})"

    def reserve_items(self, unit: float, wanted: int, *, wait: bool = True) -> int | None:
        waited = 0.0
        while True:
            n = self._try_reserve(unit, wanted, force=waited >= self._patience)
            if n is not None:
                return n
            if self.reserved > EPSILON and not wait:
                return None
            self._clock.sleep(self._poll)
            waited += self._poll

    def _try_reserve(self, unit: float, wanted: int, *, force: bool) -> int | None:
        """Reserve now when all fit, when nothing is in flight anywhere, or when ``force``; else None."""
        with self._shared.held() as state:
            committed, reserved = float(state.get("committed", 0.0)), float(state.get("reserved", 0.0))
            n = items_that_fit(self.max_credits, committed + reserved, unit, wanted)
            if n != wanted and reserved > EPSILON and not force:
                return None
            state["reserved"] = reserved + n * max(unit, 0.0)
        with self._cond:
            self.reserved += n * max(unit, 0.0)
        return n

    def settle(self, reserved: float, actual: float, committed: float | None = None) -> None:
        committed = actual if committed is None else committed
        with self._shared.held() as state:
            state["reserved"] = max(0.0, float(state.get("reserved", 0.0)) - reserved)
            state["spent"] = float(state.get("spent", 0.0)) + actual
            state["committed"] = float(state.get("committed", 0.0)) + committed
        super().settle(reserved, actual, committed)

    def reached(self) -> str:
        with self._shared.held() as state:
            spent, committed = float(state.get("spent", 0.0)), float(state.get("committed", 0.0))
        return reached_text(self.max_credits, spent, committed, " across the computation")


# -- the rate limit --------------------------------------------------------------------------------


class WallClock(SystemClock):
    """The system clock whose ``monotonic`` is the wall time: one time base for windows shared by processes."""

    def monotonic(self) -> float:
        return time.time()


class SharedLimiter(RateLimiter):
    """The key's rate limiter with its windows kept in a :class:`Tally`: every process paces against one count."""

    def __init__(self, shared: Tally, limits: tuple[int | None, int | None, int | None],
                 window_seconds: tuple[float, float, float] = DEFAULT_WINDOW_LENGTHS):
        super().__init__(limits, window_seconds, clock=WallClock())
        self._shared = shared

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        with self._lock, self._shared.held() as state:
            self._buckets = {endpoint: _load_bucket(raw) for endpoint, raw in state.get("buckets", {}).items()}
            yield
            state["buckets"] = {endpoint: dataclasses.asdict(bucket) for endpoint, bucket in self._buckets.items()}


def _load_bucket(raw: dict[str, Any]) -> WindowBucket:
    windows = {name: RateWindow(**window) for name, window in raw["windows"].items()}
    return WindowBucket(windows, **{name: value for name, value in raw.items() if name != "windows"})


# -- the client of a task --------------------------------------------------------------------------

_CLIENTS: weakref.WeakValueDictionary[int, ApolloClient] = weakref.WeakValueDictionary()
_LIMITERS: dict[str, RateLimiter] = {}


@dataclasses.dataclass(frozen=True)
class WorkerClient:
    """What a task needs to get a client: the caller's own in the caller's process, else its settings.

    ``settings`` None: the worker builds a client from its own environment
    (``APOLLO_API_KEY``, ``APOLLO_BASE_URL``, ``APOLLO_FRAMES_CACHE_DIR``), so the
    key never travels in the task graph. With a client, its settings (the key
    among them, pickled with the graph, never in a repr) are sent to the workers.
    """

    settings: Settings | None = None
    namespace: str | None = None
    window_seconds: tuple[float, float, float] = DEFAULT_WINDOW_LENGTHS
    in_process_transport: bool = False
    pid: int = dataclasses.field(default_factory=os.getpid)
    ident: int = 0

    @classmethod
    def of(cls, client: ApolloClient | None) -> WorkerClient:
        if client is None:
            return cls()
        _CLIENTS[id(client)] = client
        return cls(client.settings, client.cache_namespace, tuple(client.limiter._lengths.values()),  # type: ignore[arg-type]
                   client._transport is not None, ident=id(client))

    @property
    def cache_namespace(self) -> str:
        """The answer store's namespace of the clients this builds."""
        if self.namespace is not None:
            return self.namespace
        return Settings.resolve().base_url

    @contextlib.contextmanager
    def open(self) -> Iterator[ApolloClient]:
        """The client for this task (closed afterwards when built here), pacing with every other task."""
        own = _CLIENTS.get(self.ident) if self.pid == os.getpid() else None
        if own is not None:
            yield own  # this process's tasks share the caller's client: one limiter already
            return
        if self.in_process_transport:
            raise ConfigurationError(
                "this client sends through an in-process transport (a WSGI app), which a worker in another "
                "process cannot reach: serve it over HTTP (e.g. Sandbox.start()) or use the threads scheduler"
            )
        client = self._build()
        try:
            yield client
        finally:
            client.close()

    def _build(self) -> ApolloClient:
        if self.settings is None:
            client = ApolloClient()
        else:  # every setting by name: one added to Settings travels without a change here
            given = {field.name: getattr(self.settings, field.name) for field in dataclasses.fields(self.settings)}
            client = ApolloClient(**given, window_seconds=self.window_seconds, cache_namespace=self.namespace)
        client.limiter = shared_limiter(client.settings, self.window_seconds)
        return client


def shared_limiter(settings: Settings, window_seconds: tuple[float, float, float]) -> RateLimiter:
    """The one limiter of ``settings``' key: the cluster's on a distributed worker, else this process's."""
    key = settings.api_key or ""
    name = "apollo-frames-limiter-" + hashlib.sha256(f"{settings.base_url}\n{key}".encode()).hexdigest()[:16]
    if on_distributed_worker():
        return SharedLimiter(tally(name), settings.limits, window_seconds)
    with _TALLIES_LOCK:
        limiter = _LIMITERS.get(name)
        if limiter is None:
            limiter = _LIMITERS[name] = RateLimiter(settings.limits, window_seconds)
        return limiter
