"""Helpers for tests that compare results of different runs."""

from __future__ import annotations

import pandas as pd

#: what differs between two runs of the same frame by design: the bill of each run (a re-run pays nothing), and
#: when the answers were fetched (two stores, or a store and a refresh, fetched them at different times)
PER_RUN = ["apollo_credits", "apollo_fetched_at"]


def answers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without its per-run columns: what two runs of the same input must agree on."""
    return frame.drop(columns=[c for c in PER_RUN if c in frame.columns])
