"""Apollo's own credit meter (``usage_stats/credit_usage_stats``, 0 credits) as a guard and a cross-check.

* :func:`credit_balance`: the meter as a small table (credit type, limit,
  consumed, left over, cycle dates).
* :func:`preflight`: before a run with a ``max_credits`` cap, or whose worst case
  is above a threshold (:data:`METER_THRESHOLD` credits;
  ``APOLLO_FRAMES_METER_THRESHOLD`` or ``client.meter_threshold`` change it),
  read the meter, and refuse the run
  with :class:`BudgetExceededError` before any request when its worst case for
  a credit type is above what is left of it, unless ``max_credits`` is set
  within what is left (then the budget caps the run as usual). A key that may
  not read the meter (403) is noted once per client and the check skipped.
* :func:`reconcile`: after such a run, the ledger's credits against the
  meter's change over the run; more than 5 % apart warns, and both are
  recorded in the ledger. The meter is the whole team's: a larger change
  means *at least* that much was spent, some of it possibly elsewhere. What the
  meter counted beyond the run's settled and in-doubt credits goes into the
  ledger as in doubt (:meth:`Ledger.note_gap`): a server that reports fewer
  credits than it charges cannot make the ledger show less than was spent.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import weakref
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.core.errors import (
    APIError,
    BudgetExceededError,
    PermissionDeniedError,
    StorageError,
    warn,
)
from apollo_frames.engine.budget import credit_figure

ENDPOINT = "usage_stats/credit_usage_stats"
METER_THRESHOLD = 100.0
DRIFT_WARN = 0.05
#: a meter change beyond the ledger by more than this is written to the ledger as in doubt (rounding stays out)
GAP_MIN = 0.005
_refused: weakref.WeakSet[Any] = weakref.WeakSet()
_last: weakref.WeakKeyDictionary[Any, CreditBalance] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class CreditLine:
    """One credit type of the meter."""

    credit_type: str
    limit: float | None
    consumed: float | None
    left_over: float | None


@dataclasses.dataclass(repr=False)
class CreditBalance:
    """Apollo's credit meter at ``read_at`` (the client's clock, epoch seconds)."""

    lines: dict[str, CreditLine]
    cycle_start: str | None
    cycle_end: str | None
    read_at: float

    def left(self, credit_type: str) -> float | None:
        line = self.lines.get(credit_type)
        return line.left_over if line is not None else None

    def consumed(self, credit_type: str) -> float | None:
        line = self.lines.get(credit_type)
        return line.consumed if line is not None else None

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([dataclasses.asdict(line) for line in self.lines.values()],
                             columns=["credit_type", "limit", "consumed", "left_over"])
        return frame.assign(cycle_start=self.cycle_start, cycle_end=self.cycle_end)

    def _rows(self) -> list[tuple[str, str, str, str]]:
        return [(line.credit_type, _num(line.limit), _num(line.consumed), _num(line.left_over))
                for line in self.lines.values()]

    def _title(self) -> str:
        return f"Apollo credit meter, cycle {self.cycle_start or '?'} to {self.cycle_end or '?'}"

    def __repr__(self) -> str:
        rows = [("credit type", "limit", "consumed", "left over"), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        body = "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows)
        return f"{self._title()}\n{body}"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("credit type", "limit", "consumed", "left over"))
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self._rows())
        return (f"<table><caption style='text-align:left'><b>{html.escape(self._title())}</b></caption>"
                f"<tr>{head}</tr>{cells}</table>")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def parse_meter(data: Any, read_at: float) -> CreditBalance:
    """``credit_usage_stats``'s answer -> :class:`CreditBalance` (unknown or malformed figures become None)."""
    stats = data.get("credit_usage_stats") if isinstance(data, dict) else None
    lines: dict[str, CreditLine] = {}
    for name, item in (stats if isinstance(stats, dict) else {}).items():
        if isinstance(item, dict):
            figures = (credit_figure(item.get(k)) for k in ("limit", "consumed", "left_over"))
            lines[str(name)] = CreditLine(str(name), *figures)
    cycle = data.get("current_credit_cycle") if isinstance(data, dict) else None
    cycle = cycle if isinstance(cycle, dict) else {}
    start, end = cycle.get("start_date"), cycle.get("end_date")
    return CreditBalance(lines, str(start) if start else None, str(end) if end else None, read_at)


def read_meter(client: Any) -> CreditBalance:
    """Read the meter now (0 credits); the reading is remembered for :func:`last_balance`."""
    balance = parse_meter(client.post(ENDPOINT, json={}).data, client.clock.time())
    _last[client] = balance
    return balance


def credit_balance(client: ApolloClient | None = None) -> CreditBalance:
    """Apollo's credit meter: per credit type its limit, consumed and left over this cycle (0 credits).

    ``client``: whose credit meter is read (default: the session's client, else one from the environment).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> balance = af.credit_balance()
    >>> balance.left("lead_credit") > 0
    True
    """
    with client_scope(client) as api:
        return read_meter(api)


