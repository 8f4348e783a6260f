"""On-disk response cache (diskcache): one entry per normalised input record.

Keys are a SHA-256 of (schema version, namespace, endpoint, normalised input,
options that change the answer). The API key is never part of a key or a
value. Misses are cached as ``None`` so a re-run asks Apollo nothing.
Reads and writes go in batches, one SQLite transaction per batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import diskcache

from apollo_frames.core.clock import SYSTEM_CLOCK, Clock

#: Bump when the meaning of cached values changes, so old entries are not reused.
SCHEMA_VERSION = 1

_MISSING = object()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class ResponseCache:
    """A thin, batch-oriented wrapper over ``diskcache.Cache``."""

    def __init__(self, directory: str | Path, *, namespace: str = "", clock: Clock = SYSTEM_CLOCK):
        self.directory = Path(directory) / "responses"
        self.namespace = namespace
        self.clock = clock
        # No size-based eviction: an evicted answer would be paid for again. TTLs bound the age.
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**42, eviction_policy="none", sqlite_mmap_size=0)

    def key(self, endpoint: str, record: Any, options: Mapping[str, Any] | None = None) -> str:
        text = canonical_json([SCHEMA_VERSION, self.namespace, endpoint, record, dict(options or {})])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of those keys that are present (a cached miss is ``None``)."""
        found: dict[str, Any] = {}
        now = self.clock.time()
        with self._cache.transact():
            for key in keys:
                value, expires = self._cache.get(key, default=_MISSING, tag=True)
                if value is not _MISSING and (expires is None or expires > now):
                    found[key] = value
        return found

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None) -> None:
        # diskcache expires on the system clock (and culls on it); the tag holds the expiry on this
        # cache's clock, which get_many checks. With the system clock the two agree.
        expires = None if ttl is None else self.clock.time() + ttl
        with self._cache.transact():
            for key, value in items.items():
                self._cache.set(key, value, expire=ttl, tag=expires)

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()
