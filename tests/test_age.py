"""max_age / retention values (issue 24 §2, issue 25 §3)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from apollo_frames.core.age import age_seconds
from apollo_frames.core.errors import InputError


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (0, 0.0), (90, 90.0), (1.5, 1.5), (np.int64(60), 60.0), (dt.timedelta(days=2), 172_800.0),
    ("90d", 7_776_000.0), ("12h", 43_200.0), ("30m", 1_800.0), ("45s", 45.0), ("2w", 1_209_600.0),
    ("90 days", 7_776_000.0), ("1.5h", 5_400.0), ("365D", 31_536_000.0), (" 7 Days ", 604_800.0),
    ("10 minutes", 600.0), ("1 hour", 3_600.0), ("5 sec", 5.0),
])
def test_ages_are_read(value, seconds):
    assert age_seconds(value) == seconds


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "90", "ninety days", "5y", "d", [1],
                                   dt.timedelta(seconds=-5), "1e9d9"])
def test_bad_ages_name_the_parameter(value):
    with pytest.raises(InputError, match="retention"):
        age_seconds(value, name="retention")
