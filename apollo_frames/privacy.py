"""Personal data as the law expects: the suppression list of a cache folder, and erasure.

``suppress(values, reason=...)`` adds e-mails, domains, LinkedIn URLs or Apollo
ids to the folder's list (:mod:`apollo_frames.client.suppression`: keyed hashes,
never the values); ``unsuppress`` lifts them; ``suppressed()`` counts them by
kind and reason. ``forget(values)`` erases the people from everything stored
in the folder (:mod:`apollo_frames.client.erase`) and suppresses them. Values
are given as a list, set, Series, a frame (every cell), or the path of a text
or CSV file (every value on every line).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from apollo_frames.client.erase import erase
from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.client.suppression import SuppressionList, suppression_values
from apollo_frames.core.errors import InputError
from apollo_frames.core.suppress import identifiers

__all__ = ["suppress", "unsuppress", "suppressed", "forget", "Forgotten"]

#: the reason kept beside identifiers ``forget`` suppresses
FORGET_REASON = "forgotten (erasure request)"


def _pairs(values: Any) -> list[tuple[str, str]]:
    pairs, rejected = identifiers(suppression_values(values))
    if not pairs and rejected:
        raise InputError(f"none of the {rejected:,} values is an e-mail, domain, LinkedIn URL or Apollo id")
    return pairs


def suppress(values: Any, *, reason: str | None = None, client: ApolloClient | None = None) -> int:
    """Never enrich, push or keep these identifiers again in this cache folder; returns how many were new.

    ``values``: e-mails, domains, LinkedIn URLs or Apollo ids (a list, a Series, a file path); ``reason``: kept
    beside them (never the values); ``client``: whose cache folder (default: the session's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> af.suppress(["no.contact@opt-out.example"], reason="asked not to be contacted")
    1
    >>> out = af.enrich_people(pd.DataFrame({"email": ["no.contact@opt-out.example"]}), progress=False)
    >>> out["apollo_status"][0], out["apollo_error_code"][0]
    ('suppressed', 'suppressed')
    """
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).add(_pairs(values), reason)


def unsuppress(values: Any, *, client: ApolloClient | None = None) -> int:
    """Lift the suppression of these identifiers; returns how many were suppressed.

    ``values``: as :func:`suppress` takes them; ``client``: whose cache folder (default: the session's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> _ = af.suppress(["back@opt-out.example"])
    >>> af.unsuppress(["back@opt-out.example"])
    1
    """
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).remove(_pairs(values))


def suppressed(*, client: ApolloClient | None = None) -> pd.DataFrame:
    """How many identifiers the folder's list holds, by kind and reason (never the values).

    ``client``: whose cache folder (default: the session's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> _ = af.suppress(["listed@opt-out.example"])
    >>> af.suppressed().columns.tolist()
    ['kind', 'reason', 'count', 'first_added', 'last_added']
    """
    with client_scope(client, need_key=False) as c:
        return SuppressionList(c.settings.cache_dir, clock=c.clock).summary()


@dataclasses.dataclass
class Forgotten:
    """What :func:`forget` removed, per place (never the identifiers themselves)."""

    identifiers: int
    newly_suppressed: int
    answers: int
    journal_lines: int
    quarantined: int
    flat_blocks: int
    set_aside_files: int
    #: replaced versions (kept for ``changes()``) that named them under answers that no longer do
    previous_versions: int = 0
    #: the credit ledger keeps sums by run and operation, never an identifier: nothing to remove
    ledger_details: int = 0
    #: False when another process's read kept part of the write-ahead log: run ``forget`` again when it is done
    compacted: bool = True

    def __str__(self) -> str:
        tail = "" if self.compacted else "; the store's log is still in use by another process: forget again later"
        return (f"forget: {self.identifiers:,} identifier(s) ({self.newly_suppressed:,} newly suppressed): "
                f"{self.answers:,} stored answer(s), {self.journal_lines:,} push-journal line(s), "
                f"{self.quarantined:,} quarantine record(s), {self.flat_blocks:,} flattened block(s), "
                f"{self.previous_versions:,} replaced version(s), "
                f"{self.set_aside_files:,} set-aside file(s) removed; files compacted{tail}")


def forget(values: Any, *, client: ApolloClient | None = None) -> Forgotten:
    """Erase these people (e-mails, domains, LinkedIn URLs, Apollo ids) from everything stored in the cache folder,
    compact the files so their bytes are gone, and suppress them so no later run fetches them again.

    ``values``: e-mails, domains, LinkedIn URLs or Apollo ids (a list, a Series, a file path); ``client``: whose
    cache folder (default: the session's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> done = af.forget(["erase.me@forget-co.example"])
    >>> done.identifiers, done.newly_suppressed
    (1, 1)
    """
    pairs = _pairs(values)
    with client_scope(client, need_key=False) as c:
        book = SuppressionList(c.settings.cache_dir, clock=c.clock)
        new = book.add(pairs, FORGET_REASON)  # before the erasure: see apollo_frames.client.erase
        done = erase(c.cache, pairs, lambda more: book.add(more, FORGET_REASON))
        new += done.learned  # the same people by their other identifiers
    return Forgotten(len(pairs), new, done.answers, done.journal_lines, done.quarantined, done.flat_blocks,
                     done.set_aside_files, previous_versions=done.previous_versions, compacted=done.compacted)
