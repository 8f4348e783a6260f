"""Issue 14 inputs: full names split for pushes, the column mapping preview and its record on results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.columns import ColumnMapping, ColumnMappingError
from apollo_frames.core.filters import FilterError
from apollo_frames.ops.push import push_accounts, push_contacts, split_full_name


def _records(result: pd.DataFrame) -> list[dict]:
    return [json.loads(p)["record"] if isinstance(p, str) else None for p in result["apollo_payload"]]


@pytest.mark.parametrize(
    "full, first, last",
    [
        ("Jane Doe", "Jane", "Doe"),
        ("Doe, Jane", "Jane", "Doe"),
        ("Dr. Juan Q. Xavier de la Vega III", "Juan", "de la Vega"),
        ("van der Berg, Anna", "Anna", "van der Berg"),
        ("Ms. Łukasz Wójcik Jr.", "Łukasz", "Wójcik"),
        ("Jürgen Müller-Lüdenscheidt", "Jürgen", "Müller-Lüdenscheidt"),
        ("Cher", "Cher", None),
    ],
)
def test_split_full_name(full, first, last):
    assert split_full_name(full) == (first, last)


@pytest.mark.parametrize("header", ["Person - Name", "Full Name", "Name", "fullName", "Contact Name"])
def test_push_splits_a_full_name_column(header):
    frame = pd.DataFrame({header: ["Jane Doe", "Doe, John", "Cher", None],
                          "Email": ["jane@acme.example", "john@acme.example", "cher@acme.example", "x@acme.example"]})
    result = push_contacts(frame, dry_run=True, progress=False)
    assert list(result["apollo_status"]) == ["would_create"] * 4
    records = _records(result)
    assert records[0] == {"email": "jane@acme.example", "first_name": "Jane", "last_name": "Doe"}
    assert records[1] == {"email": "john@acme.example", "first_name": "John", "last_name": "Doe"}
    assert records[2] == {"email": "cher@acme.example", "first_name": "Cher"}
    assert records[3] == {"email": "x@acme.example"}  # no name: nothing invented
    assert all("name" not in r for r in records)  # the full name itself is never sent


def test_push_keeps_first_and_last_columns_over_the_split():
    frame = pd.DataFrame({"Full Name": ["Jane Q. Doe", "Ann Lee"], "First Name": ["Janet", None],
                          "Last Name": [None, "Leigh"], "Email": ["jane@acme.example", "ann@acme.example"]})
    records = _records(push_contacts(frame, dry_run=True, progress=False))
    assert records[0] == {"email": "jane@acme.example", "first_name": "Janet", "last_name": "Doe"}
    assert records[1] == {"email": "ann@acme.example", "first_name": "Ann", "last_name": "Leigh"}


def test_push_accounts_name_is_the_account_name():
    """For accounts ``Name`` stays the account's name: nothing is split."""
    frame = pd.DataFrame({"Name": ["Acme Analytics"], "Website": ["https://www.shop.acme.co.uk/x"]})
    records = _records(push_accounts(frame, dry_run=True, progress=False))
    assert records == [{"domain": "acme.co.uk", "name": "Acme Analytics"}]


# -- the mapping, visible -------------------------------------------------------------------------


HUBSPOT = ["Record ID", "Email", "Work Email", "First Name", "Last Name", "Company Domain Name", "Website URL", "Notes"]


def test_columns_preview_for_enrich_people():
    mapping = af.columns(pd.DataFrame(columns=HUBSPOT))
    assert isinstance(mapping, ColumnMapping) and mapping.operation == "enrich_people"
    assert mapping.fields["email"] == ("Email", "Work Email")
    assert mapping.fields["domain"] == ("Company Domain Name", "Website URL")
    table = mapping.to_frame()
    assert list(table.columns) == ["column", "field", "priority", "how"]
    assert list(table["column"]) == HUBSPOT  # every input column, in frame order
    rows = {r.column: r for r in table.itertuples()}
    assert (rows["Work Email"].field, rows["Work Email"].priority) == ("email", 2)
    assert pd.isna(rows["Notes"].field) and rows["Notes"].how.startswith("ignored")
    html = mapping._repr_html_()
    assert "<table" in html and "Company Domain Name" in html and "enrich_people" in html


@pytest.mark.parametrize(
    "operation, options, expected",
    [
        ("enrich_orgs", {}, {"domain": ("Company Domain Name", "Website URL")}),
        ("enrich-orgs", {}, {"domain": ("Company Domain Name", "Website URL")}),
        ("push_contacts", {"mode": "insert", "dry_run": True},
         {"email": ("Email", "Work Email"), "first_name": ("First Name",), "last_name": ("Last Name",),
          "website_url": ("Website URL",)}),
        ("push_accounts", {}, {"domain": ("Company Domain Name", "Website URL")}),
        ("search", {"kind": "orgs"}, {"q_organization_domains_list": ("Company Domain Name",)}),
        ("search_orgs", {}, {"q_organization_domains_list": ("Company Domain Name",)}),
    ],
)
def test_columns_preview_for_every_operation(operation, options, expected):
    mapping = af.columns(pd.DataFrame(columns=HUBSPOT), operation=operation, **options)
    assert mapping.fields == expected


def test_columns_preview_takes_overrides_constant_filters_and_a_header():
    mapping = af.columns(HUBSPOT, operation="enrich_people", columns={"Notes": "organization_name", "Work Email": None})
    assert mapping.fields["organization_name"] == ("Notes",) and mapping.fields["email"] == ("Email",)
    assert dict(mapping.ignored)["Work Email"] == "left out by columns="
    search = af.columns(["domain", "title"], operation="search", kind="people", person_titles=["CEO"])
    assert "person_titles" not in search and "title" in dict(search.ignored)


def test_columns_preview_raises_what_the_operation_raises():
    with pytest.raises(ColumnMappingError, match="not a column of the frame"):
        af.columns(HUBSPOT, columns={"Nope": "email"})
    with pytest.raises(ColumnMappingError, match="no column of the frame"):
        af.columns(["Notes"], operation="enrich_orgs")
    with pytest.raises(FilterError):
        af.columns(HUBSPOT, operation="search", kind="people", person_titles=[])
    with pytest.raises(TypeError, match="bogus"):
        af.columns(HUBSPOT, operation="enrich_people", bogus=1)
    with pytest.raises(ValueError, match="operation must be one of"):
        af.columns(HUBSPOT, operation="enrich_everything")
    with pytest.raises(TypeError, match="DataFrame or a list"):
        af.columns("Email")


def test_enrichment_records_its_mapping(client):
    frame = pd.DataFrame({"Email": ["nobody@nowhere.example", None], "Work Email": [None, "x@nowhere.example"],
                          "Notes": ["a", "b"]})
    result = frame.apollo.enrich_people(client=client, progress=False)
    assert result.attrs["apollo"]["columns"] == {"email": ["Email", "Work Email"]}
    assert result.attrs["apollo"]["columns"] == af.columns(frame).to_dict()
    websites = pd.DataFrame({"Website URL": ["https://www.shop.acme.co.uk/x"]})
    orgs = websites.apollo.enrich_orgs(client=client, progress=False)
    assert orgs.attrs["apollo"]["columns"] == {"domain": ["Website URL"]}
