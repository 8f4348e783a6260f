"""What the send path keeps off the dispatching thread: claims across processes and the answer writer.

* :class:`Claims`: before a batch leaves, its records are claimed in the answer store for as long as a request
  can take (:func:`lease_seconds`), so another process sharing the folder waits for the answer instead of paying
  for it again. A store that cannot take claims (SQLite locking on a network filesystem, a read-only folder) gets
  the batch sent unclaimed, and the run says so once: two processes may then pay twice.
* :class:`AnswerWriter`: each worker stores its answers and releases their claims before it takes another batch
  (answers arriving together go in one transaction: a group commit), so a kill -9 costs at most the batches in
  flight; the writer's thread settles the ledger and releases the claims of batches without answers, coalescing
  what is queued, so the thread handing out requests never waits on the database. A storage failure is kept
  (:attr:`AnswerWriter.error`): the run stops sending and the answers stay in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from apollo_frames.client.flat import Stamp
from apollo_frames.client.ratelimit import parse_rate_headers
from apollo_frames.client.retry import MAX_SERVER_RETRY_AFTER
from apollo_frames.client.storage import reason_of, storage_error
from apollo_frames.client.store import Entry
from apollo_frames.core.errors import StorageError

#: a claim is taken up to this many requests' time before its batch leaves (it waits behind the batches queued)
LEASE_REQUESTS = 3
#: added to the time those requests can take to make a lease
LEASE_MARGIN_S = 30.0
#: batches the writer's thread may be behind before a worker waits for it
WRITER_CAPACITY = 64
#: seconds between two looks at whether the writer still runs, while a worker waits for it
POLL_S = 0.5
#: answers stored between two checkpoints of the store's write-ahead log (on the writer's thread)
CHECKPOINT_EVERY = 900


def lease_seconds(settings: Any) -> float:
    """How long a claim lasts: :data:`LEASE_REQUESTS` times the longest one request can take (every attempt timing
    out, the longest back-off between them, the rate-limit waits the client allows), plus a margin. A long lease
    costs nothing while its process runs: a killed process's leases are free at once (its owner file is unlocked)."""
    retries = int(getattr(settings, "max_retries", 3))
    request = (float(getattr(settings, "timeout", 30.0)) * (retries + 1) + retries * MAX_SERVER_RETRY_AFTER
               + float(getattr(settings, "max_rate_limit_wait", 0.0)))
    return LEASE_REQUESTS * request + LEASE_MARGIN_S


@dataclasses.dataclass
class Claims:
    """Leases on the records a run sends, in the client's answer store (see the module docstring)."""

    cache: Any
    lease_s: float
    #: the run's lease owner (``AnswerStore.begin_run``), or None for the store's own
    owner: str | None = None
    #: why claims could not be taken (the first failure), or None
    failed: str | None = None

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
        """(keys now ours, {key: lease} held by another live process); all ours when claims cannot be taken."""
        if self.failed is None:
            try:
                return self.cache.claim(keys, self.lease_s, owner=self.owner)
            except (StorageError, sqlite3.Error) as exc:
                self.failed = str(exc)
        return list(keys), {}

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
    #: its answers were written (or could not be), its claims released: what is left is the ledger's part
    stored: bool = False
    #: store key -> {person id: answer} of the identifiers its answers prove (:func:`person_id`), beside ``entries``:
    #: each stored under its key in the same transaction unless that is a conflict (see :meth:`AnswerWriter.store`)
    aliases: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def person_id(answer: Any) -> str:
    """An answer's Apollo id (its text), to tell two answers of one person from two people's."""
    return str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") else f"object {id(answer)}"


