"""Answers a run received but could not store (a full disk), kept in this process until the store takes them.

The answer spool keeps answers for the next run when the store cannot be
written, but on a full disk the spool cannot be written either: the answers
are then only in the rows returned. So they are parked here, in memory, and
the next run of this process on the same store (the notebook cell run again
once space is freed) stores them before it plans, and does not pay for them
again. Nothing is written anywhere else, and nothing outlives the process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from apollo_frames.core.errors import StorageError

#: store file -> key -> (key, answer, stored at, expires at)
_PARKED: dict[str, dict[str, tuple[str, Any, float, float | None]]] = {}
_LOCK = threading.Lock()


def park(cache: Any, entries: Mapping[str, Any], ttl: float | None) -> None:
    """Keep ``entries`` (store key -> answer) for ``cache``'s store until :func:`unpark` can store them."""
    if not entries:
        return
    now = cache.clock.time()
    expires = None if ttl is None else now + ttl
    with _LOCK:
        _PARKED.setdefault(str(cache.path), {}).update((k, (k, v, now, expires)) for k, v in entries.items())


def unpark(cache: Any) -> int:
    """Store the answers parked for ``cache``'s store (an answer stored since is kept); how many. When the store
    still cannot take them they stay parked."""
    place = str(cache.path)
    with _LOCK:
        parked = _PARKED.pop(place, None)
    if not parked:
        return 0
    try:
        cache.write_entries(list(parked.values()), newer_only=True)
    except (StorageError, sqlite3.Error, OSError):
        with _LOCK:
            _PARKED[place] = {**parked, **_PARKED.get(place, {})}
        return 0
    return len(parked)
