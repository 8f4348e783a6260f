"""Id columns in push: another system's ids in a column recognised by name are ignored (one warning, shown in the
mapping preview); a column mapped explicitly keeps the strict per-row check (issue 14)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.core.columns import ColumnMappingError
from apollo_frames.ops.push import push_accounts, push_contacts

APOLLO_IDS = ["5f2a6c1e9b1d4a0012345678", "5f2a6c1e9b1d4a0012345679", "64b7f0c2a1e3d50001abcdef"]


def salesforce_contacts(n: int = 3) -> pd.DataFrame:
    """A Salesforce Data Loader export: its own 18-character ids beside the contact's fields."""
    return pd.DataFrame({
        "ID": [f"0035g00000AbCdE{i:03d}" for i in range(n)],
        "ACCOUNTID": [f"0015g00000XyZab{i:03d}" for i in range(n)],
        "OWNERID": [f"0055g00000QrStU{i:03d}" for i in range(n)],
        "EMAIL": [f"sf{i}@salesforce-export.example" for i in range(n)],
        "FIRSTNAME": [f"First{i}" for i in range(n)],
        "LASTNAME": [f"Last{i}" for i in range(n)],
    })


def pushed_fields(report: pd.DataFrame) -> set[str]:
    import json

    return {key for payload in report["apollo_payload"].dropna() for key in json.loads(payload)["record"]}


def test_another_systems_ids_in_recognised_columns_are_ignored_with_one_warning_each():
    frame = salesforce_contacts()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = push_contacts(frame, dry_run=True, progress=False)
    assert (report["apollo_status"] == "would_create").all()  # not invalid: the rows are pushed without them
    assert not {"account_id", "owner_id"} & pushed_fields(report)
    about = {col: [str(w.message) for w in caught if f"column {col!r} is not pushed" in str(w.message)]
             for col in ("ACCOUNTID", "OWNERID")}
    assert all(len(messages) == 1 for messages in about.values()), about
    assert "columns={'ACCOUNTID': 'account_id'}" in about["ACCOUNTID"][0]
    assert "columns={'OWNERID': 'owner_id'}" in about["OWNERID"][0]
    assert not any("'ID'" in str(w.message) for w in caught)  # upsert never reads the id: nothing to say


def test_an_explicitly_mapped_id_column_keeps_the_strict_per_row_check():
    frame = salesforce_contacts()
    report = push_contacts(frame, dry_run=True, progress=False, columns={"ACCOUNTID": "account_id", "OWNERID": None})
    assert (report["apollo_status"] == "invalid").all()
    assert report["apollo_error"].str.contains("account_id: not an Apollo id").all()


def test_a_column_of_apollo_ids_is_pushed_and_its_odd_value_makes_only_its_row_invalid():
    frame = salesforce_contacts()
    frame["Apollo Account ID"] = [APOLLO_IDS[0], APOLLO_IDS[1], "not-an-id"]
    frame = frame.drop(columns=["ACCOUNTID"])
    with pytest.warns(UserWarning, match="'OWNERID' is not pushed"):
        report = push_contacts(frame, dry_run=True, progress=False)
    assert list(report["apollo_status"]) == ["would_create", "would_create", "invalid"]
    assert "account_id" in pushed_fields(report)


def test_the_mapping_preview_lists_the_column_as_ignored_with_the_reason():
    frame = salesforce_contacts()
    table = frame.apollo.columns(operation="push_contacts").to_frame().set_index("column")
    assert pd.isna(table.loc["ACCOUNTID", "field"])
    reason = table.loc["ACCOUNTID", "how"]
    assert reason.startswith("ignored: not Apollo ids (3 of 3 values") and "'0015g00000XyZab000'" in reason
    assert "columns={'ACCOUNTID': 'account_id'}" in reason
    assert table.loc["EMAIL", "field"] == "email"
    explicit = af.columns(frame, operation="push_contacts", columns={"ACCOUNTID": "account_id"})
    assert explicit.fields["account_id"] == ("ACCOUNTID",)
    # only the labels: nothing to judge the values by, the column is recognised as before
    assert af.columns(list(frame.columns), operation="push_contacts").fields["account_id"] == ("ACCOUNTID",)


def test_a_foreign_id_dropped_the_next_candidate_moves_up():
    frame = salesforce_contacts()
    frame["Apollo Account ID"] = APOLLO_IDS
    mapping = af.columns(frame, operation="push_contacts")
    assert mapping.fields["account_id"] == ("Apollo Account ID",)
    assert [c.priority for c in mapping.choices if c.field == "account_id"] == [1]


def test_update_mode_with_only_another_systems_id_says_why_it_has_no_id():
    frame = salesforce_contacts()
    with pytest.raises(ColumnMappingError, match=r"'ID' was not used: not Apollo ids .*columns=\{'ID': 'id'\}"):
        push_contacts(frame, mode="update", dry_run=True, progress=False)
    frame["ID"] = APOLLO_IDS
    with pytest.warns(UserWarning, match="'ACCOUNTID' is not pushed"):
        report = push_contacts(frame, mode="update", dry_run=True, progress=False)
    assert (report["apollo_status"] == "would_update").all()


def test_a_file_push_warns_once_for_the_whole_file(tmp_path):
    frame = pd.DataFrame({"Website": [f"acct{i}.example" for i in range(9)],
                          "Account Owner ID": [f"0055g00000QrStU{i:03d}" for i in range(9)]})
    frame.to_csv(tmp_path / "accounts.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = af.push_parquet(tmp_path / "accounts.csv", dst=tmp_path / "r.parquet", target="accounts", chunk_rows=3,
                                  dry_run=True, progress=False)
    assert summary["would_create"] == 9 and summary["chunks"] == 3
    assert sum("'Account Owner ID' is not pushed" in str(w.message) for w in caught) == 1


def test_accounts_take_the_same_rule():
    frame = pd.DataFrame({"Domain": ["a.example", "b.example"], "Account Stage ID": ["Prospect", "Customer"]})
    with pytest.warns(UserWarning, match="'Account Stage ID' is not pushed"):
        report = push_accounts(frame, dry_run=True, progress=False)
    assert (report["apollo_status"] == "would_create").all()
