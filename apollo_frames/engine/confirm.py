"""The gate that asks before a large spend (``confirm_over``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from apollo_frames.core.errors import BudgetExceededError
from apollo_frames.engine.progress import interactive as _watching


def _fmt_num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _how_to_proceed(credits_max: float, threshold: float) -> str:
    return (
        f"To go ahead, raise confirm_over to at least {math.ceil(credits_max)}, or set max_credits to cap "
        f"what this run may spend (rows past the cap are skipped; run again later and what is done comes "
        f"from the cache)."
    )


def confirm_spend(
    operation: str,
    credits_max: float,
    threshold: float | None,
    *,
    interactive: bool | None = None,
    ask: Callable[[str], str] | None = None,
) -> None:
    """Let a run go on only if its worst-case spend is within ``threshold`` or the user says yes.

    Nothing happens when ``threshold`` is None or ``credits_max <= threshold``.
    Otherwise an interactive session (a notebook kernel, or stdin a terminal) is asked
    to confirm and anything but yes raises ``BudgetExceededError``; a
    non-interactive run raises it at once. ``interactive`` and ``ask`` (default
    ``input``) exist for tests.
    """
    if threshold is None or credits_max <= threshold:
        return
    interactive = _watching(sys.stdin) if interactive is None else interactive
    spend = f"{operation} may spend up to {_fmt_num(credits_max)} credits, more than confirm_over={_fmt_num(threshold)}"
    if interactive:
        ask = ask or input
        try:
            answer = ask(f"{spend}. Continue? [y/N] ")
        except (EOFError, NotImplementedError, OSError, RuntimeError):
            # A kernel that cannot read input (e.g. a notebook run headless) is not interactive after all.
            answer = None
        if answer is not None:
            if str(answer).strip().lower() in ("y", "yes"):
                return
            raise BudgetExceededError(
                f"{spend}; not confirmed, nothing was sent. {_how_to_proceed(credits_max, threshold)}"
            )
    raise BudgetExceededError(
        f"{spend}, and this session cannot ask for confirmation (not interactive); nothing was sent. "
        + _how_to_proceed(credits_max, threshold)
    )
