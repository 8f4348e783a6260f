"""The credit budget of one call: worst cases reserved before sending, actual spend settled after.

Worst-case accounting: a request is sent only if what is committed, plus
the worst case of every request still in flight, plus this request's worst
case, stays within ``max_credits``. What a settled request commits is the
caller's choice (:meth:`Budget.settle`): the enrichment runner commits the
worst case of every attempt that may have reached the server, whatever the
server reported, because a figure below the true charge is indistinguishable
from an honest one; so the server's charge cannot pass the cap. In-flight
requests may still commit less (an attempt that surely never reached the
server commits nothing), so when the next request does not fit while others
are in flight, the budget waits for them rather than giving up early.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from apollo_frames.core.errors import InputError, StorageError

#: tolerance for float sums of credits (0.1 + 0.2 must fit in 0.3)
EPSILON = 1e-9


def credit_figure(value: Any) -> float | None:
    """``value`` as a number of credits if it is a finite real number >= 0 (numpy's included), else None (text,
    bools, NaN, negatives)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def check_credits(name: str, value: Any) -> float | None:
    """``value`` as a number of credits (None stays None); the one check of ``max_credits`` / ``confirm_over``.

    Anything else is an :class:`~apollo_frames.core.errors.InputError` (a ValueError): text (``"5"``), a bool
    (Python counts ``True`` as 1, which would silently mean 1 credit), NaN, infinity, a negative number.
    """
    if value is None:
        return None
    credits = credit_figure(value)
    if credits is None:
        raise InputError(f"{name} must be a finite number of credits >= 0 (or None), got {value!r}")
    return credits


def trusted_credits(reported: Any, worst: float, floor: float = 0.0) -> tuple[float, bool]:
    """(credits to count, whether the server's figure was believed) for one request whose worst case is ``worst``.

    A figure is believed when it is a finite number from ``floor`` to the
    worst case. ``floor`` is the least the answer can have cost by Apollo's
    rules (1 credit per record it returned), so a server that reports 0 for
    records it sent cannot lift the cap either. Anything else (-100, NaN,
    infinity, text, more than the request could cost) counts as the worst
    case, so a lying server can neither lift the ``max_credits`` cap nor break
    the ledger; the caller flags it unverified.
    """
    if isinstance(reported, bool) or not isinstance(reported, (int, float)):
        return float(worst), False
    if not math.isfinite(reported) or reported < floor - EPSILON or reported > worst + EPSILON:
        return float(worst), False
    return float(reported), True


def credit_shares(total: float, paid: Sequence[bool]) -> list[float]:
    """A request's ``total`` credits split over its records, for the bill per row: equal shares among the records
    Apollo charges for (``paid``: those it matched), or among all when it matched none but charged; 0 for the rest.
    The shares are differences of running totals, so they add back up to ``total``."""
    payers = [i for i, p in enumerate(paid) if p] or list(range(len(paid)))
    shares = [0.0] * len(paid)
    if not payers or not total:
        return shares
    running = [total * k / len(payers) for k in range(len(payers) + 1)]
    for k, i in enumerate(payers):
        shares[i] = running[k + 1] - running[k]
    return shares


def items_that_fit(max_credits: float | None, committed: float, unit: float, wanted: int) -> int:
    """How many of ``wanted`` items of worst case ``unit`` fit under ``max_credits`` beside ``committed`` credits."""
    if max_credits is None or unit <= 0:
        return wanted
    room = math.floor((max_credits - committed) / unit + EPSILON)
    return max(0, min(wanted, room))


