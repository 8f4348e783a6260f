"""Personal data as the law expects: the suppression list of a cache folder.

``suppress(values, reason=...)`` adds e-mails, domains, LinkedIn URLs or Apollo
ids to the folder's list (:mod:`apollo_frames.client.suppression`: keyed hashes,
never the values); ``unsuppress`` lifts them; ``suppressed()`` counts them by
kind and reason. Values are given as a list, set, Series, a frame (every
cell), or the path of a text or CSV file (every value on every line).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.client.suppression import SuppressionList, suppression_values
from apollo_frames.core.errors import InputError
from apollo_frames.core.suppress import identifiers

__all__ = ["suppress", "unsuppress", "suppressed"]


def _pairs(values: Any) -> list[tuple[str, str]]:
    pairs, rejected = identifiers(suppression_values(values))
    if not pairs and rejected:
        raise InputError(f"none of the {rejected:,} values is an e-mail, domain, LinkedIn URL or Apollo id")
    return pairs


def suppress(values: Any, *, reason: str | None = None, client: ApolloClient | None = None) -> int:
    """Never enrich, push or keep these identifiers again in this cache folder; returns how many were new.

    Example::

        apollo_frames.suppress(["jane@acme.com", "globex.com"], reason="opt-out 2026-12")
    """
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).add(_pairs(values), reason)


def unsuppress(values: Any, *, client: ApolloClient | None = None) -> int:
    """Lift the suppression of these identifiers; returns how many were suppressed."""
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).remove(_pairs(values))


def suppressed(*, client: ApolloClient | None = None) -> pd.DataFrame:
    """How many identifiers the folder's list holds, by kind and reason (never the values)."""
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).summary()
