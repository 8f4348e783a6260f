"""What an interrupted push may have created: the records created since its batch was sent, found by their key.

A ``bulk_create`` without ``run_dedupe`` whose answer never arrived (the process was killed, the connection
dropped after the request left) may or may not have created its records, and sending it again could create them
twice. Before anything is created again, the team's records are read newest first with Apollo's free search
(``POST {contacts|accounts}/search`` sorted by ``{contact|account}_created_at``), back to when the batch was sent
(less :data:`LOOKBACK_S` for the two clocks' skew), or until every key asked for is found. One mechanism for
contacts and accounts: accounts/search cannot filter by domain (only by name), and the newest records are where
a batch sent moments ago is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Any

#: how far before a batch was sent (on our clock) the search reaches back: room for the two clocks' skew
LOOKBACK_S = 600.0
#: Apollo's search shows at most 500 pages of 100
MAX_PAGES = 500
PER_PAGE = 100


def parse_time(value: object) -> float | None:
    """An ISO 8601 time (``Z`` or an offset; none: UTC) as a POSIX timestamp, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def created_since(
    client: Any, plural: str, singular: str, since: float, wanted: Collection[str],
    key_of: Callable[[dict], str | None],
) -> dict[str, dict] | None:
    """Key -> the newest record with that key created at or after ``since - LOOKBACK_S``; None when the search
    could not reach back that far (then nothing can be said of the keys not found)."""
    found: dict[str, dict] = {}
    bound = since - LOOKBACK_S
    for page in range(1, MAX_PAGES + 1):
        body = {"sort_by_field": f"{singular}_created_at", "sort_ascending": False, "page": page,
                "per_page": PER_PAGE}
        data = client.request("POST", f"{plural}/search", json=body).data
        data = data if isinstance(data, dict) else {}
        records = [r for r in data.get(plural) or () if isinstance(r, dict)]
        older = False
        for record in records:
            created = parse_time(record.get("created_at"))
            older = created is not None and created < bound
            if older:  # newest first: every record after this one is older still
                break
            key = key_of(record)
            if key is not None and key in wanted:
                found.setdefault(key, record)
        if older or not records or len(found) == len(wanted) or page >= _pages(data, page):
            return found
    return None


def _pages(data: dict, page: int) -> int:
    """The number of pages the search reports (the next page when it says nothing)."""
    pagination = data.get("pagination")
    total = pagination.get("total_pages") if isinstance(pagination, dict) else None
    return total if isinstance(total, int) and not isinstance(total, bool) else page + 1
