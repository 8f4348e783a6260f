"""The sandbox WSGI application: routing, auth, rate limits, faults, credits and the endpoints.

See the package docstring (``apollo_frames/sandbox/__init__.py``) for every
behaviour choice made where the API (docs/API_NOTES.md) leaves one open.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from apollo_frames.core.clock import DEFAULT_WINDOW_LENGTHS, SYSTEM_CLOCK, WINDOWS, Clock

from . import hostile, shapes
from .asyncres import THIRTY_DAYS, AsyncResults
from .store import (
    ACCOUNT_BULK_FIELDS,
    ACCOUNT_BULK_SHARED,
    ACCOUNT_FIELDS,
    ACCOUNT_SORTS,
    CONTACT_BULK_CREATE_EXTRAS,
    CONTACT_BULK_FIELDS,
    CONTACT_FIELDS,
    CONTACT_SORTS,
    Store,
)
from .world import (
    Moved,
    World,
    ascii_fold,
    build_world,
    name_key,
    normalize_domain,
    normalize_email,
    normalize_linkedin,
)

if TYPE_CHECKING:
    from apollo_frames.client import ApolloClient

    from .server import SandboxServer

DEFAULT_API_KEY = "sandbox-master-key"
SCOPED_API_KEY = "sandbox-scoped-key"

#: Limits per class for each plan preset: (per minute, per hour, per day); None = unlimited.
PLAN_LIMITS: dict[str, dict[str, tuple]] = {
    # generous, like Apollo's paid plans for enrichment: the demo never throttles
    "paid": {"enrichment": (1000, None, None), "search": (200, 2000, 6000), "other": (200, 2000, 6000)},
    # Apollo's 2026 free-plan table
    "free": {"enrichment": (50, 200, 600), "search": (50, 200, 600), "other": (50, 200, 600)},
}
WINDOW_NAMES = WINDOWS
HEADER_NAMES = (
    ("x-rate-limit-minute", "x-minute-usage", "x-minute-requests-left"),
    ("x-rate-limit-hourly", "x-hourly-usage", "x-hourly-requests-left"),
    ("x-rate-limit-24-hour", "x-24-hour-usage", "x-24-hour-requests-left"),
)
DAILY_ALIASES = ("x-rate-limit-daily", "x-daily-usage", "x-daily-requests-left")
EDGE_FAULTS = ("500", "502", "503", "429", "429-no-retry-after", "timeout")
FAULTS = EDGE_FAULTS + ("lost_write",) + tuple(hostile.HOSTILE_FAULTS)
UPGRADE = "Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade."


@dataclass(frozen=True)
class KeySpec:
    """An API key: a master key may call everything; otherwise ``allowed`` lists what it may call.

    Entries of ``allowed`` may name a route path (``"people/bulk_match"``,
    ``"contacts/{id}"``), an endpoint (``"contacts/update"``), a controller
    (``"contacts"``) or a class (``"enrichment"``, ``"search"``, ``"other"``).
    """

    master: bool = False
    allowed: frozenset | None = None


def default_keys() -> dict[str, KeySpec]:
    return {
        DEFAULT_API_KEY: KeySpec(master=True),
        SCOPED_API_KEY: KeySpec(
            master=False, allowed=frozenset({"enrichment", "search", "contacts", "auth/health", "webhook_result"})
        ),
    }


#: ``error_details.code`` of a 429 (live body, 2026-10-08)
RATE_LIMIT_CODE = "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED"


@dataclass
class SandboxConfig:
    """Everything that shapes one sandbox. All fields have defaults."""

    seed: int = 7
    n_orgs: int = 2000
    people_per_org: int = 12
    api_keys: dict = field(default_factory=default_keys)
    latency: float = 0.0
    error_rate: float = 0.0
    rate_429: float = 0.0
    lost_write_rate: float = 0.0
    fault_seed: int = 0
    windows: tuple = DEFAULT_WINDOW_LENGTHS
    #: overrides: route path / endpoint / controller / class -> (per_minute, per_hour, per_day) or None
    limits: dict = field(default_factory=dict)
    plan: str = "paid"
    retry_after: bool = True
    retry_after_format: str = "seconds"
    daily_header_aliases: bool = False
    json_401: bool = False
    timeout_fault_seconds: float = 0.5
    # -- shapes real Apollo sends (see the package docstring) --
    search_saved_accounts: bool = True
    omit_bulk_misses: bool = False
    stub_misses: bool = False
    match_confidence_always: bool = False
    revenue_spelling: str = "annual"
    #: share of people (by id) whose matched answer carries the placeholder ``email_not_unlocked@domain.com``
    #: (``email_status`` unchanged), as live answers do for e-mails not unlocked
    locked_emails: float = 0.0
    #: bulk people answers report fractional ``credits_consumed``: a match without an e-mail costs this much
    fractional_credits: float | None = None
    #: share of mobile numbers (by person id) flagged do-not-call; a tenth of them with a code no document lists
    do_not_call: float = 0.0
    #: alias domain -> a world organisation's primary domain, or True (every org also answers to <name>-alias.example)
    rewrite_domains: object = False
    # -- asynchronous results and the credit meter --
    webhook_result_delay: float = 30.0
    webhook_result_ttl: float = THIRTY_DAYS
    credit_limits: dict = field(default_factory=lambda: dict(shapes.DEFAULT_CREDIT_LIMITS))
    #: {"start_date": ..., "end_date": ...}; None = the calendar month of the clock's time
    credit_cycle: dict | None = None
    health_logged_out: bool = False
    usage_stats_keys: str = "array"
    # -- hostile server (persistent versions of the scripted faults) --
    credits_consumed_override: float | None = None
    retry_after_override: str | None = None
    #: every enrichment charges 1 credit per record asked, found or not, while reporting the usual figure
    overcharge: bool = False

    def __post_init__(self):
        if self.revenue_spelling not in shapes.REVENUE_SPELLINGS:
            raise ValueError(f"revenue_spelling must be one of {shapes.REVENUE_SPELLINGS}")
        if self.usage_stats_keys not in shapes.USAGE_KEY_FORMS:
            raise ValueError(f"usage_stats_keys must be one of {shapes.USAGE_KEY_FORMS}")
        if self.plan not in PLAN_LIMITS:
            raise ValueError(f"plan must be one of {sorted(PLAN_LIMITS)}, not {self.plan!r}")
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format must be 'seconds' or 'http-date'")
        if len(tuple(self.windows)) != 3:
            raise ValueError("windows must be three lengths in seconds: (minute, hour, day)")

    @classmethod
    def free_plan(cls, **kwargs) -> SandboxConfig:
        """Apollo's free-plan limits: 50/min, 200/h, 600/day (enrichment and everything else)."""
        return cls(plan="free", **kwargs)

    def with_api_key(self, key: str, master: bool = True, allowed=None) -> SandboxConfig:
        """A copy that also accepts ``key`` (a master key unless told otherwise); the default keys stay valid."""
        keys = dict(self.api_keys)
        keys[key] = KeySpec(master=master, allowed=frozenset(allowed) if allowed is not None else None)
        return dataclasses.replace(self, api_keys=keys)


@dataclass
class RequestRecord:
    """One request the sandbox answered."""

    method: str
    path: str  # normalised route, e.g. "people/bulk_match", "contacts/{id}"; the raw path for unknown routes
    status: int
    n_records: int
    credits: float
    t: float  # wall time (the sandbox's clock) when the answer was ready
    dial_credits: float = 0.0  # the part of ``credits`` that is direct-dial (mobile phones)


@dataclass(frozen=True)
class Route:
    methods: tuple
    path: str  # pattern, e.g. "contacts/{id}"
    controller: str
    action: str
    klass: str  # enrichment | search | other
    handler: str
    write: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.controller}/{self.action}"


