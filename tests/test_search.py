"""People and organization search: filters, pagination, cache, credits, per-row search, CLI."""

from __future__ import annotations

import json
import math
import re
import warnings

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
import respx

import apollo_frames as af
from apollo_frames import SearchTruncatedWarning
from apollo_frames.cli import main as cli_main
from apollo_frames.core import filters as flt
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import StorageError
from apollo_frames.core.paginate import DISPLAY_CAP, PageNumberPaginator, read_page

BASE = "https://apollo.test/api/v1"
KEY = "test-key-0123456789-SECRET"


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def mocked(tmp_path):
    """A client on a respx-mocked Apollo (no sandbox), with a fake clock."""
    c = af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path / "mcache", plan="paid", clock=FakeClock())
    yield c
    c.close()


def fake_search(total: int, kind: str = "people", sent: list | None = None):
    """A respx side effect serving ``total`` records, page by page, in the endpoint's own shape."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if sent is not None:
            sent.append(body)
        page, per_page = body["page"], min(body["per_page"], 100)
        start = (page - 1) * per_page
        n = max(0, min(per_page, total - start)) if page <= 500 else 0
        if kind == "people":
            people = [{"id": f"p{start + i:06d}", "first_name": "Ann", "last_name_obfuscated": "Ex***e"} for i in range(n)]
            return httpx.Response(200, json={"total_entries": total, "people": people})
        orgs = [{"id": f"o{start + i:06d}", "name": f"Org {start + i}"} for i in range(n)]
        pagination = {"page": page, "per_page": per_page, "total_entries": total, "total_pages": math.ceil(total / per_page)}
        return httpx.Response(200, json={"pagination": pagination, "organizations": orgs, "accounts": []})

    return handler


def orgs_with_people(sandbox, n: int, min_people: int = 1) -> list[dict]:
    by_org: dict[str, int] = {}
    for p in sandbox.world.people:
        oid = p.get("organization_id") or (p.get("organization") or {}).get("id")
        by_org[oid] = by_org.get(oid, 0) + 1
    found = [o for o in sandbox.world.orgs if by_org.get(o["id"], 0) >= min_people and o.get("primary_domain")]
    assert len(found) >= n, "the sandbox world is too small for this test"
    return found[:n]


def people_at(sandbox, org: dict) -> list[dict]:
    return [
        p for p in sandbox.world.people
        if (p.get("organization_id") or (p.get("organization") or {}).get("id")) == org["id"]
    ]


# -- filters: validated before any request --------------------------------------------------------


def test_unknown_filter_names_the_closest_valid_one():
    with pytest.raises(af.FilterError, match=r"unknown people search filter 'person_title'.*Did you mean 'person_titles'"):
        flt.validate_filters("people", {"person_title": "VP Sales"})
    with pytest.raises(ValueError, match="Did you mean 'organization_num_employees_ranges'"):
        flt.validate_filters("orgs", {"organization_num_employee_ranges": "1,10"})
    # a people filter sent to organization search is refused, not silently ignored
    with pytest.raises(af.FilterError, match="people search filter; mixed_companies/search does not take it"):
        flt.validate_filters("orgs", {"person_titles": "CEO"})
    with pytest.raises(af.FilterError, match="max_results"):
        flt.validate_filters("people", {"page": 3})


def test_unknown_filter_sends_nothing(sandbox, client):
    with pytest.raises(af.FilterError, match="Did you mean 'person_titles'"):
        af.search_people(max_results=10, client=client, progress=False, person_tittles=["CEO"])
    assert sandbox.count(path="mixed_people/api_search") == 0


def test_values_are_fixed_where_safe():
    q = flt.validate_filters(
        "people",
        {
            "person_titles[]": "VP Sales",  # [] spelling, scalar wrapped
            "person_seniorities": ["VP", "C-Suite", "vice president", "director"],
            "organization_num_employees_ranges": [(1, 10), "11-50", "51,200", "10001+"],
            "revenue_range": "$1M-$5.5M",
            "include_similar_titles": "true",
            "organization_job_posted_at_range[min]": "2024-01-01",
        },
    )
    assert q == {
        "include_similar_titles": True,
        "organization_job_posted_at_range": {"min": "2024-01-01"},
        "organization_num_employees_ranges": ["1,10", "11,50", "51,200", "10001,"],
        "person_seniorities": ["c_suite", "vp", "director"],
        "person_titles": ["VP Sales"],
        "revenue_range": {"min": 1_000_000, "max": 5_500_000},
    }
    assert flt.validate_filters("orgs", {"organization_num_employees_ranges": (1, 10)}) == {
        "organization_num_employees_ranges": ["1,10"]
    }
    assert flt.validate_filters("orgs", {"revenue_range": (1_000_000, None)}) == {"revenue_range": {"min": 1_000_000}}
    domains = flt.validate_filters("people", {"q_organization_domains_list": ["https://www.Acme.example/about", "acme.example"]})
    assert domains == {"q_organization_domains_list": ["acme.example"]}


@pytest.mark.parametrize(
    "filters, error, message",
    [
        ({"person_titles": {"title": "CEO"}}, TypeError, "person_titles takes text values"),
        ({"person_titles": [42]}, TypeError, "takes text values"),
        ({"q_keywords": ["a", "b"]}, TypeError, "q_keywords takes one text value"),
        ({"person_seniorities": "vpp"}, ValueError, "Did you mean 'vp'"),
        ({"revenue_range": "1,000,000"}, ValueError, "Thousands separators are not accepted"),
        ({"revenue_range": "€1M-€2M"}, ValueError, "other currencies are not accepted"),
        ({"organization_num_employees_ranges": "50-10"}, ValueError, "min 50 is larger than max 10"),
        ({"organization_num_employees_ranges": "a few"}, ValueError, "cannot read"),
        ({"q_organization_domains_list": "not a domain"}, ValueError, "not a usable domain"),
        ({"include_similar_titles": "maybe"}, TypeError, "True or False"),
        ({"person_titles": ""}, ValueError, "blank"),
        ({"person_titles": "CEO", "person_titles[]": "CTO"}, ValueError, "given twice"),
    ],
)
def test_values_refused_where_not_safe(filters, error, message):
    with pytest.raises(error, match=message):
        flt.validate_filters("people", filters)


@pytest.mark.parametrize("bad", [0, -5])
def test_max_results_must_be_positive(bad, client):
    with pytest.raises(ValueError, match="max_results must be at least 1"):
        af.search_people(max_results=bad, client=client, progress=False, person_titles="CEO")
    frame = pd.DataFrame({"domain": ["acme.example"]})
    with pytest.raises(ValueError, match="max_results_per_row must be at least 1"):
        frame.apollo.search(max_results_per_row=bad, client=client, progress=False)


@pytest.mark.parametrize(
    "kwargs, words",
    [({"refresh": "no"}, "refresh"), ({"progress": "yes"}, "progress"), ({"refresh": 0}, "refresh")],
)
def test_search_flags_must_be_bool(sandbox, client, kwargs, words):
    sent = len(sandbox.requests)
    with pytest.raises(TypeError, match=f"{words} must be True or False"):
        af.search_people(client=client, person_titles="CEO", **{"progress": False, **kwargs})
    with pytest.raises(TypeError, match=f"{words} must be True or False"):
        af.search_orgs(client=client, organization_locations="Germany", **{"progress": False, **kwargs})
    with pytest.raises(TypeError, match=f"{words} must be True or False"):
        pd.DataFrame({"domain": ["acme.example"]}).apollo.search(client=client, **{"progress": False, **kwargs})
    assert len(sandbox.requests) == sent


@pytest.mark.parametrize("bad", [True, "5", -1, float("nan")])
def test_search_max_credits_is_checked_like_enrichment(client, bad):
    with pytest.raises(ValueError, match="max_credits must be a finite number of credits"):
        af.search_orgs(max_credits=bad, client=client, progress=False, organization_locations="Germany")


def test_a_search_without_filters_is_refused(client):
    with pytest.raises(af.FilterError, match="no filters given"):
        af.search_orgs(client=client, progress=False)


# -- pagination ----------------------------------------------------------------------------------


def test_paginator_stop_conditions():
    p = PageNumberPaginator(max_results=150)
    assert p.params() == {"page": 1, "per_page": 100}
    assert len(p.update({"total_entries": 1000, "people": [{}] * 100}, "people")) == 100 and p.has_next_page
    assert p.params() == {"page": 2, "per_page": 100} and p.pages_needed == 2
    assert len(p.update({"total_entries": 1000, "people": [{}] * 100}, "people")) == 50
    assert not p.has_next_page and p.stop_reason == "max_results" and not p.truncated

    p = PageNumberPaginator(max_results=1000)
    p.update({"pagination": {"page": 1, "per_page": 100, "total_entries": 30, "total_pages": 1}, "organizations": [{}] * 30}, "organizations")
    assert not p.has_next_page and p.total_entries == 30 and p.stop_reason == "last page"

    p = PageNumberPaginator(max_results=5)
    assert p.params() == {"page": 1, "per_page": 100}  # full pages: same credit, reusable from the cache
    assert len(p.update({"total_entries": 1000, "people": [{}] * 100}, "people")) == 5 and not p.has_next_page

    p = PageNumberPaginator(max_results=None)
    p.update({"total_entries": 80_000, "people": [{}] * 100}, "people")
    assert p.pages_needed == 500 and p.truncated

    assert read_page({"pagination": {"total_entries": "12", "total_pages": 1}, "organizations": [{"id": 1}]}, "organizations") == (
        [{"id": 1, "_source": "organization"}], 12, 1
    )
    assert read_page(None, "people") == ([], None, None)
    with pytest.raises(ValueError):
        PageNumberPaginator(max_results=0)


@pytest.mark.parametrize(
    "total, max_results, pages",
    [(1000, 150, 2), (30, 1000, 1), (250, None, 3), (200, 200, 2), (0, 100, 1), (100, 100, 1)],
)
def test_requests_equal_pages_needed_people_shape(mocked, total, max_results, pages):
    sent: list = []
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{BASE}/mixed_people/api_search").mock(side_effect=fake_search(total, "people", sent))
        result = af.search_people(max_results=max_results, client=mocked, progress=False, person_titles="VP Sales")
    stats = result.attrs["apollo"]
    assert route.call_count == pages == stats["api_calls"] == stats["pages"]
    assert [b["page"] for b in sent] == list(range(1, pages + 1))
    assert all(b["person_titles"] == ["VP Sales"] for b in sent)
    assert len(result) == min(total, max_results or DISPLAY_CAP)
    assert stats["total_entries"] == total and stats["truncated"] is False and stats["credits_consumed"] == 0
    assert list(result["person.id"][:2]) == [f"p{i:06d}" for i in range(min(2, total))]


@pytest.mark.parametrize("total, max_results, pages", [(1000, 150, 2), (30, 1000, 1), (420, None, 5)])
def test_requests_equal_pages_needed_orgs_pagination_shape(mocked, total, max_results, pages):
    with respx.mock() as router:
        route = router.post(f"{BASE}/mixed_companies/search").mock(side_effect=fake_search(total, "orgs"))
        result = af.search_orgs(max_results=max_results, client=mocked, progress=False, organization_locations="Germany")
    stats = result.attrs["apollo"]
    assert route.call_count == pages == stats["pages"] == stats["api_calls"]
    assert len(result) == min(total, max_results or DISPLAY_CAP) and result["org.id"].is_unique
    assert stats["credits_consumed"] == pages  # one per page with results
    assert stats["total_entries"] == total


def test_display_cap_truncates_and_warns(mocked):
    with respx.mock() as router:
        route = router.post(f"{BASE}/mixed_people/api_search").mock(side_effect=fake_search(80_000, "people"))
        with pytest.warns(SearchTruncatedWarning, match=r"matched 80,000 records.*at most 50,000.*narrow the filters"):
            result = af.search_people(max_results=None, client=mocked, progress=False, person_seniorities="vp")
    stats = result.attrs["apollo"]
    assert route.call_count == 500 == stats["pages"]  # never asks for page 501
    assert len(result) == DISPLAY_CAP and stats["truncated"] is True and stats["total_entries"] == 80_000


def test_no_truncation_warning_when_fewer_were_asked_for(mocked):
    with respx.mock() as router:
        router.post(f"{BASE}/mixed_people/api_search").mock(side_effect=fake_search(80_000, "people"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = af.search_people(max_results=250, client=mocked, progress=False, person_seniorities="vp")
    assert len(result) == 250 and result.attrs["apollo"]["truncated"] is False


# -- cache ---------------------------------------------------------------------------------------


def test_pages_are_cached(mocked):
    with respx.mock() as router:
        route = router.post(f"{BASE}/mixed_companies/search").mock(side_effect=fake_search(250, "orgs"))
        first = af.search_orgs(max_results=250, client=mocked, progress=False, organization_locations=["Germany"])
        # the same query spelled differently is the same cache entry
        again = af.search_orgs(max_results=250, client=mocked, progress=False, **{"organization_locations[]": " Germany "})
        assert route.call_count == 3
        fewer = af.search_orgs(max_results=120, client=mocked, progress=False, organization_locations="Germany")
        assert route.call_count == 3
        refreshed = af.search_orgs(max_results=100, client=mocked, progress=False, refresh=True, organization_locations="Germany")
        assert route.call_count == 4
    assert again.attrs["apollo"]["api_calls"] == 0 and again.attrs["apollo"]["cache_hits"] == 3
    assert again.attrs["apollo"]["credits_consumed"] == 0
    pd.testing.assert_frame_equal(first, again)
    assert len(fewer) == 120 and fewer.attrs["apollo"]["pages"] == 2
    assert refreshed.attrs["apollo"]["credits_consumed"] == 1


def test_search_cache_ttl_is_used(tmp_path):
    clock = FakeClock()
    with af.ApolloClient(api_key=KEY, base_url=BASE, cache_dir=tmp_path, plan="paid", clock=clock,
                         search_cache_ttl=60) as c:
        with respx.mock() as router:
            route = router.post(f"{BASE}/mixed_people/api_search").mock(side_effect=fake_search(10, "people"))
            af.search_people(client=c, progress=False, person_titles="CEO")
            clock.advance(59)
            af.search_people(client=c, progress=False, person_titles="CEO")
            assert route.call_count == 1  # still fresh
            clock.advance(2)
            af.search_people(client=c, progress=False, person_titles="CEO")
        assert route.call_count == 2


# -- against the sandbox -------------------------------------------------------------------------


def test_people_search_against_sandbox(sandbox, client):
    org = orgs_with_people(sandbox, 1, min_people=2)[0]
    expected = people_at(sandbox, org)
    result = af.search_people(
        max_results=1000, client=client, progress=False, q_organization_domains_list=f"https://www.{org['primary_domain']}/"
    )
    stats = result.attrs["apollo"]
    assert set(result["person.id"]) == {p["id"] for p in expected}
    assert stats["total_entries"] == len(expected) and stats["pages"] == 1 == stats["api_calls"]
    assert stats["api_calls"] == sandbox.count(path="mixed_people/api_search")
    assert stats["credits_consumed"] == 0 == sandbox.credits_consumed
    assert result["person.email"].isna().all()  # teasers: no email


def test_org_search_credits_match_sandbox_and_ledger(sandbox, client):
    n_orgs = len(sandbox.world.orgs)
    result = af.search_orgs(max_results=250, client=client, progress=False, organization_num_employees_ranges=(1, 1_000_000))
    stats = result.attrs["apollo"]
    pages = math.ceil(min(250, n_orgs) / 100)
    assert len(result) == min(250, n_orgs) and stats["pages"] == pages == stats["api_calls"]
    assert stats["credits_consumed"] == sandbox.credits_consumed == pages
    ledger = client.ledger.frame()
    assert ledger["credits"].sum() == pages and set(ledger["operation"]) == {"search_orgs"}
    assert client.ledger.total_credits(operation="search_orgs") == pages
    # again: from the cache, free
    again = af.search_orgs(max_results=250, client=client, progress=False, organization_num_employees_ranges="1-1000000")
    assert again.attrs["apollo"]["credits_consumed"] == 0 and sandbox.credits_consumed == pages


def test_a_store_that_fills_up_mid_search_keeps_the_pages_paid_and_settles_them(sandbox, client):
    real, writes = client.cache.set_many, []

    def fills_up(items, **kw):
        writes.append(1)
        if len(writes) >= 2:
            raise StorageError("the answer store: disk full", path=str(client.cache.path), reason="full")
        return real(items, **kw)

    client.cache.set_many = fills_up
    with pytest.warns(UserWarning, match="could not be stored"):
        result = af.search_orgs(max_results=300, client=client, progress=False,
                                organization_num_employees_ranges=(1, 1_000_000))
    stats = result.attrs["apollo"]
    # the page that could not be stored is in the frame; no page after it was asked
    assert len(result) == 200 and sandbox.credits_consumed == 2 == stats["credits_consumed"]
    assert "could not be stored" in stats["stopped_reason"]
    ledger = client.ledger.frame()
    assert list(ledger["status"]) == ["settled"] * 2 and ledger["credits"].sum() == 2


def test_max_credits_stops_before_the_cap(sandbox, client):
    with pytest.warns(SearchTruncatedWarning, match=r"Finishing would take at most 1 more pages = 1 credits"):
        result = af.search_orgs(
            max_results=300, max_credits=2, client=client, progress=False, organization_num_employees_ranges=(1, 1_000_000)
        )
    stats = result.attrs["apollo"]
    assert len(result) == 200 and stats["pages"] == 2 and sandbox.credits_consumed == 2 == stats["credits_consumed"]
    assert "credit budget" in stats["stopped_reason"] and stats["credits_to_finish_max"] == 1
    # with a bigger budget, the two pages already paid come from the cache
    more = af.search_orgs(
        max_results=300, max_credits=1, client=client, progress=False, organization_num_employees_ranges=(1, 1_000_000)
    )
    assert len(more) == 300 and sandbox.credits_consumed == 3 and more.attrs["apollo"]["cache_hits"] == 2


def test_filter_that_matches_nothing_gives_an_empty_typed_frame(sandbox, client):
    people = af.search_people(client=client, progress=False, q_organization_domains_list="no-such-company.example")
    full = af.search_people(max_results=1, client=client, progress=False, person_seniorities="vp")
    assert len(people) == 0 and list(people.columns) == list(full.columns)
    assert dict(people.dtypes) == dict(full.dtypes)
    orgs = af.search_orgs(client=client, progress=False, q_organization_domains_list="no-such-company.example")
    assert len(orgs) == 0 and all(c.startswith("org.") for c in orgs.columns)
    assert orgs.attrs["apollo"]["credits_consumed"] == 0 == sandbox.credits_consumed  # an empty page is free


# -- one search per row --------------------------------------------------------------------------


def test_per_row_search_dedupes_and_fans_out(sandbox, client):
    orgs = orgs_with_people(sandbox, 3, min_people=1)
    domains = [o["primary_domain"] for o in orgs]
    frame = pd.DataFrame(
        {
            "Company Domain": [domains[0], f"https://www.{domains[0]}", domains[1], None, "not a domain", domains[2], domains[1]],
            "note": list("abcdefg"),
        },
        index=[10, 11, 12, 13, 14, 15, 16],
    )
    result = frame.apollo.search(kind="people", max_results_per_row=50, client=client, progress=False)
    stats = result.attrs["apollo"]
    assert stats["unique_queries"] == 3 == sandbox.count(path="mixed_people/api_search") == stats["api_calls"]
    assert stats["invalid_rows"] == 2 and set(stats["invalid_reasons"]) == {13, 14}
    assert "not a usable domain" in stats["invalid_reasons"][14]
    for label, org in ((10, orgs[0]), (11, orgs[0]), (12, orgs[1]), (15, orgs[2]), (16, orgs[1])):
        ids = set(result.loc[result["apollo_input_index"] == label, "person.id"])
        assert ids == {p["id"] for p in people_at(sandbox, org)[:50]}
    assert set(result["apollo_input_index"]) == {10, 11, 12, 15, 16}
    assert result["apollo_input_index"].dtype == frame.index.dtype
    assert stats["rows_with_results"] == 5 and stats["rows_without_results"] == 0
    # results join back to the input
    joined = result.join(frame, on="apollo_input_index")
    assert (joined.loc[joined["apollo_input_index"] == 12, "note"] == "c").all()


def test_per_row_constant_filters_and_rows_without_results(sandbox, client):
    orgs = orgs_with_people(sandbox, 2)
    frame = pd.DataFrame({"domain": [orgs[0]["primary_domain"], "nobody-here.example", orgs[1]["primary_domain"]]})
    result = frame.apollo.search(
        kind="people", max_results_per_row=3, client=client, progress=False, person_seniorities=["VP", "c-suite"]
    )
    stats = result.attrs["apollo"]
    assert stats["rows_without_results"] >= 1 and 1 not in set(result["apollo_input_index"])
    assert result.groupby("apollo_input_index").size().max() <= 3
    assert stats["query"] == {"person_seniorities": ["c_suite", "vp"]}


def test_per_row_orgs_search_by_id_counts_credits(sandbox, client):
    orgs = orgs_with_people(sandbox, 4)
    frame = pd.DataFrame({"organization_id": [o["id"] for o in orgs] + [orgs[0]["id"]]}, index=list("abcde"))
    result = frame.apollo.search(kind="orgs", max_results_per_row=1, client=client, progress=False)
    stats = result.attrs["apollo"]
    assert list(result["apollo_input_index"]) == list("abcde")
    assert list(result["org.id"]) == [o["id"] for o in orgs] + [orgs[0]["id"]]
    assert stats["credits_consumed"] == 4 == sandbox.credits_consumed == client.ledger.total_credits()
    # a budget: never over, and the rest is reported as skipped
    frame2 = pd.DataFrame({"organization_id": [o["id"] for o in orgs_with_people(sandbox, 8)[4:]]})
    with pytest.warns(SearchTruncatedWarning, match="cut short or not sent"):
        limited = frame2.apollo.search(kind="orgs", max_results_per_row=1, max_credits=2, client=client, progress=False)
    assert sandbox.credits_consumed == 6 and limited.attrs["apollo"]["skipped_rows"] == 2
    assert limited.attrs["apollo"]["credits_to_finish_max"] == 2


def test_per_row_search_never_sends_an_unfiltered_query(sandbox, client):
    frame = pd.DataFrame({"domain": [None, "", "   "]})
    result = frame.apollo.search(kind="people", client=client, progress=False, person_titles="CEO")
    assert len(result) == 0 and result.attrs["apollo"]["invalid_rows"] == 3
    assert sandbox.count(path="mixed_people/api_search") == 0
    assert list(result.columns[:1]) == ["apollo_input_index"] and "person.id" in result.columns


def test_per_row_bad_frames(client):
    with pytest.raises(af.FilterError, match="no column of the frame can be used"):
        pd.DataFrame({"colour": ["red"]}).apollo.search(client=client, progress=False)
    with pytest.raises(af.FilterError, match="both as a keyword argument and by column"):
        pd.DataFrame({"d": ["acme.example"]}).apollo.search(
            columns={"d": "q_organization_domains_list"}, q_organization_domains_list="x.example", client=client, progress=False
        )
    with pytest.raises(af.FilterError, match="Did you mean 'organization_ids'"):
        pd.DataFrame({"d": ["x"]}).apollo.search(columns={"d": "organisation_ids"}, client=client, progress=False)
    with pytest.raises(af.FilterError, match="not a column of the frame"):
        pd.DataFrame({"d": ["x"]}).apollo.search(columns={"e": "organization_ids"}, client=client, progress=False)
    with pytest.raises(ValueError, match="kind must be"):
        pd.DataFrame({"domain": ["x.example"]}).apollo.search(kind="leads", client=client, progress=False)


def test_recognised_columns_and_override():
    assert flt.resolve_filter_columns("people", ["Company Domain", "org.id", "Job Title"]) == {
        "q_organization_domains_list": "Company Domain",
        "person_titles": "Job Title",
    }
    assert flt.resolve_filter_columns("people", ["org.id", "Seniority"]) == {
        "organization_ids": "org.id",
        "person_seniorities": "Seniority",
    }
    assert flt.resolve_filter_columns("orgs", ["Website", "Company"]) == {"q_organization_domains_list": "Website"}
    assert flt.resolve_filter_columns("people", ["domain", "x"], {"x": "organization_ids", "domain": None}) == {
        "organization_ids": "x"
    }
    # a keyword filter wins over an auto-recognised column
    assert flt.resolve_filter_columns("people", ["domain", "title"], constant=["person_titles"]) == {
        "q_organization_domains_list": "domain"
    }


# -- search -> enrich ----------------------------------------------------------------------------


def test_search_then_enrich_end_to_end(sandbox, client):
    orgs = orgs_with_people(sandbox, 2, min_people=2)
    companies = pd.DataFrame({"domain": [o["primary_domain"] for o in orgs]})
    found = companies.apollo.search(kind="people", max_results_per_row=5, client=client, progress=False)
    assert len(found) > 0 and found["person.email"].isna().all()
    enriched = found.apollo.enrich_people(client=client, progress=False)
    stats = enriched.attrs["apollo"]
    assert (enriched["apollo_status"] == "matched").all()
    world = {p["id"]: p for p in sandbox.world.people}
    assert list(enriched["person.id"]) == list(found["person.id"])
    emails = [None if pd.isna(e) else e for e in enriched["person.email"]]
    assert emails == [world[i].get("email") for i in found["person.id"]]
    assert enriched["person.email"].notna().any()
    assert list(enriched["apollo_input_index"]) == list(found["apollo_input_index"])
    assert stats["credits_consumed"] == sandbox.credits_consumed


# -- progress and CLI ----------------------------------------------------------------------------


def test_progress_false_is_silent(sandbox, client, capsys):
    af.search_people(max_results=5, client=client, progress=False, person_seniorities="vp")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_cli_search_people_and_orgs(sandbox, tmp_path, capsys, monkeypatch):
    orgs = orgs_with_people(sandbox, 2)
    out = tmp_path / "people.parquet"
    code = cli_main(
        ["search-people", str(out), "--sandbox", "--cache-dir", str(tmp_path / "c"), "--quiet", "--max-results", "500",
         "--filter", f"q_organization_domains_list={orgs[0]['primary_domain']}",
         "--filter", f"q_organization_domains_list[]={orgs[1]['primary_domain']}"]
    )
    assert code == 0, capsys.readouterr().err
    people = pq.read_table(out)
    assert people.num_rows > 0 and "person.id" in people.column_names
    assert "wrote" in capsys.readouterr().out

    out = tmp_path / "orgs.parquet"
    capsys.readouterr()
    code = cli_main(
        ["search-orgs", str(out), "--sandbox", "--cache-dir", str(tmp_path / "c"), "--quiet", "--max-results", "150",
         "--max-credits", "1", "--filter", "organization_num_employees_ranges=1,1000000"]
    )
    assert code == 0
    assert re.search(r"^warning: .*credit budget reached", capsys.readouterr().err, re.MULTILINE)
    assert pq.read_table(out).num_rows == 100  # the second page would pass max_credits

    code = cli_main(["search-people", str(tmp_path / "x.parquet"), "--sandbox", "--quiet", "--filter", "person_title=CEO"])
    err = capsys.readouterr().err
    assert code == 2 and "Did you mean 'person_titles'" in err
    code = cli_main(["search-people", str(tmp_path / "x.parquet"), "--sandbox", "--quiet", "--filter", "nonsense"])
    assert code == 2 and "NAME=VALUE" in capsys.readouterr().err


def test_estimate_search_sends_nothing(sandbox, client):
    orgs = orgs_with_people(sandbox, 3)
    frame = pd.DataFrame({"domain": [o["primary_domain"] for o in orgs] + [orgs[0]["primary_domain"], None]})
    est = af.estimate(frame, operation="search", client=client, kind="orgs", max_results_per_row=150)
    assert (est.rows, est.invalid, est.unique, est.to_fetch, est.api_calls, est.credits_max) == (5, 1, 3, 3, 6, 6)
    assert sandbox.count() == 0
    frame.apollo.search(kind="orgs", max_results_per_row=150, client=client, progress=False)
    again = af.estimate(frame, operation="search", client=client, kind="orgs", max_results_per_row=150)
    assert again.cached == 3 and again.to_fetch == 0 and again.credits_max == 0
    people = af.estimate(frame, operation="search", client=client, kind="people", person_seniorities="vp")
    assert people.credits_max == 0 and people.to_fetch == 3


def test_per_row_search_without_a_key_stops(monkeypatch, tmp_path):
    frame = pd.DataFrame({"domain": ["acme.example", "other.example"]})
    with pytest.raises(af.ConfigurationError, match="No Apollo API key"):
        frame.apollo.search(kind="people", progress=False)  # client from the environment: no key


def test_search_over_real_loopback_http(sandbox, tmp_path):
    from apollo_frames.sandbox import DEFAULT_API_KEY

    org = orgs_with_people(sandbox, 1, min_people=2)[0]
    with sandbox.serve() as base_url:
        with af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=base_url, cache_dir=tmp_path, plan="paid") as c:
            people = af.search_people(client=c, progress=False, q_organization_domains_list=org["primary_domain"])
            orgs = af.search_orgs(client=c, progress=False, organization_ids=[org["id"]])
    assert set(people["person.id"]) == {p["id"] for p in people_at(sandbox, org)}
    assert list(orgs["org.id"]) == [org["id"]] and sandbox.credits_consumed == 1
