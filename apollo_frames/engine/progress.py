"""Is someone watching? And progress bars: tqdm.auto when shown (a widget in notebooks), silent tqdm when not."""

from __future__ import annotations

import sys
from typing import Any


def _in_notebook() -> bool:
    """True inside a running IPython kernel (Jupyter); importing IPython only when ipykernel is loaded."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed file
        return False


def interactive(stream: Any = None) -> bool:
    """A person is watching: this runs in a notebook kernel, or ``stream`` is a terminal.

    The one test used everywhere: progress bars pass ``sys.stderr`` (where
    they draw), the spend confirmation ``sys.stdin`` (where it reads the
    answer), the end-of-run summary table nothing (only a notebook shows it;
    the command line prints its own line).
    """
    return _in_notebook() or _is_terminal(stream)


def progress_bar(
    *, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "rec", enabled: bool = True
):
    """A tqdm bar; silent when not ``enabled`` or when nobody watches (CI, cron, a log file gets no redraws)."""
    if not (enabled and interactive(sys.stderr)):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, disable=True)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=True)
