"""The Apollo HTTP client: the only module that talks to httpx.

One retry policy, modelled on openai-python's: a 429 is pacing (wait for
``Retry-After`` or the window reset, every worker on that endpoint pauses, no
retry budget is spent); 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter up to ``max_retries``; 400/401/403/404/422 are
raised at once as typed errors. Writes that are not idempotent are never
retried once they may have reached Apollo.

The API key is put in the ``X-Api-Key`` header of each request and nowhere
else: not in URLs, bodies, log lines, error messages or the repr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from apollo_frames._version import __version__
from apollo_frames.core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ApolloServerError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.store import ResponseCache
from apollo_frames.client.ratelimit import RateLimiter, parse_retry_after, window_from_message
from apollo_frames.core.settings import DEFAULT_BASE_URL, Settings

logger = logging.getLogger("apollo_frames")

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0


@dataclasses.dataclass
class ApiResponse:
    """A successful answer: parsed body, headers, and how many attempts it took."""

    status_code: int
    data: Any
    headers: Mapping[str, str]
    attempts: int
    endpoint: str


@dataclasses.dataclass
class ClientStats:
    """Counters over the client's life: every HTTP attempt, retry and 429."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate_limit_wait_s: float = 0.0


def endpoint_of(method: str, path: str) -> str:
    """The rate-limit bucket of a request: the path, with record ids collapsed."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) == 2 and parts[0] in ("contacts", "accounts") and parts[1] not in (
        "bulk_create",
        "bulk_update",
        "search",
    ):
        return f"{parts[0]}/update" if method.upper() in ("PATCH", "PUT") else f"{parts[0]}/show"
    return "/".join(parts)


def scrub(body: Any, secret: str) -> Any:
    """The body with every occurrence of ``secret`` replaced, in case a server ever echoes the key."""
    if isinstance(body, str):
        return body.replace(secret, "***")
    if isinstance(body, dict):
        return {scrub(k, secret): scrub(v, secret) for k, v in body.items()}
    if isinstance(body, list):
        return [scrub(v, secret) for v in body]
    return body


def apollo_message(body: Any) -> str:
    """Apollo's own error text from any of its error envelopes."""
    if isinstance(body, dict):
        for key in ("error", "error_message", "message"):
            if body.get(key):
                return str(body[key])
        return str(body)[:300]
    return str(body or "").strip()[:300]


