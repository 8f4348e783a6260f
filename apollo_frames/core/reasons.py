"""Why rows failed, grouped: the ``apollo_error`` reasons of a result, counted, with examples and a fix.

Pure functions over the status and reason columns (no I/O): the accessor's
``report()``, the run summary's one-line cause and the command line's final
lines all read them the same way.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

#: (text found in a reason, what the rows have in common, the fix) — first match wins
KNOWN_REASONS: tuple[tuple[str, str, str], ...] = (
    ("a name alone is not enough", "have a name but no company",
     "add a Company (or Company Domain) column, or map one with columns={'My column': 'organization_name'}"),
    ("no usable identifier", "have no email, LinkedIn URL, Apollo id or name with a company",
     "add an Email or LinkedIn column, or first and last name with a Company column"),
    ("no usable domain", "have no usable domain",
     "add a Website or Company Domain column, or fix the values that are not domains"),
    ("columns, got", "are ragged or footer lines of the file (kept, never sent)",
     "nothing to do for an export's footer lines; otherwise fix the quoting on the lines named"),
    ("failed to connect", "could not connect to {host}",
     "check the network connection (or APOLLO_BASE_URL), then run the same command again: what is done is cached"),
    ("timed out", "timed out waiting for {host}",
     "check the network connection, then run the same command again: what is done is cached"),
    ("circuit", "stopped sending: {host} kept failing",
     "check the network connection (or APOLLO_BASE_URL), then run the same command again: what is done is cached"),
    ("contradicts this row", "were answered with another person's record (nothing stored for them)",
     "run the same command again later: these rows are asked again; if it repeats, report the server's answers"),
    ("rate limit", "were stopped by a rate limit", "run the same command again after the window resets"),
    ("credit budget", "were not sent: the credit budget was reached", "run again with a larger max_credits"),
    ("job change:", "are people who moved: the input company is a past employer (flag job_change)",
     "nothing to fix in the match; the person.organization.* columns hold the new employer"),
)

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

    def line(self) -> str:
        shown = ", ".join(map(str, self.examples))
        fix = f": {self.fix}" if self.fix else ""
        return f"{self.count:,} {self.status} rows {self.reason}{fix} (e.g. {shown})"


def _known(reason: str) -> tuple[str, str] | None:
    lowered = reason.lower()
    return next(((what, fix) for needle, what, fix in KNOWN_REASONS if needle in lowered), None)


def _what(reason: str, host: str | None) -> tuple[str, str | None]:
    """(the group text, its fix) for one row's reason."""
    known = _known(reason)
    if known is None:
        return _LINE_PREFIX.sub("", reason).split("; ")[0], None
    what, fix = known
    kind = _CONNECT_KIND.search(reason)
    place = host or "the API"
    return what.format(host=place) + (f" ({kind.group(1)})" if kind else ""), fix


def group_reasons(statuses: Sequence[Any], reasons: Sequence[Any], labels: Iterable[Any] | None = None, *,
                  host: str | None = None, examples: int = 3) -> list[ReasonGroup]:
    """Rows with a reason grouped by (status, what failed), largest group first; ``labels`` name the rows."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for status, reason, label in zip(statuses, reasons, labels if labels is not None else range(len(statuses)),
                                     strict=True):
        if not isinstance(reason, str) or not reason:
            continue
        what, fix = _what(reason, host)
        group = groups.setdefault((str(status), what), {"count": 0, "examples": [], "fix": fix, "sample": reason})
        group["count"] += 1
        if len(group["examples"]) < examples:
            group["examples"].append(label)
    found = [
        ReasonGroup(status, what, g["count"], tuple(g["examples"]), g["fix"], g["sample"])
        for (status, what), g in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.count, g.status, g.reason))


def failure_cause(statuses: Sequence[Any], reasons: Sequence[Any], host: str | None = None) -> str:
    """What the rows not done (``error``, and ``skipped`` after them) failed on, in a few words; else "".

    Named when some rows are ``error`` and 80 % of the rows not done failed the same way (a dead host:
    the first batches ``error``, the rest ``skipped`` once the circuit breaker stops sending).
    """
    texts = [(s, _what(r, host)[0]) for s, r in zip(statuses, reasons, strict=True)
             if s in ("error", "skipped") and isinstance(r, str) and r]
    if not any(s == "error" for s, _ in texts):
        return ""
    counts = Counter(_KIND.sub("", text) for _, text in texts)
    top, n = counts.most_common(1)[0]
    if n < 0.8 * len(texts):
        return ""
    specific = [text for s, text in texts if s == "error" and _KIND.sub("", text) == top]
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
                            columns=["status", "reason", "count", "examples", "fix", "sample"])
