"""Progress bars: tqdm.auto when shown (a widget in notebooks), plain silent tqdm when not."""

from __future__ import annotations


def progress_bar(*, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "rec", enabled: bool = True):
    """A tqdm bar; when ``enabled`` is false nothing is imported that could warn or draw."""
    if not enabled:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, disable=True)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=True)
