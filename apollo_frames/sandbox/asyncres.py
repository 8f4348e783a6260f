"""Asynchronous enrichment results (phones, waterfall) and ``GET webhook_result/{request_id}``.

A people enrichment with ``reveal_phone_number`` or a ``run_waterfall_*`` flag,
and either ``webhook_url`` or ``poll_only``, opens a job under a ``request_id``
(a signed 64-bit integer, negative about half the time). The result is
*produced* ``delay`` seconds later on the sandbox's clock; it can then be
polled for ``ttl`` seconds (30 days), after which it is expired.
"""

from __future__ import annotations

import math
import random
import re
import threading
from dataclasses import dataclass

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
THIRTY_DAYS = 30 * 86400.0


@dataclass
class AsyncJob:
    """One asynchronous request: who asked, when it is ready, what it returns and what it charges then."""

    request_id: int
    key: str
    path: str
    created: float  # monotonic seconds on the sandbox's clock
    ready_at: float
    people: list[dict]
    credits_when_produced: float  # direct-dial credits charged when the result is produced (poll_only)
    webhook_url: str | None = None
    produced: bool = False

    def payload(self) -> dict:
        """The documented envelope (Apollo's OpenAPI reference, Poll Webhook Result samples "Phone" and
        "Waterfall"): the request's metadata around ``webhook_result``, each person with its own status."""
        people = [{"id": p["id"], "status": "success" if p.get("phone_numbers") or p.get("emails") else "not_found",
                   **{k: v for k, v in p.items() if k != "id"}} for p in self.people]
        found = sum(1 for p in people if p["status"] == "success")
        return {
            "request_id": str(self.request_id),
            "webhook_status": "delivered" if self.webhook_url else "not_applicable",
            "request_type": "waterfall" if any("emails" in p for p in self.people) else "phone",
            "last_dispatched_at": None,
            "failure_reason": None,
            "webhook_result": {
                "status": "success",
                "total_requested_enrichments": len(people),
                "unique_enriched_records": found,
                "missing_records": len(people) - found,
                "credits_consumed": self.credits_when_produced,
                "people": people,
            },
        }


class AsyncResults:
    """The jobs of one sandbox. ``settle(now)`` produces every job that is due and returns the new charges."""

    def __init__(self, seed: int, delay: float, ttl: float = THIRTY_DAYS):
        self.delay = delay
        self.ttl = ttl
        self.jobs: dict[int, AsyncJob] = {}
        self._rng = random.Random(seed * 7_368_787 + 16)
        self._lock = threading.Lock()

    def open(self, key: str, path: str, now: float, people: list[dict], credits_when_produced: float,
             webhook_url: str | None) -> AsyncJob:
        with self._lock:
            while True:
                request_id = self._rng.getrandbits(64) + INT64_MIN
                if request_id not in self.jobs:
                    break
            job = AsyncJob(request_id, key, path, now, now + self.delay, people, credits_when_produced, webhook_url)
            self.jobs[request_id] = job
            return job

    def settle(self, now: float) -> list[AsyncJob]:
        """Mark every due job produced; return those just produced (their charges are due now)."""
        with self._lock:
            due = [j for j in self.jobs.values() if not j.produced and j.ready_at <= now]
            for job in due:
                job.produced = True
            return due

    def answer(self, raw_id: str, now: float) -> tuple[int, dict]:
        """The (status, body) of ``GET webhook_result/{raw_id}`` at ``now`` (call ``settle`` first)."""
        if not re.fullmatch(r"-?\d{1,19}", raw_id or "") or not INT64_MIN <= int(raw_id) <= INT64_MAX:
            return 400, {"error_code": "invalid_request_id", "error": "request_id must be a signed 64-bit integer"}
        with self._lock:
            job = self.jobs.get(int(raw_id))
        if job is None:
            return 404, {"error_code": "request_id_unknown", "error": f"No result is known for request_id {raw_id}"}
        if now < job.ready_at:
            wait = max(1, math.ceil(job.ready_at - now))
            return 404, {"error_code": "result_pending", "retry_after_seconds": wait}
        if now >= job.ready_at + self.ttl:
            return 410, {"error_code": "request_id_expired",
                         "error": f"The result of request_id {raw_id} is older than 30 days and was deleted"}
        return 200, job.payload()
