"""One run's suppression: the folder's list (:mod:`apollo_frames.client.suppression`) and the run's ``suppress=``.

A row whose identifiers (or its e-mail's domain) are suppressed is set aside before anything is planned: status
``suppressed``, never sent, nothing stored. An answer that reveals a suppressed identifier for a row named
otherwise (a LinkedIn URL, a name and company) is dropped before it is stored or returned: its credit stays in
the ledger and in the row's bill; the row says ``suppressed``. Stored answers are checked the same way when they
are read. With nothing suppressed, none of this costs anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apollo_frames.client.suppression import SuppressionList, suppression_values
from apollo_frames.core.clock import Clock
from apollo_frames.core.reasons import tagged
from apollo_frames.core.suppress import answer_identifiers, identifiers, record_identifiers

#: the status of a row set aside, and the reasons it gives (never the value itself)
STATUS = "suppressed"
ROW_REASON = "suppressed: its {kind} is on the suppression list (never sent, nothing stored)"
STORED_REASON = "suppressed: the stored answer's {kind} is on the suppression list (never sent, nothing stored)"
PUSH_REASON = "suppressed: its {kind} is on the suppression list (never pushed)"
#: the reason kept beside identifiers learned from an answer
LEARNED = "named a suppressed person (learned from an answer)"
SEARCH_REASON = "suppressed: its query's {kind} is on the suppression list (not searched)"
#: what a stored search page holds in place of a record naming a suppressed identifier: nobody
WITHHELD_KEY = "apollo_suppressed"
ANSWER_REASON = ("suppressed: Apollo's answer names a suppressed {kind}; the answer was dropped, not stored "
                 "(its credit is recorded)")


class Suppressor:
    """The keyed hashes one run must not send, keep or return."""

    def __init__(self, book: SuppressionList, digests: frozenset[str]):
        self.book, self.digests = book, digests

    @classmethod
    def for_run(cls, cache_dir: Any, values: Any, clock: Clock) -> Suppressor | None:
        """The folder's list plus ``values`` (a list, set, Series, frame or file path; or None); None when nothing
        is suppressed."""
        book = SuppressionList(cache_dir, clock=clock)
        digests = book.digests()
        if values is not None:
            pairs, _ = identifiers(suppression_values(values))
            digests = digests | {book.digest(k, v) for k, v in pairs}
        return cls(book, digests) if digests else None

    def row(self, record: Mapping[str, Any] | None, why: str = ROW_REASON) -> str | None:
        """Why a prepared record (or a flattened stored answer) must not be sent or served, as ``why`` says it;
        or None."""
        kind = self.book.listed(record_identifiers(record), self.digests)
        return None if kind is None else tagged("suppressed", why.format(kind=kind.replace("_", " ")))

    def learn(self, record: Mapping[str, Any] | None) -> None:
        """The strong identifiers (e-mail, LinkedIn URL, id; never a domain) a record named a suppressed person by
        join the folder's list."""
        pairs = [(k, v) for k, v in record_identifiers(record) if k != "domain"]
        if pairs:
            self.book.add(pairs, reason=LEARNED)
            self.digests = self.digests | {self.book.digest(k, v) for k, v in pairs}

    def names(self, pair: tuple[str, str]) -> bool:
        """Whether one normalised ``(kind, value)`` is suppressed."""
        return self.book.listed([pair], self.digests) is not None

    def answer(self, answer: Mapping[str, Any] | None) -> str | None:
        """Why an answer must not be kept or returned, or None."""
        kind = self.book.listed(answer_identifiers(answer), self.digests)
        return None if kind is None else tagged("suppressed", ANSWER_REASON.format(kind=kind.replace("_", " ")))


def withheld(record: Mapping[str, Any]) -> bool:
    """Whether a search record is the placeholder a suppressed record left in a stored page."""
    return record.get(WITHHELD_KEY) is True
