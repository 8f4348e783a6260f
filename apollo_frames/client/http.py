"""The Apollo HTTP client: configuration, lifecycle, and the send loop.

One retry policy, modelled on openai-python's: a 429 is pacing (wait for
``Retry-After`` or the window reset, every worker on that endpoint pauses, no
retry budget is spent); 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter up to ``max_retries``; 400/401/403/404/422 are
raised at once as typed errors. Writes that are not idempotent are never
retried once they may have reached Apollo. The decisions are the pure
functions of :mod:`apollo_frames.client.retry`; ``request`` only loops over them.

The API key is put in the ``X-Api-Key`` header of each request and nowhere
else: not in URLs, bodies, log lines, error messages or the repr. Nothing a
server says is trusted: each answer is streamed and must arrive whole within
``timeout`` seconds (a whole-request deadline on the client's clock that also
bounds every socket operation, status line and headers included:
:mod:`apollo_frames.client.deadline`) and within ``max_response_bytes``; only
a 200/201 with a JSON body is an answer, and a body that cannot be decoded or
parsed is an :class:`~apollo_frames.core.errors.APIResponseError`; an echoed
key is scrubbed from every body and header before anyone reads it (and from
httpcore's DEBUG records); a loopback base URL never goes through a proxy; and
no error raised here carries an httpx exception (whose request holds the key)
in its chain. Each answer and error says how many attempts the server may have
run and charged without a usable answer (``charged_attempts``), for the budget
and the ledger.

httpx (with httpcore, and click and rich for its command line) is imported when a client first sends, not on
``import apollo_frames``: a cached run or an estimate never loads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from apollo_frames._version import __version__
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.ratelimit import (
    RateLimiter,
    parse_retry_after,
    window_from_message,
)
from apollo_frames.client.retry import (
    DEFAULT_BACKOFF,
    Outcome,
    apollo_code,
    apollo_message,
    connection_error,
    may_have_run,
    may_have_written,
    may_hold,
    outcome_of_error,
    outcome_of_status,
    rate_limit_error,
    retry_delay,
    scrub,
    should_retry,
    status_error,
)
from apollo_frames.client.store import AnswerStore
from apollo_frames.core import jsontext
from apollo_frames.core.clock import DEFAULT_WINDOW_LENGTHS, SYSTEM_CLOCK, Clock
from apollo_frames.core.errors import APIError, APIResponseError, InputError, RequestAbandoned
from apollo_frames.core.settings import DEFAULT_BASE_URL, Settings, is_loopback

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("apollo_frames")

#: Where an API key must never be put (it goes only in the X-Api-Key header).
_KEY_NAMES = ("api_key", "x-api-key")
class _NoResponseHeaders(logging.Filter):
    """httpcore logs each answer's headers at DEBUG, and a server may echo the key in one: its record keeps the
    event's name only (request headers are never logged: httpcore shows a request as its method)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("receive_response_headers."):
            record.msg, record.args = record.msg.split(" ", 1)[0] + " (headers not logged)", ()
        return True


