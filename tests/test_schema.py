"""Declared output schema, flattening, dtypes and Parquet stability."""

from __future__ import annotations

import copy
import datetime
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apollo_frames.core import schema as sc

ORG_ID = "5e66b6381e05b4008c8331b8"


def full_org() -> dict:
    """An organization object with the keys listed in docs/API_NOTES.md §4."""
    return {
        "id": ORG_ID, "name": "Apollo.io", "website_url": "http://www.apollo.io", "blog_url": "https://blog.apollo.io",
        "angellist_url": None, "linkedin_url": "http://www.linkedin.com/company/apolloio",
        "twitter_url": "https://twitter.com/meetapollo/", "facebook_url": "https://facebook.com/MeetApollo",
        "primary_phone": {"number": "+1 415-763-6055", "source": "Account", "sanitized_number": "+14157636055"},
        "languages": ["English"], "alexa_ranking": 3514, "phone": "+1 415-763-6055", "linkedin_uid": "18511550",
        "founded_year": 2015, "publicly_traded_symbol": None, "publicly_traded_exchange": None,
        "logo_url": "https://x.example/logo.png", "crunchbase_url": None, "primary_domain": "apollo.io",
        "industry": "information technology & services", "keywords": ["sales engagement", "lead generation"],
        "estimated_num_employees": 1600, "industries": ["information technology & services"],
        "secondary_industries": [], "snippets_loaded": True, "industry_tag_id": "5567cd4773696439b10b0000",
        "industry_tag_hash": {"information technology & services": "5567cd4773696439b10b0000"},
        "retail_location_count": 0, "raw_address": "535 Mission St, San Francisco, CA 94105",
        "street_address": "535 Mission St", "city": "San Francisco", "state": "California", "postal_code": "94105",
        "country": "United States", "owned_by_organization_id": None, "seo_description": "Sales intelligence",
        "short_description": "Apollo.io combines a buyer database with engagement tools.", "suborganizations": [],
        "num_suborganizations": 0, "annual_revenue_printed": "100M", "annual_revenue": 100000000.0,
        "total_funding": 251200000, "total_funding_printed": "251.2M",
        "latest_funding_round_date": "2023-08-01T00:00:00.000+00:00",
        "latest_funding_stage": "Series D",
        "funding_events": [{"id": "f1", "date": "2023-08-01T00:00:00.000+00:00", "news_url": None, "type": "Series D",
                            "investors": "Bain Capital Ventures", "amount": "100M", "currency": "$"}],
        "technology_names": ["AWS", "Cloudflare"],
        "current_technologies": [{"uid": "aws", "name": "AWS", "category": "Hosting"}],
        "org_chart_root_people_ids": ["a1"], "org_chart_sector": "OrgChart::SectorHierarchy::Rules::IT",
        "org_chart_removed": False, "org_chart_show_department_filter": True, "account_id": "acc1",
        "account": {"id": "acc1", "domain": "apollo.io", "name": "Apollo", "label_ids": []},
        "departmental_head_count": {"engineering": 300, "sales": 250},
    }  # fmt: skip


def full_person() -> dict:
    """A person object with the keys listed in docs/API_NOTES.md §2 (incl. the older keys)."""
    return {
        "id": "64a7ff0cc4dfae00013df1a5", "first_name": "Zoë", "last_name": "Łukasz", "name": "Zoë Łukasz",
        "linkedin_url": "http://www.linkedin.com/in/zoe-lukasz", "title": "VP Sales", "email_status": "verified",
        "photo_url": "https://x.example/p.jpg", "twitter_url": None, "github_url": "https://github.com/zl",
        "facebook_url": None, "extrapolated_email_confidence": 0.92, "headline": "VP Sales at Apollo.io",
        "email": "zoe@apollo.io", "organization_id": ORG_ID,
        "employment_history": [
            {"_id": "e1", "id": "e1", "key": "e1", "created_at": None, "current": True, "degree": None,
             "description": None, "emails": None, "end_date": None, "grade_level": None, "kind": None, "major": None,
             "organization_id": ORG_ID,
             "organization_name": "Apollo.io", "raw_address": None, "start_date": "2021-03-01", "title": "VP Sales",
             "updated_at": None},
            {"_id": "e2", "id": "e2", "key": "e2", "current": False, "organization_name": "Société Générale",
             "start_date": "2015-01-01", "end_date": "2021-02-01", "title": "AE"},
        ],
        "state": "California", "city": "San Francisco", "country": "United States", "organization": full_org(),
        "is_likely_to_engage": True, "intent_strength": None, "show_intent": True, "revealed_for_current_team": True,
        "departments": ["master_sales"], "subdepartments": ["sales"], "functions": ["sales"], "seniority": "vp",
        "contact_id": "c1", "contact": {"id": "c1", "owner_id": "u1"},
        "phone_numbers": [
            {"raw_number": "+1 555 0100", "sanitized_number": "+15550100", "type": "work_hq", "position": 0}
        ],
        "hashed_email": "5f4dcc3b5aa765d61d8327deb882cf99", "personal_emails": ["zoe@example.example"],
        "account_id": "acc1",
    }  # fmt: skip


