"""Progress bars: tqdm.auto when shown (a widget in notebooks), plain silent tqdm when not."""

from __future__ import annotations

import sys


def interactive(stream=None) -> bool:
    """A person is watching: ``stream`` (default stderr) is a terminal, or this runs in a notebook kernel."""
    stream = sys.stderr if stream is None else stream
    return "ipykernel" in sys.modules or bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(*, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "rec", enabled: bool = True):
    """A tqdm bar; silent when not ``enabled`` or when nobody watches (CI, cron, a log file gets no redraws)."""
    if not (enabled and interactive()):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, disable=True)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=True)
