"""How old an answer may be: ``max_age`` and ``retention`` as seconds (no I/O).

Accepted: a ``datetime.timedelta``, a number of seconds (int, float, numpy number; not bool), or text: a
number and a unit, ``"90d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` (also ``"90 days"``, ``"1.5h"``,
``"365D"``). Zero is allowed ("anything stored is too old"); negative, NaN, infinite or unreadable values
are an :class:`~apollo_frames.core.errors.InputError` naming the parameter.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from typing import Any

from apollo_frames.core.errors import InputError

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
#: unit words (and their plurals) -> unit
_UNIT_WORDS = {"s": "s", "sec": "s", "second": "s", "m": "m", "min": "m", "minute": "m", "h": "h", "hr": "h",
               "hour": "h", "d": "d", "day": "d", "w": "w", "week": "w"}
_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def age_seconds(value: Any, *, name: str = "max_age") -> float | None:
    """``value`` as seconds (None stays None: no limit)."""
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _from_text(value, name)
    else:
        raise InputError(f"{name} must be a timedelta, a number of seconds or text like '90d', "
                         f"got {type(value).__name__}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise InputError(f"{name} must be zero or more and finite, got {value!r}")
    return seconds


def _from_text(text: str, name: str) -> float:
    match = _TEXT.match(text)
    word = match.group(2).lower() if match else ""
    if word not in _UNIT_WORDS and word.endswith("s"):
        word = word[:-1]
    if match is None or word not in _UNIT_WORDS:
        raise InputError(f"{name}: cannot read {text!r}; write a number and a unit, like '90d', '12h', '30m' or '45s'")
    return float(match.group(1)) * _SECONDS[_UNIT_WORDS[word]]