class ApolloClient:
    """Settings, pacing and HTTP for one Apollo API key.

    Arguments left as None are read from the environment when the client is
    made (``APOLLO_API_KEY``, ``APOLLO_BASE_URL``, ``APOLLO_FRAMES_CACHE_DIR``).
    ``transport`` replaces the network, as in httpx: a mock, or an in-process
    WSGI app (the sandbox offers its own, ``Sandbox.client()``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        cache_dir: str | None = None,
        concurrency: int | None = None,
        max_retries: int | None = None,
        *,
        timeout: float | None = None,
        max_rate_limit_wait: float | None = None,
        plan: str | None = None,
        rate_limits: tuple[int | None, int | None, int | None] | None = None,
        window_seconds: tuple[float, float, float] | None = None,
        cache_ttl: float | None = None,
        search_cache_ttl: float | None = None,
        cache_namespace: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_backoff: tuple[float, float] = (INITIAL_RETRY_DELAY, MAX_RETRY_DELAY),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = Settings.resolve(
            api_key=api_key,
            base_url=base_url,
            cache_dir=cache_dir,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout=timeout,
            max_rate_limit_wait=max_rate_limit_wait,
            plan=plan,
            rate_limits=rate_limits,
            cache_ttl=cache_ttl,
            search_cache_ttl=search_cache_ttl,
        )
        self.cache_namespace = cache_namespace or self.settings.base_url
        self.limiter = RateLimiter(
            self.settings.limits, window_seconds or (60.0, 3600.0, 86400.0), sleep=sleep, clock=clock
        )
        self.stats = ClientStats()
        self._transport = transport
        self._backoff = retry_backoff
        self._sleep = sleep
        self._clock = clock
        self._stats_lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()
        self._cache = None
        self._ledger = None

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"ApolloClient(base_url={s.base_url!r}, key={s.key_hint!r}, concurrency={s.concurrency}, "
            f"max_retries={s.max_retries}, cache_dir={str(s.cache_dir)!r})"
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client(
                    base_url=self.settings.base_url + "/",
                    timeout=self.settings.timeout,
                    transport=self._transport,
                    limits=httpx.Limits(max_connections=self.settings.concurrency + 2),
                    headers={
                        "Content-Type": "application/json",
                        "Cache-Control": "no-cache",
                        "User-Agent": f"apollo_frames/{__version__}",
                    },
                )
            return self._http

    @property
    def cache(self):
        """The on-disk response cache for this client's settings, opened on first use."""
        if self._cache is None:
            self._cache = ResponseCache(self.settings.cache_dir, namespace=self.cache_namespace)
        return self._cache

    @property
    def ledger(self):
        """The persistent credit ledger beside the cache, opened on first use."""
        if self._ledger is None:
            # Apollo's own ledger is ledger.sqlite; a sandbox or another base URL keeps its credits apart.
            name = "ledger.sqlite"
            if self.cache_namespace != DEFAULT_BASE_URL:
                name = "ledger-" + hashlib.sha256(self.cache_namespace.encode()).hexdigest()[:10] + ".sqlite"
            self._ledger = Ledger(self.settings.cache_dir / name)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> "ApolloClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------

    def get(self, path: str, *, params: Mapping[str, Any] | None = None, **kw) -> ApiResponse:
        return self.request("GET", path, params=params, **kw)

    def post(self, path: str, json: Any = None, **kw) -> ApiResponse:
        return self.request("POST", path, json=json, **kw)

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def _backoff_delay(self, retries_done: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 < retry_after <= 60:
            return retry_after
        initial, cap = self._backoff
        return min(initial * 2.0**retries_done, cap) * (1 - 0.25 * random.random())

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> ApiResponse:
        """Send one request with pacing and retries; return the answer or raise a typed error.

        ``idempotent=False`` (creates): once the request may have reached
        Apollo, a failure is raised with ``outcome_unknown=True`` instead of
        being retried.
        """
        key = self.settings.require_key()
        for container in (params, json if isinstance(json, dict) else None):
            if container and any(str(k).lower() in ("api_key", "x-api-key") for k in container):
                raise ValueError("The API key goes only in the X-Api-Key header; remove it from params/body.")
        path = path.strip("/")
        endpoint = endpoint_of(method, path)
        http = self._client()
        attempts = 0
        retries = 0
        rate_wait = 0.0
        cap = self.settings.max_rate_limit_wait
        while True:
            started = self._clock()
            ticket = self.limiter.acquire(endpoint, max_wait=max(cap - rate_wait, 0.0))
            waited = self._clock() - started
            rate_wait += waited
            if waited:
                self._count(rate_limit_wait_s=waited)
            attempts += 1
            self._count(requests=1)
            try:
                response = http.request(method, path, json=json, params=params, headers={"X-Api-Key": key})
            except httpx.TransportError as exc:
                # A connect failure never reached Apollo; anything later might have.
                reached = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
                self.limiter.release(ticket)
                timed_out = isinstance(exc, httpx.TimeoutException)
                logger.info("%s %s failed on attempt %d: %s", method, path, attempts, type(exc).__name__)
                if retries < self.settings.max_retries and (idempotent or not reached):
                    self._sleep(self._backoff_delay(retries, None))
                    retries += 1
                    self._count(retries=1)
                    continue
                kind = APITimeoutError if timed_out else APIConnectionError
                what = "timed out" if timed_out else f"failed to connect ({type(exc).__name__})"
                unknown = reached and not idempotent
                raise kind(
                    f"Request to {path} {what} after {attempts} attempt(s)."
                    + (" It may have reached Apollo: the outcome is unknown." if unknown else ""),
                    path=path,
                    attempts=attempts,
                    outcome_unknown=unknown,
                ) from None

            self.limiter.observe(ticket, response.headers)
            status = response.status_code
            logger.debug("%s %s -> %d (attempt %d)", method, path, status, attempts)
            if status < 400:
                return ApiResponse(status, self._body(response), dict(response.headers), attempts, endpoint)

            body = scrub(self._body(response), key)
            message = apollo_message(body)
            if status == 429:
                window = window_from_message(message)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                pause = self.limiter.pause(endpoint, retry_after=retry_after, window=window)
                self._count(rate_limited=1)
                logger.info("429 on %s: pausing %.1f s (%s window)", path, pause, window or "unknown")
                if rate_wait + pause > cap:
                    raise RateLimitError(
                        f"Rate limit on {path}: Apollo says wait {pause:.0f} s for the {window or 'current'} window, "
                        f"beyond the wait cap of {cap:.0f} s ({message}). "
                        f"Run again after it resets, or raise max_rate_limit_wait.",
                        window=window,
                        reset_at=time.time() + pause,
                        status_code=429,
                        path=path,
                        body=body,
                        attempts=attempts,
                    )
                continue
            if status >= 500 or status == 408:
                if retries < self.settings.max_retries and idempotent:
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    self._sleep(self._backoff_delay(retries, retry_after))
                    retries += 1
                    self._count(retries=1)
                    continue
                unknown = not idempotent
                raise ApolloServerError(
                    f"Apollo answered {status} on {path} after {attempts} attempt(s): {message or 'no message'}"
                    + (" The write may or may not have happened: the outcome is unknown." if unknown else ""),
                    status_code=status,
                    path=path,
                    body=body,
                    attempts=attempts,
                    outcome_unknown=unknown,
                )
            error = self._status_error(status, path, message, body, attempts)
            error.headers = dict(response.headers)
            raise error

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    @staticmethod
    def _status_error(status: int, path: str, message: str, body: Any, attempts: int) -> APIStatusError:
        kw = dict(status_code=status, path=path, body=body, attempts=attempts)
        if status == 401:
            return AuthenticationError(
                f"Apollo rejected the API key (401 on {path}: {message or 'no message'}). "
                "Check APOLLO_API_KEY or the api_key given to ApolloClient.",
                **kw,
            )
        if status == 403:
            return PermissionDeniedError(
                f"This API key may not call {path} (403: {message or 'no message'}). "
                "It needs a master key, or a key or plan that includes this endpoint.",
                **kw,
            )
        if status == 404:
            return NotFoundError(f"Apollo answered 404 on {path}: {message or 'not found'}.", **kw)
        if status in (400, 422):
            return ValidationError(f"Apollo refused the request to {path} ({status}): {message}", **kw)
        return APIStatusError(f"Apollo answered {status} on {path}: {message}", **kw)


@contextlib.contextmanager
def client_scope(client: ApolloClient | None = None):
    """Use the given client, or make one from the environment now and close it afterwards."""
    if client is not None:
        yield client
        return
    own = ApolloClient()
    try:
        yield own
    finally:
        own.close()
