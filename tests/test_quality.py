"""Match-quality flags (issue 16 §3): each answer compared with its input row."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import quality_rules

from apollo_frames.core.clock import FakeClock
from apollo_frames.ops import quality
from apollo_frames.sandbox import Sandbox, SandboxConfig


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox(SandboxConfig(seed=5, n_orgs=120), clock=FakeClock())


def _frame(sb: Sandbox, n: int = 300, corrupt_share: float = 0.2, seed: int = 3):
    """Rows from the sandbox's world (e-mail + company), with a known subset's company swapped for another's."""
    rng = random.Random(seed)
    people = [p for p in sb.world.people if p.get("email")][:n]
    orgs = sb.world.orgs
    rows, corrupt = [], []
    suffixes = ["", " Inc.", ", LLC", " GmbH", " Ltd", " S.A."]
    for i, p in enumerate(people):
        org = p["organization"]
        bad = rng.random() < corrupt_share
        if bad:
            org = rng.choice([o for o in orgs if set(o["name"].split()).isdisjoint(p["organization"]["name"].split())])
        name = org["name"].upper() if i % 7 == 0 else org["name"]
        rows.append({"email": p["email"], "first_name": p["first_name"], "last_name": p["last_name"],
                     "company": name + rng.choice(suffixes)})
        corrupt.append(bad)
    return pd.DataFrame(rows), corrupt


def test_company_contradictions_are_flagged_and_consistent_rows_are_not(sb, tmp_path):
    frame, corrupt = _frame(sb)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False)
    assert (out["apollo_status"] == "matched").all()
    flagged = out["apollo_match_flags"].str.contains("company_mismatch").tolist()
    bad = [f for f, c in zip(flagged, corrupt, strict=True) if c]
    good = [f for f, c in zip(flagged, corrupt, strict=True) if not c]
    assert len(bad) >= 30 and len(good) >= 150
    assert sum(bad) / len(bad) >= 0.90
    assert sum(good) / len(good) < 0.05
    assert (out.loc[[not c for c in corrupt], "apollo_match_flags"] == "").mean() > 0.95


def test_reject_gives_conflict_status_keeps_the_answer_and_spends_the_credit(sb, tmp_path):
    frame, corrupt = _frame(sb, n=40, corrupt_share=0.3)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, on_conflict="reject")
        spent = sb.credits_consumed
        again = frame.apollo.enrich_people(client=c, progress=False)
    conflict = out["apollo_status"] == "conflict"
    assert conflict.tolist() == corrupt
    assert out.loc[conflict, "apollo_error"].str.contains("company_mismatch").all()
    assert out.loc[conflict, "person.id"].notna().all()
    assert spent == len(frame)  # every row paid for, conflicts included
    assert sb.credits_consumed == spent  # the conflicting answers were kept in the store
    assert (again["apollo_status"] == "matched").all()
    with pytest.raises(ValueError, match="on_conflict"):
        frame.apollo.enrich_people(client=c, on_conflict="drop")


@pytest.mark.parametrize(("inputs", "answer", "expected"), [
    ({"email": "a@gmail.com"}, {"person.organization.primary_domain": "acme.example"}, []),
    ({"email": "a@mail.acme.example"}, {"person.organization.primary_domain": "acme.example"}, []),
    ({"email": "a@other.example"}, {"person.organization.primary_domain": "acme.example"}, ["email_domain_mismatch"]),
    ({"organization_name": "ACME Corp."}, {"person.organization.name": "Acme"}, []),
    ({"organization_name": "Acme S.A."}, {"person.organization.name": "acme sa"}, []),
    ({"domain": "www.acme.example"}, {"person.organization.website_url": "https://acme.example/"}, []),
    ({"domain": "globex.example"}, {"person.organization.primary_domain": "acme.example"}, ["company_mismatch"]),
    ({"first_name": "jose", "last_name": "ZOË"}, {"person.first_name": "José", "person.last_name": "Zoe"}, []),
    ({"name": "Ann Lee"}, {"person.first_name": "Anna", "person.last_name": "Lee"}, ["name_mismatch"]),
    ({"title": "CTO"}, {"person.title": "VP Sales"}, ["stale_title"]),
])
def test_match_flags_rules(inputs, answer, expected):
    assert quality_rules.match_flags(inputs, answer) == expected


