"""Phone numbers and waterfall results by polling, without a webhook server.

Apollo returns mobile numbers (and its multi-vendor "waterfall" e-mails and
phones) asynchronously. An analyst in a notebook has no public webhook, so a
people run asking for them sends ``poll_only=true``: each bulk answer carries
a ``request_id`` (a signed 64-bit integer, possibly negative: kept as text),
and each matched row gets ``apollo_request_id`` and ``apollo_async_status``
(``pending``). The request id travels inside the stored answer, so
:func:`apollo_frames.ops.collect.collect` works from the frame (or the same rows in a later session)
until Apollo forgets the result after 30 days.

``collect`` polls ``GET webhook_result/{request_id}`` (0 credits) for each
pending request, in parallel within the client's concurrency, waiting on the
client's clock for the ``retry_after_seconds`` Apollo asks; reads the documented envelope
(``webhook_result: {credits_consumed, people: [{id, status, phone_numbers, ...}]}``, or the older flat
payload); merges the phones
(E.164 ``person.mobile_phone``, the whole list in ``person.phone_numbers``)
and waterfall e-mails into the rows (a person whose own ``status`` is ``not_found`` etc. gets that
status in ``apollo_async_status``); writes them into the stored answers (a
re-run returns them without paying) and keeps the payload under its request
id (a second collect of the same request sends nothing).

Credits: Apollo charges +8 per mobile when the result is produced. The run
counts every pending reveal at its worst (+8 per matched person) in its
credits, budget and ledger; ``collect`` then records the difference to the
payload's ``credits_consumed`` (a finite number >= 0, else the worst case is
kept), so the ledger ends exact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from apollo_frames.core.errors import APIStatusError
from apollo_frames.core.jsontext import loads
from apollo_frames.core.normalize import is_locked_email
from apollo_frames.engine.budget import credit_figure
from apollo_frames.engine.runner import Operation, Parsed
from apollo_frames.ops.quality import is_blank

RESULT_ENDPOINT = "webhook_result"
PHONE_CREDITS = 8
REQUEST_COLUMN, ASYNC_COLUMN = "apollo_request_id", "apollo_async_status"
ASYNC_COLUMNS = (REQUEST_COLUMN, ASYNC_COLUMN)
#: where the request id and status ride inside a stored answer
ASYNC_KEY = "apollo_async"
PENDING, DONE, FAILED, EXPIRED = "pending", "done", "failed", "expired"
WATERFALL_FLAGS = ("run_waterfall_email", "run_waterfall_phone")
INT64 = (-(2**63), 2**63 - 1)


def is_async(options: dict) -> bool:
    """Whether a people run with ``options`` asks for asynchronous results (phones, waterfall)."""
    return bool(options.get("reveal_phone_number") or any(options.get(f) for f in WATERFALL_FLAGS))


def phone_worst(options: dict) -> float:
    """The +8 a person may cost when a mobile comes back (phone reveal or phone waterfall)."""
    return float(PHONE_CREDITS) if options.get("reveal_phone_number") or options.get("run_waterfall_phone") else 0.0


def request_id_text(value: Any) -> str | None:
    """A request id as text, if it is a signed 64-bit integer (never through a float: it would lose digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        number = int(value)
        return str(number) if INT64[0] <= number <= INT64[1] else None
    return None


def polling(op: Operation) -> Operation:
    """``op`` (people bulk_match) sending ``poll_only`` and keeping each answer's request id and pending charge."""

    def payload(records: list[dict], options: dict) -> dict:
        return dict(op.build_payload(records, options), poll_only=True)

    def parse(records: list[dict], data: Any) -> Parsed:
        parsed = Parsed.of(op.parse(records, data))
        results, credits = parsed.results, parsed.credits
        # with a waterfall flag Apollo answers a miss with a stub person (no id, match_confidence "none")
        results = [None if r is not None and is_blank(r.get("id")) else r for r in results]
        request_id = request_id_text(data.get("request_id")) if isinstance(data, dict) else None
        matched = [i for i, r in enumerate(results) if r is not None and not is_blank(r.get("id"))]
        reserved = PHONE_CREDITS * len(matched) if request_id else 0
        state = {"request_id": request_id, "status": PENDING if request_id else FAILED, "reserved": reserved}
        out = list(results)
        for i in matched:
            out[i] = dict(results[i] or {}, **{ASYNC_KEY: dict(state)})
        number = isinstance(credits, (int, float)) and not isinstance(credits, bool) and math.isfinite(credits)
        # a figure not believed counts as the worst case
        return dataclasses.replace(parsed, results=out, credits=credits + reserved if number else credits)

    return dataclasses.replace(op, build_payload=payload, parse=parse, flatten=_flatten(op.flatten))


def _flatten(flatten: Any) -> Any:
    """The op's flatten, with the request id and async status as two text columns before the person's."""

    def run(values: Sequence[dict | None]) -> pa.Table:
        states = [(v or {}).get(ASYNC_KEY) or {} for v in values]
        plain = [None if v is None else {k: x for k, x in v.items() if k != ASYNC_KEY} for v in values]
        table = flatten(plain)
        ids = pa.array([s.get("request_id") for s in states], type=pa.string())
        status = pa.array([s.get("status") for s in states], type=pa.string())
        return pa.Table.from_arrays([ids, status, *table.columns], names=[*ASYNC_COLUMNS, *table.column_names])

    return run


# -- reading a result ------------------------------------------------------------------------------


@dataclasses.dataclass
class Polled:
    """One request's answer: its state, the payload when done, what to wait when pending."""

    request_id: str
    state: str
    payload: dict | None = None
    retry_after: float = 0.0
    message: str | None = None


def poll(client: Any, request_id: str) -> Polled:
    """``GET webhook_result/{request_id}``: done (payload), pending (retry after), failed or expired."""
    try:
        data = client.get(f"{RESULT_ENDPOINT}/{request_id}").data
    except APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        code = exc.code
        if code == "result_pending":
            return Polled(request_id, PENDING, retry_after=retry_after(body.get("retry_after_seconds")))
        state = EXPIRED if exc.status_code == 410 or code == "request_id_expired" else FAILED
        return Polled(request_id, state, message=f"{code or exc.status_code}: {exc}")
    if not isinstance(data, dict):
        return Polled(request_id, FAILED, message="webhook_result answered something that is not an object")
    return Polled(request_id, DONE, payload=data)


def retry_after(value: Any) -> float:
    """Seconds to wait before polling again: Apollo's figure within 1 s .. 1 h (5 s when it is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 5.0
    return min(max(float(value), 1.0), 3600.0)


def result_of(payload: dict) -> dict:
    """The result in a ``webhook_result`` answer: the documented envelope's ``webhook_result`` object
    (``{request_id, webhook_status, request_type, ..., webhook_result: {credits_consumed, people, ...}}``),
    or the payload itself (the flat shape older third-party descriptions give)."""
    inner = payload.get("webhook_result")
    return inner if isinstance(inner, dict) else payload


def reported_credits(payload: dict) -> Any:
    """The payload's ``credits_consumed`` as sent (inside the envelope, else at the top)."""
    inner = result_of(payload)
    return inner["credits_consumed"] if "credits_consumed" in inner else payload.get("credits_consumed")


def payload_credits(payload: dict) -> float | None:
    """The payload's ``credits_consumed`` if it is a finite number >= 0 (else None: not to be believed)."""
    return credit_figure(reported_credits(payload))


def person_state(person: dict | None, state: str) -> str:
    """One person's async state: the request's, unless the payload's own ``status`` for that person says
    it got nothing (``not_found``, ``failed``, ...: kept as Apollo wrote it, lower case)."""
    status = person.get("status") if person is not None and state == DONE else None
    if not isinstance(status, str) or status.strip().lower() in ("", "success", "completed", DONE):
        return state
    return status.strip().lower()


#: ``dnc_status_cd`` values that mean "not on a do-not-call list" (with null). Apollo's documented values are not
#: exhaustive: any other value is do-not-call (fail safe) and is reported as it was written.
CLEAR_DNC = frozenset({"not_found", "not_on_dnc"})


def do_not_call(number: dict) -> bool:
    """Whether a phone number entry is flagged do-not-call (any ``dnc_status_cd`` but null, not_found, not_on_dnc)."""
    code = number.get("dnc_status_cd")
    return code is not None and str(code).strip().lower() not in CLEAR_DNC


def phones_of(person: dict, allow_dnc: bool = False) -> tuple[list[dict], str | None]:
    """(every phone number entry, kept whole with its ``dnc_status_cd``; the number for ``mobile_phone``): the first
    mobile, else the first number, among those not flagged do-not-call unless ``allow_dnc``."""
    numbers = [n for n in person.get("phone_numbers") or [] if isinstance(n, dict)]
    usable = [n for n in numbers if allow_dnc or not do_not_call(n)]
    mobile = next((n.get("sanitized_number") for n in usable
                   if n.get("type_cd") == "mobile" and isinstance(n.get("sanitized_number"), str)), None)
    if mobile is None:
        mobile = next((n.get("sanitized_number") for n in usable if isinstance(n.get("sanitized_number"), str)), None)
    return numbers, mobile


def withheld(person: dict, shown: Any = None) -> list[str]:
    """The ``dnc_status_cd`` of each number left out of ``mobile_phone`` as do-not-call (for the summary): each
    flagged number but ``shown``, the number the row shows (``allow_dnc=True`` may show one)."""
    return [str(n.get("dnc_status_cd")) for n in person.get("phone_numbers") or []
            if isinstance(n, dict) and isinstance(n.get("sanitized_number"), str) and do_not_call(n)
            and n.get("sanitized_number") != shown]


def mobile_phone(person: dict, allow_dnc: bool = False) -> str | None:
    """The ``mobile_phone`` a row shows of an answer: the answer's own, unless one of its ``phone_numbers`` flags
    that number do-not-call (then :func:`phones_of`'s pick: a clear number, or with ``allow_dnc`` any)."""
    numbers, picked = phones_of(person, allow_dnc)
    own = person.get("mobile_phone")
    if not numbers:
        return own if isinstance(own, str) else None
    flagged = {n.get("sanitized_number") for n in numbers if do_not_call(n)}
    return own if isinstance(own, str) and (allow_dnc or own not in flagged) else picked


#: the flattened columns the do-not-call rule reads and writes
NUMBERS_COLUMN, MOBILE_COLUMN = "person.phone_numbers", "person.mobile_phone"


def shown_phones(table: pa.Table, allow_dnc: bool = False) -> pa.Table:
    """Flattened people answers as a run shows them: ``person.mobile_phone`` by :func:`mobile_phone` wherever
    ``person.phone_numbers`` says something (stored copies are never changed: ``allow_dnc`` is the run's)."""
    if NUMBERS_COLUMN not in table.column_names or not table.column(NUMBERS_COLUMN).null_count < table.num_rows:
        return table
    numbers, mobiles = table.column(NUMBERS_COLUMN).to_pylist(), table.column(MOBILE_COLUMN).to_pylist()
    shown = list(mobiles)
    for i, text in enumerate(numbers):
        if text is not None:
            listed = listed_numbers(text)
            shown[i] = mobile_phone({"phone_numbers": listed, "mobile_phone": mobiles[i]}, allow_dnc)
    if shown == mobiles:
        return table
    at = table.column_names.index(MOBILE_COLUMN)
    return table.set_column(at, MOBILE_COLUMN, pa.array(shown, table.schema.field(MOBILE_COLUMN).type))


def listed_numbers(text: Any) -> list:
    """A row's ``person.phone_numbers`` (JSON text) as a list ([] when it is not one)."""
    try:
        value = loads(text) if isinstance(text, str) else text
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def emails_of(person: dict) -> list[str]:
    """The e-mails a result gives a person (``emails``, or the waterfall's ``waterfall.emails``), placeholders
    for e-mails not unlocked left out."""
    waterfall = person.get("waterfall")
    items = [*_listed(person.get("emails")), *_listed(waterfall.get("emails") if isinstance(waterfall, dict) else None)]
    out = []
    for item in items:
        email = item.get("email") if isinstance(item, dict) else item
        if isinstance(email, str) and "@" in email and not is_locked_email(email):
            out.append(email)
    return out


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else []


def merged(answer: dict, found: dict | None, state: str) -> dict:
    """A stored answer with what the payload says of that person, and the request's new state."""
    out = dict(answer)
    out[ASYNC_KEY] = dict(answer.get(ASYNC_KEY) or {}, status=person_state(found, state))
    if found is not None:
        numbers, mobile = phones_of(found)
        if numbers:
            out["phone_numbers"] = numbers
        if mobile:
            out["mobile_phone"] = mobile
        emails = emails_of(found)
        if emails:
            out["waterfall_emails"] = emails
            if is_blank(out.get("email")) or is_locked_email(out.get("email")):
                out["email"] = emails[0]
    return out


def people_of(payload: dict) -> list[dict]:
    people = result_of(payload).get("people")
    return [p for p in people if isinstance(p, dict)] if isinstance(people, list) else []