for _name in ("httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_NoResponseHeaders())

#: The statuses of an answer: anything else below 400 (204, 302 ...) is not one, even with a JSON body.
SUCCESS_STATUSES = (200, 201)


@dataclasses.dataclass
class _Reply:
    """An answer read whole, within the deadline and the size cap (the body decoded, not yet parsed)."""

    status_code: int
    headers: httpx.Headers
    content: bytes


@dataclasses.dataclass
class ApiResponse:
    """A successful answer: parsed body, headers, and how many attempts it took."""

    status_code: int
    data: Any
    headers: Mapping[str, str]
    attempts: int
    endpoint: str
    #: earlier attempts that got no usable answer but may have been charged (each at its worst case)
    charged_attempts: int = 0


@dataclasses.dataclass
class ClientStats:
    """Counters over the client's life: every HTTP attempt, retry and 429."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    rate_limit_wait_s: float = 0.0


@dataclasses.dataclass
class _Call:
    """One logical request and what it has cost so far."""

    method: str
    path: str
    endpoint: str
    idempotent: bool
    attempts: int = 0
    retries: int = 0
    rate_wait: float = 0.0  # seconds spent waiting on rate limits, bounded by max_rate_limit_wait
    reached: bool = False  # whether any attempt may have reached Apollo (else nothing was charged)
    charged: int = 0  # attempts without a usable answer that the server may have run, and charged


def _raise_if_abandoned(call: _Call, abandon: Callable[[], bool]) -> None:
    """Raise :class:`RequestAbandoned` for ``call`` when ``abandon()`` says the caller gave it up (asked by the
    rate limiter before each attempt and each step of a wait)."""
    if not abandon():
        return
    unknown = " An earlier attempt may have reached Apollo." if call.reached else ""
    raise RequestAbandoned(f"not sent: the run was interrupted before {call.path} was sent.{unknown}",
                           path=call.path, attempts=call.attempts,
                           outcome_unknown=call.reached and not call.idempotent, never_sent=not call.reached)


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


def _refuse_key_outside_header(params: Mapping[str, Any] | None, json: Any) -> None:
    for container in (params, json if isinstance(json, dict) else None):
        if container and any(str(k).lower() in _KEY_NAMES for k in container):
            raise InputError("The API key goes only in the X-Api-Key header; remove it from params/body.")


def _body(reply: _Reply) -> Any:
    """The parsed JSON body, the text when it is not JSON, None when empty."""
    if not reply.content:
        return None
    try:
        return jsontext.loads(reply.content)
    except ValueError:
        return reply.content.decode("utf-8", errors="replace")


#: what :func:`_parsed` returns for a body too deeply nested to parse
_UNREADABLE = object()


def _parsed(reply: _Reply, key: str) -> Any:
    """The body, parsed and scrubbed of the key; ``_UNREADABLE`` when it is nested too deeply to read."""
    try:
        body = _body(reply)
        return scrub(body, key) if may_hold(reply.content, key) else body  # the walk costs as much as the parse
    except RecursionError:
        return _UNREADABLE


def _error_body(reply: _Reply, key: str) -> Any:
    """An error answer's body for messages and errors (None when unreadable)."""
    body = _parsed(reply, key)
    return None if body is _UNREADABLE else body


def unusable_answer(path: str, why: str, *, attempts: int = 1, outcome_unknown: bool = False) -> APIResponseError:
    """The typed error for an answer that arrived but cannot be used (nothing of it is kept)."""
    then = ("The write may or may not have happened: the outcome is unknown." if outcome_unknown
            else "Nothing from it was kept; run again later.")
    return APIResponseError(
        f"Apollo's answer to {path} could not be used: {why}. {then}",
        path=path, attempts=attempts, outcome_unknown=outcome_unknown,
    )


def _read(response: httpx.Response, deadline: float, clock: Clock, limit: int, path: str
          ) -> _Reply | httpx.TransportError | APIResponseError:
    """Read a streamed answer whole, or the reason not to: the deadline passed, or it is larger than ``limit``."""
    import httpx  # (loaded: the answer came through it)

    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return unusable_answer(path, f"it is larger than the {limit:,}-byte limit (max_response_bytes)")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            return unusable_answer(path, f"it is larger than the {limit:,}-byte limit (max_response_bytes)")
        if clock.monotonic() > deadline:
            return httpx.ReadTimeout("the answer did not arrive whole within the deadline")
    return _Reply(response.status_code, response.headers, bytes(body))


class ApolloClient:
    """Settings, pacing and HTTP for one Apollo API key.

    Arguments left as None are read from the environment when the client is
    made (``APOLLO_API_KEY``, ``APOLLO_BASE_URL``, ``APOLLO_FRAMES_CACHE_DIR``).
    ``transport`` replaces the network, as in httpx: a mock, or an in-process
    WSGI app (the sandbox offers its own, ``Sandbox.client()``). ``clock`` is
    the one clock for pacing, retry waits, cache expiry and ledger times
    (``apollo_frames.core.clock.FakeClock`` in tests). ``timeout`` bounds each
    attempt as a whole (connect to last byte); ``max_response_bytes`` (default
    50 MB) the size of an answer. A plain ``http://`` base URL is refused unless it
    is loopback or ``allow_insecure_http=True``: the key would travel in clear.
    ``retention`` (``"365d"``, seconds or a timedelta; ``APOLLO_FRAMES_RETENTION``): stored answers older than
    that are never served and are deleted when the store opens (default: no limit).
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
        retry_backoff: tuple[float, float] = DEFAULT_BACKOFF,
        clock: Clock = SYSTEM_CLOCK,
        allow_insecure_http: bool | None = None,
        max_response_bytes: int | None = None,
        retention: Any = None,
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
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
            retention=retention,
        )
        self.cache_namespace = cache_namespace or self.settings.base_url
        self.clock = clock
        self.limiter = RateLimiter(self.settings.limits, window_seconds or DEFAULT_WINDOW_LENGTHS, clock=clock)
        self.stats = ClientStats()
        self._transport = transport
        self._backoff = retry_backoff
        self._stats_lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()
        self._cache: AnswerStore | None = None
        self._ledger: Ledger | None = None

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
                import httpx  # the first import of httpx (see the module docstring)

                from apollo_frames.client.deadline import bound_by_deadline

                self._http = httpx.Client(
                    base_url=self.settings.base_url + "/",
                    timeout=self.settings.timeout,
                    transport=self._transport,
                    # an http:// base (loopback, or allow_insecure_http) never speaks TLS: no CA bundle to load
                    # (tens of ms per client, once seen to stall a Dask worker on a loaded machine)
                    verify=not self.settings.base_url.startswith("http://"),
                    limits=httpx.Limits(max_connections=self.settings.concurrency + 2),
                    # a proxy from the environment (HTTP_PROXY, ALL_PROXY) would carry the key off the machine,
                    # in clear for an http:// loopback base: loopback is reached directly
                    trust_env=not is_loopback(self.settings.base_url),
                    headers={
                        "Content-Type": "application/json",
                        "Cache-Control": "no-cache",
                        "User-Agent": f"apollo_frames/{__version__}",
                    },
                )
                bound_by_deadline(self._http)  # the whole-request deadline reaches the sockets (headers included)
            return self._http

    @property
    def cache(self) -> AnswerStore:
        """The on-disk response cache for this client's settings, opened on first use."""
        if self._cache is None:
            with self._http_lock:  # one store object per client, whichever worker thread asks first
                if self._cache is None:
                    self._cache = AnswerStore(self.settings.cache_dir, namespace=self.cache_namespace,
                                              clock=self.clock, retention=self.settings.retention)
        return self._cache

    @property
    def ledger(self) -> Ledger:
        """The persistent credit ledger beside the cache, opened on first use."""
        if self._ledger is None:
            # Apollo's own ledger is ledger.sqlite; a sandbox or another base URL keeps its credits apart.
            name = "ledger.sqlite"
            if self.cache_namespace != DEFAULT_BASE_URL:
                name = "ledger-" + hashlib.sha256(self.cache_namespace.encode()).hexdigest()[:10] + ".sqlite"
            self._ledger = Ledger(self.settings.cache_dir / name, clock=self.clock)
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

    def __enter__(self) -> ApolloClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------

    def get(self, path: str, *, params: Mapping[str, Any] | None = None, **kw: Any) -> ApiResponse:
        return self.request("GET", path, params=params, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> ApiResponse:
        return self.request("POST", path, json=json, **kw)

    def _count(self, **deltas: float) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
        abandon: Callable[[], bool] | None = None,
        before_resend: Callable[[], bool] | None = None,
    ) -> ApiResponse:
        """Send one request with pacing and retries; return the answer or raise a typed error.

        ``idempotent=False`` (creates): once the request may have reached
        Apollo, a failure is raised with ``outcome_unknown=True`` instead of
        being retried. ``abandon``: asked before each attempt and while the
        rate limiter waits; when it says yes (the run was interrupted) the
        request is given up with :class:`RequestAbandoned` instead of being sent.
        ``before_resend``: asked before a retry that follows an attempt the
        server may have run (and charged) without a usable answer; False gives
        the request up (a credit budget with no room for another worst case).
        The answer's, or the error's, ``charged_attempts`` says how many such
        attempts there were.
        """
        key = self.settings.require_key()
        _refuse_key_outside_header(params, json)
        path = path.strip("/")
        call = _Call(method, path, endpoint_of(method, path), idempotent)
        try:
            return self._send_until_done(call, key, json=json, params=params, abandon=abandon,
                                         before_resend=before_resend)
        except APIError as exc:
            exc.charged_attempts = call.charged
            raise

    def _send_until_done(self, call: _Call, key: str, *, json: Any, params: Mapping[str, Any] | None,
                         abandon: Callable[[], bool] | None, before_resend: Callable[[], bool] | None) -> ApiResponse:
        """The retry loop of :meth:`request` (``call.charged`` counts the attempts that may have been charged)."""
        http = self._client()
        while True:
            result = self._attempt(http, call, key, json=json, params=params, abandon=abandon)
            if isinstance(result, APIResponseError):
                call.charged += 1
                raise result
            if isinstance(result, _Reply):
                outcome = outcome_of_status(result.status_code)
                if outcome is Outcome.OK:
                    return self._answer(call, result, key)
            else:
                outcome = outcome_of_error(result)
            call.reached = call.reached or outcome is not Outcome.NOT_SENT
            call.charged += may_have_run(outcome)
            if not should_retry(outcome, call.retries, self.settings.max_retries, call.idempotent) or (
                    may_have_run(outcome) and before_resend is not None and not before_resend()):
                raise self._give_up(call, result, outcome, key) from None
            if outcome is Outcome.RATE_LIMITED and isinstance(result, _Reply):
                self._pace(call, result, key)
            else:
                self._back_off(call, result)

    def _attempt(
        self, http: httpx.Client, call: _Call, key: str, *, json: Any, params: Mapping[str, Any] | None,
        abandon: Callable[[], bool] | None = None,
    ) -> _Reply | httpx.TransportError | APIResponseError:
        """Wait for the rate limiter, send once; the whole answer, or the failure (returned, not raised)."""
        cap = self.settings.max_rate_limit_wait
        check = None if abandon is None else functools.partial(_raise_if_abandoned, call, abandon)
        ticket = self.limiter.acquire(call.endpoint, max_wait=max(cap - call.rate_wait, 0.0), abandon=check)
        if ticket.waited:
            call.rate_wait += ticket.waited
            self._count(rate_limit_wait_s=ticket.waited)
        call.attempts += 1
        self._count(requests=1)
        result = self._send(http, call, key, json=json, params=params)
        if not isinstance(result, _Reply):
            self.limiter.release(ticket)
            logger.info("%s %s failed on attempt %d: %s", call.method, call.path, call.attempts, type(result).__name__)
            return result
        self.limiter.observe(ticket, result.headers, status=result.status_code)
        logger.debug("%s %s -> %d (attempt %d)", call.method, call.path, result.status_code, call.attempts)
        return result

    def _send(
        self, http: httpx.Client, call: _Call, key: str, *, json: Any, params: Mapping[str, Any] | None
    ) -> _Reply | httpx.TransportError | APIResponseError:
        """Send once and read the answer whole before the deadline.

        httpx exceptions are returned, never raised or chained: their request
        carries the key.
        """
        import httpx  # (loaded by _client)

        from apollo_frames.client.deadline import deadline

        at = self.clock.monotonic() + self.settings.timeout
        try:
            with deadline(self.clock, at), http.stream(call.method, call.path, json=json, params=params,
                                                       headers={"X-Api-Key": key}) as response:
                return _read(response, at, self.clock, self.settings.max_response_bytes, call.path)
        except httpx.TransportError as exc:
            return exc
        except httpx.HTTPError as exc:  # e.g. DecodingError: a broken gzip body
            return unusable_answer(call.path, f"its body could not be decoded ({type(exc).__name__})",
                                   attempts=call.attempts, outcome_unknown=not call.idempotent)

    def _answer(self, call: _Call, reply: _Reply, key: str) -> ApiResponse:
        """The success answer, its body and headers scrubbed of the key before the cache or a column sees them.

        Only a documented success status with a JSON body is an answer; anything else is unusable (and, as
        the server may have run the request, counted as charged).
        """
        data = _parsed(reply, key)
        why = None
        if reply.status_code not in SUCCESS_STATUSES:
            why = f"status {reply.status_code} is not an answer"
        elif data is _UNREADABLE:
            why = "its JSON is nested too deeply to read"
        elif not isinstance(data, (dict, list)):
            why = "its body is not a JSON object"
        if why is not None:
            call.charged += 1
            raise unusable_answer(call.path, why, attempts=call.attempts, outcome_unknown=not call.idempotent)
        return ApiResponse(reply.status_code, data, scrub(dict(reply.headers), key), call.attempts, call.endpoint,
                           call.charged)

    def _pace(self, call: _Call, reply: _Reply, key: str) -> None:
        """A 429: pause every worker on the endpoint, or raise when the wait would pass the cap."""
        body = _error_body(reply, key)
        message = apollo_message(body)
        window = window_from_message(message, apollo_code(body))
        retry_after = parse_retry_after(reply.headers.get("retry-after"), now=self.clock.time())
        pause = self.limiter.pause(call.endpoint, retry_after=retry_after, window=window)
        self._count(rate_limited=1)
        logger.info("429 on %s: pausing %.1f s (%s window)", call.path, pause, window or "unknown")
        cap = self.settings.max_rate_limit_wait
        if call.rate_wait + pause > cap:
            raise rate_limit_error(
                call.path, pause=pause, window=window, cap=cap, now=self.clock.time(), message=message, body=body,
                attempts=call.attempts, headers=scrub(dict(reply.headers), key),
            )

    def _back_off(self, call: _Call, result: _Reply | httpx.TransportError) -> None:
        """Wait before a retry (5xx, 408, timeout, dropped connection); it spends one of max_retries."""
        retry_after = None
        if isinstance(result, _Reply):
            retry_after = parse_retry_after(result.headers.get("retry-after"), now=self.clock.time())
        self.clock.sleep(retry_delay(call.retries, retry_after, self._backoff, random.random()))
        call.retries += 1
        self._count(retries=1)

    def _give_up(
        self, call: _Call, result: _Reply | httpx.TransportError, outcome: Outcome, key: str
    ) -> APIError:
        """The typed error for a request that will not be sent again, with the key scrubbed from all of it."""
        unknown = may_have_written(outcome, call.idempotent)
        if isinstance(result, _Reply):
            body = _error_body(result, key)
            headers = scrub(dict(result.headers), key)
            return status_error(
                result.status_code, call.path, apollo_message(body), body, call.attempts,
                outcome_unknown=unknown, headers=headers,
            )
        return connection_error(result, call.path, call.attempts, outcome_unknown=unknown, never_sent=not call.reached)


#: The session's default client (``apollo_frames.use_sandbox()`` sets it, ``apollo_frames.reset()`` clears it):
#: when set, calls without ``client=`` share it, so its rate-limit state lasts between notebook cells.
_default: ApolloClient | None = None


def set_default_client(client: ApolloClient | None) -> ApolloClient | None:
    """Make ``client`` the default for calls without ``client=`` (None: back to a fresh client per call).

    Returns the previous default, which the caller closes if it owns it.
    """
    global _default
    previous, _default = _default, client
    return previous


def default_client() -> ApolloClient | None:
    """The session's default client, if one was set."""
    return _default


@contextlib.contextmanager
def client_scope(client: ApolloClient | None = None, *, need_key: bool = True) -> Iterator[ApolloClient]:
    """Use the given client, the session's default, or one made from the environment now (closed afterwards).

    ``need_key``: refuse at once, with :class:`ConfigurationError`, a client without an API key, before
    anything is read or sent (estimates and ledger reports send nothing and pass False).
    """
    given = client if client is not None else _default
    own = None if given is not None else ApolloClient()
    api = given if given is not None else own
    assert api is not None
    try:
        settings = getattr(api, "settings", None)  # not a client at all: the operation's own check names it
        if need_key and isinstance(settings, Settings):
            settings.require_key()
        yield api
    finally:
        if own is not None:
            own.close()
