"""Settings: explicit values first, then environment variables, read at call time.

The environment names are a public contract: ``APOLLO_API_KEY``,
``APOLLO_BASE_URL``, ``APOLLO_FRAMES_CACHE_DIR`` and ``APOLLO_FRAMES_RETENTION``
(how long stored answers are kept: ``365d``, a number of seconds; empty or ``none``: no limit).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from apollo_frames.core.age import age_seconds
from apollo_frames.core.errors import ConfigurationError, InputError

DEFAULT_BASE_URL = "https://api.apollo.io/api/v1"
DAY = 86_400
#: The largest answer the client reads (bytes, after decompression); Apollo's are far smaller.
DEFAULT_MAX_RESPONSE_BYTES = 50 * 1024 * 1024

#: Requests per (minute, hour, day) that seed the limiter before Apollo's
#: headers tell the real numbers. ``None`` means no limit in that window.
#: Free is Apollo's 2026 table for enrichment; paid is its 2026 paid figure
#: (1,000/min, no hourly or daily limit). Override with ``rate_limits=``.
PLAN_PRESETS: dict[str, tuple[int | None, int | None, int | None]] = {
    "free": (50, 200, 600),
    "paid": (1000, None, None),
}


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost), where http:// stays local."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "apollo_frames"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved configuration for one client. The key never shows in its repr."""

    api_key: str | None = dataclasses.field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    cache_dir: Path = dataclasses.field(default_factory=default_cache_dir)
    concurrency: int = 4
    max_retries: int = 3
    timeout: float = 30.0
    max_rate_limit_wait: float = 900.0
    plan: str = "free"
    rate_limits: tuple[int | None, int | None, int | None] | None = None
    cache_ttl: float = 30 * DAY
    search_cache_ttl: float = 1 * DAY
    allow_insecure_http: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    #: seconds a stored answer is kept (None: no limit, the default; see the README's "Personal data")
    retention: float | None = None

    @classmethod
    def resolve(cls, **explicit) -> Settings:
        """Build settings from explicit arguments (None = not given) and the environment now."""
        values = {k: v for k, v in explicit.items() if v is not None}
        if "api_key" not in values:
            env_key = os.environ.get("APOLLO_API_KEY", "").strip()
            if env_key:
                values["api_key"] = env_key
        if "base_url" not in values:
            values["base_url"] = os.environ.get("APOLLO_BASE_URL", "").strip() or DEFAULT_BASE_URL
        if "cache_dir" not in values:
            env_dir = os.environ.get("APOLLO_FRAMES_CACHE_DIR", "").strip()
            values["cache_dir"] = Path(env_dir) if env_dir else default_cache_dir()
        values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        values["retention"] = _retention(values.get("retention", os.environ.get("APOLLO_FRAMES_RETENTION")))
        values["base_url"] = str(values["base_url"]).rstrip("/")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        self._validate_base_url()
        if isinstance(self.max_response_bytes, bool) or not isinstance(self.max_response_bytes, int) \
                or self.max_response_bytes <= 0:
            raise ConfigurationError(f"max_response_bytes must be a positive integer, got {self.max_response_bytes!r}")
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 64:
            raise ConfigurationError(f"concurrency must be an integer from 1 to 64, got {self.concurrency!r}")
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 20:
            raise ConfigurationError(f"max_retries must be an integer from 0 to 20, got {self.max_retries!r}")
        if self.plan not in PLAN_PRESETS:
            raise ConfigurationError(f"plan must be one of {sorted(PLAN_PRESETS)}, got {self.plan!r}")
        for name in ("timeout", "max_rate_limit_wait", "cache_ttl", "search_cache_ttl"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or any(c.isspace() for c in self.api_key)):
            raise ConfigurationError("api_key must be a string without whitespace")

    def _validate_base_url(self) -> None:
        """Refuse a base URL that could leak the key: a query string, or plain http:// off this machine."""
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if "?" in self.base_url or "api_key" in self.base_url.lower():
            raise ConfigurationError("base_url must not carry a query string; the key goes in APOLLO_API_KEY")
        if not isinstance(self.allow_insecure_http, bool):
            raise ConfigurationError(f"allow_insecure_http must be True or False, got {self.allow_insecure_http!r}")
        if self.base_url.startswith("http://") and not self.allow_insecure_http and not is_loopback(self.base_url):
            raise ConfigurationError(
                f"base_url {self.base_url!r} is plain http://: the API key would travel in clear. Use https://, "
                "a loopback address (127.0.0.1, ::1, localhost), or pass allow_insecure_http=True if you must."
            )

    @property
    def limits(self) -> tuple[int | None, int | None, int | None]:
        """(per minute, per hour, per day) used before the first response."""
        return self.rate_limits if self.rate_limits is not None else PLAN_PRESETS[self.plan]

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigurationError(
                "No Apollo API key: set APOLLO_API_KEY or pass ApolloClient(api_key=...). "
                "To try the toolkit without one, use the offline sandbox: apollo_frames.use_sandbox()"
            )
        return self.api_key

    @property
    def key_hint(self) -> str:
        """A safe hint of which key is configured: its last four characters at most."""
        if not self.api_key:
            return "<none>"
        return "…" + self.api_key[-4:] if len(self.api_key) >= 12 else "<set>"


def _retention(value: object) -> float | None:
    """Retention as seconds: ``365d``, seconds or a timedelta (None, empty text or ``none``: no limit)."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    try:
        return age_seconds(value, name="retention")
    except InputError as exc:
        raise ConfigurationError(str(exc)) from None
