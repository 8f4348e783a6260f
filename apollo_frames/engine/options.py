"""One run's options, checked once where the public call receives them, then passed down as one value.

The public functions keep their keyword arguments (``max_credits=``, ``refresh=``...); the first thing each
does is ``RunOptions(...)`` with them, so a bad value fails before a file is read or a request sent, and the
engine, the file runs, Polars and Dask all read the same checked, normalised value (``max_age`` in seconds,
``max_credits`` a float). The client is not in it: it is a resource the call opens and closes
(``client_scope``), and Dask workers build their own, while this value travels to them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from apollo_frames.core.age import age_seconds
from apollo_frames.engine.budget import check_credits


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a run may spend and how it reports, checked when built (a bad value raises at once).

    ``max_credits``: the cap on what the call may spend (None: no cap); ``confirm_over``: ask before a call
    whose worst case is above it; ``refresh``: fetch again even what is stored; ``max_age``: a stored answer
    older than this (timedelta, seconds or text like ``"90d"``; kept as seconds) is fetched again;
    ``suppress``: identifiers this run must not send, keep or return (values, a file, a column);
    ``ledger``: where the spend is recorded (None: the client's); ``progress``: show a bar and a summary line.

    >>> import numpy as np
    >>> options = RunOptions(max_credits=np.int64(5), max_age="1d")
    >>> options.max_credits, options.max_age
    (5.0, 86400.0)
    >>> RunOptions(max_credits=float("nan"))
    Traceback (most recent call last):
    ...
    apollo_frames.core.errors.InputError: max_credits must be a finite number of credits >= 0 (or None), got nan
    """

    max_credits: float | None = None
    refresh: bool = False
    progress: bool = True
    confirm_over: float | None = None
    max_age: float | None = None
    suppress: Any = None
    ledger: Any = None

    def __post_init__(self) -> None:
        for name in ("refresh", "progress"):
            value = getattr(self, name)
            if not isinstance(value, bool):  # refresh="no" is truthy: it would spend credits by accident
                raise TypeError(f"{name} must be True or False, got {value!r}")
        object.__setattr__(self, "max_credits", check_credits("max_credits", self.max_credits))
        object.__setattr__(self, "confirm_over", check_credits("confirm_over", self.confirm_over))
        object.__setattr__(self, "max_age", age_seconds(self.max_age))

    def worst_allowed(self, worst: float) -> float:
        """What a call whose worst case is ``worst`` may spend at most under ``max_credits``."""
        return worst if self.max_credits is None else min(worst, self.max_credits)


#: the names a public call passes to :class:`RunOptions` (every enrichment takes them)
RUN_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))