def last_balance(client: Any) -> CreditBalance | None:
    """The last meter reading this client made, if any (no request)."""
    return _last.get(client)


def threshold(client: Any) -> float:
    own = getattr(client, "meter_threshold", None)
    if isinstance(own, (int, float)) and not isinstance(own, bool):
        return float(own)
    env = os.environ.get("APOLLO_FRAMES_METER_THRESHOLD", "").strip()
    try:
        return float(env) if env else METER_THRESHOLD
    except ValueError:
        return METER_THRESHOLD


def try_read(client: Any) -> CreditBalance | None:
    """The meter, or None when this key may not read it (a 403 is noted once per client) or it cannot be read."""
    if client in _refused:
        return None
    try:
        return read_meter(client)
    except PermissionDeniedError:
        _refused.add(client)
        warn("this API key may not read Apollo's credit meter (403 on usage_stats/credit_usage_stats): "
             "runs go ahead without checking the balance (the ledger and max_credits still apply)")
    except APIError as exc:
        warn(f"Apollo's credit meter could not be read ({exc}); the run goes ahead without checking the balance")
    return None


def _capped_read(client: Any, max_credits: float | None) -> bool:
    """Whether a capped run reads the meter: a cap is set and the threshold is finite (an infinite one: never)."""
    return max_credits is not None and math.isfinite(threshold(client))


def capped_reading(client: Any, max_credits: float | None) -> CreditBalance | None:
    """The meter before a capped run made of several (a file run's chunks), for one :func:`reconcile` after it."""
    if not _capped_read(client, max_credits) or not hasattr(client, "post"):
        return None
    return try_read(client)


def preflight(client: Any, needs: dict[str, float], max_credits: float | None, *,
              read_capped: bool = True) -> CreditBalance | None:
    """Refuse a run whose worst case (``needs``: credit type -> credits) is above what the meter says is left.

    Only for a capped run (``max_credits`` set: its ledger is then checked against the meter after the run;
    ``read_capped=False``: a part of a run whose caller reads the meter around it) or one whose worst case is above
    the threshold (an infinite threshold: never); returns the reading (for :func:`reconcile`) or None.
    """
    worst = sum(needs.values())
    wanted = worst > threshold(client) or (read_capped and _capped_read(client, max_credits))
    if worst <= 0 or not wanted or not hasattr(client, "post"):
        return None
    balance = try_read(client)
    if balance is None:
        return None
    for credit_type, need in needs.items():
        left = balance.left(credit_type)
        if left is None or need <= left:
            continue
        if max_credits is not None and max_credits <= left:
            continue  # the budget keeps the run within what is left
        raise BudgetExceededError(
            f"this run could spend up to {_num(need)} {credit_type} credits at worst, but Apollo's credit meter "
            f"shows {_num(left)} left this cycle; nothing was sent. Set max_credits={_num(left)} or less to "
            f"spend what is left, or enrich fewer rows."
        )
    return balance


def reconcile(client: Any, before: CreditBalance | None, *, run_id: str, operation: str, ledger_credits: float,
              credit_types: list[str], in_doubt: float = 0.0, ledger: Any = None) -> float:
    """Compare the run's ledger credits with the meter's change since ``before``; warn on a drift > 5 %.

    Both figures go to the run's ledger (``ledger``, else the client's), and what the meter counted beyond
    ``ledger_credits`` + ``in_doubt`` is written there as in doubt. Returns the credits so added (0 when the
    meter could not be read or shows no more).
    """
    if before is None:
        return 0.0
    after = try_read(client)
    if after is None:
        return 0.0
    change = 0.0
    for credit_type in credit_types:
        was, now = before.consumed(credit_type), after.consumed(credit_type)
        if was is not None and now is not None:
            change += now - was
    beyond = change - ledger_credits - in_doubt
    gap = round(beyond, 6) if beyond > GAP_MIN else 0.0
    ledger = ledger if ledger is not None else client.ledger
    if ledger is not None:
        try:
            ledger.note_meter(run_id=run_id, operation=operation, ledger_credits=ledger_credits, meter_change=change)
            if gap:
                ledger.note_gap(run_id=run_id, operation=operation, endpoint=ENDPOINT, credits=gap)
        except StorageError as exc:  # a note: the run's rows matter more (the disk is named once by the run)
            warn(f"{operation}: the meter reading could not be written to the ledger ({exc.reason})")
    if abs(change - ledger_credits) > DRIFT_WARN * max(ledger_credits, 1.0):
        more = change > ledger_credits
        warn(
            f"{operation}: Apollo's credit meter moved by {_num(change)} during the run, the ledger recorded "
            f"{_num(ledger_credits)}"
            + (f": at least {_num(change - ledger_credits)} more were spent, by this run or by others on the team "
               "meanwhile; the ledger counts them as in doubt." if more
               else "; the meter shows less than the answers reported (the ledger keeps both).")
        )
    return gap
