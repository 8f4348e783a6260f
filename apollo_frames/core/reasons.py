"""Why rows failed, grouped: the ``apollo_error`` reasons of a result, counted, with examples and a fix.

Every reason the library writes carries a stable code (:data:`CODES`, written in the
``apollo_error_code`` column beside ``apollo_error``). Pure functions over the status,
reason and code columns (no I/O): the accessor's ``report()``, the run summary's one-line
cause and the command line's final lines group rows by code, never by matching the text,
so a message can be reworded without changing how its rows are grouped.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from apollo_frames.core.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ApolloServerError,
    AuthenticationError,
    CircuitOpenError,
    PermissionDeniedError,
    RateLimitError,
    RequestAbandoned,
    StorageError,
)


class Reason(str):
    """A row's reason: the text written in ``apollo_error``, carrying its stable code (``apollo_error_code``).

    The code travels with the text through the engine (a plain ``str`` everywhere it is read) and becomes
    its own column when the result is built; :func:`group_reasons` groups by it, so rewording a message
    never changes how rows are grouped. Made by :func:`reason` (from the code's template) or :func:`tagged`.
    """

    code: str

    def __new__(cls, code: str, text: str) -> Reason:
        if code not in CODES:
            raise KeyError(f"unknown reason code {code!r}; known: {sorted(CODES)}")
        made = super().__new__(cls, text)
        made.code = code
        return made

    def __reduce__(self) -> tuple[Any, ...]:  # (pickled to a Dask worker and back: the code stays)
        return Reason, (self.code, str.__str__(self))


@dataclasses.dataclass(frozen=True)
class Code:
    """What rows with one reason code have in common, the fix if one is known, and the text written for it."""

    #: what the rows have in common ("{host}": the API host)
    what: str
    fix: str | None = None
    #: the text written on a row (``str.format`` fields), for the codes written from a template
    template: str | None = None


_AGAIN = "run the same command again: what is done is cached"
#: every reason code the library writes in ``apollo_error_code``, and what report() says of it
CODES: dict[str, Code] = {
    "no_identifier": Code(
        "have no email, LinkedIn URL, Apollo id or name with a company",
        "add an Email or LinkedIn column, or first and last name with a Company column",
        "no usable identifier: need an email, hashed_email, linkedin_url or Apollo id, "
        "or a name (first+last or full) with a domain or organization_name{problems}"),
    "name_without_company": Code(
        "have a name but no company",
        "add a Company (or Company Domain) column, or map one with columns={'My column': 'organization_name'}",
        "no usable identifier: need an email, hashed_email, linkedin_url or Apollo id, "
        "or a name (first+last or full) with a domain or organization_name; "
        "a name alone is not enough: add a domain or organization_name{problems}"),
    "no_domain": Code("have no usable domain",
                      "add a Website or Company Domain column, or fix the values that are not domains",
                      "no usable domain: {why}"),
    "malformed_line": Code("are ragged or footer lines of the file (kept, never sent)",
                           "nothing to do for an export's footer lines; otherwise fix the quoting on the lines named"),
    "value_note": Code("had a value taken with a note (e.g. the first of several e-mails in a cell)"),
    "suppressed": Code("are on the suppression list (nothing sent, stored or returned for them)"),
    "connection_failed": Code("could not connect to {host}", f"check the network connection (or APOLLO_BASE_URL), "
                                                             f"then {_AGAIN}"),
    "timeout": Code("timed out waiting for {host}", f"check the network connection, then {_AGAIN}"),
    "circuit_open": Code("stopped sending: {host} kept failing",
                         f"check the network connection (or APOLLO_BASE_URL), then {_AGAIN}"),
    "rate_limited": Code("were stopped by a rate limit", "run the same command again after the window resets"),
    "budget_reached": Code("were not sent: the credit budget was reached", "run again with a larger max_credits"),
    "auth_refused": Code("were not sent: Apollo refused the API key or this endpoint",
                         "check APOLLO_API_KEY (a master key for this endpoint), then run again"),
    "request_refused": Code("were refused by Apollo as sent",
                            "see the message; retrying the same request will not help"),
    "server_error": Code("got a server error from {host}", "run the same command again later: what is done is cached"),
    "unusable_answer": Code("got an answer that could not be used (nothing stored for them)",
                            "run the same command again later: these rows are asked again"),
    "wrong_person": Code(
        "were answered with another person's record (nothing stored for them)",
        "run the same command again later: these rows are asked again; if it repeats, report the server's answers",
        "Apollo answered with a person that contradicts this row: {why}; not stored (the next run asks again)"),
    "conflict": Code("were matched to a record that contradicts the input (on_conflict='reject'; credit spent)",
                     "check the flagged fields; keep the row with on_conflict='flag'",
                     "the answer contradicts the input: {flags} (credit spent; answer kept)"),
    "job_change": Code("are people who moved: the input company is a past employer (flag job_change)",
                       "nothing to fix in the match; the person.organization.* columns hold the new employer",
                       "job change: the input company {former} is a past employer; {current}"),
    "held_elsewhere": Code(
        "were being fetched by another process when this run stopped waiting",
        "run the same command again: their answers come from the store",
        "another process was still fetching it when this run gave up waiting; run again to read its answer from "
        "the store"),
    "storage_failed": Code("were not sent: the answer store or the ledger could not be written",
                           "free disk space or fix the folder's permissions, then run again"),
    "interrupted": Code("were not sent: the run was interrupted", _AGAIN),
    "not_sent": Code("were not sent", _AGAIN, "not sent"),
    "api_error": Code("failed: Apollo's answer was an error", _AGAIN),
    # pushes
    "no_key": Code("have no key to push by (the e-mail, domain or id the push matches on)",
                   "add the key column, or map one with columns={'My column': 'email'}"),
    "invalid_value": Code("have a value Apollo would refuse (named in the message)", "fix the values named"),
    "duplicate": Code("repeat an earlier row's key (pushed once, by the first)"),
    "outcome_unknown": Code("may or may not have been created: the answer never arrived",
                            "run the same push again: it looks these rows up before sending them"),
    "record_not_found": Code("name an id Apollo does not have", "check the id column"),
    "update_queued": Code("were updated asynchronously by Apollo (a job; the note names it)"),
    "found_after_interrupt": Code("were found in Apollo after an interrupted push (not created again)"),
}


def reason(code: str, **fields: Any) -> Reason:
    """The reason ``code`` writes, from its template (``CODES[code].template``) and ``fields``."""
    template = CODES[code].template
    if template is None:
        raise KeyError(f"reason code {code!r} has no template; tag its text with tagged()")
    return Reason(code, template.format(**fields))


def tagged(code: str, text: str) -> Reason:
    """``text`` (a message built elsewhere, e.g. an error's) carrying ``code``."""
    return Reason(code, text)


def code_of(text: Any) -> str | None:
    """The code a reason carries (None: a plain text, or no reason)."""
    return getattr(text, "code", None)


def codes_of(reasons: Sequence[Any]) -> list[str | None]:
    """The code each reason carries (None for a plain text or no reason): the ``apollo_error_code`` column. A
    column without any reason (a cached re-run's) is one scan in C, no reason read."""
    if reasons.count(None) == len(reasons):
        return [None] * len(reasons)
    return [code_of(r) for r in reasons]


def joined(first: Any, second: Any) -> str:
    """Two reasons of one row as one text (``"a; b"``), carrying the first's code (else the second's)."""
    code = code_of(first) or code_of(second)
    text = f"{first}; {second}"
    return Reason(code, text) if code else text


def error_code(exc: BaseException | None) -> str:
    """The reason code of the rows a failed request leaves: by what the error is, never by its message."""
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (RateLimitError, "rate_limited"), (CircuitOpenError, "circuit_open"), (APITimeoutError, "timeout"),
        (RequestAbandoned, "interrupted"), (APIConnectionError, "connection_failed"),
        (AuthenticationError, "auth_refused"), (PermissionDeniedError, "auth_refused"),
        (ApolloServerError, "server_error"), (APIStatusError, "request_refused"),
        (APIResponseError, "unusable_answer"), (StorageError, "storage_failed"),
    )
    return next((code for kind, code in kinds if isinstance(exc, kind)), "api_error")


#: codes that count as one cause: a host that does not answer, then the breaker that stopped sending to it
_SAME = {"timeout": "connection_failed", "circuit_open": "connection_failed"}
_LINE_PREFIX = re.compile(r"^line \d+: ")
_CONNECT_KIND = re.compile(r"failed to connect \((\w+)\)")
_KIND = re.compile(r" \(\w+\)$")


@dataclasses.dataclass(frozen=True)
class ReasonGroup:
    """Rows with one status that failed for one reason: how many, a few row labels, the fix if one is known."""

    status: str
    reason: str
    count: int
    examples: tuple[Any, ...]
    fix: str | None = None
    #: one reason as written on a row (the group's text may be shorter)
    sample: str = ""
    #: the rows' reason code (``apollo_error_code``; None for a text without one)
    code: str | None = None

    def line(self) -> str:
        shown = ", ".join(map(str, self.examples))
        fix = f": {self.fix}" if self.fix else ""
        return f"{self.count:,} {self.status} rows {self.reason}{fix} (e.g. {shown})"


def _what(reason: str, code: str | None, host: str | None) -> tuple[str, str | None]:
    """(the group text, its fix) for one row's reason: its code's, else the text's first clause (without a
    leading "line N: ")."""
    known = CODES.get(code) if code else None
    if known is None:
        return _LINE_PREFIX.sub("", reason).split("; ")[0], None
    detail = _CONNECT_KIND.search(reason) if code == "connection_failed" else None  # what failed, when it says
    return known.what.format(host=host or "the API") + (f" ({detail.group(1)})" if detail else ""), known.fix


def group_reasons(statuses: Sequence[Any], reasons: Sequence[Any], labels: Iterable[Any] | None = None, *,
                  codes: Sequence[Any] | None = None, host: str | None = None, examples: int = 3) -> list[ReasonGroup]:
    """Rows with a reason grouped by (status, code), largest group first; ``labels`` name the rows, ``codes`` are
    their reason codes (default: those the reasons carry, :class:`Reason`)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    codes = codes if codes is not None else codes_of(reasons)
    for status, text, code, label in zip(statuses, reasons, codes,
                                         labels if labels is not None else range(len(statuses)), strict=True):
        if not isinstance(text, str) or not text:
            continue
        code = code if isinstance(code, str) and code else None
        what, fix = _what(text, code, host)
        group = groups.setdefault((str(status), what),
                                  {"count": 0, "examples": [], "fix": fix, "sample": str(text), "code": code})
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append(label)
    found = [
        ReasonGroup(status, what, g["count"], tuple(g["examples"]), g["fix"], g["sample"], g["code"])
        for (status, what), g in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.count, g.status, g.reason))


def failure_cause(statuses: Sequence[Any], reasons: Sequence[Any], host: str | None = None,
                  codes: Sequence[Any] | None = None) -> str:
    """What the rows not done (``error``, and ``skipped`` after them) failed on, in a few words; else "".

    Named when some rows are ``error`` and 80 % of the rows not done failed the same way (the same code: a dead
    host's first batches ``error``, the rest ``skipped`` once the circuit breaker stops sending). ``codes``: the
    reasons' codes when the caller has them (default: those the reasons carry).
    """
    if "error" not in statuses:  # most runs: one scan in C, no reason read
        return ""
    codes = codes if codes is not None else codes_of(reasons)
    texts = [(s, _what(r, c, host)[0], c) for s, r, c in zip(statuses, reasons, codes, strict=True)
             if s in ("error", "skipped") and isinstance(r, str) and r]
    if not any(s == "error" for s, _, _ in texts):
        return ""
    # one cause per row: its code (a dead host's codes as one), else its text without the error's kind
    causes = [(s, text, _SAME.get(c, c) or _KIND.sub("", text)) for s, text, c in texts]
    top, n = Counter(cause for _, _, cause in causes).most_common(1)[0]
    if n < 0.8 * len(texts):
        return ""
    specific = [text for s, text, cause in causes if s == "error" and cause == top]
    return specific[0] if specific else top  # an error row's text names what failed, e.g. "(ConnectError)"


@dataclasses.dataclass
class FailureReport:
    """``result.apollo.report()``: the statuses of a result and why rows failed, grouped, with fixes."""

    rows: int
    statuses: dict[str, int]
    groups: list[ReasonGroup]
    #: phone numbers left out of ``person.mobile_phone`` as do-not-call, by ``dnc_status_cd``
    do_not_call: dict[str, int] = dataclasses.field(default_factory=dict)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n:,} {status}" for status, n in self.statuses.items())
        out = [f"{self.rows:,} rows: {counts}" if counts else f"{self.rows:,} rows"]
        out += [f"  {g.line()}" for g in self.groups]
        if not self.groups:
            out.append("  no row has a reason to show")
        if self.do_not_call:
            codes = ", ".join(f"{code} {n:,}" for code, n in sorted(self.do_not_call.items()))
            out.append(f"  {sum(self.do_not_call.values()):,} phone numbers left out of person.mobile_phone as "
                       f"do-not-call ({codes}); allow_dnc=True shows them")
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    __str__ = __repr__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("rows", "status", "what", "fix", "examples"))
        body = "".join(
            "<tr>" + "".join(
                f"<td style='text-align:left'>{html.escape(str(v))}</td>"
                for v in (f"{g.count:,}", g.status, g.reason, g.fix or "", ", ".join(map(str, g.examples)))
            ) + "</tr>"
            for g in self.groups
        )
        title = html.escape(self.lines()[0])
        return f"<table><caption style='text-align:left'><b>{title}</b></caption><tr>{head}</tr>{body}</table>"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(g) for g in self.groups],
                            columns=["status", "code", "reason", "count", "examples", "fix", "sample"])
