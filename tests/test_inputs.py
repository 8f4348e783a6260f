"""Issue 14 inputs: full names split for pushes, the column mapping preview and its record on results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

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
