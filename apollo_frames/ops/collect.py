"""``result.apollo.collect()`` and ``apollo-frames collect``: fetch the phones a people run left pending.

See :mod:`apollo_frames.ops.phones` for how a run asks for them and what
the rows carry; this module polls, merges, stores and records.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.core.errors import InputError, warn
from apollo_frames.core.schema import json_text
from apollo_frames.ops.people import stored_answer_keys
from apollo_frames.ops.phones import (
    ASYNC_COLUMN,
    ASYNC_KEY,
    DONE,
    EXPIRED,
    FAILED,
    PENDING,
    REQUEST_COLUMN,
    RESULT_ENDPOINT,
    Polled,
    emails_of,
    merged,
    payload_credits,
    people_of,
    person_state,
    phones_of,
    poll,
    reported_credits,
    request_id_text,
    withheld,
)
from apollo_frames.ops.quality import is_blank


@dataclasses.dataclass
class CollectSummary:
    """What :func:`collect` did."""

    requests: int
    polled: int
    done: int
    pending: int
    failed: int
    expired: int
    phones: int
    credits: float
    #: numbers left out of ``person.mobile_phone`` as do-not-call (``allow_dnc=False``), by ``dnc_status_cd``
    do_not_call: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _pending_ids(frame: pd.DataFrame) -> list[str]:
    if ASYNC_COLUMN not in frame.columns or REQUEST_COLUMN not in frame.columns:
        raise InputError(
            "collect needs the result of enrichpeople_of(reveal_phone_number=True or waterfall=True) "
            f"(no {ASYNC_COLUMN} column)"
        )
    pending = frame[ASYNC_COLUMN].astype("object") == PENDING
    ids = [request_id_text(v) for v in frame.loc[pending, REQUEST_COLUMN].astype("object")]
    return sorted({i for i in ids if i})


def collect(frame: pd.DataFrame, *, wait: bool = True, max_wait: float = 600, client: ApolloClient | None = None,
            allow_dnc: bool = False) -> pd.DataFrame:
    """Poll every pending request of an ``enrich_people`` result and merge the phones (and waterfall e-mails).

    ``wait=True`` polls again after the ``retry_after_seconds`` Apollo asks for
    (on the client's clock) until every request is done or ``max_wait`` seconds
    have passed; ``wait=False`` collects what is ready and leaves the rest
    pending. Returns a new frame; ``attrs["apollo_collect"]`` says what happened.
    ``allow_dnc``: also put numbers flagged do-not-call in ``person.mobile_phone`` (by default they are left
    out; ``person.phone_numbers`` keeps every number with its ``dnc_status_cd``).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"collect needs a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not max_wait >= 0:
        raise InputError(f"max_wait must be a number of seconds >= 0, got {max_wait!r}")
    if not isinstance(allow_dnc, bool):  # "no" is truthy: it would show do-not-call numbers by accident
        raise TypeError(f"allow_dnc must be True or False, got {allow_dnc!r}")
    ids = _pending_ids(frame)
    with client_scope(client) as api:
        results, polled = _poll_all(api, ids, wait, float(max_wait))
        credits, phones = _settle(api, frame, results)
    out = apply(frame, results, allow_dnc)
    states = [p.state for p in results.values()]
    out.attrs["apollo_collect"] = CollectSummary(
        requests=len(ids), polled=polled, done=states.count(DONE), pending=states.count(PENDING),
        failed=states.count(FAILED), expired=states.count(EXPIRED), phones=phones, credits=credits,
        do_not_call={} if allow_dnc else _withheld(results),
    ).to_dict()
    return out


def _stored_key(api: Any, request_id: str) -> str:
    return api.cache.key(RESULT_ENDPOINT, {"request_id": request_id})


def _poll_all(api: Any, ids: list[str], wait: bool, max_wait: float) -> tuple[dict[str, Polled], int]:
    """Every request's last answer (a payload already stored is not asked again), and how many polls were sent."""
    stored = api.cache.get_many([_stored_key(api, i) for i in ids])
    results: dict[str, Polled] = {}
    for i in ids:
        kept = stored.get(_stored_key(api, i))
        if isinstance(kept, dict) and isinstance(kept.get("payload"), dict):
            results[i] = Polled(i, DONE, payload=kept["payload"])
    todo = [i for i in ids if i not in results]
    started, polls = api.clock.monotonic(), 0
    with ThreadPoolExecutor(max_workers=max(1, int(api.settings.concurrency))) as pool:
        while todo:
            answers = list(pool.map(lambda i: poll(api, i), todo))
            polls += len(answers)
            results.update((p.request_id, p) for p in answers)
            todo = [p.request_id for p in answers if p.state == PENDING]
            pause = min((p.retry_after for p in answers if p.state == PENDING), default=0.0)
            if not todo or not wait or api.clock.monotonic() - started + pause > max_wait:
                break
            api.clock.sleep(pause)
    return results, polls


def _settle(api: Any, frame: pd.DataFrame, results: dict[str, Polled]) -> tuple[float, int]:
    """Store what came back (payloads, merged answers) and record each new payload's credits; (credits, phones)."""
    fresh = {i: p for i, p in results.items() if p.state != PENDING}
    if not fresh:
        return 0.0, 0
    held = {k: v for k, v in api.cache.get_many(stored_answer_keys(frame, api)).items() if isinstance(v, dict)}
    entries = _answers(held, fresh)
    reserved: dict[str, float] = {}
    for answer in held.values():
        state = answer.get(ASYNC_KEY) or {}
        reserved[str(state.get("request_id"))] = float(state.get("reserved") or 0)
    recorded = api.cache.get_many([_stored_key(api, i) for i in fresh])
    credits, phones, run_id = 0.0, 0, uuid.uuid4().hex[:12]
    for i, p in fresh.items():
        if p.payload is None or isinstance(recorded.get(_stored_key(api, i)), dict):
            continue  # failed/expired, or a payload an earlier collect already recorded
        charged = payload_credits(p.payload)
        if charged is None:
            warn(f"webhook_result {i}: credits_consumed {reported_credits(p.payload)!r} is not a number >= 0; "
                 f"the ledger keeps the worst case ({reserved.get(i, 0.0):g} credits)")
            charged = reserved.get(i, 0.0)
        phones += sum(1 for person in people_of(p.payload) if phones_of(person)[1])
        credits += charged
        entries[_stored_key(api, i)] = {"payload": p.payload, "credits": charged}
        api.ledger.record(run_id=run_id, operation="enrich_people", endpoint=RESULT_ENDPOINT, records_sent=0,
                          records_matched=0, credits=charged - reserved.get(i, 0.0), status=200)
    api.cache.set_many(entries, ttl=api.settings.cache_ttl)
    return credits, phones


def _answers(held: dict[str, dict], results: dict[str, Polled]) -> dict[str, Any]:
    """The stored answers of the collected requests, merged with what their payloads say of each person."""
    out: dict[str, Any] = {}
    for key, answer in held.items():
        polled = results.get(str((answer.get(ASYNC_KEY) or {}).get("request_id")))
        if polled is None or polled.state == PENDING:
            continue
        people = {p.get("id"): p for p in people_of(polled.payload or {})}
        out[key] = merged(answer, people.get(answer.get("id")), polled.state)
    return out


def _withheld(results: dict[str, Polled]) -> dict[str, int]:
    """Numbers left out as do-not-call, counted by their ``dnc_status_cd``."""
    codes = [code for p in results.values() for person in people_of(p.payload or {}) for code in withheld(person)]
    return dict(Counter(codes))


def apply(frame: pd.DataFrame, results: dict[str, Polled], allow_dnc: bool = False) -> pd.DataFrame:
    """``frame`` with each collected row's phones, e-mail and async status filled in."""
    out = frame.copy()
    rid = out[REQUEST_COLUMN].astype("object")
    pid = out["person.id"].astype("object") if "person.id" in out.columns else pd.Series([None] * len(out))
    for request_id, polled in results.items():
        rows = (rid == request_id) & (out[ASYNC_COLUMN].astype("object") == PENDING)
        if polled.state == PENDING or not rows.any():
            continue
        out.loc[rows, ASYNC_COLUMN] = polled.state
        people = {p.get("id"): p for p in people_of(polled.payload or {})}
        for index in out.index[rows]:
            found = people.get(pid.loc[index])
            if found is not None:
                out.loc[index, ASYNC_COLUMN] = person_state(found, polled.state)
                _fill(out, index, found, allow_dnc)
    return out


def _fill(out: pd.DataFrame, index: Any, person: dict, allow_dnc: bool) -> None:
    numbers, mobile = phones_of(person, allow_dnc)
    if numbers and "person.phone_numbers" in out.columns:
        out.loc[index, "person.phone_numbers"] = json_text(numbers)
    if mobile and "person.mobile_phone" in out.columns:
        out.loc[index, "person.mobile_phone"] = mobile
    emails = emails_of(person)
    if emails and "person.email" in out.columns and is_blank(out.loc[index, "person.email"]):
        out.loc[index, "person.email"] = emails[0]


