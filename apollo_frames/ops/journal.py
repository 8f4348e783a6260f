"""What a push has done, kept until it ends: a push stopped part-way (Ctrl-C, a kill, a refused key, a rate limit)
and run again sends only what it had not pushed.

Writes are not idempotent (``run_dedupe=False`` would create a record twice)
and, even with Apollo's dedupe, a resent row comes back ``existing`` and an
upsert updates it again. So each row a push settles (``created``,
``existing``, ``updated``; in upsert also an ``existing`` record still to
update, with its id) is written to the answer store as its answer arrives,
under the run's *fingerprint*: the rows and options of an in-memory push; the
file (path, size, modification time) and options of a file push. A run with
the same fingerprint finds them: the rows done are reported as they ended and
not sent again (``PushSummary.resumed`` counts them), upsert's pending updates
go straight to the update. A run that ends with nothing skipped closes the
journal, so pushing the same rows again later sends them again, as it should
(the records may have been deleted in Apollo meanwhile).

Without ``run_dedupe``, each ``bulk_create`` batch is also recorded *before* it
is sent (its rows ``sent``, with the time). A row still ``sent`` when the run
is resumed had no answer recorded (a kill while the batch was in flight, an
answer lost on the way): it may have been created, so it is looked up
(:mod:`apollo_frames.ops.lookup`) before anything is created again. A run
that leaves such rows keeps its journal open, so the same command looks them up.

A store that cannot be written turns the journal off with one warning; the
push goes on (a re-run then relies on ``run_dedupe``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from apollo_frames.core.entries import canonical_json
from apollo_frames.core.errors import StorageError, warn

#: how long what an unfinished push did is kept (seconds)
JOURNAL_TTL = 30 * 86400.0
#: the outcomes a journal keeps: a row with one of them is not sent again
SETTLED = ("created", "existing", "updated")
#: a row of a batch sent without run_dedupe whose answer is not recorded (yet): looked up before it is sent again
SENT = "sent"


def fingerprint(value: Any) -> str:
    """A short hash of anything JSON-able (what identifies one push run)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """A file as a push run is identified by it: its resolved path, size and modification time."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {"file": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class PushJournal:
    """The rows one push run settled, by their dedupe key, in the client's answer store (see the module doc)."""

    def __init__(self, cache: Any, target: str, run: str):
        self.cache = cache
        self.endpoint = f"push-journal:{target}"
        self.run_key = cache.key(self.endpoint, {"run": run})
        self.failed: str | None = None
        marker = self._guard(lambda: cache.get_many([self.run_key]).get(self.run_key), None)
        #: an earlier run with this fingerprint did not finish: what it settled is read back
        self.resuming = isinstance(marker, dict) and marker.get("open") is True and isinstance(marker.get("nonce"), str)
        self.nonce: str = marker["nonce"] if self.resuming else uuid.uuid4().hex
        self._opened = self.resuming

    def __repr__(self) -> str:
        return f"PushJournal(resuming={self.resuming}, failed={self.failed!r})"

    def _key(self, row_key: str) -> str:
        return self.cache.key(self.endpoint, {"nonce": self.nonce, "row": row_key})

    def _guard(self, action: Any, default: Any) -> Any:
        """Run a store action; a storage failure turns the journal off (warned once) instead of stopping the push."""
        if self.failed is not None:
            return default
        try:
            return action()
        except (StorageError, sqlite3.Error) as exc:
            self.failed = str(exc)
            warn(f"pushed rows could not be recorded in the answer store ({exc}): a re-run after an interruption "
                 "sends them again (with run_dedupe=True, Apollo returns those already created as existing)")
            return default

    def earlier(self, row_keys: Iterable[str]) -> dict[str, dict]:
        """Row key -> what an unfinished earlier run with this fingerprint settled for it, or that it sent it
        (status ``sent``, ``at``: when) without an answer recorded."""
        if not self.resuming:
            return {}
        wanted = {self._key(k): k for k in row_keys}
        found = self._guard(lambda: self.cache.get_many(list(wanted)), {})
        return {wanted[key]: entry for key, entry in found.items()
                if isinstance(entry, dict) and (entry.get("status") in SETTLED or entry.get("status") == SENT)}

    def record(self, entries: Mapping[str, dict]) -> None:
        """Keep what these rows (by dedupe key) settled; the run is marked unfinished until :meth:`close`."""
        if not entries:
            return
        items = {self._key(k): dict(v) for k, v in entries.items()}
        if not self._opened:
            items[self.run_key] = {"open": True, "nonce": self.nonce}
        self._guard(lambda: self.cache.set_many(items, ttl=JOURNAL_TTL), None)
        self._opened = self.failed is None

    def sending(self, row_keys: Iterable[str], at: float) -> None:
        """These rows are about to be sent (written before the request leaves: a kill then finds them ``sent``)."""
        self.record({key: {"status": SENT, "at": at} for key in row_keys})

    def close(self) -> None:
        """The run ended with every row settled: the next run with this fingerprint starts afresh."""
        if self._opened:
            self._guard(lambda: self.cache.set_many({self.run_key: {"open": False}}, ttl=JOURNAL_TTL), None)
            self._opened = False
