"""Column recognition and its error messages."""

from __future__ import annotations

import pandas as pd
import pytest

from apollo_frames.core.columns import ORG_FIELDS, PEOPLE_FIELDS, ColumnMappingError, fold_name, resolve_columns


def test_public_field_lists():
    assert PEOPLE_FIELDS == ("first_name", "last_name", "name", "email", "hashed_email", "organization_name", "domain", "id", "linkedin_url")
    assert ORG_FIELDS == ("domain",)
    assert issubclass(ColumnMappingError, ValueError)


def test_fold_name():
    assert fold_name(" E-Mail Address ") == fold_name("e_mail_address") == fold_name("EMAIL.ADDRESS") == "emailaddress"
    assert fold_name("\ufeffEmail") == "email"
    assert fold_name(3) is None and fold_name(None) is None


@pytest.mark.parametrize(
    "label, field",
    [
        ("Email", "email"), ("E-mail", "email"), ("e_mail", "email"), ("Email Address", "email"), ("Work Email", "email"),
        ("\ufeffEMAIL", "email"), ("First Name", "first_name"), ("firstname", "first_name"), ("Given Name", "first_name"),
        ("firstName", "first_name"), ("Last Name", "last_name"), ("surname", "last_name"), ("Family Name", "last_name"),
        ("Full Name", "name"), ("Name", "name"), ("Contact Name", "name"), ("Company", "organization_name"),
        ("Company Name", "organization_name"), ("Organization", "organization_name"), ("Account Name", "organization_name"),
        ("Company Domain", "domain"), ("Domain", "domain"), ("Website", "domain"), ("Company Website", "domain"),
        ("URL", "domain"), ("Web Site", "domain"), ("LinkedIn", "linkedin_url"), ("LinkedIn URL", "linkedin_url"),
        ("linkedin_profile", "linkedin_url"), ("Person Linkedin Url", "linkedin_url"), ("Apollo ID", "id"),
        ("person_id", "id"), ("person.id", "id"), ("hashed email", "hashed_email"), ("email_md5", "hashed_email"),
        ("email_sha256", "hashed_email"),
    ],
)  # fmt: skip
def test_people_aliases(label, field):
    assert resolve_columns(pd.Index([label, "unrelated"]), PEOPLE_FIELDS) == {field: label}


@pytest.mark.parametrize("label", ["domain", "Company Domain", "Website", "URL", "Company Website", "org.primary_domain"])
def test_org_aliases(label):
    assert resolve_columns([label, "name"], ORG_FIELDS) == {"domain": label}


def test_typical_export_maps_every_field_in_field_order():
    cols = ["Person Linkedin Url", "Company", "Last Name", "First Name", "Email", "Website", "Notes", 7]
    got = resolve_columns(cols, PEOPLE_FIELDS)
    assert got == {"first_name": "First Name", "last_name": "Last Name", "email": "Email",
                   "organization_name": "Company", "domain": "Website", "linkedin_url": "Person Linkedin Url"}  # fmt: skip
    assert list(got) == [f for f in PEOPLE_FIELDS if f in got]


def test_search_result_frame_maps_person_id():
    cols = ["person.id", "person.first_name", "person.last_name_obfuscated", "person.title", "person.organization.name"]
    assert resolve_columns(cols, PEOPLE_FIELDS) == {
        "first_name": "person.first_name", "organization_name": "person.organization.name", "id": "person.id",
    }  # fmt: skip


def test_own_output_columns_yield_to_the_users_columns():
    cols = ["email", "apollo_status", "person.id", "person.email", "person.organization.primary_domain"]
    assert resolve_columns(cols, PEOPLE_FIELDS) == {"email": "email", "domain": "person.organization.primary_domain", "id": "person.id"}
    assert resolve_columns(["domain", "org.primary_domain"], ORG_FIELDS) == {"domain": "domain"}


