"""The whole-request deadline on real sockets.

httpx's timeouts bound each operation (one connect, one read), so a server
that trickles its status line and headers a byte at a time could hold an
attempt for as long as it likes. The client wraps httpcore's network backend
in :class:`DeadlineBackend`: each connect, TLS handshake, read and write of a
request waits at most until that request's deadline (set for the sending
thread by :func:`deadline`), and once it has passed the next one fails with a
timeout at once. So an attempt ends within its ``timeout``, headers included.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from apollo_frames.core.clock import Clock

_local = threading.local()


@contextlib.contextmanager
def deadline(clock: Clock, at: float) -> Iterator[None]:
    """Bound every socket operation of this thread by ``at`` (on ``clock.monotonic()``) inside the block."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = (clock, at)
    try:
        yield
    finally:
        _local.deadline = previous


def _bounded(timeout: float | None, late: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before this thread's deadline; ``late`` raised when none is left."""
    found = getattr(_local, "deadline", None)
    if found is None:
        return timeout
    clock, at = found
    left = at - clock.monotonic()
    if left <= 0:
        raise late("the whole-request deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, its streams bounded by the deadline (see the module docstring)."""

    def __init__(self, inner: httpcore.NetworkBackend):
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_by_deadline(http: httpx.Client) -> int:
    """Put the connections of ``http``'s own transports (direct, and through proxies from the environment) under
    the deadline; how many were. httpx offers no public hook for a network backend, so this sets httpcore's pool
    attribute; an injected transport (a mock, the in-process sandbox) has none and is left as it is."""
    bounded = 0
    for transport in (http._transport, *http._mounts.values()):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None:
            if not isinstance(backend, DeadlineBackend):
                pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]
            bounded += 1
    return bounded