ROUTES = (
    Route(("POST",), "people/match", "people", "match", "enrichment", "people_match"),
    Route(("POST",), "people/bulk_match", "people", "bulk_match", "enrichment", "people_bulk_match"),
    Route(("GET", "POST"), "organizations/enrich", "organizations", "enrich", "enrichment", "org_enrich"),
    Route(("POST",), "organizations/bulk_enrich", "organizations", "bulk_enrich", "enrichment", "org_bulk_enrich"),
    Route(("POST",), "mixed_people/api_search", "mixed_people", "api_search", "search", "people_api_search"),
    Route(("POST",), "mixed_people/search", "mixed_people", "search", "search", "people_legacy_search"),
    Route(("POST",), "mixed_companies/search", "mixed_companies", "search", "search", "companies_search"),
    Route(("POST",), "contacts", "contacts", "create", "other", "contact_create", write=True),
    Route(("POST",), "contacts/bulk_create", "contacts", "bulk_create", "other", "contact_bulk_create", write=True),
    Route(("POST",), "contacts/bulk_update", "contacts", "bulk_update", "other", "contact_bulk_update", write=True),
    Route(("POST",), "contacts/search", "contacts", "search", "search", "contact_search"),
    Route(("PATCH", "PUT"), "contacts/{id}", "contacts", "update", "other", "contact_update", write=True),
    Route(("GET",), "contacts/{id}", "contacts", "show", "other", "contact_show"),
    Route(("POST",), "accounts", "accounts", "create", "other", "account_create", write=True),
    Route(("POST",), "accounts/bulk_create", "accounts", "bulk_create", "other", "account_bulk_create", write=True),
    Route(("POST",), "accounts/bulk_update", "accounts", "bulk_update", "other", "account_bulk_update", write=True),
    Route(("POST",), "accounts/search", "accounts", "search", "search", "account_search"),
    Route(("PATCH", "PUT"), "accounts/{id}", "accounts", "update", "other", "account_update", write=True),
    Route(("GET",), "accounts/{id}", "accounts", "show", "other", "account_show"),
    Route(("GET", "POST"), "usage_stats/api_usage_stats", "usage_stats", "api_usage_stats", "other", "usage_stats"),
    Route(("GET", "POST"), "usage_stats/credit_usage_stats", "usage_stats", "credit_usage_stats", "other",
          "credit_usage_stats"),
    Route(("GET",), "auth/health", "auth", "health", "other", "health"),
    Route(("GET",), "webhook_result/{id}", "webhook_result", "show", "other", "webhook_result"),
)
#: Key types that may only use the master key for these endpoints even if a scoped key lists them.
MASTER_ONLY = frozenset({"accounts/create", "accounts/update", "accounts/bulk_create", "accounts/bulk_update",
                         "usage_stats/api_usage_stats"})
IDENTIFIERS = (
    "email", "hashed_email", "linkedin_url", "id", "first_name", "last_name", "name", "domain", "organization_name"
)


class _Reply(Exception):
    """Raised by handlers to answer an error right away."""

    def __init__(self, status: int, body, n_records: int = 0):
        self.status, self.body, self.n_records = status, body, n_records


@dataclass
class _Result:
    status: int
    body: object
    credits: float = 0.0
    n_records: int = 0
    dial: float = 0.0  # the direct-dial part of ``credits``


@dataclass
class _Answer:
    """Everything ``__call__`` needs to record and send one answer."""

    status: int
    body: object
    headers: list
    path: str
    route: Route | None = None
    n_records: int = 0
    credits: float = 0.0
    key: str | None = None
    delay: float = 0.0
    dial: float = 0.0
    fault: tuple | None = None  # a hostile fault to apply when sending: (name, argument)


@dataclass
class _Reveal:
    """The asynchronous-result options of a people enrichment."""

    phone: bool
    personal: bool
    webhook: str | None
    poll_only: bool
    waterfall_email: bool
    waterfall_phone: bool

    @property
    def waterfall(self) -> bool:
        return self.waterfall_email or self.waterfall_phone

    @property
    def async_work(self) -> bool:
        """Something is delivered later (phones, waterfall) and a webhook or polling was asked for."""
        return (self.phone or self.waterfall) and bool(self.webhook or self.poll_only)


def _phone_entry(raw: str, dnc: str | None = "not_on_dnc") -> dict:
    return {"raw_number": raw, "sanitized_number": re.sub(r"[^\d+]", "", raw), "type_cd": "mobile",
            "status_cd": "valid_number", "confidence_cd": "high", "dnc_status_cd": dnc,
            "dnc_other_info": None if dnc in (None, "not_on_dnc", "not_found") else "listed", "position": 0}


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "on")
    return bool(value)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None and v != ""]
    if isinstance(value, str):
        return [v for v in (s.strip() for s in value.split("\n")) if v]
    return [value]


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _clean_key(key: str) -> str:
    return key[:-2] if key.endswith("[]") else key


def parse_query(text: str) -> dict:
    """Rails-style: ``a[]=1&a[]=2`` -> list, ``r[min]=1`` -> nested dict, repeated ``a`` -> list."""
    out: dict = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        m = re.fullmatch(r"([^\[\]]+)\[([^\[\]]+)\]", raw_key)
        if m:
            out.setdefault(m.group(1), {})
            if isinstance(out[m.group(1)], dict):
                out[m.group(1)][m.group(2)] = value
            continue
        key = _clean_key(raw_key)
        if raw_key.endswith("[]"):
            current = out.get(key)
            out[key] = (current if isinstance(current, list) else ([] if current is None else [current])) + [value]
        elif key in out:
            current = out[key]
            out[key] = (current if isinstance(current, list) else [current]) + [value]
        else:
            out[key] = value
    return out


def _teaser_obfuscate(last: str) -> str:
    if not last:
        return ""
    return (last[:2] + "***" + last[-1]) if len(last) > 3 else (last[:1] + "***")


def _person_text(p: dict) -> str:
    org = p["organization"]
    parts = [p["name"], p["title"] or "", p["headline"] or "", org["name"], " ".join(org["keywords"])]
    return name_key(" ".join(parts))


def _place(obj: dict) -> str:
    return name_key(", ".join(str(obj.get(k) or "") for k in ("city", "state", "country")))


def _employee_ranges(values) -> list[tuple[float, float]]:
    ranges = []
    for v in _as_list(values):
        if isinstance(v, (list, tuple)) and len(v) == 2:
            lo, hi = v
        else:
            parts = re.split(r"[,\-]", str(v), maxsplit=1)
            if len(parts) != 2:
                continue
            lo, hi = parts
        try:
            lo_f = float(lo) if str(lo).strip() else 0.0
            hi_f = float(hi) if str(hi).strip() else math.inf
        except ValueError:
            continue
        ranges.append((lo_f, hi_f))
    return ranges