def teaser_person() -> dict:
    """A people api_search item (docs/API_NOTES.md §6)."""
    return {
        "id": "64a7ff0cc4dfae00013df1a6", "first_name": "Hu", "last_name_obfuscated": "Hu***n", "title": "CTO",
        "last_refreshed_at": "2026-07-01T00:00:00Z", "has_email": True, "has_city": True, "has_state": False,
        "has_country": True, "has_direct_phone": "Yes",
        "organization": {"name": "Acme", "has_industry": True, "has_phone": False, "has_city": True, "has_state": True,
                         "has_country": True, "has_zip_code": False, "has_revenue": True, "has_employee_count": True},
    }  # fmt: skip


def row(table: pa.Table, i: int = 0) -> dict:
    return {name: col[i].as_py() for name, col in zip(table.column_names, table.columns, strict=True)}


# ------------------------------------------------------------------ declaration
def test_declared_columns():
    names = sc.column_names("person")
    required = """id first_name last_name name title headline email email_status linkedin_url twitter_url github_url
    facebook_url photo_url seniority departments subdepartments functions city state country organization_id
    organization.id organization.name organization.primary_domain organization.website_url organization.industry
    organization.estimated_num_employees organization.linkedin_url organization.city organization.country
    organization.founded_year organization.annual_revenue extrapolated_email_confidence revealed_for_current_team
    employment_history phone_numbers personal_emails last_name_obfuscated extra""".split()
    assert {f"person.{k}" for k in required} <= set(names)
    org_required = """id name primary_domain website_url linkedin_url twitter_url facebook_url phone
    primary_phone.number
    primary_phone.sanitized_number industry industries keywords estimated_num_employees founded_year annual_revenue
    annual_revenue_printed total_funding latest_funding_stage latest_funding_round_date raw_address city state
    postal_code country short_description languages technology_names logo_url funding_events current_technologies
    departmental_head_count extra""".split()
    assert {f"org.{k}" for k in org_required} <= set(sc.column_names("org"))
    assert sc.PERSON_SCHEMA.names == names and names[-1] == "person.extra" and len(set(names)) == len(names)
    s = sc.PERSON_SCHEMA
    assert s.field("person.departments").type == pa.string()
    assert s.field("person.organization.estimated_num_employees").type == pa.int64()
    assert s.field("person.extrapolated_email_confidence").type == pa.float64()
    assert s.field("person.revealed_for_current_team").type == pa.bool_()
    assert s.field("person.employment_history").type == pa.string()
    o = sc.ORG_SCHEMA
    assert o.field("org.annual_revenue").type == o.field("org.total_funding").type == pa.float64()
    assert o.field("org.keywords").type == pa.string() and o.field("org.funding_events").type == pa.string()
    # lists of scalars are JSON text columns (Arrow list columns do not survive pd.read_parquet: pandas#53011)
    scalar_lists = {"person": ["departments", "subdepartments", "functions", "personal_emails"],
                    "org": ["industries", "keywords", "languages", "technology_names"]}  # fmt: skip
    for kind, keys in scalar_lists.items():
        cols = {c.name: c for c in (sc.PERSON_COLUMNS if kind == "person" else sc.ORG_COLUMNS)}
        for key in keys:
            assert cols[f"{kind}.{key}"].kind == "json" and cols[f"{kind}.{key}"].type == pa.string(), key
    assert not any(pa.types.is_list(f.type) for f in [*sc.PERSON_SCHEMA, *sc.ORG_SCHEMA])


