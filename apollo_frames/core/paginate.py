"""Page-number pagination for Apollo's search endpoints, with one clear stop condition.

Modelled on dlt's ``rest_client`` paginators: the object knows where it is
(``page``), what it may ask for (``per_page``, ``max_results``, Apollo's display
cap of 500 pages x 100 = 50,000 records) and, after each page, reads the
answer and decides whether another page is needed (``has_next_page``).

It reads both answer shapes:

* ``mixed_people/api_search``: ``{"total_entries": N, "people": [...]}``
  (no pagination object);
* ``mixed_companies/search`` (and the legacy people search):
  ``{"pagination": {"page", "per_page", "total_entries", "total_pages"}, "organizations": [...]}``.
  Company search splits its results: companies already saved in the team's CRM come in ``accounts``
  (the account object: ``id`` is the account's, ``organization_id`` the company's), the others in
  ``organizations``; ``total_entries`` counts both. Both are read, accounts first as Apollo lists
  them, and each record says which it is (``SOURCE_KEY``: "account" / "organization"; an account's
  ``id`` becomes its ``account_id`` and its ``organization_id`` its ``id``, as on every other org row).

It never asks for a page it does not need: ``max_results=150`` takes 2 pages of
100, ``total_entries=30`` one page, a short or empty page ends the search.
Pages are always ``per_page=100`` (Apollo's maximum): a smaller page would cost
an organization search the same credit and could not be reused from the cache
by a later, larger ``max_results``.
"""

from __future__ import annotations

import math
from typing import Any

from apollo_frames.core.errors import InputError
from apollo_frames.core.schema import SOURCE_KEY

MAX_PER_PAGE = 100
MAX_PAGE = 500
DISPLAY_CAP = MAX_PER_PAGE * MAX_PAGE  # 50,000 records per search


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


#: The lists a search answer holds its records in, by the records' key: company search adds saved accounts.
LISTS = {"organizations": ("accounts", "organizations")}


def page_lists(records_key: str) -> tuple[str, ...]:
    """The keys of the lists holding a page's records (``"organizations"`` -> accounts and organizations)."""
    return LISTS.get(records_key, (records_key,))


def as_organization(record: dict, listed_in: str) -> dict:
    """A company search item as an org row: which list it came from; a saved account's ids as for other orgs."""
    if listed_in == "accounts":
        return {**record, SOURCE_KEY: "account", "id": record.get("organization_id"), "account_id": record.get("id")}
    return {**record, SOURCE_KEY: "organization"}


def read_page(data: Any, records_key: str) -> tuple[list[dict], int | None, int | None]:
    """(records, total_entries, total_pages) of one search answer, in either shape (both lists of company search)."""
    if not isinstance(data, dict):
        return [], None, None
    records: list[dict] = []
    for key in page_lists(records_key):
        listed = data.get(key)
        items = [r for r in (listed if isinstance(listed, list) else []) if isinstance(r, dict)]
        records += [as_organization(r, key) for r in items] if records_key == "organizations" else items
    pagination = data.get("pagination")
    if not isinstance(pagination, dict):
        pagination = {}
    total = _int_or_none(data.get("total_entries"))
    if total is None:
        total = _int_or_none(pagination.get("total_entries"))
    pages = _int_or_none(pagination.get("total_pages"))
    return records, total, pages


class PageNumberPaginator:
    """Walks pages 1, 2, ... until ``max_results``, the last page, or the 500-page cap.

    >>> p = PageNumberPaginator(max_results=150)
    >>> p.params()
    {'page': 1, 'per_page': 100}
    >>> p.update({"total_entries": 1000, "people": [{}] * 100}, "people")[:0], p.has_next_page, p.params()
    ([], True, {'page': 2, 'per_page': 100})
    >>> len(p.update({"total_entries": 1000, "people": [{}] * 100}, "people")), p.has_next_page
    (50, False)
    """

    def __init__(self, max_results: int | None = None, per_page: int = MAX_PER_PAGE):
        if max_results is not None:
            if isinstance(max_results, bool) or not isinstance(max_results, int):
                raise TypeError(f"max_results must be a whole number or None, got {max_results!r}")
            if max_results <= 0:
                raise InputError(f"max_results must be at least 1, got {max_results}")
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            raise InputError(f"per_page must be from 1 to {MAX_PER_PAGE}, got {per_page!r}")
        self.max_results = max_results
        # Always full pages, even when fewer results are wanted: a page costs the same (1 credit for
        # organizations) whatever its size, and the cached pages then serve any max_results.
        self.per_page = per_page
        self.page = 1
        self.pages_read = 0
        self.collected = 0
        self.total_entries: int | None = None
        self.total_pages: int | None = None
        self.has_next_page = True
        self.stop_reason: str | None = None

    @property
    def wanted(self) -> int:
        """Records this search will return at most, before the total is known."""
        return DISPLAY_CAP if self.max_results is None else min(self.max_results, DISPLAY_CAP)

    @property
    def reachable(self) -> int:
        """Records the search can return: what is wanted, what exists, and what Apollo shows."""
        limit = min(self.wanted, self.per_page * MAX_PAGE)
        return limit if self.total_entries is None else min(limit, self.total_entries)

    @property
    def pages_needed(self) -> int | None:
        """Pages the whole search takes, once the first page has told the total."""
        if self.total_entries is None:
            return None
        pages = math.ceil(self.reachable / self.per_page) if self.reachable else 1
        return max(pages, self.pages_read)

    @property
    def truncated(self) -> bool:
        """True when Apollo's 50,000-record display cap hid results the caller asked for."""
        if self.total_entries is None:
            return self.stop_reason == "page cap"
        cap = self.per_page * MAX_PAGE
        return self.total_entries > cap and (self.max_results is None or self.max_results > cap)

    def params(self) -> dict[str, int]:
        """The ``page`` and ``per_page`` of the next request."""
        return {"page": self.page, "per_page": self.per_page}

    def update(self, data: Any, records_key: str) -> list[dict]:
        """Read one answer: return its records (trimmed to ``max_results``) and decide whether to go on."""
        records, total, pages = read_page(data, records_key)
        if total is not None:
            self.total_entries = total
        if pages is not None:
            self.total_pages = pages
        records = records[: max(self.wanted - self.collected, 0)]
        self.collected += len(records)
        self.pages_read += 1
        self.has_next_page = False
        if not records:
            self.stop_reason = "empty page"
        elif self.collected >= self.wanted:
            asked = self.max_results is not None and self.max_results <= DISPLAY_CAP
            self.stop_reason = "max_results" if asked else "page cap"
        elif self.total_entries is not None and self.collected >= self.total_entries:
            self.stop_reason = "last page"
        elif self.total_pages is not None and self.page >= self.total_pages:
            self.stop_reason = "last page"
        elif len(records) < self.per_page:
            self.stop_reason = "last page"
        elif self.page >= MAX_PAGE:
            self.stop_reason = "page cap"
        else:
            self.has_next_page = True
            self.page += 1
        return records