class Budget:
    """Credits spent and reserved by one call, shared by its threads. ``max_credits=None``: no cap."""

    def __init__(self, max_credits: float | None = None):
        self.max_credits = max_credits  # checked by RunOptions, where the caller's value came in
        #: what the call counts as spent: the figures believed, plus the worst case of attempts in doubt
        self.spent = 0.0
        #: what counts against the cap (see :meth:`settle`)
        self.committed = 0.0
        self.reserved = 0.0
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        cap = "no cap" if self.max_credits is None else f"max {self.max_credits:g}"
        return f"Budget({cap}, spent {self.spent:g}, reserved {self.reserved:g})"

    def _fits(self, unit: float, wanted: int) -> int:
        """How many of ``wanted`` items of worst case ``unit`` fit now (caller holds the lock)."""
        return items_that_fit(self.max_credits, self.committed + self.reserved, unit, wanted)

    def left(self) -> float | None:
        """The credits not committed nor reserved yet (None: no cap)."""
        with self._cond:
            return None if self.max_credits is None else max(self.max_credits - self.committed - self.reserved, 0.0)

    def reserve_items(self, unit: float, wanted: int, *, wait: bool = True) -> int | None:
        """Reserve the worst case of up to ``wanted`` items costing at most ``unit`` each; how many were reserved.

        All ``wanted`` when they fit. When they do not and other reservations
        are in flight, wait for one to settle and look again (it may commit
        less than it reserved); with ``wait=False`` return None at once instead, so a caller
        that settles on its own thread can come back after a settle. With
        nothing in flight: as many as fit (a last, smaller batch), 0 when none
        does (the budget is reached). It never waits with nothing in flight,
        so it cannot block forever as long as every reservation is settled.
        """
        with self._cond:
            while True:
                n = self._fits(unit, wanted)
                if n == wanted or self.reserved <= EPSILON:
                    self.reserved += n * max(unit, 0.0)
                    return n
                if not wait:
                    return None
                self._cond.wait()

    def reserve(self, cost: float) -> bool:
        """Reserve one request's worst case; False when it could take the spend past the cap (waits as above)."""
        return self.reserve_items(cost, 1) == 1

    def settle(self, reserved: float, actual: float, committed: float | None = None) -> None:
        """A reserved request is done: release its worst case, count ``actual`` as spent and ``committed``
        (default ``actual``) against the cap; the enrichment runner commits every attempt's worst case."""
        with self._cond:
            self.reserved = max(0.0, self.reserved - reserved)
            self.spent += actual
            self.committed += actual if committed is None else committed
            self._cond.notify_all()

    def reached(self) -> str:
        """Why nothing more was sent, in the words every operation uses."""
        return reached_text(self.max_credits, self.spent, self.committed)


def reached_text(max_credits: float | None, spent: float, committed: float, where: str = "") -> str:
    """"credit budget reached (...)": the cap, the spend, and the worst case counted when it is larger."""
    cap = "None" if max_credits is None else f"{max_credits:g}"
    worst = f", {committed:g} counting each request sent at its worst case" if committed > spent + EPSILON else ""
    return f"credit budget reached (max_credits={cap}, spent {spent:g}{worst}{where})"


@dataclasses.dataclass(eq=False)
class Attempts:
    """One request's attempts as the budget and the ledger see them (enrichment batches and search pages).

    The caller reserved the first attempt's ``worst`` case. :meth:`resend` is
    the client's ``before_resend``: a retry after an attempt the server may
    have charged reserves another worst case and writes another ledger entry
    (``begin``) first, or is not sent. When the request ends, :meth:`settle`
    releases the reservations and commits the worst case of every attempt the
    server may have charged, the answered one included.
    """

    budget: Budget
    worst: float
    #: writes one attempt to the ledger as sent and returns its entry (None: no ledger)
    begin: Callable[[], int] | None = None
    #: the ledger entries, one per attempt that may be charged plus the last one sent
    entries: list[int] = dataclasses.field(default_factory=list)
    reserved: int = 1
    #: why a retry was not sent: its ledger entry could not be written
    unrecorded: StorageError | None = None
    #: a retry was not sent: the budget had no room for its worst case
    capped: bool = False

    def note(self) -> None:
        """Write the next attempt to the ledger (raises the ledger's StorageError)."""
        if self.begin is not None:
            self.entries.append(self.begin())

    def resend(self) -> bool:
        """Reserve and note one more attempt; False when the budget has no room or the ledger cannot write it."""
        if self.budget.reserve_items(self.worst, 1, wait=False) != 1:
            self.capped = True
            return False
        self.reserved += 1
        try:
            self.note()
        except StorageError as exc:  # an attempt the ledger cannot write down is not sent
            self.unrecorded = exc
            return False
        return True

    def entry(self, in_doubt: int) -> int | None:
        """The ledger entry the outcome settles when ``in_doubt`` attempts may have been charged without a usable
        answer: the answered attempt's, or one that cost nothing (None: there is none); those before stay in doubt."""
        return self.entries[in_doubt] if len(self.entries) > in_doubt else None

    def settle(self, in_doubt: int, answered: float | None) -> None:
        """The request ended: ``in_doubt`` attempts may have been charged without a usable answer; ``answered``
        is the figure of the answer (None: no answer). Release the reservations, commit the worst cases."""
        committed = (in_doubt + (answered is not None)) * self.worst
        self.budget.settle(self.reserved * self.worst, answered or 0.0, committed)
