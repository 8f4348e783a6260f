"""Ledger reports for people: the ledger as a frame, credit summaries, a plot."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.core.columns import NEAR_MISS_FIELD
from apollo_frames.core.errors import InputError
from apollo_frames.core.reasons import FailureReport, group_reasons
from apollo_frames.engine.assemble import ERROR_CODE_COLUMN
from apollo_frames.ops.phones import MOBILE_COLUMN, NUMBERS_COLUMN, listed_numbers, withheld


def ledger(*, since: Any = None, client: ApolloClient | None = None) -> pd.DataFrame:
    """The credit ledger as a DataFrame: one row per batch sent, oldest first.

    Columns: time (UTC), operation, endpoint, records_sent, records_matched,
    credits, http_status, run_id, status (``settled``, or ``in_doubt``: sent
    and never answered, e.g. the process was killed; credits is then the
    worst case the server may have charged); times to the second. ``since`` takes a date/time
    (naive = UTC) or a timedelta back from now. Without ``client`` the ledger in the default
    cache folder (``APOLLO_FRAMES_CACHE_DIR``) is read.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> af.ledger(since=pd.Timedelta(days=1)).columns.tolist()[:5]
    ['time', 'operation', 'endpoint', 'records_sent', 'records_matched']
    """
    return _to_the_second(_ledger(since, client), "time")


def _ledger(since: Any, client) -> pd.DataFrame:
    with client_scope(client, need_key=False) as c:
        return c.ledger.frame(since)


def _to_the_second(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Times as a person reads them (the ledger file keeps the full time, which orders what ran first)."""
    for column in columns:
        if len(frame):
            frame[column] = frame[column].dt.floor("s")
    return frame


SUMMARY_KEYS = {"day": "day", "operation": "operation", "run": "run_id"}


def credit_summary(*, by: str = "day", client: ApolloClient | None = None, since: Any = None) -> pd.DataFrame:
    """Credits, batches, records sent/matched and match rate per ``by`` = "day" (UTC), "operation" or "run".

    ``credits`` are the settled ones; ``in_doubt_credits`` the worst case of requests never answered.

    ``since``: a date/time (naive = UTC) or a timedelta back from now; ``client``: whose ledger (default: the
    session's, else the default cache folder's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> af.credit_summary(by="operation").columns.tolist()
    ['operation', 'credits', 'runs', 'in_doubt_credits', 'batches', 'records_sent', 'records_matched', 'match_rate']
    """
    if by not in SUMMARY_KEYS:
        raise InputError(f"by must be one of {sorted(SUMMARY_KEYS)}, got {by!r}")
    frame = _ledger(since, client)
    doubt = frame["status"] == "in_doubt"
    frame = frame.assign(
        day=frame["time"].dt.floor("D"),
        credits=frame["credits"].where(~doubt, 0.0),
        in_doubt_credits=frame["credits"].where(doubt, 0.0),
    )
    key = SUMMARY_KEYS[by]
    grouped = frame.groupby(key, sort=True, dropna=False)
    out = pd.DataFrame(
        {
            "credits": grouped["credits"].sum(),
            "in_doubt_credits": grouped["in_doubt_credits"].sum(),
            "batches": grouped.size(),
            "records_sent": grouped["records_sent"].sum(),
            "records_matched": grouped["records_matched"].sum(),
        }
    )
    if by != "run":
        out.insert(1, "runs", grouped["run_id"].nunique())
    else:
        out.insert(0, "operation", grouped["operation"].first())
        out.insert(1, "started", grouped["time"].min())
        out.insert(2, "ended", grouped["time"].max())
        out = out.sort_values("started")
    sent = out["records_sent"].astype("float64")
    out["match_rate"] = (out["records_matched"] / sent.where(sent > 0)).astype("float64")
    out = out.reset_index()
    if by == "run":
        out = out[["run_id", "operation", "started", "ended", "credits", "in_doubt_credits", "batches",
                   "records_sent", "records_matched", "match_rate"]]
        _to_the_second(out, "started", "ended")
    return out