def test_bare_id_is_not_guessed():
    with pytest.raises(ColumnMappingError, match="recogni"):
        resolve_columns(["id", "notes"], PEOPLE_FIELDS)
    assert resolve_columns(["id"], PEOPLE_FIELDS, {"id": "id"}) == {"id": "id"}


def test_overrides_win_and_merge_with_detection():
    cols = ["contact mail", "Email", "Company"]
    got = resolve_columns(cols, PEOPLE_FIELDS, {"contact mail": "email"})
    assert got == {"email": "contact mail", "organization_name": "Company"}
    # a column mapped to None is ignored by detection
    assert resolve_columns(["Email", "email"], PEOPLE_FIELDS, {"Email": None}) == {"email": "email"}
    # integer labels work in overrides and never auto-match
    assert resolve_columns([0, 1, "email"], PEOPLE_FIELDS, {1: "domain"}) == {"email": "email", "domain": 1}


def test_override_unknown_field_suggests_the_closest():
    with pytest.raises(ColumnMappingError) as info:
        resolve_columns(["contact mail"], PEOPLE_FIELDS, {"contact mail": "emial"})
    msg = str(info.value)
    assert "'emial' is not an Apollo input field" in msg and "Did you mean 'email'?" in msg
    assert "first_name, last_name, name, email" in msg
    with pytest.raises(ColumnMappingError, match="valid fields are domain"):
        resolve_columns(["site"], ORG_FIELDS, {"site": "website"})


def test_override_unknown_column_names_the_closest():
    with pytest.raises(ColumnMappingError) as info:
        resolve_columns(["Contact Email", "Company"], PEOPLE_FIELDS, {"contact_emial": "email"})
    msg = str(info.value)
    assert "'contact_emial', which is not a column of the frame" in msg and "'Contact Email'" in msg
    with pytest.raises(ColumnMappingError, match="the frame's columns are: 'a', 'b'"):
        resolve_columns(["a", "b"], PEOPLE_FIELDS, {"zzzzzzzz": "email"})


def test_two_overrides_to_one_field():
    with pytest.raises(ColumnMappingError, match="maps both 'a' and 'b' to 'email'"):
        resolve_columns(["a", "b"], PEOPLE_FIELDS, {"a": "email", "b": "email"})


def test_duplicate_labels_are_named():
    with pytest.raises(ColumnMappingError) as info:
        resolve_columns(pd.Index(["email", "email", "x"]), PEOPLE_FIELDS)
    assert "2 columns named 'email'" in str(info.value)
    with pytest.raises(ColumnMappingError, match="3 columns named 'mail'"):
        resolve_columns(["mail", "mail", "mail"], PEOPLE_FIELDS, {"mail": "email"})
    # unused duplicates are fine
    assert resolve_columns(["x", "x", "email"], PEOPLE_FIELDS) == {"email": "email"}


def test_two_columns_for_one_field_is_ambiguous():
    with pytest.raises(ColumnMappingError) as info:
        resolve_columns(["Email", "email", "Name"], PEOPLE_FIELDS)
    msg = str(info.value)
    assert "'Email', 'email'" in msg and "'email'" in msg and "columns=" in msg


def test_nothing_recognised_lists_names():
    with pytest.raises(ColumnMappingError) as info:
        resolve_columns(["colour", 3], PEOPLE_FIELDS)
    msg = str(info.value)
    assert "recognised" in msg and "'colour'" in msg and "email ('Email'" in msg and "columns=" in msg
    with pytest.raises(ColumnMappingError, match="recognised"):
        resolve_columns([], ORG_FIELDS)


def test_non_string_labels_do_not_crash():
    assert resolve_columns(pd.RangeIndex(3).append(pd.Index(["Email"])), PEOPLE_FIELDS) == {"email": "Email"}
    cols = pd.MultiIndex.from_tuples([("a", "email"), ("b", "x")])
    with pytest.raises(ColumnMappingError, match="recognised"):
        resolve_columns(cols, PEOPLE_FIELDS)