class AnswerWriter:
    """Stores answered batches (and releases their claims) from the workers' threads in group commits
    (:meth:`store`); settles the ledger from its own thread, coalescing what is queued (see module doc)."""

    def __init__(self, cache: Any, ledger: Any, *, ttl: float | None, capacity: int = WRITER_CAPACITY,
                 owner: str | None = None):
        self.cache, self.ledger, self.ttl = cache, ledger, ttl
        self.owner = owner  # whose claims it releases (see ``Claims.owner``)
        self._counting = threading.Lock()  # for ``saved``, ``error`` and the list below: the store serialises writes
        self.saved = 0
        #: identifiers an answer proved that another person's answer holds (kept out of the store)
        self.conflicts = 0
        self._unchecked = 0  # answers stored since the last checkpoint
        self._waiting: list[Keep] = []  # answers given to :meth:`store`, not written yet
        self._group = threading.Lock()  # held by the worker writing what is waiting
        #: the first failure to write the store or the ledger: the run stops sending
        self.error: StorageError | None = None
        #: the store itself failed: answers are no longer written (a ledger failure alone still stores them)
        self._store_broken = False
        self._queue: queue.Queue[Keep | None] = queue.Queue(max(1, capacity))
        self._closing = threading.Lock()  # for ``_closed``: nothing is queued after the end mark
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="apollo-store", daemon=True)
        self._thread.start()

    def store(self, item: Keep) -> None:
        """Make ``item``'s answers survive a kill -9 now, from this thread (a group commit: the worker that gets to
        write takes every answer waiting, the others find theirs written); queue it for the writer's thread. Each
        answer also goes under the identifiers it proves (``item.aliases``, read and written in one transaction)
        unless another person's answer holds that key or two answers claim it: a conflict, kept out and counted
        (:attr:`conflicts`). A row's own key keeps its own answer; a stored miss under an alias is replaced."""
        with self._counting:
            self._waiting.append(item)
        with self._group:
            if not item.stored:
                with self._counting:
                    batch, self._waiting = self._waiting, []
                self._store(batch)
        self.put(item)  # its ledger part

    def put(self, item: Keep) -> None:
        """Queue a batch (waits while the writer is ``capacity`` batches behind). Once the writer is closing
        (a worker that answered after an interrupt stopped waiting for it), the batch is handled here."""
        while True:
            with self._closing:  # close() cannot put its end mark between this look and this put
                if not self._closed:
                    with contextlib.suppress(queue.Full):
                        self._queue.put(item, timeout=POLL_S)
                        return
            if self._closed or not self._thread.is_alive():
                self._handle([item])  # what the writer's thread would have done: it has stopped
                return

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Store everything queued, then stop the thread (a second Ctrl-C stops waiting for it)."""
        with self._closing:
            self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        """Handle the next item with what else is queued (one transaction), until the end mark."""
        while True:
            items = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while items[-1] is not None and len(items) < self._queue.maxsize:
                    items.append(self._queue.get_nowait())
            self._handle([item for item in items if item is not None])
            if items[-1] is None:
                return

    def _handle(self, batch: list[Keep]) -> None:
        """Store what is not stored yet, settle the ledger, checkpoint the store once enough answers went in (not
        at the end: the flattened copies saved next, or closing the store, do; a log not checkpointed is as
        durable). Any failure is kept: the writer's thread must outlive it (workers wait on its queue)."""
        try:
            self._store([item for item in batch if not item.stored])
            if self.ledger is not None and batch:
                self._settle(batch)
        except Exception as exc:
            self._failed(exc, "writing the answer store", self.cache.path)
        self._unchecked += sum(item.answers for item in batch)
        if self._unchecked >= CHECKPOINT_EVERY:
            self._unchecked = 0
            self.cache.checkpoint()  # here, off the workers' path (see ``AnswerStore.checkpoint``)

    def _failed(self, exc: BaseException, what: str, path: Any) -> None:
        """Keep the first failure as a :class:`StorageError` naming ``path`` (the run stops sending)."""
        if not isinstance(exc, StorageError):
            exc = storage_error(exc, path, what, reason_of(exc) or "failed")
        with self._counting:
            self.error = self.error or exc

    def _store(self, batch: list[Keep]) -> None:
        """Store the answers of ``batch`` and release its claims, in one transaction."""
        now = self.cache.clock.time()
        stamp = (now, None if self.ttl is None else now + self.ttl)
        entries: dict[str, Entry] = {key: (key, data, *stamp) for item in batch for key, data in item.entries.items()}
        keys = [key for item in batch for key in item.release]
        proved: dict[str, Entry] | None = None
        if not self._store_broken and (entries or any(item.aliases for item in batch)):
            try:
                with self.cache.transaction():  # the alias keys read in the transaction that writes them
                    proved = self._aliases(batch, entries, stamp)
                    self.cache.write_entries([*entries.values(), *proved.values()], release=keys, owner=self.owner)
                with self._counting:
                    self.saved += sum(item.answers for item in batch)
                keys = []
            except (StorageError, sqlite3.Error, OSError) as exc:  # e.g. "database is locked" past the timeout
                self._store_broken = True
                self._failed(exc, "writing the answer store", self.cache.path)
        if self._store_broken:  # paid for: kept in memory, written by the next read of this store
            if proved is None:
                with contextlib.suppress(StorageError, sqlite3.Error, OSError):  # (unreadable: aliases not kept)
                    proved = self._aliases(batch, entries, stamp)
            self.cache.unstored.update({**entries, **(proved or {})})
        with contextlib.suppress(StorageError, sqlite3.Error):  # a lease left behind only expires later
            if keys:
                self.cache.release(keys, owner=self.owner)
        for item in batch:
            item.stored = True

    def _aliases(self, batch: list[Keep], entries: Mapping[str, Any], stamp: Stamp) -> dict[str, Entry]:
        """The alias entries of ``batch`` to write beside ``entries`` (see :meth:`store`), batch by batch in order,
        each checked against what the store holds and what the batches before it proved."""
        # (a row's own identity is left out: its own answer stands)
        aliases = [(key, by_person) for item in batch for key, by_person in item.aliases.items() if key not in entries]
        if not aliases:
            return {}
        held = self.cache.get_many([key for key, _ in aliases])  # (with the answers a full disk left in memory)
        proved: dict[str, Entry] = {}
        conflicts = 0
        for key, by_person in aliases:
            other = proved[key][1] if key in proved else held.get(key)
            if len(by_person) == 1 and (other is None or person_id(other) in by_person):
                proved[key] = (key, next(iter(by_person.values())), *stamp)
            else:
                conflicts += 1
        with self._counting:
            self.conflicts += conflicts
        return proved

    def _settle(self, batch: list[Keep]) -> None:
        """Settle the batch's ledger entries in one transaction; note each endpoint's latest rate-limit reading."""
        latest = {item.limits[0]: item.limits[1] for item in batch if item.limits is not None}
        try:
            self.ledger.settle_many([item.settle for item in batch if item.settle is not None])
        except (StorageError, sqlite3.Error, OSError) as exc:
            self._failed(exc, "writing the credit ledger", self.ledger.path)
        with contextlib.suppress(Exception):  # readings only: the next answer has more
            for endpoint, headers in latest.items():
                self.ledger.note_limits(endpoint, parse_rate_headers(headers))