class Sandbox:
    """An offline Apollo.io API emulator. The instance is itself a WSGI application."""

    def __init__(self, config: SandboxConfig | None = None, *, clock: Clock = SYSTEM_CLOCK):
        self.config = config if config is not None else SandboxConfig()
        #: windows, latency and fault sleeps, Retry-After dates and timestamps all run on this clock
        self.clock = clock
        self.world: World = build_world(self.config.seed, self.config.n_orgs, self.config.people_per_org)
        self.store = Store(self.world, clock)
        self.requests: list[RequestRecord] = []
        self.webhook_deliveries: list[dict] = []
        self.credits_by_key: dict[str, float] = {}
        #: asynchronous jobs (request_id -> job); ``async_charges`` are the credits charged when results were produced
        self.async_results = AsyncResults(
            self.config.seed, self.config.webhook_result_delay, self.config.webhook_result_ttl
        )
        self.async_charges: list[dict] = []
        #: credits spent by the team outside this sandbox's API (``charge_outside``): only the meter sees them
        self.outside_charges: list[dict] = []
        #: fields a write endpoint received but does not take (ignored silently, as Apollo does): endpoint, field, id
        self.ignored_fields: list[dict] = []
        self.domain_aliases: dict[str, dict] = self._aliases(self.config.rewrite_domains)
        self._lock = threading.Lock()
        self._faults: deque = deque()
        self._fault_rng = random.Random(self.config.fault_seed)
        self._windows: dict[tuple[str, str], list[list]] = {}
        self._server: SandboxServer | None = None

    # -- public helpers --------------------------------------------------------------------------

    @property
    def credits_consumed(self) -> float:
        """Credits charged by this sandbox: every answer's, plus asynchronous results produced so far."""
        self._settle()
        with self._lock:
            return float(sum(r.credits for r in self.requests) + sum(c["credits"] for c in self.async_charges))

    def charge_outside(self, credits: float, credit_type: str = "lead_credit") -> None:
        """Credits the team spent elsewhere (the app, another key's tool): the meter counts them, nothing else does."""
        with self._lock:
            self.outside_charges.append({"t": self.clock.time(), "credit_type": credit_type, "credits": float(credits)})

    def credits_by_type(self) -> dict[str, float]:
        """Credits consumed per Apollo credit type, as ``usage_stats/credit_usage_stats`` reports them."""
        self._settle()
        with self._lock:
            dial = sum(r.dial_credits for r in self.requests) + sum(c["credits"] for c in self.async_charges)
            lead = sum(r.credits - r.dial_credits for r in self.requests)
            out = {"lead_credit": float(lead), "direct_dial_credit": float(dial)}
            for c in self.outside_charges:
                out[c["credit_type"]] = out.get(c["credit_type"], 0.0) + c["credits"]
            return out

    def _settle(self) -> None:
        """Produce every asynchronous result that is due on the clock, charging its direct-dial credits then."""
        for job in self.async_results.settle(self.clock.monotonic()):
            if job.credits_when_produced:
                with self._lock:
                    self.async_charges.append({"t": self.clock.time(), "key": job.key, "request_id": job.request_id,
                                               "credits": job.credits_when_produced})
                    self.credits_by_key[job.key] = self.credits_by_key.get(job.key, 0.0) + job.credits_when_produced

    def _aliases(self, spec) -> dict[str, dict]:
        if not spec:
            return {}
        if spec is True:
            return {o["primary_domain"].replace(".example", "-alias.example"): o for o in self.world.orgs}
        out = {}
        for alias, target in dict(spec).items():
            org = self.world.org_for_domain(target)
            if org is None:
                raise ValueError(f"rewrite_domains: {target!r} is not the domain of an organisation of this world")
            out[normalize_domain(alias) or alias] = org
        return out

    def move(self, share: float = 0.1, *, retitle: float = 0.0, seed: int = 0) -> Moved:
        """Between runs, move ``share`` of the world's people to another organization and retitle ``retitle``
        of the others (:meth:`~apollo_frames.sandbox.world.World.move`); the answers served from then on say so."""
        with self._lock:
            return self.world.move(share, retitle=retitle, seed=seed)

    def count(self, path: str | None = None, status: int | None = None) -> int:
        with self._lock:
            return sum(
                1 for r in self.requests if (path is None or r.path == path) and (status is None or r.status == status)
            )

    def inject(self, *faults: str, path: str | None = None) -> None:
        """Queue scripted faults; each is used by the next request matching ``path`` (any if None), in order.

        Hostile faults take an argument after ``=``: ``"credits_consumed=-100"``, ``"retry_after=0"``,
        ``"trickle=0.3"``, ``"deep_json=200000"``, ``"oversized=50000000"``.
        """
        for fault in faults:
            name, arg = hostile.split_fault(fault)
            if name not in FAULTS or (arg is not None and name not in hostile.HOSTILE_FAULTS):
                raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
            if name in hostile.HOSTILE_FAULTS:
                hostile.check_hostile(name, arg)
        if path is not None:
            path = re.sub(r"^/?(api/)?v1/", "", path.strip("/"))
        with self._lock:
            for fault in faults:
                self._faults.append((fault, path))

    def reset_limits(self) -> None:
        with self._lock:
            self._windows.clear()

    def client(self, **kwargs: Any) -> ApolloClient:
        """An ``ApolloClient`` wired to this sandbox in-process (see :func:`apollo_frames.sandbox.client_for`)."""
        return client_for(self, **kwargs)

    def serve(self, host: str = "127.0.0.1", port: int = 0):
        """Context manager: serve over real HTTP on loopback in a thread; yields the base URL."""
        from .server import serve

        return serve(self, host=host, port=port)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        from .server import SandboxServer

        if self._server is not None:
            return self._server.base_url
        self._server = SandboxServer(self, host=host, port=port)
        self._server.start()
        return self._server.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    # -- limits ----------------------------------------------------------------------------------

    def limits_for(self, route: Route) -> tuple:
        for name in (route.path, route.endpoint, route.controller, route.klass):
            if name in self.config.limits:
                value = self.config.limits[name]
                return tuple(value) if value is not None else (None, None, None)
        return PLAN_LIMITS[self.config.plan][route.klass]

    def _window_state(self, key: str, route: Route, now: float) -> list[list]:
        """[start, count] per window, expired windows reset (caller holds the lock)."""
        state = self._windows.setdefault((key, route.endpoint), [[None, 0], [None, 0], [None, 0]])
        for i, length in enumerate(self.config.windows):
            start = state[i][0]
            if start is None or now - start >= length:
                state[i][0], state[i][1] = None, 0
        return state

    def _limit_message(self, route: Route, limit: int, window: int) -> dict:
        """The 429 body: the message, and since 2026-09 the structured ``error_details`` (the code names no window)."""
        message = (f"The maximum number of api calls allowed for api/v1/{route.endpoint} is {limit} times per "
                   f"{WINDOW_NAMES[window]}. {UPGRADE}")
        return {"message": message, "error_details": {"code": RATE_LIMIT_CODE, "message": message}}

    def _retry_after(self, seconds: float) -> list[tuple[str, str]]:
        if self.config.retry_after_override is not None:
            return [("Retry-After", hostile.retry_after_value(self.config.retry_after_override, self.clock.time()))]
        if not self.config.retry_after:
            return []
        secs = max(1, math.ceil(seconds))
        if self.config.retry_after_format == "http-date":
            return [("Retry-After", email.utils.formatdate(self.clock.time() + secs, usegmt=True))]
        return [("Retry-After", str(secs))]

    def _rate_headers(self, limits: tuple, state: list[list]) -> list[tuple[str, str]]:
        headers = []
        for i, limit in enumerate(limits):
            if limit is None:
                continue
            used = state[i][1]
            names = HEADER_NAMES[i]
            values = (str(limit), str(used), str(max(0, limit - used)))
            headers += list(zip(names, values, strict=True))
            if i == 2 and self.config.daily_header_aliases:
                headers += list(zip(DAILY_ALIASES, values, strict=True))
        return headers

    # -- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_path = environ.get("PATH_INFO", "") or "/"
        self._settle()
        ans = self._handle(environ, method, raw_path)
        with self._lock:
            self.requests.append(
                RequestRecord(method, ans.path, ans.status, ans.n_records, ans.credits, self.clock.time(), ans.dial)
            )
            if ans.credits and ans.key is not None:
                self.credits_by_key[ans.key] = self.credits_by_key.get(ans.key, 0.0) + ans.credits
        pause = ans.delay + (self.config.latency if ans.route is not None else 0.0)
        if pause > 0:
            self.clock.sleep(pause)  # never while holding a lock
        chunks, headers = self._render(ans)
        start_response(f"{ans.status} {HTTPStatus(ans.status).phrase}", headers)
        return chunks

    def _render(self, ans: _Answer) -> tuple:
        """(body chunks, headers) of an answer, spoiled by its hostile fault if it has one."""
        headers = list(ans.headers)
        name, arg = ans.fault or (None, None)
        body = ans.body
        if self.config.credits_consumed_override is not None and isinstance(body, dict) and "credits_consumed" in body:
            body = hostile.override_credits(body, self.config.credits_consumed_override)
        if name == "credits_consumed":
            body = hostile.override_credits(body, float(arg))
        elif name == "echo_key" and ans.key:
            body = hostile.echo_key(body, ans.key)
        elif name == "wrong_shape":
            body = hostile.wrong_shape(body)
        elif name in ("formulas", "other_people", "one_person"):
            body = getattr(hostile, name)(body)
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers = [("Content-Type", "application/json; charset=utf-8")] + headers
        if name == "deep_json":
            payload = hostile.deep_json(int(hostile.argument(name, arg)))
        elif name == "bad_gzip":
            payload = hostile.bad_gzip()
            headers.append(("Content-Encoding", "gzip"))
        if name == "oversized":
            chunks, length = hostile.oversized(payload, int(hostile.argument(name, arg)))
        elif name == "trickle":
            chunks, length = hostile.trickle(payload, hostile.argument(name, arg), self.clock.sleep), len(payload)
        elif name in ("truncate", "reset", "close"):
            chunks, length = hostile.lost_answer(name, payload), len(payload)
        else:
            chunks, length = [payload], len(payload)
        headers.append(("Content-Length", str(length)))
        return chunks, headers

    def _route(self, method: str, raw_path: str):
        m = re.match(r"^/(?:api/)?v1/(.*?)/*$", raw_path)
        if not m:
            return None, None
        rest = m.group(1)
        for route in ROUTES:
            if method not in route.methods:
                continue
            if "{id}" in route.path:
                prefix = route.path.split("{id}")[0]
                if rest.startswith(prefix) and "/" not in rest[len(prefix):] and rest[len(prefix):]:
                    return route, rest[len(prefix):]
            elif rest == route.path:
                return route, None
        return None, None

    @staticmethod
    def _params(environ) -> tuple[dict, dict, bool]:
        """(query parameters, body parameters, body malformed): JSON or form body, Rails-style keys."""
        query = parse_query(environ.get("QUERY_STRING", ""))
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw_body = environ["wsgi.input"].read(length) if length > 0 else b""
        if not raw_body.strip():
            return query, {}, False
        if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            return query, parse_query(raw_body.decode("utf-8", "replace")), False
        try:
            parsed = json.loads(raw_body)
        except ValueError:
            return query, {}, True
        if not isinstance(parsed, dict):
            return query, {}, True
        return query, {_clean_key(k): v for k, v in parsed.items()}, False

    def _refused(self, rec: str, route: Route) -> _Answer:
        """A missing or unknown key: 401 (text or JSON), or ``is_logged_in: false`` from auth/health if switched on."""
        if route.handler == "health" and self.config.health_logged_out:
            return _Answer(200, {"is_logged_in": False}, [], rec, route)
        if self.config.json_401:
            return _Answer(401, {"error": "Invalid access credentials."}, [], rec, route)
        return _Answer(401, b"Invalid access credentials.", [("Content-Type", "text/plain; charset=utf-8")], rec, route)

    def _handle(self, environ, method, raw_path) -> _Answer:
        route, record_id = self._route(method, raw_path)
        if route is None:
            body = {"error": f"No route matches {method} {raw_path}", "error_code": "NOT_FOUND"}
            return _Answer(404, body, [], raw_path)
        rec = route.path
        query, body_params, malformed = self._params(environ)
        if "api_key" in query or "api_key" in body_params:
            body = {"error": "API key must be passed in the X-Api-Key header for security reasons"}
            return _Answer(422, body, [], rec, route)
        key = (environ.get("HTTP_X_API_KEY") or "").strip()
        spec = self.config.api_keys.get(key) if key else None
        if spec is None:
            return self._refused(rec, route)
        if not self._allowed(spec, route):
            body = {"error": f"api/v1/{route.endpoint} is not accessible with this api_key",
                    "error_code": "API_INACCESSIBLE"}
            return _Answer(403, body, [], rec, route, key=key)

        params = dict(query)
        params.update(body_params)
        limits = self.limits_for(route)
        now = self.clock.monotonic()
        with self._lock:
            fault = self._next_fault(route)
            name, arg = hostile.split_fault(fault) if fault is not None else (None, None)
            if name in EDGE_FAULTS or name == "retry_after":
                status, body, headers = self._edge_fault(name, arg, route, limits)
                delay = self.config.timeout_fault_seconds if name == "timeout" else 0.0
                return _Answer(status, body, headers, rec, route, key=key, delay=delay)
            state = self._window_state(key, route, now)
            blocked = [
                (state[i][0] + self.config.windows[i] - now, i)
                for i, limit in enumerate(limits)
                if limit is not None and state[i][1] >= limit
            ]
            if blocked:
                wait, i = max(blocked)
                message = self._limit_message(route, limits[i], i)
                return _Answer(429, message, self._retry_after(wait), rec, route, key=key)
            for i in range(3):
                if state[i][0] is None:
                    state[i][0] = now
                state[i][1] += 1
            headers = self._rate_headers(limits, state)
        try:
            if malformed:
                if route.handler == "people_bulk_match":
                    raise _Reply(422, {"status": "failed", "error_code": "UNKNOWN_ERROR",
                                       "error_message": "unexpected token in JSON body",
                                       "stack_trace": "JSON::ParserError"})
                raise _Reply(400, {"error": "The request body is not a JSON object."})
            result = getattr(self, "_h_" + route.handler)(params, record_id, key)
        except _Reply as reply:
            result = _Result(reply.status, reply.body, 0.0, reply.n_records)
        if name == "lost_write":
            return _Answer(502, None, [], rec, route, result.n_records, result.credits, key, dial=result.dial)
        if (name == "overcharge" or self.config.overcharge) and route.klass == "enrichment":
            result = dataclasses.replace(result, credits=max(result.credits, float(result.n_records)))
        return _Answer(result.status, result.body, headers, rec, route, result.n_records, result.credits, key,
                       dial=result.dial, fault=(name, arg) if name is not None else None)

    def _allowed(self, spec: KeySpec, route: Route) -> bool:
        if spec.master:
            return True
        if route.endpoint in MASTER_ONLY:
            return False
        names = {route.path, route.endpoint, route.controller, route.klass}
        return spec.allowed is None or bool(names & set(spec.allowed))

    def _next_fault(self, route: Route) -> str | None:
        """Scripted faults first (in order), then the seeded random ones. Caller holds the lock."""
        for i, (fault, path) in enumerate(self._faults):
            if path is None or path in (route.path, route.endpoint):
                del self._faults[i]
                return fault
        cfg = self.config
        if cfg.rate_429 > 0 and self._fault_rng.random() < cfg.rate_429:
            return "429"
        if cfg.error_rate > 0 and self._fault_rng.random() < cfg.error_rate:
            return ("500", "502", "503")[self._fault_rng.randrange(3)]
        if route.write and cfg.lost_write_rate > 0 and self._fault_rng.random() < cfg.lost_write_rate:
            return "lost_write"
        return None

    def _edge_fault(self, fault: str, arg: str | None, route: Route, limits: tuple):
        if fault in ("429", "429-no-retry-after", "retry_after"):
            window = next((i for i, limit in enumerate(limits) if limit is not None), 0)
            limit = limits[window] if limits[window] is not None else 600
            if fault == "retry_after":
                headers = [("Retry-After", hostile.retry_after_value(str(arg), self.clock.time()))]
            else:
                headers = self._retry_after(1) if fault == "429" else []
            return 429, self._limit_message(route, limit, window), headers
        if fault == "500":
            return 500, {"error": "An unexpected error occurred. Please try again."}, []
        code = {"502": 502, "503": 503, "timeout": 504}[fault]
        html = f"<html><body><h1>{code} {HTTPStatus(code).phrase}</h1></body></html>".encode()
        return code, html, [("Content-Type", "text/html")]

    # -- enrichment ------------------------------------------------------------------------------

    def match_person(self, d: dict) -> dict | None:
        """Identify one person: id, then email, hashed_email, linkedin_url, then name + domain/organization."""
        return self.identify(d)[0]

    def identify(self, d) -> tuple[dict | None, str | None]:
        """(person, how): ``how`` is id, email, hashed_email, linkedin_url, name_domain or name_organization."""
        w = self.world
        if not isinstance(d, dict):
            return None, None
        pid = d.get("id")
        if isinstance(pid, str) and pid.strip() in w.person_by_id:
            return w.person_by_id[pid.strip()], "id"
        email = normalize_email(d.get("email"))
        if email and email in w.person_by_email:
            return w.person_by_email[email], "email"
        hit = w.person_by_hashed_email(d.get("hashed_email"))
        if hit is not None:
            return hit, "hashed_email"
        li = normalize_linkedin(d.get("linkedin_url"))
        if li and li in w.person_by_linkedin:
            return w.person_by_linkedin[li], "linkedin_url"
        first, last = name_key(d.get("first_name")), name_key(d.get("last_name"))
        if not (first and last) and isinstance(d.get("name"), str):
            parts = name_key(d["name"]).split(" ", 1)
            if len(parts) == 2:
                first, last = parts
        if not (first and last):
            return None, None
        org = w.org_for_domain(d.get("domain")) or (w.org_for_domain(email) if email else None)
        if org is not None and (first, last, org["id"]) in w.person_by_name_org:
            return w.person_by_name_org[(first, last, org["id"])], "name_domain"
        for org in w.orgs_by_name.get(name_key(d.get("organization_name")), []):
            person = w.person_by_name_org.get((first, last, org["id"]))
            if person is not None:
                return person, "name_organization"
        return None, None

    def _reveal_flags(self, params: dict) -> _Reveal:
        webhook = params.get("webhook_url")
        reveal = _Reveal(
            phone=_truthy(params.get("reveal_phone_number")),
            personal=_truthy(params.get("reveal_personal_emails")),
            webhook=webhook.strip() if isinstance(webhook, str) and webhook.strip() else None,
            poll_only=_truthy(params.get("poll_only")),
            waterfall_email=_truthy(params.get("run_waterfall_email")),
            waterfall_phone=_truthy(params.get("run_waterfall_phone")),
        )
        if reveal.webhook or reveal.poll_only:
            return reveal
        if reveal.phone:
            raise _Reply(422, {"error": "Please add a valid 'webhook_url' parameter when using 'reveal_phone_number' "
                               "(or set poll_only=true and poll webhook_result with the request_id). Phone numbers "
                               "are delivered asynchronously, not in this response.", "error_code": "INVALID_REQUEST"})
        if reveal.waterfall:
            raise _Reply(422, {"error": "Please add a valid 'webhook_url' parameter when using waterfall enrichment "
                               "(or set poll_only=true).", "error_code": "INVALID_REQUEST"})
        return reveal

    def _org_out(self, org, full: bool):
        return shapes.org_out(org, self.config.revenue_spelling, full)

    def _person_out(self, person: dict, reveal: _Reveal, how: str | None) -> dict:
        out = dict(person)
        out["organization"] = self._org_out(person["organization"], full=False)
        if out.get("email") and shapes.share(person["id"]) < self.config.locked_emails:
            out["email"] = shapes.LOCKED_EMAIL
        if reveal.personal:
            out["personal_emails"] = list(self.world.personal_emails.get(person["id"], []))
        if reveal.waterfall or self.config.match_confidence_always:
            out["match_confidence"] = shapes.CONFIDENCE.get(how or "", "low")
        return out

    def _miss(self, d: dict, reveal: _Reveal):
        """A miss: null, or (``stub_misses``, or any waterfall request) a stub person with confidence "none"."""
        if not (self.config.stub_misses or reveal.waterfall):
            return None
        domain = shapes.stub_domain(d) if isinstance(d, dict) else None
        org = (self.world.org_by_domain.get(domain) or self.domain_aliases.get(domain)) if domain else None
        return shapes.stub_person(d if isinstance(d, dict) else {}, self._org_out(org, full=False))

    def _waterfall_emails(self, person: dict) -> list[dict]:
        """What a waterfall finds: the known e-mail, or for half of those without one a first.last guess."""
        if person["email"]:
            return [{"email": person["email"], "email_status": "verified", "source": "waterfall"}]
        if int(person["id"][-1], 16) % 2:
            return []
        local = ".".join(ascii_fold(n).lower().replace(" ", "") for n in (person["first_name"], person["last_name"]))
        return [{"email": f"{local}@{person['organization']['primary_domain']}", "email_status": "verified",
                 "source": "waterfall"}]

    def _charge_people(
        self, people: list[dict], reveal: _Reveal, path: str, key: str
    ) -> tuple[float, float, int | None]:
        """(credits, direct-dial part, request_id): 1 per distinct person; +8 per mobile returned.

        With a webhook the +8 are charged now (and a delivery recorded per person); with ``poll_only`` alone they
        are charged when the result is produced. Asynchronous work opens a job whose ``request_id`` is returned.
        """
        base = sum(map(self._person_charge, people))
        if not reveal.async_work:
            return base, 0.0, None
        results, mobiles = [], 0
        for person in people:
            mobile = self.world.mobile_phones.get(person["id"]) if (reveal.phone or reveal.waterfall_phone) else None
            entry = {"id": person["id"], "phone_numbers": [_phone_entry(mobile, self._dnc(person))] if mobile else []}
            if reveal.waterfall_email:
                entry["emails"] = self._waterfall_emails(person)
            results.append(entry)
            mobiles += 1 if mobile else 0
        dial = 8.0 * mobiles
        job = self.async_results.open(key, path, self.clock.monotonic(), results, 0.0 if reveal.webhook else dial,
                                      reveal.webhook)
        if reveal.webhook:
            with self._lock:
                for entry in results:
                    self.webhook_deliveries.append({"url": reveal.webhook, "path": path, "person_id": entry["id"],
                                                    "t": self.clock.time(), "request_id": job.request_id, **entry})
            return base + dial, dial, job.request_id
        return base, 0.0, job.request_id

    def _dnc(self, person: dict) -> str | None:
        """A mobile's ``dnc_status_cd``: clear (``not_on_dnc``, ``not_found`` or null, as recordings show), or for
        ``config.do_not_call`` of people flagged (``national_dnc``; one in ten ``state_dnc_unknown``, a code no
        document lists, which a client must treat as do-not-call too)."""
        share = shapes.share(person["id"])
        if share < self.config.do_not_call:
            return "state_dnc_unknown" if share < self.config.do_not_call / 10 else "national_dnc"
        return ("not_on_dnc", "not_found", None)[int(share * 1000) % 3]

    def _person_charge(self, person: dict) -> float:
        """1 credit per person; with ``fractional_credits``, that fraction for a person answered without an e-mail."""
        frac = self.config.fractional_credits
        if frac is None or (person.get("email") and shapes.share(person["id"]) >= self.config.locked_emails):
            return 1.0
        return float(frac)

    def _waterfall(self, reveal: _Reveal) -> dict:
        where = ("sent to the provided webhook URL" if reveal.webhook
                 else "available from webhook_result with the request_id")
        return {"status": "accepted", "message": f"Waterfall enrichment request accepted. Results will be {where}."}

    def _h_people_match(self, params, _id, key):
        reveal = self._reveal_flags(params)
        if not any(params.get(k) not in (None, "") for k in IDENTIFIERS):
            raise _Reply(400, {"status": "failed", "error_code": "INVALID_REQUEST",
                               "error_message": "invalid request, missing identifiers"})
        person, how = self.identify(params)
        body = {"person": self._person_out(person, reveal, how) if person else self._miss(params, reveal)}
        credits, dial, request_id = self._charge_people([person] if person else [], reveal, "people/match", key)
        if reveal.waterfall:
            body["waterfall"] = self._waterfall(reveal)
        if request_id is not None:
            body["request_id"] = request_id
        return _Result(200, body, credits, 1, dial)

    def _h_people_bulk_match(self, params, _id, key):
        details = params.get("details")
        if details is None or details == [] or details == "":
            raise _Reply(400, {"status": "failed", "error_code": "INVALID_REQUEST",
                               "error_message": "invalid request, missing details"})
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            raise _Reply(422, {"status": "failed", "error_code": "UNKNOWN_ERROR",
                               "error_message": "details must be an array of objects",
                               "stack_trace": "NoMethodError: undefined method `[]' for details"})
        if len(details) > 10:
            raise _Reply(400, {"status": "failed", "error_code": "RECORD_LIMIT_EXCEEDED",
                               "error_message": "domain count cannot be more than 10"}, len(details))
        reveal = self._reveal_flags(params)
        matches: list[dict | None] = []
        unique: dict[str, dict] = {}
        missing = 0
        for d in details:
            person, how = self.identify(d)
            if person is None:
                missing += 1
                if not self.config.omit_bulk_misses:
                    matches.append(self._miss(d, reveal))
                continue
            matches.append(self._person_out(person, reveal, how))
            unique.setdefault(person["id"], person)
        credits, dial, request_id = self._charge_people(list(unique.values()), reveal, "people/bulk_match", key)
        body: dict[str, Any] = {
            "status": "success", "error_code": None, "error_message": None,
            "total_requested_enrichments": len(details),
            "unique_enriched_records": len(unique),
            "missing_records": missing,
            "credits_consumed": credits,
            "matches": matches,
        }
        if reveal.waterfall:
            body["waterfall"] = self._waterfall(reveal)
        if request_id is not None:
            body["request_id"] = request_id
        return _Result(200, body, credits, len(details), dial)

    def _find_org(self, raw) -> dict | None:
        """A world organisation by (normalised) domain, or by an alias domain when ``rewrite_domains`` is on."""
        domain = normalize_domain(raw)
        if not domain:
            return None
        return self.world.org_by_domain.get(domain) or self.domain_aliases.get(domain)

    def _h_org_enrich(self, params, _id, key):
        raw = params.get("domain") or params.get("website") or params.get("website_url")
        if isinstance(raw, list):
            raw = raw[0] if raw else None
        if not isinstance(raw, str) or not raw.strip():
            raise _Reply(422, {"error": "Required parameter 'domain' missing"})
        org = self._find_org(raw)
        return _Result(200, {"organization": self._org_out(org, full=True)}, 1.0 if org else 0.0, 1)

    def _h_org_bulk_enrich(self, params, _id, key):
        domains = _as_list(params.get("domains"))
        if not domains:
            raise _Reply(400, {"status": "failed", "error_code": "INVALID_REQUEST",
                               "error_message": "invalid request, missing domains"})
        if len(domains) > 10:
            raise _Reply(400, {"status": "failed", "error_code": "RECORD_LIMIT_EXCEEDED",
                               "error_message": "domain count cannot be more than 10"}, len(domains))
        keys = list(dict.fromkeys(normalize_domain(d) or str(d).strip().lower() for d in domains))
        found: dict[str, dict] = {}
        missing = 0
        for k in keys:
            org = self._find_org(k)
            if org is None:
                missing += 1
            else:
                found.setdefault(org["id"], org)
        body = {
            "status": "success", "error_code": None, "error_message": None,
            "total_requested_domains": len(domains),
            "unique_domains": len(keys),
            "unique_enriched_records": len(found),
            "missing_records": missing,
            "organizations": [self._org_out(o, full=True) for o in found.values()],
        }
        return _Result(200, body, float(len(found)), len(domains))

    # -- search ----------------------------------------------------------------------------------

    @staticmethod
    def _page(params) -> tuple[int, int]:
        page = max(1, _int(params.get("page"), 1))
        per_page = min(100, max(1, _int(params.get("per_page"), 25)))
        return page, per_page

    def _org_filter(self, params) -> list[dict] | None:
        """Organizations allowed by the organization filters (None = no organization filter)."""
        w = self.world
        orgs = None
        domains = _as_list(params.get("q_organization_domains_list")) + _as_list(params.get("q_organization_domains"))
        if domains:
            want = {normalize_domain(d) for d in domains}
            orgs = [w.org_by_domain[d] for d in want if d in w.org_by_domain]
        ids = _as_list(params.get("organization_ids"))
        if ids:
            picked = [w.org_by_id[i] for i in dict.fromkeys(ids) if i in w.org_by_id]
            orgs = picked if orgs is None else [o for o in orgs if o["id"] in set(ids)]
        conditions: list[Callable[[dict], bool]] = []
        ranges = _employee_ranges(params.get("organization_num_employees_ranges"))
        if ranges:
            conditions.append(lambda o: any(lo <= o["estimated_num_employees"] <= hi for lo, hi in ranges))
        locs = [name_key(str(x)) for x in _as_list(params.get("organization_locations"))]
        if locs:
            conditions.append(lambda o: any(loc in _place(o) for loc in locs))
        not_locs = [name_key(str(x)) for x in _as_list(params.get("organization_not_locations"))]
        if not_locs:
            conditions.append(lambda o: not any(loc in _place(o) for loc in not_locs))
        name = params.get("q_organization_name")
        if isinstance(name, str) and name.strip():
            nk = name_key(name)
            conditions.append(lambda o: nk in name_key(o["name"]))
        tags = [name_key(str(t)) for t in _as_list(params.get("q_organization_keyword_tags"))]
        if tags:
            conditions.append(lambda o: any(t in name_key(" ".join(o["keywords"] + [o["industry"]])) for t in tags))
        revenue = params.get("revenue_range")
        if isinstance(revenue, dict) and (revenue.get("min") not in (None, "") or revenue.get("max") not in (None, "")):
            lo = float(revenue.get("min") or 0)
            hi = float(revenue["max"]) if revenue.get("max") not in (None, "") else math.inf
            conditions.append(lambda o: lo <= o["annual_revenue"] <= hi)
        if conditions:
            base = orgs if orgs is not None else w.orgs
            orgs = [o for o in base if all(c(o) for c in conditions)]
        if orgs is not None:  # keep world order
            order = {o["id"]: o for o in orgs}
            orgs = [o for o in w.orgs if o["id"] in order] if len(orgs) > 1 else orgs
        return orgs

    def _search_people(self, params) -> list[dict]:
        w = self.world
        orgs = self._org_filter(params)
        if orgs is not None:
            indices = sorted(i for o in orgs for i in w.people_by_org.get(o["id"], []))
            people = [w.people[i] for i in indices]
        else:
            people = w.people
        conditions: list[Callable[[dict], bool]] = []
        titles = [name_key(str(t)) for t in _as_list(params.get("person_titles"))]
        if titles:
            similar = _truthy(params.get("include_similar_titles", True))

            def title_ok(p, titles=titles, similar=similar):
                t = name_key(p["title"])
                return any(q in t or (similar and all(word in t.split() for word in q.split())) for q in titles)

            conditions.append(title_ok)
        seniorities = {str(s).strip().lower() for s in _as_list(params.get("person_seniorities"))}
        if seniorities:
            conditions.append(lambda p: p["seniority"] in seniorities)
        locs = [name_key(str(x)) for x in _as_list(params.get("person_locations"))]
        if locs:
            conditions.append(lambda p: any(loc in _place(p) for loc in locs))
        statuses = {str(s).strip().lower() for s in _as_list(params.get("contact_email_status"))}
        if statuses:
            conditions.append(lambda p: p["email_status"] in statuses)
        q = params.get("q_keywords")
        if isinstance(q, str) and q.strip():
            words = name_key(q).split()
            conditions.append(lambda p: all(word in _person_text(p) for word in words))
        if conditions:
            people = [p for p in people if all(c(p) for c in conditions)]
        return people

    def _teaser(self, p: dict) -> dict:
        org = p["organization"]
        refreshed = int(p["id"][:8], 16) % (300 * 86400)
        return {
            "id": p["id"],
            "first_name": p["first_name"],
            "last_name_obfuscated": _teaser_obfuscate(p["last_name"]),
            "title": p["title"],
            "last_refreshed_at": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(1_760_000_000 + refreshed)),
            "has_email": p["email"] is not None,
            "has_city": bool(p["city"]),
            "has_state": bool(p["state"]),
            "has_country": bool(p["country"]),
            "has_direct_phone": "Yes" if p["id"] in self.world.mobile_phones
            else "Maybe: please request direct dial via people/bulk_match",
            "organization": {
                "name": org["name"], "has_industry": bool(org["industry"]), "has_phone": bool(org["phone"]),
                "has_city": bool(org["city"]), "has_state": bool(org["state"]), "has_country": bool(org["country"]),
                "has_zip_code": bool(org["postal_code"]), "has_revenue": org["annual_revenue"] is not None,
                "has_employee_count": org["estimated_num_employees"] is not None,
            },
        }

    def _slice(self, items: list, page: int, per_page: int) -> list:
        if page > 500:
            return []
        return items[(page - 1) * per_page : page * per_page]

    def _h_people_api_search(self, params, _id, key):
        page, per_page = self._page(params)
        people = self._search_people(params)
        items = [self._teaser(p) for p in self._slice(people, page, per_page)]
        return _Result(200, {"total_entries": len(people), "people": items}, 0.0, len(items))

    def _breadcrumbs(self, params, names) -> list[dict]:
        crumbs = []
        for name in names:
            for value in _as_list(params.get(name)) if not isinstance(params.get(name), dict) else []:
                crumbs.append({"label": name.replace("_", " ").title(), "signal_field_name": name,
                               "value": value, "display_name": str(value)})
        return crumbs

    @staticmethod
    def _pagination(page, per_page, total) -> dict:
        return {"page": page, "per_page": per_page, "total_entries": total, "total_pages": math.ceil(total / per_page)}

    def _h_people_legacy_search(self, params, _id, key):
        page, per_page = self._page(params)
        people = self._search_people(params)
        items = []
        for p in self._slice(people, page, per_page):
            out = dict(p)
            out["email"] = shapes.LOCKED_EMAIL if p["email"] else None
            items.append(out)
        body = {
            "breadcrumbs": self._breadcrumbs(
                params, ("person_titles", "person_seniorities", "person_locations", "q_keywords")
            ),
            "partial_results_only": False, "disable_eu_prospecting": False, "partial_results_limit": 10000,
            "pagination": self._pagination(page, per_page, len(people)), "contacts": [], "people": items,
        }
        return _Result(200, body, 1.0 if items else 0.0, len(items))

    def _org_light(self, o: dict) -> dict:
        keys = ("id", "name", "website_url", "blog_url", "angellist_url", "linkedin_url", "twitter_url", "facebook_url",
                "primary_phone", "languages", "alexa_ranking", "phone", "linkedin_uid", "founded_year",
                "publicly_traded_symbol", "publicly_traded_exchange", "logo_url", "crunchbase_url", "primary_domain",
                "sanitized_phone", "sic_codes", "naics_codes", "owned_by_organization_id",
                "organization_headcount_six_month_growth", "organization_headcount_twelve_month_growth",
                "organization_headcount_twenty_four_month_growth")
        out = {k: o[k] for k in keys}
        out.update(
            {"intent_strength": None, "show_intent": False, "has_intent_signal_account": False,
             "intent_signal_account": None}
        )
        return shapes.light_revenue(out, o, self.config.revenue_spelling)

    def _account_item(self, account: dict, org: dict) -> dict:
        """A company saved in the team's CRM, as ``mixed_companies/search`` lists it in ``accounts``."""
        item = self._org_light(org)
        item.update(account)
        item["organization_id"] = org["id"]
        item["domain"] = account.get("domain") or org["primary_domain"]
        item["primary_domain"] = None  # Apollo's own accounts sample: the domain is in ``domain`` only
        item["name"] = account.get("name") or org["name"]
        return item

    def _h_companies_search(self, params, _id, key):
        page, per_page = self._page(params)
        orgs = self._org_filter(params)
        orgs = self.world.orgs if orgs is None else orgs
        by_org, by_domain = self.store.saved_accounts_by_org() if self.config.search_saved_accounts else ({}, {})
        accounts, items = [], []
        for o in self._slice(orgs, page, per_page):
            account = by_org.get(o["id"]) or by_domain.get(o["primary_domain"])
            if account is not None:
                accounts.append(self._account_item(account, o))
            else:
                items.append(self._org_light(o))
        body = {
            "breadcrumbs": self._breadcrumbs(params, ("q_organization_domains_list", "organization_locations",
                                                      "q_organization_name", "q_organization_keyword_tags")),
            "partial_results_only": False, "has_join": False, "disable_eu_prospecting": False,
            "partial_results_limit": 10000,
            "pagination": self._pagination(page, per_page, len(orgs)), "accounts": accounts, "organizations": items,
            "model_ids": [a["id"] for a in accounts] + [o["id"] for o in items],
            "num_fetch_result": None, "derived_params": None,
        }
        n = len(accounts) + len(items)
        return _Result(200, body, 1.0 if n else 0.0, n)

    # -- contacts --------------------------------------------------------------------------------

    def _ignore(self, endpoint: str, attrs, accepted, record_id=None) -> list[dict]:
        """The fields of ``attrs`` the endpoint does not take (Apollo ignores them silently; so does the sandbox)."""
        if not isinstance(attrs, dict):
            return []
        return [{"endpoint": endpoint, "field": k, "id": record_id} for k in attrs if k not in accepted]

    def _note_ignored(self, entries: list[dict]) -> None:
        if entries:
            with self._lock:
                self.ignored_fields.extend(entries)

    def _h_contact_create(self, params, _id, key):
        ignored = self._ignore("contacts/create", params, set(CONTACT_FIELDS) | {"run_dedupe", "label_names"})
        contact, labels, dedupe = self.store.create_contact(params, run_dedupe=_truthy(params.get("run_dedupe")))
        self._note_ignored([dict(e, id=contact["id"]) for e in ignored])
        body = {"contact": contact, "labels": labels}
        if dedupe is not None:
            body["dedupe_result"] = dedupe
        return _Result(200, body, 0.0, 1)

    def _bulk_items(self, params, name: str, noun: str, first_error: str) -> list:
        items = params.get(name)
        if not isinstance(items, list):
            raise _Reply(422, {"error": first_error})
        if len(items) > 100:
            raise _Reply(422, {"error": f"Please limit your array to 100 {noun} or fewer."}, len(items))
        return items

    def _h_contact_bulk_create(self, params, _id, key):
        items = self._bulk_items(params, "contacts", "contacts",
                                 'Please provide an array of contact attributes in the "contact_attributes" parameter.')
        created, existing = self.store.bulk_create_contacts(
            items, run_dedupe=_truthy(params.get("run_dedupe")),
            append_label_names=_as_list(params.get("append_label_names")),
        )
        accepted = set(CONTACT_FIELDS) | set(CONTACT_BULK_CREATE_EXTRAS)
        self._note_ignored([e for item in items for e in self._ignore("contacts/bulk_create", item, accepted)])
        return _Result(200, {"created_contacts": created, "existing_contacts": existing}, 0.0, len(items))

    def _h_contact_update(self, params, record_id, key):
        result = self.store.update_contact(record_id, params)
        if result is None:
            raise _Reply(404, {"error": f"Contact {record_id} not found", "error_code": "NOT_FOUND"}, 1)
        self._note_ignored(self._ignore("contacts/update", params, set(CONTACT_FIELDS) | {"label_names"}, record_id))
        contact, labels = result
        return _Result(200, {"contact": contact, "labels": labels}, 0.0, 1)

    def _h_contact_show(self, params, record_id, key):
        contact = self.store.get_contact(record_id)
        if contact is None:
            raise _Reply(404, {"error": f"Contact {record_id} not found", "error_code": "NOT_FOUND"}, 1)
        return _Result(200, {"contact": contact, "labels": self.store.labels_of(contact)}, 0.0, 1)

    def _search_envelope(self, items, params, name):
        page, per_page = self._page(params)
        chunk = self._slice(items, page, per_page)
        return {
            name: chunk, "breadcrumbs": [], "partial_results_only": False, "has_join": False,
            "disable_eu_prospecting": False, "partial_results_limit": 10000,
            "pagination": self._pagination(page, per_page, len(items)), "num_fetch_result": None,
        }, len(chunk)

    def _sort(self, params, allowed):
        sort_by = params.get("sort_by_field")
        if sort_by in (None, ""):
            return None, False
        if sort_by not in allowed:
            raise _Reply(422, {"error": "Invalid sort criteria", "skip_alert_dialog": True})
        return sort_by, _truthy(params.get("sort_ascending"))

    def _h_contact_search(self, params, _id, key):
        sort_by, ascending = self._sort(params, CONTACT_SORTS)
        items = self.store.search_contacts(
            params.get("q_keywords"), _as_list(params.get("contact_stage_ids")),
            _as_list(params.get("contact_label_ids")),
            sort_by, ascending,
        )
        body, n = self._search_envelope(items, params, "contacts")
        return _Result(200, body, 0.0, n)

    # -- accounts --------------------------------------------------------------------------------

    def _h_account_create(self, params, _id, key):
        if not any(isinstance(params.get(k), str) and params[k].strip() for k in ("name", "domain")):
            raise _Reply(422, {"error": "Please specify at least a name or domain."}, 1)
        account = self.store.create_account(params)
        self._note_ignored(self._ignore("accounts/create", params, set(ACCOUNT_FIELDS), account["id"]))
        return _Result(200, {"account": account}, 0.0, 1)

    def _h_account_bulk_create(self, params, _id, key):
        items = self._bulk_items(params, "accounts", "accounts",
                                 'Please provide an array of account attributes in the "accounts" parameter.')
        created, existing = self.store.bulk_create_accounts(
            items, run_dedupe=_truthy(params.get("run_dedupe")),
            append_label_names=_as_list(params.get("append_label_names")),
        )
        ignored = [e for item in items for e in self._ignore("accounts/bulk_create", item, set(ACCOUNT_FIELDS))]
        self._note_ignored(ignored)
        return _Result(200, {"created_accounts": created, "existing_accounts": existing}, 0.0, len(items))

    def _h_account_update(self, params, record_id, key):
        result = self.store.update_account(record_id, params)
        if result is None:
            raise _Reply(404, {"error": f"Account {record_id} not found", "error_code": "NOT_FOUND"}, 1)
        self._note_ignored(self._ignore("accounts/update", params, set(ACCOUNT_FIELDS) | {"label_names"}, record_id))
        account, labels = result
        return _Result(200, {"account": account, "labels": labels}, 0.0, 1)

    def _h_contact_bulk_update(self, params, _id, key):
        return self._bulk_update(params, "contacts", CONTACT_BULK_FIELDS, CONTACT_BULK_FIELDS,
                                 async_attrs=True, auto_async=True)

    def _h_account_bulk_update(self, params, _id, key):
        return self._bulk_update(params, "accounts", ACCOUNT_BULK_FIELDS, ACCOUNT_BULK_SHARED,
                                 async_attrs=False, auto_async=False)

    def _bulk_update(
        self, params, kind: str, item_fields, shared_fields, async_attrs: bool, auto_async: bool
    ) -> _Result:
        """contacts/bulk_update and accounts/bulk_update: ``<x>_attributes[]`` (each with ``id``) or ``<x>_ids[]``
        with shared fields; all or nothing; more than 100 contacts (or ``async``) answer an entity_progress_job."""
        one = kind[:-1]
        attributes, ids = params.get(f"{one}_attributes"), params.get(f"{one}_ids")
        by_attrs = isinstance(attributes, list) and len(attributes) > 0
        if not by_attrs and not (isinstance(ids, list) and ids):
            raise _Reply(422, {"error": f"Please provide either {one}_ids or {one}_attributes"})
        n = len(attributes) if by_attrs else len(ids)
        if n > 1000:
            raise _Reply(422, {"error": "Please limit your array to fewer than 1000."}, n)
        want_async = _truthy(params.get("async"))
        if want_async and by_attrs and not async_attrs:
            raise _Reply(422, {"error": "Async processing is not permitted."}, n)
        if by_attrs:
            updates, ignored, errors = self._attribute_updates(params, kind, attributes, item_fields)
        else:
            updates, ignored, errors = self._shared_updates(params, kind, ids, shared_fields)
        if not errors:
            unknown, records = self.store.bulk_update(kind, updates)
            errors = {i: [f"{one.title()} {i} not found"] for i in unknown}
        if errors:
            raise _Reply(422, {"error": "Validation failed", "error_details": errors}, n)
        self._note_ignored(ignored)
        if want_async or (auto_async and n > 100):
            job = self.store.open_job(f"{one}_bulk_update", list(dict.fromkeys(i for i, _ in updates)))
            return _Result(200, {"entity_progress_job": job}, 0.0, n)
        return _Result(200, {kind: records}, 0.0, n)

    @staticmethod
    def _bulk_control(kind: str) -> set:
        one = kind[:-1]
        return {f"{one}_attributes", f"{one}_ids", "async", "visible_entity_ids"}

    def _attribute_updates(self, params, kind: str, attributes: list, fields) -> tuple[list, list, dict]:
        """(updates, ignored fields, errors) of ``<x>_attributes``: each item's own documented fields."""
        endpoint, one = f"{kind}/bulk_update", kind[:-1]
        updates, errors = [], {}
        ignored = self._ignore(endpoint, params, self._bulk_control(kind))  # shared fields do not apply here
        for i, item in enumerate(attributes):
            rid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(rid, str) or not rid.strip():
                errors[f"{one}_attributes[{i}]"] = ["id can't be blank"]
                continue
            ignored += self._ignore(endpoint, item, set(fields) | {"id"}, rid)
            updates.append((rid, {k: v for k, v in item.items() if k in fields}))
        return updates, ignored, errors

    def _shared_updates(self, params, kind: str, ids: list, fields) -> tuple[list, list, dict]:
        """(updates, ignored fields, errors) of ``<x>_ids`` with the shared fields."""
        shared = {k: v for k, v in params.items() if k in fields}
        ignored = self._ignore(f"{kind}/bulk_update", params, set(fields) | self._bulk_control(kind))
        return [(str(i), dict(shared)) for i in ids], ignored, {}

    def _h_account_show(self, params, record_id, key):
        account = self.store.get_account(record_id)
        if account is None:
            raise _Reply(404, {"error": f"Account {record_id} not found", "error_code": "NOT_FOUND"}, 1)
        return _Result(200, {"account": account}, 0.0, 1)

    def _h_account_search(self, params, _id, key):
        sort_by, ascending = self._sort(params, ACCOUNT_SORTS)
        items = self.store.search_accounts(
            params.get("q_organization_name"), _as_list(params.get("account_stage_ids")),
            _as_list(params.get("account_label_ids")), sort_by, ascending,
        )
        body, n = self._search_envelope(items, params, "accounts")
        return _Result(200, body, 0.0, n)

    # -- usage and health ------------------------------------------------------------------------

    def _h_usage_stats(self, params, _id, key):
        now = self.clock.monotonic()
        out = {}
        seen = set()
        with self._lock:
            for route in ROUTES:
                if route.endpoint in seen:
                    continue
                seen.add(route.endpoint)
                limits = self.limits_for(route)
                state = self._window_state(key, route, now)
                entry = {}
                for i in (2, 1, 0):
                    used, limit = state[i][1], limits[i]
                    entry[WINDOW_NAMES[i]] = {
                        "limit": limit, "consumed": used, "left_over": None if limit is None else max(0, limit - used)
                    }
                form = self.config.usage_stats_keys
                out[shapes.usage_key(route.controller, route.action, form, len(seen) - 1)] = entry
        return _Result(200, out, 0.0, 0)

    def _h_health(self, params, _id, key):
        return _Result(200, {"healthy": True, "is_logged_in": True}, 0.0, 0)

    def _h_credit_usage_stats(self, params, _id, key):
        cycle = self.config.credit_cycle or shapes.credit_cycle(self.clock.time())
        return _Result(200, shapes.meter_body(self.credits_by_type(), self.config.credit_limits, cycle), 0.0, 0)

    def _h_webhook_result(self, params, record_id, key):
        status, body = self.async_results.answer(record_id, self.clock.monotonic())
        return _Result(status, body, 0.0, 0)