def test_match_report_rates_by_identifier_kind_and_reasons(sb, tmp_path):
    people = [p for p in sb.world.people if p.get("email")][:20]
    rows = [{"email": p["email"]} for p in people[:10]]
    rows += [{"first_name": p["first_name"], "last_name": p["last_name"],
              "domain": p["organization"]["primary_domain"]} for p in people[10:16]]
    rows += [{"first_name": "Nobody", "last_name": "Known", "domain": "nowhere.example"}] * 2
    rows += [{"email": "not-an-email"}, {"first_name": "Solo"}]
    frame = pd.DataFrame(rows)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False)
    report = out.apollo.match_report()
    assert report.by_kind["email"] == {"rows": 10, "matched": 10, "match_rate": 1.0}
    assert report.by_kind["name + domain"]["rows"] == 8
    assert report.by_kind["name + domain"]["match_rate"] == pytest.approx(6 / 8)
    assert report.statuses["invalid"] == 2 and sum(n for _, n in report.invalid_reasons) == 2
    assert sum(n for _, n in report.no_match_reasons) == 2
    assert set(report.flags) == set(quality.FLAGS)
    assert "match rate: email" in repr(report) and "<table>" in report._repr_html_()
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    assert report.plot().get_title().startswith("Match rate")


# -- the column rules give what the per-row rules give ---------------------------------------------

_EMAILS = ["ann@acme.example", "ann@mail.acme.example", "bob@gmail.com", "x@mail.yahoo.co.uk", "x@other.example",
           "a@b@acme.example", "noat", "", "é@acme.example", "ann@ACME.example", "ann@www.acme.example",
           "a@acme.example.", "a@\nacme.example", "a@sub.other.example", "a@xacme.example", "a@"]
_DOMAINS = ["acme.example", "www.acme.example", "https://www.acme.example/x", "HTTP://Acme.Example/", "other.example",
            "mail.acme.example", "example", "", "  acme.example ", "münchen.example", "user@acme.example",
            "ftp://a@b.acme.example:8/p", "..acme.example..", "www.", "gmail.com", "acme.example\n", None]
_COMPANIES = ["Acme", "ACME Corp.", "Acme S.A.", "acme sa", "Acme Inc", "Acme Incorporated Ltd", "Northwind",
              "Northwind Analytics GmbH", "The Company", "Inc", "Zoë & Co", "Zoe and co", "Globex, LLC", "", "  ",
              "Ærø A/S", "A.B.C. Trading", "foo_bar inc", "Straße GmbH", "STRASSE", "Zeta Co Ltd Inc", "Zeta Omega", None]
_NAMES = ["Ann", "ann", "Anna", "José", "Jose", "ZOË", "Zoe", "Łukasz", "Lukasz", "O'Brien", "o brien", "", "  ",
          "Jean-Luc", "jean luc", "Ｊａｎｅ", "Jane", "ß", "ss", "A\tB", "x_y", None]
_HISTORIES = [None, "", "[]", "not json", '{"a": 1}', '[{"organization_name": "Acme Inc", "current": false}]',
              '[{"organization_name": "Globex", "current": false}, {"organization_name": "Acme", "current": true}]',
              '[{"organization_name": "Northwind Analytics GmbH"}]', '[{"organization_name": null}, 3, "x"]',
              '[{"organization_name": "Other Example Ltd", "current": false}]']
_TITLES = ["CTO", "cto", "VP Sales", "VP, Sales", "Head of Data", "", None, float("nan"), 42, "Directeur Général",
           "directeur general"]


def _random_rows(n: int, seed: int) -> tuple[list[dict | None], list, list[dict]]:
    rng = random.Random(seed)

    def pick(pool):
        return rng.choice(pool)

    records, titles, answers = [], [], []
    for _ in range(n):
        record = {f: v for f, v in (("email", pick(_EMAILS + [None] * 4)), ("first_name", pick(_NAMES)),
                                    ("last_name", pick(_NAMES)), ("name", pick(_NAMES + ["Ann Lee", "a b c", "x"])),
                                    ("organization_name", pick(_COMPANIES)), ("domain", pick(_DOMAINS)))
                  if v and rng.random() < 0.7}
        records.append(record)
        titles.append(pick(_TITLES))
        answers.append({"person.first_name": pick(_NAMES), "person.last_name": pick(_NAMES),
                        "person.title": pick(_TITLES[:7]), "person.organization.name": pick(_COMPANIES),
                        "person.organization.primary_domain": pick(_DOMAINS),
                        "person.organization.website_url": pick(_DOMAINS),
                        "person.employment_history": pick(_HISTORIES)})
    return records, titles, answers


