"""People and organization search: filters in, a flattened frame out.

* ``search_people(max_results=100, **filters)`` -> POST ``mixed_people/api_search``.
  **Free** (no credits), but the people are *teasers*: first name, an
  obfuscated last name (``last_name_obfuscated``, e.g. ``"Hu***n"``), title and
  organization name, and ``has_email``-style flags instead of the email, phone
  or LinkedIn URL. The result carries ``person.id``, so the natural next step is
  one call: ``people.apollo.enrich_people()`` (1 credit per matched person)
  fills in the names and emails.
* ``search_orgs(max_results=100, max_credits=None, **filters)`` -> POST
  ``mixed_companies/search``. **1 credit per page that returns results** (a
  page holds up to 100 organizations); pages are recorded in the credit
  ledger, and ``max_credits`` stops before a page that could take the call's
  spend past the cap.
* ``search_frame(df, *, kind, max_results_per_row=10, **filters)`` (also
  ``df.apollo.search``): one search per input row, per-row filters taken from
  columns (``domain`` -> ``q_organization_domains_list``, ``organization_id`` /
  ``org.id`` -> ``organization_ids``, ``title`` -> ``person_titles``, ...; see
  ``filters.COLUMN_ALIASES``) and combined with the keyword filters. Identical
  queries are sent once; every row gets its own copy of the results, tagged
  with ``apollo_input_index`` (the input row's index label; a MultiIndex label as JSON text of
  its list of levels, ``'["batch", 3]'``).

Filters are validated before any request (see ``apollo_frames.core.filters``).
Pages are fetched with ``per_page=100`` until ``max_results``, the last page,
or Apollo's display cap of 500 pages / 50,000 records; a search the cap cuts
short is ``truncated`` and warns. Each page is cached on disk under a hash of
the normalised query, ``per_page`` and the page number (TTL
``client.settings.search_cache_ttl``, 1 day by default): a cached page costs
no request and no credit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from apollo_frames.client.http import ApolloClient, client_scope, unusable_answer
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.ratelimit import parse_rate_headers
from apollo_frames.core import filters as flt
from apollo_frames.core.columns import ColumnMapping, Columns
from apollo_frames.core.entries import canonical_json
from apollo_frames.core.errors import (
    APIError,
    InputError,
    SearchInterrupted,
    SearchTruncatedWarning,
    StorageError,
    warn,
)
from apollo_frames.core.paginate import (
    DISPLAY_CAP,
    MAX_PAGE,
    MAX_PER_PAGE,
    PageNumberPaginator,
    as_organization,
    page_lists,
    read_page,
)
from apollo_frames.core.schema import flatten_orgs, flatten_people, to_pandas
from apollo_frames.core.suppress import identifier
from apollo_frames.engine.budget import Attempts, Budget, trusted_credits
from apollo_frames.engine.confirm import confirm_spend
from apollo_frames.engine.executor import Executor, Outcome, StopSignal
from apollo_frames.engine.keeper import lease_seconds
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.progress import progress_bar
from apollo_frames.engine.runner import charged_attempts
from apollo_frames.engine.summary import Summary, announce, fmt_number
from apollo_frames.engine.suppressing import SEARCH_REASON, WITHHELD_KEY, Suppressor, withheld
from apollo_frames.engine.work import Work
from apollo_frames.ops.registry import Command, Spec, register

PEOPLE_ENDPOINT = flt.ENDPOINTS[flt.PEOPLE]
ORGS_ENDPOINT = flt.ENDPOINTS[flt.ORGS]
RECORDS_KEY = {flt.PEOPLE: "people", flt.ORGS: "organizations"}
#: Cache "endpoint" names for search pages: distinct from the enrichment entries.
CACHE_ENDPOINT = {flt.PEOPLE: "search-page:" + PEOPLE_ENDPOINT, flt.ORGS: "search-page:" + ORGS_ENDPOINT}
OPERATION = {flt.PEOPLE: "search_people", flt.ORGS: "search_orgs"}
#: Credits one page costs at most: api_search is free; an organization page with results costs 1.
PAGE_CREDITS = {flt.PEOPLE: 0.0, flt.ORGS: 1.0}
INPUT_INDEX = "apollo_input_index"
NARROWING_HINT = (
    "narrow the filters (for example split the search by organization_num_employees_ranges, "
    "organization_locations or person_seniorities) and run one search per slice"
)


def credits_per_page(kind: str) -> float:
    """Worst-case credits of one search page: 0 for people, 1 for organizations."""
    return PAGE_CREDITS[flt.check_kind(kind)]


def estimate_search_credits(kind: str, max_results: int | None, queries: int = 1) -> float:
    """Worst-case credits of ``queries`` searches of up to ``max_results`` each (pages x per-page credits)."""
    wanted = DISPLAY_CAP if max_results is None else min(int(max_results), DISPLAY_CAP)
    return queries * math.ceil(wanted / MAX_PER_PAGE) * credits_per_page(kind)


# -- summary -----------------------------------------------------------------------------------


#: fields only a per-row search (search_frame) fills
_PER_ROW = (
    "rows",
    "unique_queries",
    "rows_with_results",
    "rows_without_results",
    "invalid_rows",
    "invalid_reasons",
    "error_rows",
    "errors",
    "skipped_rows",
    "truncated_rows",
    "suppressed_rows",
    "columns",
)


@dataclasses.dataclass(repr=False)
class SearchSummary(Summary):
    """What one search call did. ``to_dict()`` is what ``result.attrs["apollo"]`` holds."""

    results: int = 0
    pages: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    credits_consumed: float = 0
    total_entries: int | None = None
    truncated: bool = False
    stopped_reason: str | None = None
    credits_to_finish_max: float = 0
    #: records the search found that name an identifier on the suppression list: dropped, nothing about them stored
    suppressed: int = 0
    elapsed_s: float = 0.0
    run_id: str = ""
    query: dict | None = None
    # per-row searches only
    rows: int | None = None
    unique_queries: int | None = None
    rows_with_results: int | None = None
    rows_without_results: int | None = None
    invalid_rows: int | None = None
    invalid_reasons: dict | None = None
    error_rows: int | None = None
    errors: dict | None = None
    skipped_rows: int | None = None
    truncated_rows: int | None = None
    #: rows whose query named only suppressed domains or ids in an organisation filter: not searched
    suppressed_rows: int | None = None
    suppressed_reasons: dict | None = None
    columns: dict | None = None

    _hidden = frozenset({"operation", "query", "invalid_reasons", "errors", "columns", "run_id", "suppressed_reasons"})

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.rows is None:
            for name in (*_PER_ROW, "suppressed_reasons"):
                out.pop(name)
        return out

    def line(self) -> str:
        head = f"{self.operation}: {self.results:,} results"
        if self.rows is not None:
            head += (
                f" for {self.rows:,} rows ({self.rows_with_results:,} with results, {self.rows_without_results:,} "
                f"without, {self.invalid_rows:,} invalid, {self.error_rows:,} errors, {self.skipped_rows:,} skipped)"
                f" | {self.unique_queries:,} unique queries"
            )
        elif self.total_entries is not None:
            head += f" of {self.total_entries:,} matching"
        return (
            head + f" | {self.pages:,} pages, {self.cache_hits:,} from cache, {self.api_calls:,} requests, "
            f"{fmt_number(self.credits_consumed)} credits, {self.elapsed_s:.1f} s"
            + (f" | {self.suppressed:,} suppressed results dropped" if self.suppressed else "")
            + (f" | {self.suppressed_rows:,} rows suppressed" if self.suppressed_rows else "")
            + (" | TRUNCATED" if self.truncated else "")
        )


# -- one query ---------------------------------------------------------------------------------


@dataclasses.dataclass
class QueryResult:
    records: list[dict]
    pages: int = 0
    cache_hits: int = 0
    credits: float = 0.0
    total_entries: int | None = None
    truncated: bool = False
    stopped_reason: str | None = None
    budget_stopped: bool = False
    pages_left_max: int = 0
    #: the answer store could not be written: the pages received are in ``records`` only, no more were asked
    storage_error: StorageError | None = None
    #: records found that name a suppressed identifier: dropped from ``records`` (and from the stored pages)
    suppressed: int = 0


def _fetched(results: Sequence[QueryResult]) -> int:
    """Pages the queries fetched (and stored) so far: those not read from the cache."""
    return sum(r.pages - r.cache_hits for r in results)


def _trim(data: Any, kind: str) -> dict:
    """The part of a page worth caching, in the endpoint's own shape (so the paginator reads it the same):
    every list of records (company search: ``accounts`` and ``organizations``), pagination and total."""
    _, total, _ = read_page(data, RECORDS_KEY[kind])
    out: dict[str, Any] = {}
    for key in page_lists(RECORDS_KEY[kind]):
        listed = data.get(key) if isinstance(data, dict) else None
        out[key] = [r for r in listed if isinstance(r, dict)] if isinstance(listed, list) else []
    if isinstance(data, dict) and isinstance(data.get("pagination"), dict):
        out["pagination"] = {k: data["pagination"].get(k) for k in ("page", "per_page", "total_entries", "total_pages")}
    if total is not None:
        out["total_entries"] = total
    return out


def run_query(
    kind: str,
    query: dict,
    max_results: int | None,
    *,
    client,
    budget: Budget,
    run_id: str,
    ledger_rows: list | None = None,
    refresh: bool = False,
    on_page=None,
    ledger=None,
    result: QueryResult | None = None,
    interrupted: threading.Event | None = None,
    suppressor: Suppressor | None = None,
) -> QueryResult:
    """Page through one validated query; cached pages cost nothing.

    ``suppressor``: a record naming a suppressed identifier is dropped from the result, and a page is stored with
    a placeholder naming nobody in its place (:func:`_withhold`).

    ``result``: filled in as pages arrive (what an interrupted run had), returned.
    ``interrupted``: once set, no further page is fetched (Ctrl-C: the run is ending).

    A page that costs credits is written to ``ledger`` as sent before it
    leaves (its worst case; in doubt until settled). What each page sent cost
    is appended to ``ledger_rows`` for the caller to settle or record from its
    own thread (:func:`_flush_ledger`).
    """
    pag = PageNumberPaginator(max_results)
    cache = client.cache
    started = cache.clock.time()
    out = result if result is not None else QueryResult(records=[])
    while pag.has_next_page and not (interrupted is not None and interrupted.is_set()):
        params = pag.params()
        key = cache.key(
            CACHE_ENDPOINT[kind], {"query": query, "per_page": params["per_page"]}, {"page": params["page"]}
        )
        hit = {} if refresh else cache.get_many([key])
        if key in hit and isinstance(hit[key], dict):
            data = hit[key]
            out.cache_hits += 1
        elif budget.reserve(PAGE_CREDITS[kind]):
            awaited = _awaited(client, key, started if refresh else None) if PAGE_CREDITS[kind] else None
            if awaited is not None:  # another process paid for it meanwhile
                budget.settle(PAGE_CREDITS[kind], 0.0)
                data = awaited
                out.cache_hits += 1
            else:
                try:
                    data = _fetch_page(kind, {**query, **params}, key, client=client, budget=budget, run_id=run_id,
                                       ledger_rows=ledger_rows, ledger=ledger, interrupted=interrupted)
                except BaseException:  # not fetched: another process may take the page over at once
                    with contextlib.suppress(StorageError, sqlite3.Error):
                        cache.release([key])
                    raise
                data = _withhold(data, kind, suppressor)  # before it is stored
                out.credits += PAGE_CREDITS[kind] if _returned(data, kind) else 0.0
                out.storage_error = _store_page(client, key, data)
        else:
            out.budget_stopped = True
            out.stopped_reason = budget.reached()
            needed = pag.pages_needed if pag.pages_needed is not None else math.ceil(pag.wanted / pag.per_page)
            out.pages_left_max = needed - pag.pages_read
            break
        _read_page(out, pag, data, kind, suppressor)
        if on_page is not None:
            on_page(pag)
        if out.storage_error is not None:
            out.stopped_reason = f"stopped: a page could not be stored ({out.storage_error})"
            break
    out.total_entries = pag.total_entries
    out.truncated = pag.truncated
    out.stopped_reason = out.stopped_reason or pag.stop_reason
    return out


def _read_page(out: QueryResult, pag: PageNumberPaginator, data: dict, kind: str,
               suppressor: Suppressor | None) -> None:
    """One more page into ``out``: its records, less those naming a suppressed identifier (counted)."""
    records = pag.update(data, RECORDS_KEY[kind])
    kept = [r for r in records if not withheld(r) and (suppressor is None or suppressor.answer(r) is None)]
    out.suppressed += len(records) - len(kept)
    out.records.extend(kept)
    out.pages += 1


def _withhold(data: dict, kind: str, suppressor: Suppressor | None) -> dict:
    """A page as it may be stored: each record naming a suppressed identifier (read as the paginator reads it: a
    saved account by its organisation's id) replaced by a placeholder naming nobody, so the page keeps its length
    and reads back the same (its pagination, its credit) without a byte of that person."""
    if suppressor is None:
        return data
    out = dict(data)
    for key in page_lists(RECORDS_KEY[kind]):
        listed = data.get(key)
        if isinstance(listed, list):
            read = (lambda r, k=key: as_organization(r, k)) if kind == flt.ORGS else (lambda r: r)
            out[key] = [{WITHHELD_KEY: True} if suppressor.answer(read(r)) else r for r in listed]
    return out


#: search filters holding identifiers, and the kind of each of their values
IDENTIFIER_FILTERS = {"q_organization_domains_list": "domain", "organization_ids": "id"}


def _unsuppressed(query: dict, suppressor: Suppressor | None) -> tuple[dict, int, list[str]]:
    """(``query`` without its suppressed domains and ids, how many were left out, the filters that left empty):
    a suppressed identifier is never sent, and a filter emptied by it is never sent empty (it would widen)."""
    if suppressor is None:
        return query, 0, []
    out, dropped, emptied = dict(query), 0, []
    for name, kind in IDENTIFIER_FILTERS.items():
        values = query.get(name)
        if not isinstance(values, list):
            continue
        kept = [v for v in values if not _listed(kind, v, suppressor)]
        dropped += len(values) - len(kept)
        if values and not kept:
            emptied.append(name)
        out[name] = kept
    return out, dropped, emptied


def _listed(kind: str, value: Any, suppressor: Suppressor) -> bool:
    pair = identifier(value)
    return pair is not None and pair[0] == kind and suppressor.names(pair)


def _awaited(client, key: str, stored_after: float | None) -> dict | None:
    """Claim a paid page, as enrichment batches are claimed: two processes running the same search pay once.

    The page another live process is fetching is waited for and returned from the store; None when this
    process is to fetch it (the claim is its own, released when the page is stored). Where claims cannot be
    taken (a read-only store) the page is fetched unclaimed.
    """
    cache, lease = client.cache, lease_seconds(client.settings)
    with contextlib.suppress(StorageError, sqlite3.Error):
        while not cache.claim([key], lease).claimed:
            found = cache.wait_for([key], lease, stored_after=stored_after).found.get(key)
            if isinstance(found, dict):
                return found
        found = None if stored_after is not None else cache.get_many([key]).get(key)
        if isinstance(found, dict):  # stored by the other between our look and our claim (a refresh fetches anew)
            cache.release([key])
            return found
    return None


def _store_page(client, key: str, data: dict) -> StorageError | None:
    """Cache a page received (and release its claim); a store that cannot be written is returned (the page is
    kept in memory, its claim lapses with this store)."""
    try:
        client.cache.set_many({key: data}, ttl=client.settings.search_cache_ttl, release=[key])
    except StorageError as exc:
        return exc
    return None


def _fetch_page(kind: str, body: dict, key: str, *, client, budget: Budget, run_id: str,
                ledger_rows: list | None, ledger=None, interrupted: threading.Event | None = None) -> dict:
    """Send one page whose worst case is reserved (and, when it costs credits, written to the ledger first, as is
    each retry after a lost answer, within the budget); settle what it cost, note its ledger row (the caller
    stores the page)."""
    cost = PAGE_CREDITS[kind]
    begin = None
    if ledger is not None and ledger_rows is not None and cost > 0:
        begin = functools.partial(ledger.begin, run_id=run_id, operation=OPERATION[kind],
                                  endpoint=flt.ENDPOINTS[kind], records_sent=1, worst_credits=cost)
    attempts = Attempts(budget, cost, begin)
    try:
        attempts.note()
        response = client.post(flt.ENDPOINTS[kind], json=body, before_resend=attempts.resend if cost > 0 else None,
                               abandon=None if interrupted is None else interrupted.is_set)
        _check_answered_page(kind, response)
    except BaseException as exc:
        in_doubt = charged_attempts(exc)  # attempts the server may have run: in doubt, and against the cap
        attempts.settle(in_doubt, None)
        free = attempts.entry(in_doubt)
        if free is not None and ledger_rows is not None:  # the last attempt cost nothing
            ledger_rows.append((free, {"credits": 0.0, "status": getattr(exc, "status_code", None)}, None, None))
        raise  # with no answer at all, the page stays in the ledger as in doubt
    data = _trim(response.data, kind)
    returned = _returned(data, kind)
    # Apollo reports no credits for a page (it charges one per organization page with results); a figure a server
    # does report is believed only within [0, the page's worst case].
    charged = cost if returned else 0.0  # a page with results costs its credit, whatever the server says
    credits, verified = trusted_credits(response.data.get("credits_consumed", charged), cost, floor=charged)
    if not verified:
        warn(
            f"{OPERATION[kind]}: Apollo reported credits_consumed {response.data.get('credits_consumed')!r} for a "
            f"page: not a number from 0 to {cost:g}. Counted {cost:g} and recorded in the ledger flagged unverified."
        )
    attempts.settle(response.charged_attempts, credits)
    if ledger_rows is not None:
        # One query page sent; "matched" when it returned results (= paid, for orgs).
        sent = attempts.entry(response.charged_attempts)
        entry = {"run_id": run_id, "operation": OPERATION[kind], "endpoint": flt.ENDPOINTS[kind], "records_sent": 1,
                 "records_matched": 1 if returned else 0, "credits": credits, "status": response.status_code,
                 "unverified": not verified}
        ledger_rows.append((sent, entry, flt.ENDPOINTS[kind], response.headers))
    return data


def _check_answered_page(kind: str, response: Any) -> None:
    """:func:`_check_page` on an answer received: one refused was still run (and may have been charged)."""
    try:
        _check_page(kind, response.data)
    except APIError as exc:
        exc.charged_attempts = response.charged_attempts + 1
        raise


def _check_page(kind: str, data: Any) -> None:
    """Refuse a page not in the documented shape (an object with a list of objects), so it is never cached."""
    for key in page_lists(RECORDS_KEY[kind]):
        records = data.get(key) if isinstance(data, dict) else None
        if key == "accounts" and records is None:  # company search without saved accounts may leave it out
            continue
        if not isinstance(records, list):
            raise unusable_answer(flt.ENDPOINTS[kind], f"'{key}' is {type(records).__name__}, not a list")
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise unusable_answer(flt.ENDPOINTS[kind], f"{key} {i} is {type(record).__name__}, not an object")


def _returned(page: dict, kind: str) -> int:
    """Records on a (trimmed) page, in every list: a company page with only saved accounts is paid too."""
    return sum(len(page.get(key) or ()) for key in page_lists(RECORDS_KEY[kind]))


#: what a page's ledger entry settles (the rest was written when it was sent)
_SETTLED_FIELDS = ("credits", "status", "records_matched", "unverified")


def _flush_ledger(ledger, rows: list) -> None:
    """Settle the pages written as sent, record the free ones (rows: (sent id or None, entry, endpoint, headers))."""
    while rows:
        sent, entry, endpoint, headers = rows.pop(0)
        if ledger is None:
            continue
        if headers is not None:
            ledger.note_limits(endpoint, parse_rate_headers(headers))
        if sent is None:
            ledger.record(**entry)
        else:
            ledger.settle(sent, **{k: v for k, v in entry.items() if k in _SETTLED_FIELDS})


def _check_max_results(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number (or None for everything up to {DISPLAY_CAP:,}), got {value!r}")
    if value <= 0:
        raise InputError(f"{name} must be at least 1, got {value}")
    return value


def _truncation_warning(what: str, total: int | None, returned: int) -> None:
    warn(
        f"{what} matched {total:,} records, but Apollo shows at most {DISPLAY_CAP:,} per search "
        f"({MAX_PAGE} pages of {MAX_PER_PAGE}); {returned:,} were returned. To reach the rest, {NARROWING_HINT}.",
        SearchTruncatedWarning,
    )


def _flatten(kind: str, records: Sequence[dict]) -> pa.Table:
    """The records as a table in the declared ``person.*`` / ``org.*`` schema (same columns as enrichment)."""
    return (flatten_people if kind == flt.PEOPLE else flatten_orgs)(list(records))


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return to_pandas(table)


def _frame(kind: str, records: Sequence[dict]) -> pd.DataFrame:
    return _to_pandas(_flatten(kind, records))


# -- public: one search ------------------------------------------------------------------------


def _search(kind: str, max_results: int | None, run: RunOptions, client: ApolloClient | None,
            filters: dict) -> pd.DataFrame:
    max_results = _check_max_results("max_results", max_results)
    progress, refresh = run.progress, run.refresh
    query = flt.validate_filters(kind, filters)
    if not query:
        raise flt.FilterError(
            f"no filters given: an unfiltered {kind} search would page through Apollo's whole database. "
            f"Give at least one filter (valid: {', '.join(flt.names_for(kind))})."
        )
    confirm_spend(OPERATION[kind], run.worst_allowed(estimate_search_credits(kind, max_results)), run.confirm_over)
    budget = Budget(run.max_credits)
    started = time.monotonic()
    summary = SearchSummary(operation=OPERATION[kind], run_id=uuid.uuid4().hex[:12], query=query)
    with client_scope(client) as api:
        suppressor = Suppressor.for_run(api.settings.cache_dir, run.suppress, api.clock)
        query = summary.query = _checked_query(kind, query, suppressor)
        ledger = run.ledger if run.ledger is not None else api.ledger
        bar = progress_bar(desc=OPERATION[kind], unit="page", enabled=progress)

        def on_page(pag: PageNumberPaginator) -> None:
            if pag.pages_needed is not None and bar.total != pag.pages_needed:
                bar.total = pag.pages_needed
                bar.refresh()
            bar.update(1)
            bar.set_postfix(results=pag.collected, credits=f"{budget.spent:g}")

        def work(query: dict) -> QueryResult:
            return run_query(kind, query, max_results, client=api, budget=budget, run_id=summary.run_id,
                             ledger_rows=rows, refresh=refresh, on_page=on_page, ledger=ledger, result=partial,
                             interrupted=executor.interrupted, suppressor=suppressor)

        requests_before = api.stats.requests
        rows: list = []
        partial = QueryResult(records=[])
        # pages follow one another, so one thread; the executor still judges the failure
        executor = Executor(1, name="apollo-search")
        try:
            done = executor.run_tasks([query], work)[0]
        except KeyboardInterrupt:
            raise SearchInterrupted(_fetched([partial])) from None
        finally:
            bar.close()
            summary.api_calls = api.stats.requests - requests_before
            _flush_ledger(ledger, rows)
    if done.error is not None:
        raise done.error
    assert done.value is not None
    frame = _frame(kind, done.value.records)
    _sum_up_search(summary, done.value, len(frame), kind)
    summary.elapsed_s = round(time.monotonic() - started, 3)
    frame.attrs["apollo"] = summary.to_dict()
    if progress:
        announce(summary)
    return frame


def _checked_query(kind: str, query: dict, suppressor: Suppressor | None) -> dict:
    """The query without its suppressed domains and ids (a warning says how many); InputError when that empties
    a filter: the search would widen to strangers."""
    kept, dropped, emptied = _unsuppressed(query, suppressor)
    if emptied:
        raise InputError(f"{OPERATION[kind]}: every value of {', '.join(emptied)} is on the suppression list: not "
                         "searched (without them the search would widen to every company)")
    if dropped:
        warn(f"{OPERATION[kind]}: {dropped:,} filter value(s) on the suppression list were left out of the search")
    return kept


def _sum_up_search(summary: SearchSummary, result: QueryResult, returned: int, kind: str) -> None:
    """Fill the summary of one search and warn when it was cut short."""
    summary.results = returned
    summary.suppressed = result.suppressed
    summary.pages = result.pages
    summary.cache_hits = result.cache_hits
    summary.credits_consumed = result.credits
    summary.total_entries = result.total_entries
    summary.truncated = result.truncated
    summary.stopped_reason = result.stopped_reason
    if result.truncated:
        _truncation_warning(f"{OPERATION[kind]}", result.total_entries, returned)
    if result.storage_error is not None:
        warn(f"{OPERATION[kind]}: stopped after {result.pages} pages ({returned:,} results): the last page could "
             f"not be stored and is only in the frame returned; nothing more was asked. {result.storage_error}")
    if result.budget_stopped:
        summary.credits_to_finish_max = result.pages_left_max * PAGE_CREDITS[kind]
        warn(
            f"{OPERATION[kind]}: stopped after {result.pages} pages ({returned:,} results): {result.stopped_reason}. "
            f"Finishing would take at most {result.pages_left_max} more pages = "
            f"{summary.credits_to_finish_max:g} credits; run again with a larger max_credits and the pages "
            f"already fetched come from the cache.",
            SearchTruncatedWarning,
        )


def search_people(
    *,
    max_results: int | None = 100,
    client: ApolloClient | None = None,
    progress: bool = True,
    refresh: bool = False,
    ledger: Ledger | None = None,
    suppress: Any = None,
    **filters: Any,
) -> pd.DataFrame:
    """Search Apollo's people database (POST mixed_people/api_search, free) and return a flat frame.

    Filters are keyword arguments named as in Apollo's docs, plain or with
    ``[]`` (``person_titles=["VP Sales"]``, ``person_seniorities="vp"``,
    ``q_organization_domains_list="acme.example"``,
    ``organization_num_employees_ranges=(1, 50)``, ...); see
    ``apollo_frames.core.filters`` for every name and the shapes accepted. They are
    validated before any request: an unknown name or an unusable value raises
    ``FilterError`` (a ``ValueError``) or ``TypeError``.

    Results are **teasers**: ``person.id``, ``person.first_name``,
    ``person.title``, ``person.organization.name``; the last name only
    obfuscated (``person.last_name_obfuscated``, e.g. ``"Hu***n"``) and no email,
    phone or LinkedIn URL. Enrich them with one more call —
    ``result.apollo.enrich_people()`` — which matches on ``person.id`` (1 credit
    per matched person).

    ``max_results`` (default 100, None = everything up to Apollo's 50,000 cap)
    bounds how many people are returned; pages of 100 are fetched only as
    needed. ``result.attrs["apollo"]`` holds ``api_calls``, ``pages``,
    ``cache_hits``, ``total_entries``, ``credits_consumed`` (always 0 here),
    ``truncated`` and the normalised ``query``.

    ``client``: the client to use (default: the session's); ``progress``: a bar over the pages; ``refresh=True``:
    fetch the pages again even when stored; ``ledger``: where the pages' credits are recorded (default: the
    client's); ``suppress`` (e-mails, domains, LinkedIn URLs, Apollo ids: a list, set, Series, frame or file
    path), with the cache folder's suppression list: a person found who names one is dropped before the page is
    stored or the frame returned (counted in ``suppressed``); suppressed domains and ids are left out of the
    filters.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> people = af.search_people(q_organization_domains_list=["verdant-foods.example"], max_results=2, progress=False)
    >>> len(people), people.attrs["apollo"]["credits_consumed"]
    (2, 0.0)
    """
    run = RunOptions(refresh=refresh, progress=progress, ledger=ledger, suppress=suppress)
    return _search(flt.PEOPLE, max_results, run, client, filters)


def search_orgs(
    *,
    max_results: int | None = 100,
    max_credits: float | None = None,
    confirm_over: float | None = None,
    client: ApolloClient | None = None,
    progress: bool = True,
    refresh: bool = False,
    ledger: Ledger | None = None,
    suppress: Any = None,
    **filters: Any,
) -> pd.DataFrame:
    """Search Apollo's organization database (POST mixed_companies/search) and return a flat ``org.*`` frame.

    **Costs 1 credit per page that returns results** (up to 100 organizations
    a page); cached pages cost nothing. With ``max_credits``, no page is
    fetched that could take this call's spend past the cap; the result then
    holds what was fetched, and a warning says how many credits finishing
    would take at most. With ``confirm_over``, a search whose worst case
    (``max_results`` pages' worth) is above it asks first, or is refused when
    nobody can be asked. Pages sent are recorded in the credit ledger.

    Filters as in ``search_people`` (organization filters:
    ``q_organization_domains_list``, ``organization_num_employees_ranges``,
    ``organization_locations``, ``q_organization_name``,
    ``q_organization_keyword_tags``, ``revenue_range``, ``organization_ids``, ...).

    ``max_credits`` / ``confirm_over`` as in every call that spends credits. ``client``: the client to use (default:
    the session's); ``progress``: a bar over the pages; ``refresh=True``: fetch the pages again even when stored;
    ``ledger``: where the pages' credits are recorded (default: the client's); ``suppress``: as in
    ``search_people`` (an organisation is named by its id, domain, website or LinkedIn URL).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> orgs = af.search_orgs(q_organization_domains_list=["verdant-foods.example"], max_credits=1, progress=False)
    >>> orgs["org.name"].tolist()
    ['Verdant Foods']
    """
    run = RunOptions(max_credits=max_credits, confirm_over=confirm_over, refresh=refresh, progress=progress,
                     ledger=ledger, suppress=suppress)
    return _search(flt.ORGS, max_results, run, client, filters)


# -- public: one search per row ----------------------------------------------------------------


def _json_label(label: Any) -> Any:
    """An index label as a JSON-friendly value; a MultiIndex label (a tuple) as JSON text of its list."""
    if isinstance(label, tuple):
        return json.dumps([_json_label(part) for part in label], default=str)
    if hasattr(label, "item") and not isinstance(label, (str, bytes)):
        try:
            label = label.item()
        except (ValueError, AttributeError):
            pass
    if label is None or isinstance(label, (str, int, float, bool)):
        return label
    return str(label)


def _row_query(
    kind: str, constant: dict, values: Mapping[str, Any], anchored: bool, mapping: Mapping[str, Any]
) -> tuple[dict | None, str | None]:
    """The row's full query, or why the row cannot be searched."""
    row: dict[str, Any] = {}

    def where(names) -> str:
        return ", ".join(f"{mapping[n]!s} ({n})" for n in names)

    for name, value in values.items():
        try:
            normalized = flt.normalize_value(name, value)
        except (ValueError, TypeError) as exc:
            return None, f"column {mapping[name]!s}: {exc}"
        if not flt.is_empty(normalized):
            row[name] = normalized
    if not row:
        return None, f"blank {where(values)}: not searched (an unfiltered search would return strangers)"
    if anchored and not any(name in row for name in flt.ANCHORS):
        return None, (
            f"blank {where([n for n in values if n in flt.ANCHORS])}: not searched, as the search would widen "
            "to every company"
        )
    query = dict(constant)
    query.update(row)
    return dict(sorted(query.items())), None


@dataclasses.dataclass
class RowQueries:
    """The per-row searches behind a frame: each row's unique query (or -1 and a reason), deduplicated."""

    kind: str
    constant: dict
    mapping: dict
    row_query: list[int]
    reasons: dict
    unique: list[dict]
    #: the column mapping behind ``mapping`` (for ``attrs["apollo"]["columns"]``)
    columns: ColumnMapping | None = None
    #: rows not searched because their query named only suppressed domains or ids: label -> reason
    suppressed: dict = dataclasses.field(default_factory=dict)

    def set_aside(self, index: pd.Index, suppressor: Suppressor | None) -> None:
        """Leave suppressed domains and ids out of every query; a row whose organisation filter that empties is
        not searched (a query no row needs any more is dropped)."""
        if suppressor is None:
            return
        pruned = [_unsuppressed(query, suppressor) for query in self.unique]
        at: dict[str, int] = {}  # two queries may now be one
        unique: list[dict] = []
        moved: dict[int, int] = {}
        for j, (query, _, emptied) in enumerate(pruned):
            if not emptied:
                moved[j] = at.setdefault(canonical_json(query), len(unique))
                if moved[j] == len(unique):
                    unique.append(query)
        self.unique = unique
        for i, (label, j) in enumerate(zip(index, self.row_query, strict=True)):
            if j >= 0 and j not in moved:
                kind = IDENTIFIER_FILTERS[pruned[j][2][0]]
                self.suppressed[_json_label(label)] = SEARCH_REASON.format(kind=kind)
            self.row_query[i] = moved.get(j, -1)


def prepare_rows(frame: pd.DataFrame, kind: str, columns=None, filters: Mapping[str, Any] | None = None) -> RowQueries:
    """Validate the constant filters, map the columns and build every row's query; sends nothing."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"search needs a pandas DataFrame, got {type(frame).__name__}")
    kind = search_kind_of(kind)
    constant = flt.validate_filters(kind, dict(filters or {}))
    used = flt.filter_columns(kind, frame.columns, columns, constant=constant)
    mapping = used.first
    anchored = any(name in flt.ANCHORS for name in mapping)
    series = {name: frame[label].tolist() for name, label in mapping.items()}
    row_query: list[int] = []
    reasons: dict[Any, str | None] = {}
    unique: list[dict] = []
    seen: dict[str, int] = {}
    for i, label in enumerate(frame.index):
        query, why = _row_query(kind, constant, {name: values[i] for name, values in series.items()}, anchored, mapping)
        if query is None:
            row_query.append(-1)
            reasons[_json_label(label)] = why
            continue
        text = canonical_json(query)
        j = seen.get(text)
        if j is None:
            j = seen[text] = len(unique)
            unique.append(query)
        row_query.append(j)
    return RowQueries(kind, constant, mapping, row_query, reasons, unique, used)


def cached_pages(kind: str, query: dict, max_results: int | None, client) -> tuple[int, bool]:
    """(pages of this query in the cache, whether they complete it): reads the cache only."""
    pag = PageNumberPaginator(max_results)
    found = 0
    while pag.has_next_page:
        params = pag.params()
        key = client.cache.key(
            CACHE_ENDPOINT[kind], {"query": query, "per_page": params["per_page"]}, {"page": params["page"]}
        )
        hit = client.cache.get_many([key]).get(key)
        if not isinstance(hit, dict):
            return found, False
        pag.update(hit, RECORDS_KEY[kind])
        found += 1
    return found, True


def plan_search_work(frame: pd.DataFrame, columns, options: dict, client):
    """``credits.Work`` for ``estimate(frame, operation="search", kind=..., max_results_per_row=..., **filters)``.

    One "record" is one unique row query; a query whose pages are all cached
    costs nothing. Worst case per query to fetch: every page ``max_results_per_row``
    could take (1 credit each for organizations, 0 for people).
    """
    options = dict(options)
    kind = search_kind_of(options.pop("kind", "people"))
    per_row = _check_max_results("max_results_per_row", options.pop("max_results_per_row", 10))
    refresh = bool(options.pop("refresh", False))
    options.pop("max_credits", None)
    prep = prepare_rows(frame, kind, columns, options)
    pag = PageNumberPaginator(per_row)
    pages_per_query = math.ceil(pag.wanted / pag.per_page)
    cached = 0 if refresh else sum(1 for q in prep.unique if cached_pages(kind, q, per_row, client)[1])
    to_fetch = len(prep.unique) - cached
    return Work(
        operation=OPERATION[kind],
        endpoint=flt.ENDPOINTS[kind],
        rows=len(frame),
        invalid=len(prep.reasons),
        unique=len(prep.unique),
        cached=cached,
        to_fetch=to_fetch,
        batch_size=1,
        worst_credits=pages_per_query * PAGE_CREDITS[kind],
        api_calls=to_fetch * pages_per_query,
    )


def search_frame(
    frame: pd.DataFrame,
    *,
    kind: str = "people",
    max_results_per_row: int | None = 10,
    columns: Columns = None,
    max_credits: float | None = None,
    confirm_over: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    ledger: Ledger | None = None,
    suppress: Any = None,
    **filters: Any,
) -> pd.DataFrame:
    """One search per row of ``frame``; a long frame of results tagged with ``apollo_input_index``.

    Per-row filters come from columns recognised by name (``domain``,
    ``website``, ``org.primary_domain`` -> ``q_organization_domains_list``;
    ``organization_id``, ``org.id`` -> ``organization_ids``; ``title`` ->
    ``person_titles``; ``seniority``; ``location``; ``company`` (orgs) ->
    ``q_organization_name``; or the filter's own name) — ``columns={"col":
    "filter"}`` overrides, ``{"col": None}`` leaves a column out — and are
    combined with the constant filters given as keyword arguments (a keyword
    filter wins over an auto-recognised column of the same filter).

    Rows whose values cannot be used are never searched: a non-blank value that
    fails validation, all per-row values blank, or (when an organization column
    is used) no organization value — they are counted in ``invalid_rows`` with
    reasons in ``invalid_reasons`` ({index label: reason}). Identical queries are
    sent once; each row gets its own copy of the results. ``attrs["apollo"]``
    also counts ``rows_with_results``, ``rows_without_results``, ``error_rows``
    (``errors``: {label: message}), ``skipped_rows`` (credit budget / rate
    limit), ``truncated_rows``, ``api_calls``, ``pages``, ``credits_consumed``.
    People results are teasers: see ``search_people``.

    ``kind``: ``"people"`` or ``"orgs"``; ``max_results_per_row``: results kept per row (None: all, up to Apollo's
    cap). ``max_credits``, ``confirm_over``, ``refresh``, ``progress``, ``client`` and ``ledger`` as in
    :func:`search_orgs` (a people search is free). ``suppress``: as in ``search_people``; a row whose organisation
    filter names only suppressed domains or ids is not searched (``suppressed_rows``).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> targets = pd.DataFrame({"domain": ["verdant-foods.example", "not a domain!"]})
    >>> found = af.search_frame(targets, kind="people", max_results_per_row=2, progress=False)
    >>> found.columns[0], len(found) <= 2, found.attrs["apollo"]["invalid_rows"]
    ('apollo_input_index', True, 1)
    """
    per_row = _check_max_results("max_results_per_row", max_results_per_row)
    run = RunOptions(max_credits=max_credits, confirm_over=confirm_over, refresh=refresh, progress=progress,
                     ledger=ledger, suppress=suppress)
    prep = prepare_rows(frame, kind, columns, filters)
    kind = prep.kind
    worst = estimate_search_credits(kind, per_row, queries=len(prep.unique))
    confirm_spend(OPERATION[kind] + "_by_row", run.worst_allowed(worst), run.confirm_over)
    budget = Budget(run.max_credits)
    started = time.monotonic()
    summary = SearchSummary(operation=OPERATION[kind] + "_by_row", run_id=uuid.uuid4().hex[:12], query=prep.constant)
    summary.columns = {name: str(label) for name, label in prep.mapping.items()}
    with client_scope(client) as api:
        suppressor = Suppressor.for_run(api.settings.cache_dir, run.suppress, api.clock)
        prep.set_aside(frame.index, suppressor)
        requests_before = api.stats.requests
        try:
            searched = _run_queries(
                kind,
                prep.unique,
                per_row,
                client=api,
                budget=budget,
                run_id=summary.run_id,
                refresh=refresh,
                ledger=run.ledger if run.ledger is not None else api.ledger,
                progress=progress,
                suppressor=suppressor,
            )
        finally:
            summary.api_calls = api.stats.requests - requests_before
    out, rows = _fan_out(frame, kind, prep.row_query, searched)
    _sum_up_rows(summary, searched, rows, prep, len(frame), len(out))
    _warn_unfinished(summary, searched, kind, per_row, len(out))
    summary.elapsed_s = round(time.monotonic() - started, 3)
    out.attrs["apollo"] = summary.to_dict()
    if progress:
        announce(summary)
    return out


@dataclasses.dataclass
class _Searched:
    """Per unique query: its result, or (status, message) when it failed or was never sent."""

    results: list[QueryResult | None]
    failures: dict[int, tuple[str, str]]
    stop_reason: str | None

    @property
    def done(self) -> list[QueryResult]:
        return [r for r in self.results if r is not None]


def _run_queries(
    kind: str,
    unique: list[dict],
    per_row: int | None,
    *,
    client,
    budget: Budget,
    run_id: str,
    refresh: bool,
    ledger,
    progress: bool,
    stop: StopSignal | None = None,
    suppressor: Suppressor | None = None,
) -> _Searched:
    """Run the unique queries through the executor; ledger rows are written on this thread as queries finish.

    ``stop``: a stop signal shared with other runs; once set, no further query is sent.
    """
    searched = _Searched([None] * len(unique), {}, None)
    ledger_rows: list = []
    bar = progress_bar(total=len(unique), desc=OPERATION[kind], unit="query", enabled=progress)
    partials = [QueryResult(records=[]) for _ in unique]

    def work(j: int) -> QueryResult:
        return run_query(kind, unique[j], per_row, client=client, budget=budget, run_id=run_id,
                         ledger_rows=ledger_rows, refresh=refresh, ledger=ledger, result=partials[j],
                         interrupted=executor.interrupted, suppressor=suppressor)

    def on_done(done: Outcome[int, QueryResult]) -> None:
        if done.ok:
            searched.results[done.task] = done.value
        elif done.started:  # one the run never started is skipped below
            searched.failures[done.task] = done.row_status("searched")
        bar.update(1)
        bar.set_postfix(credits=f"{budget.spent:g}")
        _flush_ledger(ledger, ledger_rows)

    executor = Executor.for_client(client, stop, name="apollo-search")
    try:
        outcomes = executor.run_tasks(range(len(unique)), work, on_done)
    except KeyboardInterrupt:
        raise SearchInterrupted(_fetched(partials)) from None
    finally:
        bar.close()
        _flush_ledger(ledger, ledger_rows)
    searched.stop_reason = executor.stop.reason
    for j, done in enumerate(outcomes):
        if not done.started:
            searched.failures[j] = ("skipped", searched.stop_reason or "not searched")
    executor.stop.raise_fatal()
    return searched


@dataclasses.dataclass
class _RowCounts:
    """How the rows of a per-row search ended."""

    with_results: int = 0
    without: int = 0
    errors: int = 0
    skipped: int = 0
    truncated: int = 0
    #: results dropped as suppressed, over the rows' copies
    suppressed: int = 0
    messages: dict = dataclasses.field(default_factory=dict)


def _fan_out(
    frame: pd.DataFrame, kind: str, row_query: list[int], searched: _Searched
) -> tuple[pd.DataFrame, _RowCounts]:
    """Each valid row gets its own copy of its query's records, tagged with the row's index label."""
    offsets: list[int] = []
    all_records: list[dict] = []
    for res in searched.results:
        offsets.append(len(all_records))
        all_records.extend(res.records if res is not None else [])
    take: list[int] = []
    positions: list[int] = []
    counts = _RowCounts()
    for pos, (label, j) in enumerate(zip(frame.index, row_query, strict=False)):
        if j < 0:
            continue
        res = searched.results[j]
        if res is None:
            status, message = searched.failures.get(j, ("skipped", "not searched"))
            counts.errors += status == "error"
            counts.skipped += status != "error"
            counts.messages[_json_label(label)] = message
        elif res.budget_stopped and not res.records:
            counts.skipped += 1
        else:
            counts.truncated += res.truncated
            counts.suppressed += res.suppressed
            counts.with_results += bool(res.records)
            counts.without += not res.records
            take.extend(range(offsets[j], offsets[j] + len(res.records)))
            positions.extend([pos] * len(res.records))
    flat = _to_pandas(_flatten(kind, all_records).take(pa.array(take, type=pa.int64())))
    return pd.concat([_input_labels(frame.index, positions), flat], axis=1), counts


def _input_labels(index: pd.Index, positions: list[int]) -> pd.Series:
    """The ``apollo_input_index`` column: each result's input row label.

    A MultiIndex label becomes JSON text (a list, one item per level:
    ``'["batch", 3]'``), so the column stays one plain column that Parquet and
    CSV can write; ``tuple(json.loads(text))`` gives the label back.
    """
    taken = index.take(positions)
    if isinstance(index, pd.MultiIndex):
        return pd.Series([_json_label(label) for label in taken], name=INPUT_INDEX, dtype="string")
    return pd.Series(taken, name=INPUT_INDEX).reset_index(drop=True)


def _sum_up_rows(
    summary: SearchSummary, searched: _Searched, counts: _RowCounts, prep: RowQueries, rows: int, results: int
) -> None:
    done = searched.done
    summary.results = results
    summary.pages = sum(r.pages for r in done)
    summary.cache_hits = sum(r.cache_hits for r in done)
    summary.credits_consumed = sum(r.credits for r in done)
    totals = [r.total_entries for r in done if r.total_entries is not None]
    summary.total_entries = sum(totals) if totals else None
    summary.truncated = any(r.truncated for r in done)
    summary.rows = rows
    summary.unique_queries = len(prep.unique)
    summary.rows_with_results = counts.with_results
    summary.rows_without_results = counts.without
    summary.invalid_rows = len(prep.reasons)
    summary.invalid_reasons = prep.reasons
    summary.error_rows = counts.errors
    summary.errors = counts.messages
    summary.skipped_rows = counts.skipped
    summary.truncated_rows = counts.truncated
    summary.suppressed = counts.suppressed
    summary.suppressed_rows = len(prep.suppressed)
    summary.suppressed_reasons = prep.suppressed


def _warn_unfinished(summary: SearchSummary, searched: _Searched, kind: str, per_row: int | None, results: int) -> None:
    """Warn about searches the display cap truncated, and about queries the budget or a stop cut short."""
    done = searched.done
    if summary.truncated:
        largest = max(r.total_entries for r in done if r.total_entries is not None)
        _truncation_warning(
            f"{summary.truncated_rows:,} of the row searches of {OPERATION[kind]} (the largest)", largest, results
        )
    budget_stopped = [r for r in done if r.budget_stopped]
    not_sent = sum(1 for status, _ in searched.failures.values() if status == "skipped")
    if budget_stopped:
        per_query = math.ceil((per_row or DISPLAY_CAP) / MAX_PER_PAGE)
        left = sum(r.pages_left_max for r in budget_stopped) + per_query * not_sent
        summary.credits_to_finish_max = left * PAGE_CREDITS[kind]
        summary.stopped_reason = budget_stopped[0].stopped_reason
        warn(
            f"{OPERATION[kind]}: {len(budget_stopped) + not_sent:,} of {summary.unique_queries:,} unique queries were "
            f"cut short or not sent: {summary.stopped_reason}. Finishing them would cost at most "
            f"{summary.credits_to_finish_max:g} credits; run again with a larger max_credits and the pages already "
            f"fetched come from the cache.",
            SearchTruncatedWarning,
        )
    elif searched.stop_reason:
        summary.stopped_reason = searched.stop_reason
        warn(f"{OPERATION[kind]}: {summary.skipped_rows:,} rows were not searched: {searched.stop_reason}")


def search_kind_of(kind: Any) -> str:
    aliases = {
        "people": "people",
        "person": "people",
        "persons": "people",
        "orgs": "orgs",
        "org": "orgs",
        "organizations": "orgs",
        "organization": "orgs",
        "companies": "orgs",
        "company": "orgs",
    }
    if not isinstance(kind, str) or kind.strip().lower() not in aliases:
        raise InputError(f"kind must be 'people' or 'orgs', got {kind!r}")
    return aliases[kind.strip().lower()]


def _result_schema(options: Mapping[str, Any]) -> pa.Schema:
    """The declared columns after ``apollo_input_index``: people's or organizations', by ``kind``."""
    return _flatten(search_kind_of(options.get("kind", "people")), []).schema


SPEC = register(
    Spec(
        name="search",
        kind="search",
        function=search_frame,
        method="search",
        options=("kind", "max_results_per_row", "columns"),  # and the filters, by their own names
        schema=_result_schema,
        planner=plan_search_work,
        commands=(
            Command(
                "search-people",
                "search people by filters (mixed_people/api_search, free; teaser records)",
                call=search_people,
            ),
            Command(
                "search-orgs",
                "search organizations by filters (mixed_companies/search, 1 credit per page with results)",
                call=search_orgs,
                flags=("max_credits",),
            ),
        ),
    )
)