#: The base URL of clients wired to an in-process sandbox (never resolved: no request leaves the process).
SANDBOX_BASE_URL = "http://sandbox.invalid/api/v1"


def client_for(app: Any = None, **kwargs: Any) -> ApolloClient:
    """An ``ApolloClient`` whose transport is the WSGI ``app`` (a new default :class:`Sandbox` if None).

    The client never imports the sandbox; the sandbox hands it a transport,
    as httpx does for any WSGI app. Defaults: the sandbox's key, the paid plan
    preset, and a cache namespace of its own so sandbox answers never mix with
    Apollo's; the sandbox's own clock.
    """
    import httpx

    from apollo_frames.client import ApolloClient

    app = app if app is not None else Sandbox()
    if isinstance(app, Sandbox):
        kwargs.setdefault("clock", app.clock)  # one clock for both sides: a fake one makes waits free
    kwargs.setdefault("api_key", DEFAULT_API_KEY)
    kwargs.setdefault("base_url", SANDBOX_BASE_URL)
    kwargs.setdefault("cache_namespace", "sandbox")
    kwargs.setdefault("plan", "paid")
    kwargs.setdefault("allow_insecure_http", True)  # nothing leaves the process: the transport is the app
    return ApolloClient(transport=httpx.WSGITransport(app=app), **kwargs)
