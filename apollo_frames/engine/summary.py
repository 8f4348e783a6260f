"""Run summaries: one base for enrichment, search and push, with a readable repr and an HTML table for notebooks."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping
from typing import Any, TypeVar

from typing_extensions import Self

from apollo_frames.engine.progress import interactive

S = TypeVar("S", bound="Summary")


def _html_table(title: str, rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:right'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{cells}</table>"


def fmt_number(value: Any) -> str:
    """A value for people: thousands separators, no trailing zeros, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(repr=False)
class Summary:
    """What one call did. ``to_dict()`` is what ``result.attrs["apollo"]`` holds.

    Subclasses add their counters and write :meth:`line`; ``_hidden`` names
    the fields the HTML table leaves out, ``_not_summed`` the numbers that
    :meth:`merge` keeps instead of adding (a chunked run times itself). Both
    are plain class attributes, not annotated, so they are not dataclass
    fields (``__dataclass_fields__`` lists only what ``to_dict`` holds).
    """

    operation: str

    _hidden = frozenset({"operation"})
    _not_summed = frozenset({"elapsed_s"})

    def line(self) -> str:
        """One line for terminals and logs."""
        return self.operation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """The summary a ``to_dict()`` (or a file run's larger dict) describes; other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def merge(self, other: Summary | Mapping[str, Any]) -> Self:
        """Add another part's counters to these (a file run's chunks); returns self.

        Every number is summed except those in ``_not_summed``; text, flags
        and dicts keep this summary's values (a missing one takes the other's); lists are joined.
        """
        values = other.to_dict() if isinstance(other, Summary) else other
        for f in dataclasses.fields(self):
            mine: Any = getattr(self, f.name)
            theirs: Any = values.get(f.name)
            if f.name not in self._not_summed and _is_count(theirs):
                setattr(self, f.name, (mine if _is_count(mine) else 0) + theirs)
            elif mine is None and theirs is not None:  # e.g. the chunk that stopped gives the stopped_reason
                setattr(self, f.name, theirs)
            elif isinstance(mine, list) and isinstance(theirs, list):
                setattr(self, f.name, mine + theirs)
        return self

    def _title(self) -> str:
        return self.operation

    def _html_rows(self) -> list[tuple[str, str]]:
        return [(k, fmt_number(v)) for k, v in self.to_dict().items() if k not in self._hidden and v is not None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.line()})"

    def _repr_html_(self) -> str:
        return _html_table(self._title(), self._html_rows())


@dataclasses.dataclass(repr=False)
class RunSummary(Summary):
    """What one enrichment call did. ``to_dict()`` is what ``result.attrs["apollo"]`` holds."""

    rows: int = 0
    unique_inputs: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    credits_consumed: float = 0
    #: worst case of the attempts that got no usable answer but may have been charged (in the ledger as in doubt)
    credits_in_doubt: float = 0
    matched: int = 0
    no_match: int = 0
    invalid: int = 0
    errors: int = 0
    skipped: int = 0
    #: rows set aside, or answers dropped, for naming an identifier on the suppression list
    suppressed: int = 0
    #: identifiers an answer proved that another person's stored answer holds: not stored under them
    identifier_conflicts: int = 0
    elapsed_s: float = 0.0
    #: of which sending: from the first claim to the last answer stored (the rest plans, reads, builds the frame)
    send_s: float = 0.0
    run_id: str = ""
    skipped_credits_max: float = 0
    #: why the run stopped sending before the end (credit budget, rate limit, circuit breaker), if it did
    stopped_reason: str | None = None
    #: paid answers no row could be matched to (each: what identifies it, the rows it may belong to, its credits)
    unattributed: list[dict] = dataclasses.field(default_factory=list)
    #: answers rejected because they contradicted what their row asked for (another person): those rows are error
    contradicted: int = 0
    #: what most rows not done (error, skipped) failed on, e.g. "could not connect to api.apollo.io (ConnectError)"
    cause: str | None = None
    #: stored answers found bad (not ours, not JSON, another key or version): set aside and asked again
    quarantined: int = 0
    #: why answers could not be stored (disk full, read-only folder): they are in the rows only; nothing more was sent
    storage_error: str | None = None

    _hidden = frozenset({"operation", "skipped_credits_max", "unattributed"})

    def _html_rows(self) -> list[tuple[str, str]]:
        rows = super()._html_rows()
        if self.match_rate is not None:  # after the counts it is made of
            at = next((i for i, (k, _) in enumerate(rows) if k == "skipped"), len(rows) - 1) + 1
            rows.insert(at, ("match rate (of rows answered)", f"{self.match_rate:.0%}"))
        return rows

    @property
    def match_rate(self) -> float | None:
        """Matched rows among those answered (matched or no match); None when none was."""
        answered = self.matched + self.no_match
        return self.matched / answered if answered else None

    def line(self) -> str:
        cause = f" | {self.errors + self.skipped:,} rows not done: {self.cause}" if self.cause else ""
        rate = f" | match rate {self.match_rate:.0%} of rows answered" if self.match_rate is not None else ""
        return (
            f"{self.operation}: {self.rows:,} rows, {self.matched:,} matched, {self.no_match:,} no match, "
            f"{self.invalid:,} invalid, {self.errors:,} errors, {self.skipped:,} skipped{rate} | "
            f"{self.unique_inputs:,} unique, {self.cache_hits:,} from cache, {self.api_calls:,} requests, "
            f"{fmt_number(self.credits_consumed)} credits"
            + (f" (+ up to {fmt_number(self.credits_in_doubt)} in doubt)" if self.credits_in_doubt else "")
            + f", {self.elapsed_s:.1f} s{cause}"
            + (f" | {len(self.unattributed):,} paid answers unattributed" if self.unattributed else "")
            + (f" | {self.contradicted:,} answers rejected (another person)" if self.contradicted else "")
            + (f" | {self.quarantined:,} stored answers quarantined" if self.quarantined else "")
        )

    def merge(self, other: Summary | Mapping[str, Any]) -> Self:
        """As :meth:`Summary.merge`; the first part with a cause names it."""
        values = other.to_dict() if isinstance(other, Summary) else other
        self.cause = self.cause or values.get("cause")
        return super().merge(values)


def announce(summary: Summary) -> None:
    """In a notebook, end a run with its summary table (the command line prints its own line)."""
    if interactive():
        from IPython.display import display

        display(summary)
