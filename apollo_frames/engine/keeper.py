"""What the send path keeps off the dispatching thread: claims across processes, the answer writer, interrupts.

* :class:`Claims`: before a batch leaves, its records are claimed in the
  answer store for as long as a request can take (:func:`lease_seconds`), so
  another process sharing the folder waits for the answer instead of paying
  for it again. When the store cannot take claims (SQLite locking on a
  network filesystem, a read-only folder) the batch is sent unclaimed and the
  run says so once: nothing is held back, two processes may then pay twice.
* :class:`AnswerWriter`: one thread stores answered batches (answers, claim
  releases, ledger settlements) as they arrive, every batch queued at the
  time in one transaction; the thread handing out requests never waits on
  the disk. A storage failure is kept (:attr:`AnswerWriter.error`): the run
  stops sending and the answers stay in memory.
* :class:`RunInterrupted`: the ``KeyboardInterrupt`` a run raises once every
  answer it received is stored, saying how many and how many rows are left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sqlite3
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from apollo_frames.client.ratelimit import parse_rate_headers
from apollo_frames.core.errors import StorageError

#: added to the longest a request can take (timeout x attempts + rate-limit wait) to make a lease
LEASE_MARGIN_S = 30.0
#: answered batches the writer may be behind before the dispatching thread waits for it
WRITER_CAPACITY = 64


def lease_seconds(settings: Any) -> float:
    """How long a claim lasts: the longest one request can take with its retries and rate-limit waits, plus a margin."""
    timeout = float(getattr(settings, "timeout", 30.0))
    attempts = int(getattr(settings, "max_retries", 3)) + 1
    return timeout * attempts + float(getattr(settings, "max_rate_limit_wait", 0.0)) + LEASE_MARGIN_S


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM on the command line) during a run, raised once what it received is stored.

    ``saved``: answers stored by this run; ``rows_left``: input rows without an
    answer yet (None when unknown). Running the same call again resumes: the
    saved answers come from the store.
    """

    #: what ``saved`` counts, as the line says it (a push: "rows pushed"; a search: "pages saved")
    done_as = "answers saved"

    def __init__(self, saved: int = 0, rows_left: int | None = None):
        super().__init__(saved, rows_left)
        self.saved = saved
        self.rows_left = rows_left

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        left = "all" if self.rows_left is None else f"{self.rows_left:,}"
        return f"interrupted: {self.saved:,} {self.done_as}, {left} rows left; run the same command to resume"


class Claims:
    """Leases on the records a run sends, in the client's answer store (see the module docstring)."""

    def __init__(self, cache: Any, lease_s: float, lock: threading.Lock | None = None):
        self.cache = cache
        self.lease_s = lease_s
        self.lock = lock if lock is not None else threading.Lock()
        #: why claims could not be taken (the first failure), or None
        self.failed: str | None = None

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
        """(keys now ours, {key: lease} held by another live process); all ours when claims cannot be taken."""
        if self.failed is not None:
            return list(keys), {}
        try:
            with self.lock:
                got = self.cache.claim(keys, self.lease_s)
        except (StorageError, sqlite3.Error) as exc:
            self.failed = str(exc)
            return list(keys), {}
        return got.claimed, got.held_by_others

    def warning(self) -> str | None:
        """What to tell when claims could not be taken, else None."""
        if self.failed is None:
            return None
        return (f"the answer store {self.cache.path} could not take claims ({self.failed}): records were sent "
                "unclaimed, so another process sharing the folder may have paid for some of them too")


@dataclasses.dataclass
class Keep:
    """One answered batch for the writer."""

    #: store key -> answer (None for a miss), aliases included
    entries: Mapping[str, Any]
    #: answers in it (aliases not counted)
    answers: int
    #: claims to release once stored
    release: Sequence[str] = ()
    #: the ledger entry to settle and its settle() arguments
    settle: tuple[int, dict] | None = None
    #: (endpoint, response headers) for the ledger's rate-limit readings
    limits: tuple[str, Any] | None = None
    #: what the answers are counted by: a batch handed over twice (after an interrupt) counts once
    token: Hashable = None


class AnswerWriter:
    """Stores answered batches from its own thread, in arrival order, coalescing what is queued (see module doc)."""

    def __init__(self, cache: Any, ledger: Any, *, ttl: float | None, capacity: int = WRITER_CAPACITY,
                 lock: threading.Lock | None = None):
        self.cache, self.ledger, self.ttl = cache, ledger, ttl
        #: held while writing the store: shared with :class:`Claims`, so a claim waits for a write here, in
        #: this process, instead of in SQLite's busy handler (which sleeps a millisecond or more each time)
        self.lock = lock if lock is not None else threading.Lock()
        self.saved = 0
        self.error: StorageError | None = None
        self._counted: set[Hashable] = set()
        self._queue: queue.Queue[Keep | None] = queue.Queue(max(1, capacity))
        self._thread = threading.Thread(target=self._loop, name="apollo-store", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"AnswerWriter(saved={self.saved}, error={self.error!r})"

    def put(self, item: Keep) -> None:
        """Queue a batch (waits while the writer is ``capacity`` batches behind)."""
        self._queue.put(item)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Store everything queued, then stop the thread (a second Ctrl-C stops waiting for it)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while items[-1] is not None:
                    items.append(self._queue.get_nowait())
            batch = [item for item in items if item is not None]
            if batch:
                self._write(batch)
            if items[-1] is None:
                return

    def _write(self, batch: list[Keep]) -> None:
        """Store the answers and release the claims of ``batch`` in one transaction, then settle the ledger in one."""
        entries: dict[str, Any] = {}
        for item in batch:
            entries.update(item.entries)
        release = [key for item in batch for key in item.release]
        with self.lock:
            if self.error is None and entries:
                try:
                    self.cache.set_many(entries, ttl=self.ttl, release=release)
                    self.saved += sum(item.answers for item in batch if self._first(item))
                    release = []
                except StorageError as exc:
                    self.error = exc
            with contextlib.suppress(StorageError, sqlite3.Error):  # a lease left behind only expires later
                if release:
                    self.cache.release(release)
        if self.ledger is not None:
            self._settle(batch)

    def _first(self, item: Keep) -> bool:
        """Whether this is the first time ``item``'s answers are stored (by its token)."""
        if item.token is None:
            return True
        if item.token in self._counted:
            return False
        self._counted.add(item.token)
        return True

    def _settle(self, batch: list[Keep]) -> None:
        """Settle the batch's ledger entries in one transaction; note each endpoint's latest rate-limit reading."""
        latest = {item.limits[0]: item.limits[1] for item in batch if item.limits is not None}
        try:
            for endpoint, headers in latest.items():
                self.ledger.note_limits(endpoint, parse_rate_headers(headers))
            self.ledger.settle_many([item.settle for item in batch if item.settle is not None])
        except StorageError as exc:
            self.error = self.error or exc
