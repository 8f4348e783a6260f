"""Column recognition (the one resolver in core/columns.py) and its error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apollo_frames.core import filters as flt
from apollo_frames.core.columns import (
    ORG_FIELDS,
    ORGS,
    PEOPLE,
    PEOPLE_FIELDS,
    ColumnMapping,
    ColumnMappingError,
    FieldSpec,
    FieldTable,
    coalesce,
    fold,
    resolve,
)
from apollo_frames.core.errors import ApolloError
from apollo_frames.ops.orgs import prepare_orgs
from apollo_frames.ops.people import prepare_people
from apollo_frames.ops.push import (
    ACCOUNTS,
    CONTACTS,
    push,
    push_columns,
    resolve_push_columns,
)


def first(labels, table=PEOPLE, overrides=None):
    return resolve(labels, table, overrides).first


def test_public_field_lists_and_error_types():
    assert PEOPLE_FIELDS == ("first_name", "last_name", "name", "email", "hashed_email", "organization_name", "domain", "id", "linkedin_url")
    assert ORG_FIELDS == ("domain",)
    for error in (ColumnMappingError, flt.FilterError):
        assert issubclass(error, ApolloError) and issubclass(error, ValueError)


# -- the folding rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label, key",
    [
        (" E-Mail Address ", "emailaddress"), ("e_mail_address", "emailaddress"), ("EMAIL.ADDRESS", "emailaddress"),
        ("\ufeffEmail", "email"), ("Company / Account", "companyaccount"), ("Contact: Email", "contactemail"),
        ("Account.Name", "accountname"), ("person_titles[]", "persontitles"), ("Person - Email - Work", "personemailwork"),
        ("first\tname", "firstname"), ("person.email", "personemail"), ("", None), ("  -_ ", None), (3, None), (None, None),
    ],
)  # fmt: skip
def test_fold(label, key):
    assert fold(label) == key


def test_toolkit_columns_yield_but_look_alike_plain_columns_do_not():
    # "person.email" (written by this toolkit) and "Person Email" (a CRM's) fold alike but rank differently
    got = resolve(["person.email", "Person Email"], PEOPLE)
    assert got.fields == {"email": ("Person Email",)}
    assert dict(got.ignored)["person.email"].startswith("toolkit column")
    assert resolve(["person.email", "personemail"], PEOPLE).fields == {"email": ("personemail",)}
    assert resolve(["person.email"], PEOPLE).fields == {"email": ("person.email",)}
    assert [c.how for c in resolve(["person.email"], PEOPLE).choices] == ["toolkit"]


# -- aliases and export headers -----------------------------------------------------------------


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
    assert first(pd.Index([label, "unrelated"])) == {field: label}


@pytest.mark.parametrize("label", ["domain", "Company Domain", "Website", "URL", "Company Website", "org.primary_domain"])
def test_org_aliases(label):
    assert first([label, "name"], ORGS) == {"domain": label}


#: Headers as CRMs and tools export them -> the fields (and columns, in priority order) expected.
EXPORTS = {
    "hubspot contacts": (
        PEOPLE,
        ["Record ID", "First Name", "Last Name", "Email", "Company Name", "Website URL", "Lifecycle Stage"],
        {"first_name": ("First Name",), "last_name": ("Last Name",), "email": ("Email",),
         "organization_name": ("Company Name",), "domain": ("Website URL",)},
    ),
    "hubspot companies": (
        ORGS, ["Record ID", "Company name", "Company Domain Name", "Website URL", "Industry"],
        {"domain": ("Company Domain Name", "Website URL")},
    ),
    "salesforce leads report": (
        PEOPLE, ["First Name", "Last Name", "Title", "Company / Account", "Email", "Lead Source"],
        {"first_name": ("First Name",), "last_name": ("Last Name",), "organization_name": ("Company / Account",),
         "email": ("Email",)},
    ),
    "salesforce object: field": (
        PEOPLE, ["Contact: First Name", "Contact: Last Name", "Contact: Email", "Account: Account Name", "Account: Website"],
        {"first_name": ("Contact: First Name",), "last_name": ("Contact: Last Name",), "email": ("Contact: Email",),
         "organization_name": ("Account: Account Name",), "domain": ("Account: Website",)},
    ),
    "salesforce api names": (
        PEOPLE, ["Id", "FirstName", "LastName", "Email", "Account.Name", "Account.Website"],
        {"first_name": ("FirstName",), "last_name": ("LastName",), "email": ("Email",),
         "organization_name": ("Account.Name",), "domain": ("Account.Website",)},
    ),
    "pipedrive people": (
        PEOPLE, ["Person - Name", "Person - Email - Work", "Person - Email - Home", "Person - Organization", "Person - Phone - Work"],
        {"name": ("Person - Name",), "email": ("Person - Email - Work", "Person - Email - Home"),
         "organization_name": ("Person - Organization",)},
    ),
    "pipedrive organizations": (ORGS, ["Organization - Name", "Organization - Website"], {"domain": ("Organization - Website",)}),
    "sales navigator (scraper)": (
        PEOPLE, ["fullName", "firstName", "lastName", "companyName", "title", "linkedInProfileUrl", "Company Website"],
        {"first_name": ("firstName",), "last_name": ("lastName",), "name": ("fullName",),
         "organization_name": ("companyName",), "domain": ("Company Website",), "linkedin_url": ("linkedInProfileUrl",)},
    ),
    "apollo export": (
        PEOPLE, ["First Name", "Last Name", "Title", "Company", "Company Name for Emails", "Email", "Email Status",
                 "Person Linkedin Url", "Website", "Apollo Contact Id", "Apollo Account Id"],
        {"first_name": ("First Name",), "last_name": ("Last Name",), "email": ("Email",),
         "organization_name": ("Company", "Company Name for Emails"), "domain": ("Website",),
         "linkedin_url": ("Person Linkedin Url",)},
    ),
    "zoho leads": (
        PEOPLE, ["Record Id", "First_Name", "Last_Name", "Company", "Email", "Secondary Email", "Website"],
        {"first_name": ("First_Name",), "last_name": ("Last_Name",), "organization_name": ("Company",),
         "email": ("Email", "Secondary Email"), "domain": ("Website",)},
    ),
    "close contacts": (
        PEOPLE, ["lead_display_name", "name", "title", "primary_email", "primary_phone", "lead_url"],
        {"name": ("name",), "email": ("primary_email",), "organization_name": ("lead_display_name",), "domain": ("lead_url",)},
    ),
    "outreach prospects": (
        PEOPLE, ["First Name", "Last Name", "Emails", "Company Name", "Company Website"],
        {"first_name": ("First Name",), "last_name": ("Last Name",), "email": ("Emails",),
         "organization_name": ("Company Name",), "domain": ("Company Website",)},
    ),
    "email beside work email": (PEOPLE, ["Work Email", "Email"], {"email": ("Email", "Work Email")}),
    "apollo contacts export, pushed": (
        CONTACTS, ["Apollo Contact Id", "First Name", "Email", "Work Direct Phone", "Mobile Phone", "Lists", "Apollo Account Id"],
        {"id": ("Apollo Contact Id",), "email": ("Email",), "first_name": ("First Name",),
         "phone": ("Work Direct Phone", "Mobile Phone"), "account_id": ("Apollo Account Id",), "label_names": ("Lists",)},
    ),
    "hubspot companies, pushed": (
        ACCOUNTS, ["Company name", "Company Domain Name", "Website URL", "Phone Number", "Industry"],
        {"domain": ("Company Domain Name", "Website URL"), "name": ("Company name",), "phone": ("Phone Number",),
         "industry": ("Industry",)},
    ),
}  # fmt: skip


@pytest.mark.parametrize("export", list(EXPORTS))
def test_export_headers(export):
    table, headers, expected = EXPORTS[export]
    if table in (CONTACTS, ACCOUNTS):
        got = push_columns(headers, table).fields
    else:
        got = resolve(headers, table).fields
    assert got == expected


def test_typical_export_maps_every_field_in_field_order():
    cols = ["Person Linkedin Url", "Company", "Last Name", "First Name", "Email", "Website", "Notes", 7]
    got = first(cols)
    assert got == {"first_name": "First Name", "last_name": "Last Name", "email": "Email",
                   "organization_name": "Company", "domain": "Website", "linkedin_url": "Person Linkedin Url"}  # fmt: skip
    assert list(got) == [f for f in PEOPLE_FIELDS if f in got]


def test_search_result_frame_maps_person_id():
    cols = ["person.id", "person.first_name", "person.last_name_obfuscated", "person.title", "person.organization.name"]
    assert first(cols) == {
        "first_name": "person.first_name", "organization_name": "person.organization.name", "id": "person.id",
    }  # fmt: skip


def test_own_output_columns_yield_to_the_users_columns():
    cols = ["email", "apollo_status", "person.id", "person.email", "person.organization.primary_domain"]
    assert first(cols) == {"email": "email", "domain": "person.organization.primary_domain", "id": "person.id"}
    assert first(["domain", "org.primary_domain"], ORGS) == {"domain": "domain"}


def test_bare_id_is_not_guessed():
    with pytest.raises(ColumnMappingError, match="recogni"):
        resolve(["id", "notes"], PEOPLE)
    assert first(["id"], PEOPLE, {"id": "id"}) == {"id": "id"}


def test_overrides_win_and_merge_with_detection():
    cols = ["contact mail", "Email", "Company"]
    got = resolve(cols, PEOPLE, {"contact mail": "email"})
    # columns= adds: the mapped column first, the recognised one stays as the fallback
    assert got.fields == {"email": ("contact mail", "Email"), "organization_name": ("Company",)}
    assert [c.how for c in got.choices][:2] == ["override", "alias"] and not got.ignored
    frame = pd.DataFrame({"contact mail": ["a@x.com", None], "Email": ["b@x.com", "c@x.com"], "Company": ["X", "X"]})
    assert prepare_people(frame, {"contact mail": "email"}).records[1]["email"] == "c@x.com"
    # a column mapped to None is ignored by detection
    assert resolve(["Email", "email"], PEOPLE, {"Email": None}).fields == {"email": ("email",)}
    # integer labels work in overrides and never auto-match
    assert first([0, 1, "email"], PEOPLE, {1: "domain"}) == {"email": "email", "domain": 1}


# -- coalescing ---------------------------------------------------------------------------------


def test_object_field_headers_rank_after_whole_names():
    got = push_columns(["Account: Phone", "Contact: Email", "Phone"], CONTACTS)
    assert got.fields == {"email": ("Contact: Email",), "phone": ("Phone", "Account: Phone")}


def test_several_columns_for_one_field_are_candidates_in_documented_order():
    # formerly an ambiguity error; now table order of the names, then frame order (issue 14: coalesce, don't refuse)
    got = resolve(["Work Email", "email", "Email", "Name"], PEOPLE)
    assert got.fields["email"] == ("email", "Email", "Work Email")
    assert [(c.column, c.priority, c.how) for c in got.choices if c.field == "email"] == [
        ("email", 1, "alias"), ("Email", 2, "alias"), ("Work Email", 3, "alias"),
    ]  # fmt: skip


def test_coalesce_takes_the_first_non_empty_value_per_row():
    a = ["a1", None, "", "  ", np.nan, pd.NA, None]
    b = ["b1", "b2", "b3", "b4", "b5", "b6", None]
    assert coalesce([a, b]) == ["a1", "b2", "b3", "b4", "b5", "b6", None]
    assert coalesce([["x", None]]) == ["x", None]


def test_people_rows_coalesce_email_and_work_email():
    frame = pd.DataFrame({"Email": ["a@one.example", None, "  ", None], "Work Email": ["w@one.example", "w@two.example", "w@three.example", None]})
    prepared = prepare_people(frame)
    assert [r and r["email"] for r in prepared.records] == ["a@one.example", "w@two.example", "w@three.example", None]
    assert prepared.reasons[3] is not None and prepared.columns.fields == {"email": ("Email", "Work Email")}


def test_hubspot_companies_use_the_website_when_the_domain_is_blank():
    frame = pd.DataFrame({"Company Domain Name": ["acme.example", None, ""], "Website URL": ["https://www.other.example", "https://www.beta.example/x", None]})
    prepared = prepare_orgs(frame)
    assert prepared.records == [{"domain": "acme.example"}, {"domain": "beta.example"}, None]
    assert prepared.columns.to_dict() == {"domain": ["Company Domain Name", "Website URL"]}


def test_push_rows_coalesce_candidates():
    frame = pd.DataFrame({"Email": [None, "a@one.example"], "Work Email": ["w@two.example", "b@one.example"],
                          "Mobile Phone": ["+14155550100", None]})
    result = push(frame, CONTACTS, mode="insert", dry_run=True, progress=False)
    assert result["apollo_status"].tolist() == ["would_create", "would_create"]
    assert '"email": "w@two.example"' in result["apollo_payload"].iloc[0]
    assert '"email": "a@one.example"' in result["apollo_payload"].iloc[1]
    fields, custom, unmapped = resolve_push_columns(list(frame.columns), CONTACTS)
    assert fields == {"email": ("Email", "Work Email"), "phone": ("Mobile Phone",)} and custom == {} and unmapped == []


def test_push_custom_columns_and_unmapped():
    cols = ["Mail", "custom.abc", "Score", "Notes", "apollo_status", "person.email", "Email"]
    fields, custom, unmapped = resolve_push_columns(cols, CONTACTS, {"Mail": "email", "Score": "custom.score_id"})
    # columns= adds: 'Email' stays the fallback of the mapped 'Mail'
    assert fields == {"email": ("Mail", "Email")} and custom == {"score_id": ("Score",), "abc": ("custom.abc",)}
    assert unmapped == ["Notes", "person.email"]
    with pytest.raises(ColumnMappingError, match="not an Apollo contact field.*'custom.<field_id>'"):
        resolve_push_columns(cols, CONTACTS, {"Mail": "e_mail"})


# -- search: one column per filter, one organisation anchor --------------------------------------


def test_search_takes_one_column_per_filter_and_one_anchor():
    got = flt.filter_columns("people", ["Website", "domain", "org.id", "Job Title", "title"])
    assert got.first == {"q_organization_domains_list": "domain", "person_titles": "title"}
    why = dict(got.ignored)
    assert why["Website"] == "q_organization_domains_list comes from 'domain'"
    assert why["org.id"] == "q_organization_domains_list is used for the organization instead"
    # an anchor pinned by columns= blocks the others by name
    assert flt.filter_columns("people", ["domain", "x"], {"x": "organization_ids"}).first == {"organization_ids": "x"}


def test_search_equal_candidates_are_ambiguous():
    with pytest.raises(flt.FilterError) as info:
        flt.filter_columns("people", ["Title", "title", "domain"])
    msg = str(info.value)
    assert "'Title', 'title' both look like 'person_titles'" in msg and "columns={'Title': 'person_titles'}" in msg


# -- errors -------------------------------------------------------------------------------------


def test_override_unknown_field_suggests_the_closest():
    with pytest.raises(ColumnMappingError) as info:
        resolve(["contact mail"], PEOPLE, {"contact mail": "emial"})
    msg = str(info.value)
    assert "'emial' is not an Apollo input field" in msg and "Did you mean 'email'?" in msg
    assert "first_name, last_name, name, email" in msg
    with pytest.raises(ColumnMappingError, match="valid fields are domain"):
        resolve(["site"], ORGS, {"site": "website"})


def test_override_unknown_column_names_the_closest():
    with pytest.raises(ColumnMappingError) as info:
        resolve(["Contact Email", "Company"], PEOPLE, {"contact_emial": "email"})
    msg = str(info.value)
    assert "'contact_emial', which is not a column of the frame" in msg and "'Contact Email'" in msg
    with pytest.raises(ColumnMappingError, match="the frame's columns are: 'a', 'b'"):
        resolve(["a", "b"], PEOPLE, {"zzzzzzzz": "email"})


def test_overrides_must_be_a_mapping():
    with pytest.raises(ColumnMappingError, match="columns= takes a mapping"):
        resolve(["Email"], PEOPLE, ["Email"])  # type: ignore[arg-type]


def test_two_overrides_to_one_field():
    with pytest.raises(ColumnMappingError, match="maps both 'a' and 'b' to 'email'"):
        resolve(["a", "b"], PEOPLE, {"a": "email", "b": "email"})


def test_duplicate_labels_are_named():
    with pytest.raises(ColumnMappingError) as info:
        resolve(pd.Index(["email", "email", "x"]), PEOPLE)
    assert "2 columns named 'email'" in str(info.value)
    with pytest.raises(ColumnMappingError, match="3 columns named 'mail'"):
        resolve(["mail", "mail", "mail"], PEOPLE, {"mail": "email"})
    # unused duplicates are fine
    assert first(["x", "x", "email"]) == {"email": "email"}


def test_ambiguity_error_on_a_table_that_does_not_coalesce():
    table = FieldTable("demo", (FieldSpec("email", ("Mail",)),), coalesce=False)
    with pytest.raises(ColumnMappingError) as info:
        resolve(["Email", "email", "Name"], table)
    msg = str(info.value)
    assert "columns 'Email', 'email' both look like 'email'" in msg and "columns={'Email': 'email'}" in msg
    assert resolve(["Mail", "email"], table).first == {"email": "email"}


def test_nothing_recognised_lists_names():
    with pytest.raises(ColumnMappingError) as info:
        resolve(["colour", 3], PEOPLE)
    msg = str(info.value)
    assert "recognised" in msg and "'colour'" in msg and "email ('Email'" in msg and "columns=" in msg
    with pytest.raises(ColumnMappingError, match="recognised"):
        resolve([], ORGS)
    with pytest.raises(flt.FilterError, match="no column of the frame can be used as a per-row people search filter"):
        flt.filter_columns("people", ["colour"])


def test_non_string_labels_do_not_crash():
    assert first(pd.RangeIndex(3).append(pd.Index(["Email"]))) == {"email": "Email"}
    cols = pd.MultiIndex.from_tuples([("a", "email"), ("b", "x")])
    with pytest.raises(ColumnMappingError, match="recognised"):
        resolve(cols, PEOPLE)


# -- the mapping as a table ---------------------------------------------------------------------


def test_mapping_renders_as_a_table():
    got = resolve(["Notes", "Email", "Work Email", "person.email", "Company"], PEOPLE, {"Notes": None})
    assert isinstance(got, ColumnMapping)
    table = got.to_frame()
    assert table.columns.tolist() == ["column", "field", "priority", "how"]
    assert table["column"].tolist() == ["Notes", "Email", "Work Email", "person.email", "Company"]
    assert table["field"].tolist()[1:3] == ["email", "email"] and table["priority"].tolist()[1:3] == [1, 2]
    assert table["how"].iloc[0] == "ignored: left out by columns=" and table["how"].iloc[3].startswith("ignored: toolkit")
    assert got.to_dict() == {"email": ["Email", "Work Email"], "organization_name": ["Company"]}
    html = got._repr_html_()
    assert "enrich_people" in html and "<td>Work Email</td>" in html and "<th>Apollo field</th>" in html
    assert "email <- 'Email', 'Work Email'" in repr(got) and "ignored: 'Notes', 'person.email'" in repr(got)


# -- guesses: header words and content ------------------------------------------------------------


def test_a_column_of_names_is_never_an_email_and_an_owner_address_is_not_each_rows_own():
    frame = pd.DataFrame({
        "Mail merge name": ["Ann Lee", "Bo Chan", "Cy Dee", "Di Eve"],
        "Owner Email": ["me@us.example"] * 4,
        "Col 3": ["ann@a.example", "bo@b.example", None, "di@d.example"],
        "First Name": ["Ann", "Bo", "Cy", "Di"], "Last Name": ["Lee", "Chan", "Dee", "Eve"],
    })  # fmt: skip
    got = resolve(frame.columns, PEOPLE, sample=frame)
    assert got.fields["email"] == ("Col 3",)
    why = dict(got.ignored)
    assert why["Mail merge name"] == "not used as email: 0% of 4 sampled values look like e-mail addresses"
    assert "one value fills 4 of 4" in why["Owner Email"]
    assert dict((c.column, c.how) for c in got.choices)["Col 3"].startswith("content: 100% of 3 sampled")
    # labels only: header words are the evidence, content cannot be guessed
    assert resolve(frame.columns, PEOPLE).fields["email"] == ("Mail merge name",)  # ("Owner": not theirs)


def test_header_words_anywhere_but_not_beside_another_attribute():
    frame = pd.DataFrame({
        "Account Name (Parent Customer)": ["Acme", "Beta"], "Company Phone": ["+1 555 0100", "+1 555 0101"],
        "Organization 1 - Title": ["CEO", "CTO"], "Full Name": ["Ann Lee", "Bo Chan"],
    })  # fmt: skip
    got = resolve(frame.columns, PEOPLE, sample=frame)
    assert got.fields["organization_name"] == ("Account Name (Parent Customer)",)


def test_a_named_column_its_values_contradict_is_taken_back():
    frame = pd.DataFrame({"Name": ["a@x.example", "b@y.example", "c@z.example"],
                          "URL": [f"https://www.linkedin.com/in/p{i}" for i in range(3)]})
    got = resolve(frame.columns, PEOPLE, sample=frame)
    assert got.fields == {"email": ("Name",), "linkedin_url": ("URL",)}
    assert prepare_people(frame).records[0] == {"email": "a@x.example", "linkedin_url": "http://www.linkedin.com/in/p0"}


def test_the_reports_fix_names_the_column_that_almost_fitted(client):
    frame = pd.DataFrame({"Full Name": ["Ann Lee", "Bo Chan", "Cy Dee", "Di Eve", "Ed Fox"],
                          "E-mail (if known)": ["ann@a.example", "ask Bo", "n/a", "di@d.example", "later"]})
    result = frame.apollo.enrich_people(client=client, progress=False)
    assert result.attrs["apollo"]["column_reasons"] == {
        "E-mail (if known)": "not used as email: 40% of 5 sampled values look like e-mail addresses"}
    (group,) = result.apollo.report().groups
    assert group.status == "invalid" and group.count == 5
    assert group.fix.startswith("'E-mail (if known)' was not used as email: 40% of 5") and \
        "columns={'E-mail (if known)': 'email'}" in group.fix