@pytest.mark.parametrize("by_column", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_column_flags_are_the_per_row_flags(seed, by_column):
    import pyarrow as pa

    from apollo_frames.engine.runner import Prepared
    from apollo_frames.ops.quality_columns import reviewer

    records, titles, answers = _random_rows(3000, seed)
    status = [random.Random(seed).choice(["matched"] * 8 + ["no_match", "error"]) for _ in records]
    flat = pa.table({c: pa.array([a[c] for a in answers], pa.string()) for c in answers[0]})
    prepared = Prepared(records, [{"x": 1}] * len(records), [None] * len(records))
    if by_column:  # as prepare keeps them when it built the records by columns
        fields = ("email", "first_name", "last_name", "name", "organization_name", "domain")
        prepared.fields = {f: pa.array([r.get(f) for r in records], pa.string()) for f in fields}
    for on_conflict in ("flag", "reject"):
        frame = pd.DataFrame({"Job Title": pd.Series(titles, dtype=object)})
        got_status, got_error = list(status), [None] * len(status)
        flags = reviewer(frame, on_conflict)(prepared, flat, got_status, got_error)["apollo_match_flags"].to_pylist()
        for i, (record, title, answer) in enumerate(zip(records, titles, answers, strict=True)):
            want = quality_rules.match_flags({**record, "title": title}, answer) if status[i] == "matched" else None
            assert flags[i] == (None if want is None else ",".join(want)), (record, title, answer)
            conflict = on_conflict == "reject" and bool(set(want or ()) & quality.CONFLICT_FLAGS)
            assert got_status[i] == ("conflict" if conflict else status[i])
            assert (got_error[i] is not None) == (conflict or "job_change" in (want or ()))
    assert sum(bool(f) for f in flags if f is not None) > 300  # the rows are varied: flags are raised, and not
    assert sum("job_change" in f for f in flags if f) > 20
    assert sum(f == "" for f in flags) > 10


def test_people_looked_up_with_their_former_company_are_job_changes_not_mismatches(sb, tmp_path):
    """Issue 24 §4: the answer's own employment history explains the contradiction; no credit beyond the match."""
    movers = [p for p in sb.world.people if p.get("email") and any(
        not h["current"] and h["organization_name"] != p["organization"]["name"] for h in p["employment_history"])]
    movers = movers[:200]
    assert len(movers) == 200
    rows = [{"email": p["email"], "first_name": p["first_name"], "last_name": p["last_name"],
             "company": next(h["organization_name"] for h in p["employment_history"] if not h["current"])}
            for p in movers]
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = pd.DataFrame(rows).apollo.enrich_people(client=c, progress=False, on_conflict="reject")
    assert (out["apollo_status"] == "matched").all()  # reject does not reject a job change
    flags = out["apollo_match_flags"]
    assert flags.str.contains("job_change").mean() >= 0.95
    assert not flags.str.contains("company_mismatch").any()
    moved = out[flags.str.contains("job_change")]
    assert all(f"now at {now}" in reason and company in reason for reason, now, company in
               zip(moved["apollo_error"], moved["person.organization.name"], moved["company"], strict=True))
    assert sb.credits_consumed == len(rows)
    assert out.apollo.match_report().flags["job_change"] == len(moved)


@pytest.mark.parametrize("given", [("email", "first_name", "last_name"), ("organization_name",), ("domain",)])
def test_column_flags_are_the_per_row_flags_when_the_rows_give_only_some_fields(given):
    """Rows that give no company name or domain skip the answer's company side: the flags are still the rule's."""
    import pyarrow as pa

    from apollo_frames.engine.runner import Prepared
    from apollo_frames.ops.quality_columns import reviewer

    records, _, answers = _random_rows(2000, 7)
    records = [{f: v for f, v in r.items() if f in given} for r in records]
    flat = pa.table({c: pa.array([a[c] for a in answers], pa.string()) for c in answers[0]})
    prepared = Prepared(records, [{"x": 1}] * len(records), [None] * len(records))
    prepared.fields = {f: pa.array([r.get(f) for r in records], pa.string()) for f in given}
    flags = reviewer(pd.DataFrame({"x": range(len(records))}))(prepared, flat, ["matched"] * len(records),
                                                                [None] * len(records))["apollo_match_flags"]
    want = [",".join(quality_rules.match_flags(r, a)) for r, a in zip(records, answers, strict=True)]
    assert flags.to_pylist() == want and any(want)
