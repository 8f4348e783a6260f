"""``result.apollo.match_report()``: how well a people enrichment matched.

Match rate by identifier kind (Apollo id, e-mail, hashed e-mail, LinkedIn,
name + domain, name + company), the most frequent reasons for ``no_match``
and ``invalid`` rows, and the counts of each match-quality flag
(:mod:`apollo_frames.ops.quality`); a bar chart with matplotlib when installed.
"""

from __future__ import annotations

import dataclasses
import html
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from apollo_frames.core.columns import Columns
from apollo_frames.core.errors import InputError
from apollo_frames.ops.people import prepare_people
from apollo_frames.ops.quality import (
    FLAG_COLUMN,
    FLAGS,
    KINDS,
    identifier_kind,
    is_blank,
)


def identifier_kinds(frame: pd.DataFrame, columns: Columns = None) -> list[str]:
    """The identifier kind of every row of ``frame``: its own columns (not those a run wrote) resolved as
    enrich_people resolves them."""
    own = [c for c in frame.columns if not (isinstance(c, str) and c.startswith(("person.", "org.", "apollo_")))]
    return [identifier_kind(r) for r in prepare_people(frame[own], columns).records]


@dataclasses.dataclass(repr=False)
class MatchReport:
    """How well a people result matched: rates by identifier kind, reasons for misses, flag counts."""

    rows: int
    #: identifier kind -> {"rows", "matched", "match_rate"}
    by_kind: dict[str, dict[str, float]]
    #: (reason, rows), most frequent first
    no_match_reasons: list[tuple[str, int]]
    invalid_reasons: list[tuple[str, int]]
    flags: dict[str, int]
    statuses: dict[str, int]

    def lines(self) -> list[tuple[str, str]]:
        out = [("rows", f"{self.rows:,}"), ("statuses", ", ".join(f"{k} {v:,}" for k, v in self.statuses.items()))]
        for kind, row in self.by_kind.items():
            out.append((f"match rate: {kind}", f"{row['match_rate']:.0%} of {int(row['rows']):,}"))
        out += [(f"flag: {k}", f"{v:,}") for k, v in self.flags.items()]
        out += [("no_match: " + r[:60], f"{n:,}") for r, n in self.no_match_reasons]
        out += [("invalid: " + r[:60], f"{n:,}") for r, n in self.invalid_reasons]
        return out

    def __repr__(self) -> str:
        lines = self.lines()
        width = max(len(a) for a, _ in lines)
        return "MatchReport\n" + "\n".join(f"  {a.ljust(width)}  {b}" for a, b in lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>"
            for a, b in self.lines()
        )
        return f"<table><caption style='text-align:left'><b>Match report</b></caption>{cells}</table>"

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of the match rate by identifier kind (needs matplotlib); returns the axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("MatchReport.plot needs matplotlib: pip install matplotlib") from exc
        kinds = list(self.by_kind)[::-1]  # strongest identifier on top
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(kinds), 1)))
        rates = [self.by_kind[k]["match_rate"] for k in kinds]
        bars = ax.barh(kinds, rates, color="#4c72b0")
        ax.bar_label(bars, [f"{r:.0%} of {self.by_kind[k]['rows']:,.0f}" for k, r in zip(kinds, rates, strict=True)],
                     padding=3)
        ax.set_xlim(0, 1.25)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}" if x <= 1 else "")
        ax.set_xlabel("rows matched, by the identifier each row was sent with")
        ax.set_title("Match rate by identifier kind")
        return ax


def _rates(status: list[str | None], kinds: list[str]) -> dict[str, dict[str, float]]:
    """Identifier kind -> rows sent (not invalid, skipped or failed), matched, match rate."""
    by_kind: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        picked = [
            s for s, k in zip(status, kinds, strict=True) if k == kind and s not in ("invalid", "skipped", "error")
        ]
        if picked:
            matched = sum(s in ("matched", "conflict") for s in picked)
            by_kind[kind] = {"rows": len(picked), "matched": matched, "match_rate": matched / len(picked)}
    return by_kind


def _texts(column: pd.Series) -> list[str | None]:
    return [None if is_blank(v) else str(v) for v in column.astype("object")]


def _top(values: Sequence[Any], n: int = 5) -> list[tuple[str, int]]:
    return Counter(str(v) for v in values if v is not None).most_common(n)


def match_report(frame: pd.DataFrame, *, columns: Columns = None) -> MatchReport:
    """Summarise an ``enrich_people`` result: match rate by identifier kind, top reasons, flag counts."""
    if "apollo_status" not in frame.columns:
        raise InputError("match_report needs an enrich_people result (no apollo_status column)")
    status = _texts(frame["apollo_status"])
    kinds = identifier_kinds(frame, columns)
    errors = _texts(frame["apollo_error"]) if "apollo_error" in frame.columns else [None] * len(frame)
    flags: Counter[str] = Counter()
    for text in _texts(frame[FLAG_COLUMN]) if FLAG_COLUMN in frame.columns else []:
        flags.update(f for f in (text or "").split(",") if f)
    return MatchReport(
        rows=len(frame),
        by_kind=_rates(status, kinds),
        no_match_reasons=_top(
            [e or f"nobody matched the {k}" for s, e, k in zip(status, errors, kinds, strict=True) if s == "no_match"]
        ),
        invalid_reasons=_top([e for s, e in zip(status, errors, strict=True) if s == "invalid"]),
        flags={f: flags.get(f, 0) for f in FLAGS},
        statuses=dict(Counter(str(s) for s in status).most_common()),
    )
