"""Hostile-server faults: answers that are valid HTTP but built to break a client.

Each fault is a string for :meth:`Sandbox.inject`, optionally with an argument
after ``=`` (``"credits_consumed=-100"``, ``"trickle=0.3"``). Apart from
``retry_after=...`` (a 429 that never reaches the endpoint), they all let the
request run for real - written, counted, charged - and then spoil the answer,
because that is what hurts: the credits are gone and the client cannot read
what it paid for.
"""

from __future__ import annotations

#: fault name -> default argument (None: the fault takes no argument)
HOSTILE_FAULTS: dict[str, object] = {
    "credits_consumed": None,  # argument required: a number ("-100", "0", "nan", "1e300")
    "retry_after": None,  # argument required: the raw Retry-After value, or "past" for an HTTP date in the past
    "deep_json": 200_000,  # nesting depth
    "bad_gzip": None,
    "trickle": 0.3,  # seconds between bytes (on the sandbox's clock)
    "oversized": 32 * 1024 * 1024,  # bytes
    "echo_key": None,
    "wrong_shape": None,
    "formulas": None,
    "other_people": None,
    "one_person": None,
    "truncate": None,
    "reset": None,
    "close": None,
    "overcharge": None,
}
NEEDS_ARGUMENT = ("credits_consumed", "retry_after")
#: Keys whose value is one record, and keys whose value is a list of records, in Apollo answers.
RECORD_KEYS = ("person", "organization", "contact", "account")
LIST_KEYS = ("matches", "organizations", "people", "contacts", "accounts", "created_contacts", "existing_contacts",
             "created_accounts", "existing_accounts")
_CHUNK = 1 << 20


def split_fault(spec: str) -> tuple[str, str | None]:
    """``"trickle=0.3"`` -> ``("trickle", "0.3")``; ``"500"`` -> ``("500", None)``."""
    name, sep, arg = spec.partition("=")
    return name, (arg if sep else None)


def check_hostile(name: str, arg: str | None) -> None:
    """Raise ValueError when a hostile fault's argument is missing or unusable."""
    if name in NEEDS_ARGUMENT and arg is None:
        raise ValueError(f"fault {name!r} needs an argument, e.g. {name}=0")
    if arg is None or name == "retry_after":
        return
    if HOSTILE_FAULTS.get(name, "no-arg") is None and name not in NEEDS_ARGUMENT:
        raise ValueError(f"fault {name!r} takes no argument")
    float(arg)  # raises ValueError when not a number


def argument(name: str, arg: str | None) -> float:
    """The fault's numeric argument, or its default."""
    return float(arg) if arg is not None else float(HOSTILE_FAULTS[name])  # type: ignore[arg-type]


def override_credits(body, value: float):
    """Report ``value`` as ``credits_consumed`` (the true charge is unchanged)."""
    if isinstance(body, dict):
        body = dict(body)
        body["credits_consumed"] = value
    return body


def _records(body: dict):
    for key in RECORD_KEYS:
        if isinstance(body.get(key), dict):
            yield body, key
    for key in LIST_KEYS:
        items = body.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    yield items, i


def echo_key(body, key: str):
    """A success body that carries the caller's API key: in every record's ``name`` and in an ``echo`` object."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for holder, slot in list(_records(body)):
        record = dict(holder[slot])
        record["name"] = f"{record.get('name') or ''} {key}".strip()
        holder[slot] = record
    body["echo"] = {"x-api-key": key}
    return body


def wrong_shape(body):
    """Well-formed JSON of the wrong shape: a string wherever a record should be."""
    if not isinstance(body, dict):
        return "unexpected"
    body = dict(body)
    for key in RECORD_KEYS:
        if isinstance(body.get(key), dict):
            body[key] = f"{key} {body[key].get('id')}"
    for key in LIST_KEYS:
        if isinstance(body.get(key), list):
            body[key] = [f"{key} {x.get('id')}" if isinstance(x, dict) else x for x in body[key]]
    return body


def formulas(body):
    """Spreadsheet formulas in every record: its ``title`` becomes ``=HYPERLINK(...)``, its ``name`` ``@<name>``."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for holder, slot in list(_records(body)):
        record = dict(holder[slot])
        record["title"] = '=HYPERLINK("http://evil.example","click")'
        record["name"] = f"@{record.get('name') or ''}"
        holder[slot] = record
    return body


def other_people(body):
    """``matches`` answered with other people's records: each match moves one place on (the last to the first)."""
    if not isinstance(body, dict) or not isinstance(body.get("matches"), list) or len(body["matches"]) < 2:
        return body
    matches = body["matches"]
    return {**body, "matches": matches[-1:] + matches[:-1]}


def one_person(body):
    """One record for every input: each non-null entry of ``matches`` (or ``organizations``) replaced by the
    first one found."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    for key in ("matches", "organizations"):
        if isinstance(body.get(key), list):
            first = next((m for m in body[key] if isinstance(m, dict)), None)
            body[key] = [first if m is not None else None for m in body[key]]
    return body


def deep_json(depth: int) -> bytes:
    """``{"matches": [[[...]]]}`` nested ``depth`` deep: valid JSON that overflows a recursive parser."""
    return b'{"matches": ' + b"[" * depth + b"]" * depth + b"}"


def bad_gzip() -> bytes:
    """A gzip magic number followed by garbage: undecodable with ``Content-Encoding: gzip``."""
    return b"\x1f\x8b\x08\x00" + b"this is not a gzip stream" * 4


def oversized(payload: bytes, size: int) -> tuple[list, int]:
    """The JSON object ``payload`` padded (a ``padding`` string) to at least ``size`` bytes, as chunks."""
    head = payload.rstrip()
    if head.endswith(b"}") and head != b"{}":
        prefix = head[:-1] + b', "padding": "'
    elif head == b"{}":
        prefix = b'{"padding": "'
    else:
        prefix = b'{"data": ' + head + b', "padding": "'
    pad = max(0, size - len(prefix) - 2)
    chunks = [prefix] + [b"x" * min(_CHUNK, pad - i) for i in range(0, pad, _CHUNK)] + [b'"}']
    return chunks, len(prefix) + pad + 2


class Drop(bytes):
    """An empty body chunk telling the loopback server to drop the connection there: ``how`` is "close" (a
    FIN) or "reset" (an RST). In process it is just an empty chunk, so the body ends short."""

    how: str

    @classmethod
    def of(cls, how: str) -> Drop:
        chunk = cls()
        chunk.how = how
        return chunk


def lost_answer(name: str, payload: bytes) -> list[bytes]:
    """The chunks of an answer lost on the way: "truncate" sends half the body (its Content-Length says all),
    "reset" half then an RST, "close" nothing (the connection closes before the status line)."""
    half = payload[: len(payload) // 2]
    if name == "close":
        return [Drop.of("close")]
    return [half, Drop.of("reset")] if name == "reset" else [half]


def trickle(payload: bytes, interval: float, sleep):
    """Yield ``payload`` one byte at a time, sleeping ``interval`` (on the sandbox's clock) before each byte."""
    for i in range(len(payload)):
        sleep(interval)
        yield payload[i : i + 1]


def retry_after_value(raw: str, now: float) -> str:
    """The Retry-After header of a ``retry_after=...`` fault or override; ``past`` is an HTTP date an hour ago."""
    import email.utils

    if raw == "past":
        return email.utils.formatdate(now - 3600, usegmt=True)
    return raw

