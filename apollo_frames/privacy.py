"""Personal data as the law expects: the suppression list of a cache folder.

``suppress(values, reason=...)`` adds e-mails, domains, LinkedIn URLs or Apollo
ids to the folder's list (:mod:`apollo_frames.client.suppression`: keyed hashes,
never the values); ``unsuppress`` lifts them; ``suppressed()`` counts them by
kind and reason. Values are given as a list, set, Series, a frame (every
cell), or the path of a text or CSV file (every value on every line).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.client.suppression import SuppressionList
from apollo_frames.core.errors import InputError
from apollo_frames.core.suppress import identifiers

__all__ = ["suppress", "unsuppress", "suppressed", "suppression_values"]


def suppression_values(values: Any) -> list[Any]:
    """The raw values of any supported source: a path (``Path``, or text naming an existing file), a frame,
    a Series, or any other iterable; a single text value is one value."""
    if isinstance(values, (str, os.PathLike)) and _is_file(values):
        with open(values, encoding="utf-8-sig", errors="replace") as lines:
            return [line for line in lines]
    if isinstance(values, Path):
        raise InputError(f"no such file: {values}")
    if isinstance(values, pd.DataFrame):
        return values.to_numpy().ravel().tolist()
    if isinstance(values, str):
        return [values]
    if isinstance(values, pd.Series):
        return values.tolist()
    if isinstance(values, Iterable):
        return list(values)
    raise InputError(f"suppression values must be a list, set, Series, frame or file path, got {type(values).__name__}")


def _is_file(value: str | os.PathLike[str]) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


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
