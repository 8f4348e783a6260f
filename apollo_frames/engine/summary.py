"""Small result objects with a readable repr and an HTML table for notebooks."""

from __future__ import annotations

import dataclasses
import html
from typing import Any

#: Every row of an enrichment result carries one of these.
ENRICH_STATUSES = ("matched", "no_match", "invalid", "error", "skipped")


def _html_table(title: str, rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:right'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{cells}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@dataclasses.dataclass
class RunSummary:
    """What one enrichment call did. ``to_dict()`` is what ``result.attrs["apollo"]`` holds."""

    operation: str
    rows: int = 0
    unique_inputs: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    credits_consumed: float = 0
    matched: int = 0
    no_match: int = 0
    invalid: int = 0
    errors: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    run_id: str = ""
    skipped_credits_max: float = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """One line for terminals and logs."""
        return (
            f"{self.operation}: {self.rows:,} rows, {self.matched:,} matched, {self.no_match:,} no match, "
            f"{self.invalid:,} invalid, {self.errors:,} errors, {self.skipped:,} skipped | "
            f"{self.unique_inputs:,} unique, {self.cache_hits:,} from cache, {self.api_calls:,} requests, "
            f"{_fmt(self.credits_consumed)} credits, {self.elapsed_s:.1f} s"
        )

    def __repr__(self) -> str:
        return f"RunSummary({self.line()})"

    def _repr_html_(self) -> str:
        fields = [f for f in dataclasses.fields(self) if f.name not in ("operation", "skipped_credits_max")]
        return _html_table(self.operation, [(f.name, _fmt(getattr(self, f.name))) for f in fields])


def announce(summary) -> None:
    """In a notebook, end a run with its summary table (the command line prints its own line)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(summary)