def plot_credits(*, client: ApolloClient | None = None, ax=None, since: Any = None):
    """Cumulative credits over time, one step line per operation (needs the ``plot`` extra). Returns the axes.

    ``client``: whose ledger (default: the session's); ``ax``: the matplotlib axes to draw on (default: a new
    figure); ``since``: as in :func:`ledger`.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> ax = af.plot_credits(since=pd.Timedelta(days=30))
    >>> ax.get_title()
    'Apollo credits spent (cumulative)'
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plot_credits needs matplotlib, an optional extra: pip install 'apollo_frames[plot]'"
        ) from None
    frame = ledger(since=since, client=client)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    if frame.empty:
        ax.text(0.5, 0.5, "no credits recorded yet", ha="center", va="center", transform=ax.transAxes)
    else:
        for operation, part in frame.groupby("operation", sort=True):
            ax.step(part["time"], part["credits"].cumsum(), where="post", label=str(operation))
        if frame["operation"].nunique() > 1:
            ax.step(frame["time"], frame["credits"].cumsum(), where="post", label="all", color="black", linewidth=1)
        ax.legend(loc="upper left")
        _time_axis(ax, frame["time"])
    ax.set_title("Apollo credits spent (cumulative)")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("credits")
    return ax


def _time_axis(ax: Any, times: pd.Series) -> None:
    """Clock times on the x axis (``05:45:03``), whole seconds at the finest: a run of a few seconds is not
    drawn as fractions of a second. Spans over a day show dates."""
    import matplotlib.dates as mdates

    first, last = times.min(), times.max()
    locator: Any = mdates.AutoDateLocator(minticks=3, maxticks=8)
    if last - first < pd.Timedelta(seconds=10):  # ticks finer than a second would read as raw floats
        middle = first + (last - first) / 2
        ax.set_xlim(middle - pd.Timedelta(seconds=5), middle + pd.Timedelta(seconds=5))
        locator = mdates.SecondLocator(interval=2)
    ax.xaxis.set_major_locator(locator)
    if last - first < pd.Timedelta(days=1):
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=first.tz))
    else:
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


# -- a result, explained ----------------------------------------------------------------------------


def report(frame: pd.DataFrame, *, examples: int = 3, host: str | None = None) -> FailureReport:
    """Why rows failed, grouped by reason code: each group's count, a few row labels and the fix if known.

    ``frame`` is a result (it has ``apollo_status`` and ``apollo_error``; rows are grouped by
    ``apollo_error_code``, so rewording a message never regroups them; a row without a code, by its text),
    e.g. ``result.apollo.report()``; ``examples``: row labels shown per group; ``host`` names the API host in
    connection failures.

    >>> result = pd.DataFrame({"apollo_status": ["invalid", "invalid", "matched"],
    ...                        "apollo_error": ["no usable domain: 'n/a'", "no usable domain: 'x'", None],
    ...                        "apollo_error_code": ["no_domain", "no_domain", None]})
    >>> report(result)
    3 rows: 2 invalid, 1 matched
      2 invalid rows have no usable domain: add a Website or Company Domain column, ... (e.g. 0, 1)
    """
    missing = [c for c in ("apollo_status", "apollo_error") if c not in frame.columns]
    if missing:
        raise InputError(f"report() needs a result with apollo_status and apollo_error; missing {missing}")
    statuses = frame["apollo_status"].astype("object").tolist()
    reasons = frame["apollo_error"].astype("object").tolist()
    codes = frame[ERROR_CODE_COLUMN].astype("object").tolist() if ERROR_CODE_COLUMN in frame.columns else None
    counts = pd.Series(statuses, dtype="object").value_counts()
    groups = group_reasons(statuses, reasons, frame.index, codes=codes, host=host, examples=examples)
    almost = _almost_fitted(frame.attrs.get("apollo", {}).get("column_reasons") or {})
    if almost:
        groups = [dataclasses.replace(g, fix=almost) if g.status == "invalid" and g.fix else g for g in groups]
    return FailureReport(rows=len(frame), statuses={str(k): int(v) for k, v in counts.items()}, groups=groups,
                         do_not_call=_do_not_call(frame))


def _do_not_call(frame: pd.DataFrame) -> dict[str, int]:
    """Numbers ``person.phone_numbers`` lists as do-not-call that ``person.mobile_phone`` does not show, by code."""
    if NUMBERS_COLUMN not in frame.columns:
        return {}
    shown = frame[MOBILE_COLUMN] if MOBILE_COLUMN in frame.columns else pd.Series([None] * len(frame))
    codes: Counter[str] = Counter()
    for text, mobile in zip(frame[NUMBERS_COLUMN].astype("object"), shown.astype("object"), strict=True):
        if isinstance(text, str):
            codes.update(withheld({"phone_numbers": listed_numbers(text)}, mobile if isinstance(mobile, str) else None))
    return dict(codes)


def _almost_fitted(reasons: dict[str, str]) -> str | None:
    """The fix naming the columns a run did not use although they almost fitted a field, or None."""
    fixes = []
    for column, why in reasons.items():
        hit = NEAR_MISS_FIELD.match(why)
        if hit:
            field = hit.group(1)
            fixes.append(f"{column!r} was {why}; if it holds {field}, map it: columns={{{column!r}: {field!r}}}")
    return "; ".join(fixes) or None


def snake_case(name: Any) -> str:
    """``"person.title"`` -> ``"person_title"``, ``"First Name"`` -> ``"first_name"``: names ``query`` takes."""
    text = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    return f"_{text}" if not text or text[0].isdigit() else text


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with snake_case column names (``person.title`` -> ``person_title``) for ``DataFrame.query``.

    The result keeps the dotted names (they say which record a field came
    from); this is a renamed copy. Two names that would collide get ``_2``, ``_3``...

    ``frame``: any frame (a result, usually).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> af.flat(pd.DataFrame({"person.title": ["CEO"], "First Name": ["Ann"]})).columns.tolist()
    ['person_title', 'first_name']
    """
    names: list[str] = []
    taken: set[str] = set()
    for column in frame.columns:
        base = name = snake_case(column)
        n = 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names.append(name)
    out = frame.copy(deep=False)
    out.columns = names
    return out