# ------------------------------------------------------------------ flattening
def test_flatten_full_person():
    p = full_person()
    t = sc.flatten_people([p])
    assert t.schema == sc.PERSON_SCHEMA and t.num_rows == 1
    r = row(t)
    assert r["person.id"] == p["id"] and r["person.first_name"] == "Zoë" and r["person.email"] == "zoe@apollo.io"
    assert r["person.last_name_obfuscated"] is None
    assert json.loads(r["person.departments"]) == ["master_sales"]
    assert json.loads(r["person.personal_emails"]) == ["zoe@example.example"]
    assert r["person.departments"] == sc.json_text(["master_sales"])  # the canonical JSON form
    assert r["person.organization.name"] == "Apollo.io" and r["person.organization.primary_domain"] == "apollo.io"
    assert r["person.organization.estimated_num_employees"] == 1600 and r["person.organization.founded_year"] == 2015
    assert r["person.organization.annual_revenue"] == 100000000.0
    assert r["person.extrapolated_email_confidence"] == 0.92 and r["person.revealed_for_current_team"] is True
    # JSON columns: the documented canonical form, round-trips
    assert r["person.employment_history"] == json.dumps(
        p["employment_history"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert "Société Générale" in r["person.employment_history"]  # not \\u-escaped
    assert json.loads(r["person.phone_numbers"]) == p["phone_numbers"]
    extra = json.loads(r["person.extra"])
    # intent, engagement and the links to the team's own records are declared columns since issue 21
    assert set(extra) == {"contact", "hashed_email", "organization"}
    assert extra["contact"] == {"id": "c1", "owner_id": "u1"} and r["person.intent_strength"] is None
    assert r["person.is_likely_to_engage"] is p["is_likely_to_engage"] and r["person.contact_id"] == p["contact_id"]
    covered = {c.path[1] for c in sc.PERSON_COLUMNS if len(c.path) == 2 and c.path[0] == "organization"}
    assert extra["organization"] == {k: v for k, v in p["organization"].items() if k not in covered}
    assert r["person.extra"] == json.dumps(extra, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def test_nothing_is_dropped_person():
    """Every key of the record is either in a declared column or in extra."""
    p = full_person()
    r = row(sc.flatten_people([p]))
    extra = json.loads(r["person.extra"])
    rebuilt: dict = {}
    for col in sc.PERSON_COLUMNS[:-1]:
        value = r[col.name]
        if col.kind == "json" and value is not None:
            value = json.loads(value)
        if value is not None:
            target = rebuilt
            for key in col.path[:-1]:
                target = target.setdefault(key, {})
            target[col.path[-1]] = value
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(rebuilt.get(key), dict):
            rebuilt[key].update(value)
        else:
            rebuilt[key] = value
    expected = copy.deepcopy(p)
    for k in [k for k, v in expected.items() if v is None and k not in extra]:
        del expected[k]  # nulls in declared columns come back as absent keys
    expected["organization"] = {
        k: v for k, v in expected["organization"].items() if v is not None or k in extra["organization"]
    }
    assert rebuilt == expected


def test_flatten_full_org():
    o = full_org()
    t = sc.flatten_orgs([o])
    assert t.schema == sc.ORG_SCHEMA
    r = row(t)
    assert r["org.primary_phone.number"] == "+1 415-763-6055"
    assert r["org.primary_phone.sanitized_number"] == "+14157636055"
    assert json.loads(r["org.keywords"]) == ["sales engagement", "lead generation"]
    assert json.loads(r["org.languages"]) == ["English"]
    assert r["org.total_funding"] == 251200000.0 and r["org.postal_code"] == "94105"
    assert json.loads(r["org.departmental_head_count"]) == {"engineering": 300, "sales": 250}
    assert json.loads(r["org.current_technologies"]) == o["current_technologies"]
    extra = json.loads(r["org.extra"])
    assert "primary_phone" not in extra and r["org.primary_phone.source"] == "Account"  # declared (issue 21)
    assert extra["account"]["domain"] == "apollo.io" and r["org.blog_url"] == "https://blog.apollo.io"
    assert "keywords" not in extra and "industries" not in extra and "name" not in extra


def test_teaser_items_fill_the_light_columns():
    r = row(sc.flatten_people([teaser_person()]))
    assert r["person.last_name_obfuscated"] == "Hu***n" and r["person.organization.name"] == "Acme"
    assert r["person.last_name"] is None and r["person.email"] is None
    extra = json.loads(r["person.extra"])
    assert extra["has_email"] is True and extra["has_direct_phone"] == "Yes"
    assert extra["organization"]["has_revenue"] is True and "name" not in extra["organization"]


def test_none_and_non_dict_rows_are_all_null():
    t = sc.flatten_people([None, full_person(), "garbage", 42, {}])
    assert t.num_rows == 5
    for i in (0, 2, 3, 4):
        assert all(v is None for v in row(t, i).values()), i
    assert row(t, 1)["person.id"] == full_person()["id"]
    assert sc.flatten_orgs([]).num_rows == 0 and sc.flatten_orgs([]).schema == sc.ORG_SCHEMA


def test_mapping_subclasses_are_records():
    from collections import OrderedDict

    r = row(sc.flatten_orgs([OrderedDict(name="Acme", primary_phone=OrderedDict(number="1"))]))
    assert r["org.name"] == "Acme" and r["org.primary_phone.number"] == "1" and r["org.extra"] is None


def test_wrong_types_are_coerced_or_kept_in_extra():
    person = {
        "id": 12345,  # int where text expected: safe to convert
        "first_name": {"given": "Ann"},  # dict where text expected: kept in extra
        "title": ["CEO"],
        "extrapolated_email_confidence": "0.75",
        "revealed_for_current_team": "yes",
        "departments": "sales",  # JSON column: a lone string is stored as it is (no list coercion)
        "subdepartments": ["a", 1, None],  # elements are kept as they are
        "functions": [{"x": 1}],  # JSON column: any value is representable, nothing goes to extra
        "city": float("nan"),
        "employment_history": "not a list",  # JSON column: any value is representable
        "organization": {
            "estimated_num_employees": "1,600", "founded_year": "2015", "annual_revenue": "lots",
            "name": 7.0, "id": True, "country": np.int64(3),
        },
    }  # fmt: skip
    r = row(sc.flatten_people([person]))
    assert r["person.id"] == "12345" and r["person.first_name"] is None and r["person.title"] is None
    assert r["person.extrapolated_email_confidence"] == 0.75 and r["person.revealed_for_current_team"] is True
    assert r["person.departments"] == '"sales"' and json.loads(r["person.departments"]) == "sales"
    assert json.loads(r["person.subdepartments"]) == ["a", 1, None]
    assert json.loads(r["person.functions"]) == [{"x": 1}] and r["person.city"] is None
    assert r["person.employment_history"] == '"not a list"'
    assert r["person.organization.founded_year"] == 2015 and r["person.organization.estimated_num_employees"] is None
    assert r["person.organization.annual_revenue"] is None and r["person.organization.name"] == "7"
    assert r["person.organization.id"] is None and r["person.organization.country"] == "3"
    extra = json.loads(r["person.extra"])
    assert extra == {
        "first_name": {"given": "Ann"}, "title": ["CEO"],
        "organization": {"estimated_num_employees": "1,600", "annual_revenue": "lots", "id": True},
    }  # fmt: skip
    assert extra["organization"] == {"estimated_num_employees": "1,600", "annual_revenue": "lots", "id": True}
    assert "city" not in extra  # NaN in a text column is just missing


@pytest.mark.parametrize(
    "kind, value, expected, kept",
    [
        ("int", "12", 12, False), ("int", 12.0, 12, False), ("int", " -3 ", -3, False), ("int", "12.0", 12, False),
        ("int", 12.5, None, True), ("int", True, None, True), ("int", 2**70, None, True), ("int", "x", None, True),
        ("float", 3, 3.0, False), ("float", "1e3", 1000.0, False), ("float", float("nan"), None, False),
        ("float", float("inf"), float("inf"), False), ("float", "nan", None, True), ("float", False, None, True),
        ("float", [1], None, True),
        ("bool", "false", False, False), ("bool", 1, True, False), ("bool", np.bool_(True), True, False),
        ("bool", 2, None, True), ("bool", "maybe", None, True),
    ],
)  # fmt: skip
def test_scalar_coercion_table(kind, value, expected, kept):
    field = {"int": "founded_year", "float": "annual_revenue", "bool": "revealed_for_current_team"}[kind]
    flatten = sc.flatten_people if kind == "bool" else sc.flatten_orgs
    name = f"person.{field}" if kind == "bool" else f"org.{field}"
    # mix with a clean value so both the fast and slow paths run
    clean = {"int": 1, "float": 1.5, "bool": True}[kind]
    t = flatten([{field: clean}, {field: value}])
    r = row(t, 1)
    assert r[name] == expected and row(t, 0)[name] == clean
    extra = r[name.split(".")[0] + ".extra"]
    assert (extra is not None) == kept
    if kept:
        assert field in json.loads(extra)


def test_non_dict_nested_object_is_kept():
    r = row(sc.flatten_orgs([{"name": "Acme", "primary_phone": "+1 555 0100"}]))
    assert r["org.primary_phone.number"] is None and json.loads(r["org.extra"]) == {"primary_phone": "+1 555 0100"}
    r = row(sc.flatten_people([{"organization": ["Acme"]}]))
    assert json.loads(r["person.extra"]) == {"organization": ["Acme"]}


def test_extra_is_null_when_nothing_is_left_over():
    t = sc.flatten_orgs([{"name": "Acme", "primary_domain": "acme.example", "primary_phone": {"number": "1"}}])
    assert row(t)["org.extra"] is None


def test_input_records_are_not_modified():
    p = full_person()
    before = copy.deepcopy(p)
    sc.flatten_people([p, p])
    assert p == before


# ------------------------------------------------------------------ pandas and Parquet
EXPECTED_DTYPES = {
    pa.string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}  # fmt: skip


@pytest.mark.parametrize("kind", ["person", "org"])
def test_to_pandas_dtypes_are_fixed(kind):
    schema = sc.SCHEMAS[kind]
    flatten = sc.flatten_people if kind == "person" else sc.flatten_orgs
    record = full_person() if kind == "person" else full_org()
    frames = [
        sc.to_pandas(flatten([record, None])),
        sc.to_pandas(flatten([None, None, None])),
        sc.to_pandas(flatten([{"id": 1, "departments": "x", "keywords": "y", "founded_year": "1999"}])),
        sc.empty_frame(schema),
    ]
    expected = pd.Series({f.name: EXPECTED_DTYPES[f.type] for f in schema})
    for df in frames:
        assert list(df.columns) == schema.names
        pd.testing.assert_series_equal(df.dtypes, expected, check_names=False)
    assert len(frames[3]) == 0
    assert frames[1].isna().all().all()


def _parquet_schema(df: pd.DataFrame, path) -> tuple[pa.Schema, list]:
    df.to_parquet(path)
    schema = pq.read_schema(path)
    pandas_meta = json.loads(schema.metadata[b"pandas"])["columns"]
    return schema, pandas_meta


@pytest.mark.parametrize("kind", ["person", "org"])
def test_parquet_schema_is_identical_for_different_data(kind, tmp_path):
    flatten = sc.flatten_people if kind == "person" else sc.flatten_orgs
    if kind == "person":
        rich = [full_person(), teaser_person(), None]
        odd = [{"id": 9, "organization": "Acme", "departments": "x", "zzz": {"a": [1]}}]
    else:
        rich = [full_org(), None, {"name": "Beta"}]
        odd = [{"founded_year": "MCMXC", "keywords": "solo", "primary_phone": 5}]
    got = [
        _parquet_schema(sc.to_pandas(flatten(records)), tmp_path / f"{i}.parquet")
        for i, records in enumerate([rich, odd, [None] * 4, []])
    ]
    base_schema, base_meta = got[0]
    assert base_schema.names == sc.SCHEMAS[kind].names
    for schema, meta in got[1:]:
        assert schema.equals(base_schema, check_metadata=False)
        assert meta == base_meta
    # Reading back: to_pandas(pq.read_table(path)) restores the exact dtypes (and so does plain
    # pd.read_parquet(path), see test_parquet_round_trip_with_plain_read_parquet).
    back = sc.to_pandas(pq.read_table(tmp_path / "0.parquet"))
    assert back.dtypes.equals(sc.empty_frame(sc.SCHEMAS[kind]).dtypes)
    first = full_person() if kind == "person" else full_org()
    assert back[f"{kind}.id"].iloc[0] == first["id"]
    listed = "person.departments" if kind == "person" else "org.keywords"
    assert json.loads(back[listed].iloc[0]) == first["departments" if kind == "person" else "keywords"]
    assert pd.read_parquet(tmp_path / "0.parquet", dtype_backend="pyarrow")[f"{kind}.id"].iloc[0] == first["id"]


def test_table_take_and_to_pandas_round_trip():
    t = sc.flatten_people([full_person(), None])
    df = sc.to_pandas(t.take(pa.array([1, 0, 1], type=pa.int64())))
    assert list(df["person.email"].isna()) == [True, False, True]
    assert json.loads(df["person.departments"].iloc[1]) == ["master_sales"]


def test_parquet_round_trip_with_plain_read_parquet(tmp_path):
    """Regression: a frame holding ArrowDtype(list) columns wrote Parquet that plain pd.read_parquet could
    not read back (pandas-dev/pandas#53011). Lists of scalars are JSON text now, so it reads back as written."""
    p = full_person()
    df = sc.to_pandas(sc.flatten_people([p, None]))
    path = tmp_path / "people.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    json_cols = [c for c in sc.PERSON_COLUMNS if c.kind == "json"]
    assert {"person.departments", "person.personal_emails", "person.employment_history"} <= {c.name for c in json_cols}
    for col in json_cols:
        original = p
        for key in col.path:
            original = original.get(key) if isinstance(original, dict) else None
        if original is None:  # a column the record has no value for (the 2025-2026 ones)
            assert pd.isna(back[col.name].iloc[0]), col.name
            continue
        assert json.loads(back[col.name].iloc[0]) == original, col.name
        assert pd.isna(back[col.name].iloc[1]), col.name


def test_repeated_nested_objects_are_written_by_content():
    """The organization leftovers are memoised by exact content: 1, 1.0 and True stay apart."""
    rows = []
    for value in (1, 1.0, True, 1, None, 1.0):
        person = full_person()
        person["organization"]["undeclared_rank"] = value
        rows.append(person)
    shared = full_person()
    rows += [shared, dict(shared), {**shared, "organization": {**shared["organization"], "founded_year": "MCMXV"}}]
    extras = sc.flatten_people(rows).column("person.extra").to_pylist()
    ranks = [json.loads(e)["organization"]["undeclared_rank"] for e in extras[:6]]
    assert [type(r) for r in ranks] == [int, float, bool, int, type(None), float]
    assert '"undeclared_rank":1.0' in extras[1] and '"undeclared_rank":true' in extras[2]
    assert extras[6] == extras[7]
    assert json.loads(extras[8])["organization"]["founded_year"] == "MCMXV"
    one = [sc.flatten_people([r]).column("person.extra")[0].as_py() for r in rows]
    assert extras == one  # the same text as each record flattened alone


# ------------------------------------------------------------------ fast path == general path
def _odd_people() -> list:
    """Records of several shapes, each with something the fast path must write exactly as _flatten_rows does."""
    import datetime as dt
    from collections import OrderedDict
    from decimal import Decimal

    base = full_person()
    variants = [
        {},  # as it is
        {"title": "Ünïcödé — 東京 🚀", "headline": 'quote " backslash \\ newline \n tab \t nul \x00 \u2028 del \x7f'},
        {"is_likely_to_engage": dt.datetime(2024, 1, 2)},  # leftover that needs default=str
        {"show_intent": Decimal("1.5"), "intent_strength": {3, 1}},
        {"id": 42, "revealed_for_current_team": "yes", "extrapolated_email_confidence": "0.5"},  # coerced
        {"first_name": ["x"]},  # kept in extra
        {"extrapolated_email_confidence": float("nan"), "city": float("nan")},
        {"employment_history": [{"a": dt.date(2020, 1, 1)}, {"b": 1.0, "c": -0.0}], "departments": ("t",)},
        {"phone_numbers": [{"n": float("inf")}], "personal_emails": [1, True, 1.0, None]},
        {"organization": None},
        {"organization": "Acme"},
        {"organization": OrderedDict(name="Acme", blog_url="b")},
        {"organization": {**full_org(), 7: "int key"}},
        {"organization": {**full_org(), "founded_year": "MCMXV"}},
        {"organization": {**full_org(), "undeclared_rank": 1.0}},
        {"organization": {**full_org(), "undeclared_rank": True}},
        {"organization": {**full_org(), "blog_url": dt.time(1, 2)}},
        {"organization": {"name": "Bare"}},
        {"organization": {}},
        {"organization": {**full_org(), "languages": ["ελληνικά"]}},
    ]
    rows: list = []
    for change in variants:
        person = copy.deepcopy(base)
        person.update(change)
        rows.append(person)
    rows.append({k: v for k, v in base.items() if k not in ("email", "hashed_email")})  # other shapes
    rows.append({**{k: v for k, v in base.items() if k != "email"}, "e-mail": "x"})  # same length, other keys
    rows.append({**base, "new_key": [1, {"z": 2, "a": 1}]})
    rows += [None, "garbage", {}, {"id": "only"}, {1: "x", "id": "y"}, OrderedDict(id="od"), teaser_person()]
    return rows


@pytest.mark.parametrize("n", [1, 7, 1500])
def test_fast_path_writes_what_the_general_path_writes(n):
    odd = _odd_people()
    rows = [copy.deepcopy(full_person()) for _ in range(n)]
    for i, r in enumerate(odd):  # spread over the chunks, at both ends too
        rows.insert((i * 97) % (len(rows) + 1), r)
    rows[3 % len(rows)]["organization"]["undeclared_rank"] = 2  # one organization differs from its neighbours
    before = copy.deepcopy(rows)
    fast = sc.flatten_people(rows)
    general = sc._flatten_rows(rows, sc._PLANS["person"])
    assert fast.schema == sc.PERSON_SCHEMA and fast.num_rows == len(rows)
    assert fast.equals(general)
    for name in ("person.extra", "person.employment_history", "person.title"):
        assert fast.column(name).to_pylist() == general.column(name).to_pylist()
    assert rows == before


def test_same_length_other_keys():
    base = full_person()
    other = {**{k: v for k, v in base.items() if k != "email"}, "e-mail": "x"}
    rows = [base, other, base]
    t = sc.flatten_people(rows)
    assert t.equals(sc._flatten_rows(rows, sc._PLANS["person"]))
    assert row(t, 1)["person.email"] is None and json.loads(row(t, 1)["person.extra"])["e-mail"] == "x"


def test_fast_path_orgs_and_repeated_content():
    orgs = []
    for value in (1, 1.0, True, 1, None, 1.0, -0.0, 0.0, 0, False) * 150:  # spans chunks; equal but written apart
        org = full_org()
        org["undeclared_rank"] = value
        org["primary_phone"]["source"] = value
        orgs.append(org)
    orgs += [{"name": "x", "primary_phone": "555"}, {"name": "y", "primary_phone": {"number": 5, "extra": "é"}}, None]
    fast = sc.flatten_orgs(orgs)
    assert fast.equals(sc._flatten_rows(orgs, sc._PLANS["org"]))
    extras = fast.column("org.extra").to_pylist()
    assert '"undeclared_rank":1.0' in extras[1] and '"undeclared_rank":true' in extras[2]
    assert '"undeclared_rank":-0.0' in extras[6] and '"undeclared_rank":0.0' in extras[7]
    assert '"source":false' in extras[9]
    assert extras[:10] * 150 == extras[:1500]


def test_plain_encoder_writes_json_text():
    """One stable text (jsontext.stable, FLATTEN_VERSION 3): compact, keys sorted, non-ASCII as it is, NaN and
    infinities null; the plain encoder writes the same bytes for plain data and refuses anything else."""
    values = [{"b": [1, 1.5, -0.0, float("nan"), float("-inf"), True, None], "a": "é\"\\\n\x1f\u2028🚀"},
              ["x", ("t", 1)], "s", {"z": {"y": 1, "x": [{}]}}, [1e-05, 2.5e-08, 1e16]]
    texts = ['{"a":"é\\"\\\\\\n\\u001f\u2028🚀","b":[1,1.5,-0.0,null,null,true,null]}', '["x",["t",1]]', '"s"',
             '{"z":{"x":[{}],"y":1}}', '[0.00001,2.5e-8,1e+16]']
    for v, text in zip(values, texts, strict=True):
        assert sc.json_text(v) == text
        assert sc._plain(v) == text.encode()
        assert json.loads(text) == json.loads(json.dumps(v).replace("NaN", "null").replace("-Infinity", "null"))
    assert sc.json_text(10**30) == "1000000000000000000000000000000"  # past 64 bits: json's text
    for v in ({"d": object()}, 10**30, "\ud800", {1: "x"}):
        with pytest.raises(sc._PLAIN_ERRORS):
            sc._plain(v)


@pytest.mark.parametrize("odd", ["locked", "revenue_zero", "other_spelling", "none"])
def test_a_batch_is_fixed_record_by_record_whatever_the_batch_screen_says(odd):
    """_respelled looks at a whole batch first (issue 27); the one record needing a fix is still fixed, the
    others left as they are, exactly as each record flattened alone."""
    rows = [copy.deepcopy(full_person()) for _ in range(5)]
    target = rows[3]
    if odd == "locked":
        target["email"] = "  EMAIL_NOT_UNLOCKED@domain.com "
    elif odd == "revenue_zero":
        target["organization"].update(annual_revenue=0, annual_revenue_printed=None)
    elif odd == "other_spelling":
        target["organization"].update(annual_revenue=None, organization_revenue=5e6)
    table = sc.flatten_people(rows)
    alone = [sc.flatten_people([r]).to_pylist()[0] for r in rows]
    assert table.to_pylist() == alone
    got = alone[3]
    if odd == "locked":
        assert got["person.email"] is None and "EMAIL_NOT_UNLOCKED" not in (got["person.extra"] or "")
    elif odd == "revenue_zero":
        assert got["person.organization.annual_revenue"] is None and alone[0]["person.organization.annual_revenue"]
    elif odd == "other_spelling":
        assert got["person.organization.annual_revenue"] == 5e6
    assert rows[0]["email"] == full_person()["email"] and alone[0]["person.email"] == full_person()["email"]


def test_handed_to_pandas_gives_to_pandas_frame_and_takes_the_table():
    table = pa.table({"t": pa.chunked_array([["a", None], ["ccc"]], pa.string()), "n": pa.array([1, None, 3]),
                      "f": pa.array([0.5, None, 1.0]), "b": pa.array([True, None, False]),
                      "w": pa.array(["x", "y", None], pa.large_string())})
    handed = [table]
    got = sc.handed_to_pandas(handed)
    assert handed == []  # taken: the caller's list holds it no longer
    pd.testing.assert_frame_equal(got, sc.to_pandas(table))
    assert got["t"].tolist() == ["a", pd.NA, "ccc"] and str(got["t"].dtype) == "string"


def _small_person(i: int) -> dict:
    """An answer of about 1 KB: a four-key organization, short lists (the fast path reads such organizations row
    by row, and writes each JSON column in one call)."""
    return {"id": f"p{i}", "first_name": "Ann", "title": "CEO", "departments": ["c_suite"], "employment_history": [],
            "revealed_for_current_team": True, "extrapolated_email_confidence": 0.5,
            "organization": {"id": f"o{i % 7}", "name": "Acme", "website_url": "http://acme.example",
                             "primary_domain": "acme.example"}}


@pytest.mark.parametrize(("change", "org_change"), [
    ({}, {}), ({"organization": None}, {}), ({"organization": {}}, {}), ({"organization": "Acme"}, {}),
    ({}, {"name": 12}), ({}, {"estimated_num_employees": "many"}), ({}, {"founded_year": True}),
    ({}, {"blog_url": "b"}), ({"show_intent": 1}, {}), ({"show_intent": "maybe"}, {}), ({"title": 5}, {}),
    ({"title": b"bytes"}, {}), ({"title": np.str_("np")}, {}), ({"revealed_for_current_team": np.bool_(False)}, {}),
    ({"departments": None}, {}), ({"departments": {}}, {}),
])
def test_small_answers_fast_path_writes_what_the_general_path_writes(change, org_change):
    rows = [_small_person(i) for i in range(40)]
    for i in (0, 17, 39):
        rows[i] = {**rows[i], "organization": {**rows[i]["organization"], **org_change}, **change}
    fast = sc.flatten_people(rows)
    general = sc._flatten_rows(rows, sc._PLANS["person"])
    assert fast.equals(general)
    assert fast.column("person.organization.name").to_pylist()[1] == "Acme"


@pytest.mark.parametrize("values", [
    [["a],[b"], ["c"]], [[["x"], ["y"]], ["z"]], [{"k": [1], "j": [2]}, {"a": {"b": 1}, "c": {"d": 2}}],
    [[{"z": 1, "a": 2}], [], [1, 1.0, True, None]], [{"b": [{"c": 1}, {"d": 2}]}, {"x": 1}],
    [[float("nan")], ["é\u2028"]], [{"x": 1}, {}], [["a"], None], [["a"]], [[datetime.date(2020, 1, 2)], [2**70]],
])
def test_json_columns_are_each_value_written_alone(values):
    """A JSON column written in one call and cut apart holds what each value written alone gives, even when a
    value holds the text between two values."""
    texts = sc._coerce(values, "json")[0].to_pylist()
    assert texts == [None if v is None or v == {} else sc.json_text(v) for v in values]


def test_text_integer_and_flag_columns_keep_the_per_value_rules_for_numpy_scalars():
    """A NumPy flag among integers is no integer (kept in extra, as a Python ``True`` is), and a column mixing
    NumPy scalars Arrow cannot type together is converted value by value: Arrow's own type inference is never
    asked (in a child process: pyarrow 26 crashes on ``[np.datetime64, np.bool_]``)."""
    array, bad = sc._coerce([1, np.True_], "int")
    assert array.to_pylist() == [1, None] and bad == [1]
    code = ("import numpy as np; from apollo_frames.core import schema as sc\n"
            "print(sc._coerce([np.datetime64('2020-01-01'), np.True_], 'str')[0].to_pylist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[None, None]", done.stderr


def _renamed(org: dict, old: str, new: object) -> dict:
    """``org`` with key ``old`` replaced by ``new`` (same length, other keys)."""
    return {(new if k == old else k): v for k, v in org.items()}


@pytest.mark.parametrize("org_at", [
    lambda o: dict(reversed(list(o.items()))),  # the same keys in another order
    lambda o: _renamed(o, "name", "blog_url"),  # same length, a key no column of this batch's others has
    lambda o: _renamed(o, "name", "undeclared"),  # same length, a key no column covers (kept in extra)
    lambda o: _renamed(o, "name", 7),  # same length, a key that is no text
    lambda o: {k: v for k, v in o.items() if k != "name"},  # one key fewer
    lambda o: {**o, "name": {"nested": ["x"]}},  # a value of the wrong type
    lambda o: {"id": o["id"]},  # one key only
    lambda o: None,
])
def test_small_organizations_of_one_shape_read_in_one_pass_write_what_the_general_path_writes(org_at):
    """1 KB answers' organizations (all with the same few covered keys) are read by one pass over the objects;
    an organization of another shape anywhere in the chunk (first, in the middle, last) gives the same rows as
    the general path."""
    for at in (0, 500, 1023):
        rows = [_small_person(i) for i in range(1100)]
        rows[at] = {**rows[at], "organization": org_at(rows[at]["organization"])}
        fast = sc.flatten_people(rows)
        assert fast.equals(sc._flatten_rows(rows, sc._PLANS["person"]))
        assert fast.column("person.organization.website_url").to_pylist()[at + 1] == "http://acme.example"


def test_flattening_keeps_no_object_per_record_for_the_garbage_collector():
    """The fast path lets go of each record's tuple of values at once: flattening 20,000 small answers starts
    (next to) no run of the cyclic garbage collector. A tuple kept per record made it run about twice per
    1,024-record chunk (20 runs here), each walking the values of the tuples it found."""
    import gc

    rows = [json.loads(json.dumps(_small_person(i))) for i in range(20_000)]
    runs: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        table = sc.flatten_people(rows)
    finally:
        gc.callbacks.remove(count)
    assert table.num_rows == 20_000
    assert len(runs) <= 3, runs  # (before: 20)
