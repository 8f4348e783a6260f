"""Personal data (issue 25): the suppression list — identifiers read as inputs are, stored only as keyed hashes."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
from traces import Recorder, all_bytes, flat_text, named

import apollo_frames as af
from apollo_frames.client.suppression import KEY_FILE, LIST_FILE, SuppressionList
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import InputError, StorageError
from apollo_frames.core.suppress import identifier, identifiers, record_identifiers
from apollo_frames.sandbox import Sandbox


@pytest.mark.parametrize(("value", "expected"), [
    ("JANE@Acme.COM", ("email", "jane@acme.com")),
    ("https://www.acme.co.uk/about", ("domain", "acme.co.uk")),
    ("acme.com", ("domain", "acme.com")),
    ("https://uk.linkedin.com/in/Jane-Doe/?x=1", ("linkedin_url", "http://www.linkedin.com/in/jane-doe")),
    ("5F1A2B3C4D5E6F7A8B9C0D1E", ("id", "5f1a2b3c4d5e6f7a8b9c0d1e")),
    ("not an identifier", None),
    ("", None),
    (None, None),
    (float("nan"), None),
])
def test_a_value_is_read_as_inputs_are(value, expected):
    assert identifier(value) == expected


def test_several_values_in_one_cell_or_line_are_split_and_deduplicated():
    pairs, rejected = identifiers(["a@x.com; b@y.com", "A@X.com", "email", "x.com,\tlinkedin.com/in/bob"])
    assert pairs == [("email", "a@x.com"), ("email", "b@y.com"), ("domain", "x.com"),
                     ("linkedin_url", "http://www.linkedin.com/in/bob")]
    assert rejected == 1  # the header "email"


def test_a_record_or_an_answer_is_identified_by_its_email_and_the_emails_domain():
    assert set(record_identifiers({"email": "Jane@Acme.com", "first_name": "Jane"})) == {
        ("email", "jane@acme.com"), ("domain", "acme.com")}
    answer = {"person.id": "5f1a2b3c4d5e6f7a8b9c0d1e", "person.email": None,
              "person.organization.primary_domain": "globex.com"}
    assert set(record_identifiers(answer)) == {("id", "5f1a2b3c4d5e6f7a8b9c0d1e"), ("domain", "globex.com")}
    assert record_identifiers(None) == []


def test_the_list_keeps_keyed_hashes_never_the_values(tmp_path):
    folder = tmp_path / "cache"
    book = SuppressionList(folder, clock=FakeClock())
    assert book.add([("email", "jane@acme.com"), ("domain", "globex.com")], reason="opt-out") == 2
    assert book.add([("email", "jane@acme.com")], reason="again") == 0
    assert book.digest("email", "jane@acme.com") in book.digests()
    assert book.digest("email", "john@acme.com") not in book.digests()
    for path in folder.iterdir():
        data = path.read_bytes()
        assert b"jane" not in data and b"globex" not in data, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    other = SuppressionList(tmp_path / "other")  # another folder, another key: its hashes differ
    assert other.digest("email", "jane@acme.com") != book.digest("email", "jane@acme.com")
    summary = book.summary()
    assert summary[["kind", "reason", "count"]].values.tolist() == [["domain", "opt-out", 1], ["email", "opt-out", 1]]
    assert book.remove([("domain", "globex.com"), ("domain", "never.com")]) == 1
    assert book.summary()["count"].sum() == 1


def test_a_damaged_key_is_a_storage_error_and_never_replaced(tmp_path):
    book = SuppressionList(tmp_path)
    book.add([("email", "jane@acme.com")])
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(StorageError, match="not a suppression key"):
        SuppressionList(tmp_path).digest("email", "x@y.com")
    assert (tmp_path / KEY_FILE).read_bytes() == b"short"


def test_a_key_file_that_is_a_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 32)
    (tmp_path / "cache").mkdir()
    os.symlink(victim, tmp_path / "cache" / KEY_FILE)
    with pytest.raises(StorageError, match="symbolic link"):
        SuppressionList(tmp_path / "cache").digest("email", "a@b.com")
    assert victim.read_bytes() == b"x" * 32


def test_public_functions_take_lists_series_frames_and_files(tmp_path):
    client = Sandbox().client(cache_dir=tmp_path / "cache")
    listed = tmp_path / "optouts.csv"
    listed.write_text("email,reason\njane@acme.com,asked\n\nbob@globex.com,asked\n")
    assert af.suppress(listed, reason="file", client=client) == 2
    assert af.suppress(pd.Series(["JANE@acme.com", "initech.com"]), client=client) == 1
    assert af.suppress(pd.DataFrame({"a": ["x@y.com"], "b": ["linkedin.com/in/zed"]}), client=client) == 2
    assert af.suppress({"z@y.com"}, reason=None, client=client) == 1
    summary = af.suppressed(client=client)
    assert summary["count"].sum() == 6
    assert af.unsuppress(["initech.com"], client=client) == 1
    with pytest.raises(InputError, match="none of the 2 values"):
        af.suppress(["hello", "world"], client=client)
    with pytest.raises(InputError, match="no such file"):
        af.suppress(tmp_path / "missing.txt", client=client)
    assert (client.settings.cache_dir / LIST_FILE).exists()


# -- suppression applied to runs ----------------------------------------------------------------------------------

def _people(sb: Sandbox, n: int) -> list[dict]:
    return [p for p in sb.world.people if p.get("email")][:n]


def test_suppressed_rows_are_never_sent_stored_or_returned(tmp_path):
    sb = Sandbox(clock=FakeClock())
    people = _people(sb, 60)
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    by_email = [p["email"] for p in people[:10]]
    domain = people[10]["email"].split("@")[1]
    at_domain = frame["email"].str.endswith("@" + domain)
    cache = tmp_path / "cache"
    asked: list = []
    identify = sb.identify
    sb.identify = lambda d: asked.append(dict(d)) or identify(d)  # type: ignore[method-assign]
    with sb.client(cache_dir=cache) as client:
        af.suppress(by_email, reason="opt-out", client=client)
        out = af.enrich_people(frame, client=client, progress=False, suppress=[domain])
    blocked = frame["email"].isin(by_email) | at_domain
    assert (out.loc[blocked, "apollo_status"] == "suppressed").all()
    assert out.loc[blocked, "apollo_error"].str.contains("suppression list").all()
    assert out.loc[blocked, "person.id"].isna().all()
    assert (out.loc[~blocked, "apollo_status"] == "matched").all()
    assert out.attrs["apollo"]["suppressed"] == blocked.sum()
    sent = " ".join(map(str, asked))
    assert len(asked) == (~blocked).sum()
    stored = all_bytes(cache)
    for email in frame.loc[blocked, "email"]:
        assert email not in sent
        assert email.encode() not in stored


def test_an_answer_that_reveals_a_suppressed_email_is_dropped_but_its_credit_recorded(tmp_path):
    sb = Sandbox(clock=FakeClock())
    person = next(p for p in _people(sb, 50) if p.get("linkedin_url"))
    frame = pd.DataFrame({"linkedin_url": [person["linkedin_url"]]})
    cache = tmp_path / "cache"
    with sb.client(cache_dir=cache) as client:
        af.suppress([person["email"]], client=client)
        out = af.enrich_people(frame, client=client, progress=False)
        again = af.enrich_people(frame, client=client, progress=False)
        book = af.ledger(client=client)
    assert out["apollo_status"].tolist() == ["suppressed"] and out["person.id"].isna().all()
    assert "answer names a suppressed email" in out["apollo_error"].iloc[0]
    assert book["credits"].sum() == sb.credits_consumed == 1 == out["apollo_credits"].sum()
    assert person["email"].encode() not in all_bytes(cache)
    assert person["linkedin_url"].encode() not in all_bytes(cache)
    # the row's own identifier joined the list (as a keyed hash): the re-run sets it aside without paying again
    assert again["apollo_status"].tolist() == ["suppressed"] and sb.credits_consumed == 1


def test_an_answer_stored_before_its_suppression_is_not_served(tmp_path):
    sb = Sandbox(clock=FakeClock())
    people = _people(sb, 20)
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    with sb.client(cache_dir=tmp_path / "cache") as client:
        af.enrich_people(frame, client=client, progress=False)
        af.suppress([people[3]["linkedin_url"]], client=client)
        again = af.enrich_people(frame, client=client, progress=False)
    assert again.loc[3, "apollo_status"] == "suppressed" and pd.isna(again.loc[3, "person.id"])
    assert (again.drop(index=3)["apollo_status"] == "matched").all()
    assert again.attrs["apollo"]["api_calls"] == 0


def test_a_streamed_file_and_the_cli_take_a_suppression_file(tmp_path, monkeypatch):
    from apollo_frames import cli

    people = _people(Sandbox(), 30)  # the world `--sandbox` serves
    src, dst = tmp_path / "in.csv", tmp_path / "out.parquet"
    pd.DataFrame({"Email": [p["email"] for p in people]}).to_csv(src, index=False)
    listed = tmp_path / "optouts.txt"
    listed.write_text("\n".join(p["email"].upper() for p in people[:5]) + "\n")
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "c"))
    assert cli.main(["enrich-people", str(src), str(dst), "--sandbox", "--suppress", str(listed)]) == 0
    out = pd.read_parquet(dst)
    assert out["apollo_status"].tolist() == ["suppressed"] * 5 + ["matched"] * 25
    assert out.loc[:4, "person.id"].isna().all()
    for p in people[:5]:
        assert p["email"].encode() not in all_bytes(tmp_path / "c")


def test_push_never_sends_a_suppressed_contact(tmp_path):
    sb = Sandbox(clock=FakeClock())
    frame = pd.DataFrame({"Email": [f"person{i}@acme{i % 3}.example" for i in range(12)],
                          "First Name": ["A"] * 12, "Last Name": ["B"] * 12})
    with sb.client(cache_dir=tmp_path / "cache") as client:
        af.suppress(["person0@acme0.example"], client=client)
        plan = af.push_contacts(frame, dry_run=True, client=client, progress=False, suppress=["acme1.example"])
        out = af.push_contacts(frame, client=client, progress=False, suppress=["acme1.example"])
    blocked = frame["Email"].eq("person0@acme0.example") | frame["Email"].str.endswith("@acme1.example")
    assert (plan.loc[blocked, "apollo_status"] == "suppressed").all()
    assert (out.loc[blocked, "apollo_status"] == "suppressed").all()
    assert (out.loc[~blocked, "apollo_status"] == "created").all()
    assert out.attrs["apollo"]["suppressed"] == blocked.sum()
    pushed = {c["email"] for c in sb.store.contacts.values()}
    assert pushed == set(frame.loc[~blocked, "Email"])


# -- searches -----------------------------------------------------------------------------------------------------

def _big_orgs(sb: Sandbox, n: int) -> list[str]:
    """The domains of ``n`` organisations with the most people in the sandbox's world."""
    from collections import Counter

    counts = Counter(p["organization"]["primary_domain"] for p in sb.world.people)
    return [domain for domain, _ in counts.most_common(n)]


def test_a_people_search_drops_suppressed_people_before_storing_or_returning_them(tmp_path):
    sb = Sandbox(clock=FakeClock())
    domains = _big_orgs(sb, 10)  # 230 people: three pages
    with sb.client(cache_dir=tmp_path / "plain") as client:
        plain = af.search_people(max_results=None, client=client, progress=False, q_organization_domains_list=domains)
    ids = plain["person.id"].tolist()
    gone = ids[:3] + ids[-2:]  # on the first page and on the last
    cache = tmp_path / "cache"
    with sb.client(cache_dir=cache) as client:
        af.suppress(gone[:3], reason="opt-out", client=client)
        out = af.search_people(max_results=None, client=client, progress=False, suppress=gone[3:],
                               q_organization_domains_list=domains)
        again = af.search_people(max_results=None, client=client, progress=False, suppress=gone[3:],
                                 q_organization_domains_list=domains)
        fewer = af.search_people(max_results=100, client=client, progress=False, q_organization_domains_list=domains)
    kept = [i for i in ids if i not in gone]
    assert len(ids) > 200 and out["person.id"].tolist() == kept
    summary = out.attrs["apollo"]
    assert (summary["suppressed"], summary["results"], summary["pages"]) == (5, len(ids) - 5, plain.attrs["apollo"]["pages"])
    # from the store: the same rows, nothing asked, the placeholders counted again
    assert again["person.id"].tolist() == kept
    assert (again.attrs["apollo"]["api_calls"], again.attrs["apollo"]["suppressed"]) == (0, 5)
    # a smaller max_results reads the stored first page as it was: 100 found, the 3 listed ones dropped
    assert fewer["person.id"].tolist() == ids[3:100] and fewer.attrs["apollo"]["suppressed"] == 3
    stored = all_bytes(cache)
    assert all(i.encode() not in stored for i in gone) and kept[0].encode() in stored


def test_an_org_search_drops_suppressed_orgs_and_never_sends_a_suppressed_domain(tmp_path):
    from apollo_frames.sandbox import client_for

    sb = Sandbox(clock=FakeClock())
    orgs = [o for o in sb.world.orgs if o.get("primary_domain") and o.get("linkedin_url")][:6]
    domains = [o["primary_domain"] for o in orgs]
    app = Recorder(sb)
    cache = tmp_path / "cache"
    with client_for(app, cache_dir=cache, clock=sb.clock) as client:
        af.suppress([domains[0]], client=client)
        with pytest.warns(UserWarning, match="1 filter value"):
            out = af.search_orgs(client=client, progress=False, q_organization_domains_list=domains,
                                 suppress=[orgs[1]["linkedin_url"], orgs[2]["id"]])
        with pytest.raises(InputError, match="every value of q_organization_domains_list"):
            af.search_orgs(client=client, progress=False, q_organization_domains_list=domains[:1])
        # row 3's query is row 1's once its suppressed domain is left out: sent once
        rows = pd.DataFrame({"domain": [domains[0], domains[3], "WWW." + domains[0].upper(), [domains[3], domains[0]]]})
        by_row = rows.apollo.search(kind="orgs", client=client, progress=False, suppress=[orgs[3]["linkedin_url"]])
        book = af.ledger(client=client)
    assert out["org.primary_domain"].tolist() == domains[3:]
    assert out.attrs["apollo"]["suppressed"] == 2 and out.attrs["apollo"]["credits_consumed"] == 1
    # the row search's page was paid although its one result was dropped: its credit is recorded
    assert by_row.attrs["apollo"]["credits_consumed"] == 1 and book["credits"].sum() == 2 == sb.credits_consumed
    summary = by_row.attrs["apollo"]
    assert (summary["suppressed_rows"], summary["suppressed"], summary["results"], summary["invalid_rows"]) == (2, 2, 0, 0)
    assert summary["unique_queries"] == 1 and summary["api_calls"] == 1
    assert set(summary["suppressed_reasons"]) == {0, 2} and "domain" in summary["suppressed_reasons"][0]
    sent, stored = app.sent(), all_bytes(cache)
    assert domains[3].encode() in sent and domains[0].encode() not in sent
    for org in orgs[:3]:  # (orgs[3] was found, and kept, by the first search)
        for value in (org["primary_domain"], org["linkedin_url"], org["id"]):
            assert value.encode() not in stored
    assert orgs[4]["id"].encode() in stored


def test_the_cli_searches_with_a_suppression_file(tmp_path, monkeypatch, capsys):
    from apollo_frames import cli

    sb = Sandbox()  # the world `--sandbox` serves
    domains = _big_orgs(sb, 2)
    listed = tmp_path / "optouts.txt"
    listed.write_text(domains[0] + "\n")
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "c"))
    args = ["search-people", str(tmp_path / "out.parquet"), "--sandbox", "--quiet", "--suppress", str(listed),
            "--filter", f"q_organization_domains_list={domains[0]}", "--filter", f"q_organization_domains_list={domains[1]}"]
    assert cli.main(args) == 0
    assert "1 filter value(s) on the suppression list were left out" in capsys.readouterr().err
    out = pd.read_parquet(tmp_path / "out.parquet")
    at = {p["id"] for p in sb.world.people if p["organization"]["primary_domain"] == domains[1]}
    assert len(out) == len(at) > 0 and set(out["person.id"]) == at


def test_the_push_cli_takes_a_suppression_file(tmp_path, monkeypatch):
    from apollo_frames import cli

    src, report = tmp_path / "contacts.csv", tmp_path / "report.parquet"
    pd.DataFrame({"Email": [f"p{i}@acme{i % 2}.example" for i in range(6)], "First Name": ["A"] * 6,
                  "Last Name": ["B"] * 6}).to_csv(src, index=False)
    listed = tmp_path / "optouts.txt"
    listed.write_text("acme1.example\n")
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "c"))
    assert cli.main(["push-contacts", str(src), "--report", str(report), "--sandbox", "--quiet",
                     "--suppress", str(listed)]) == 0
    assert pd.read_parquet(report)["apollo_status"].tolist() == ["created", "suppressed"] * 3
    assert cli.build_parser().parse_args(["push-contacts", str(src), "--report", str(report), "--allow-dnc"]).allow_dnc


# -- issue 25, "done when": 5,000 rows over loopback -------------------------------------------------------------

def _loopback_client(url: str, cache, clock):
    from apollo_frames.sandbox import DEFAULT_API_KEY

    return af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=url, cache_dir=cache, plan="paid", clock=clock,
                           cache_namespace="sandbox", allow_insecure_http=True)


def test_named_finds_identifiers_wherever_they_sit():
    jane = {"email": "jane@acme.example", "linkedin_url": "http://www.linkedin.com/in/jane-doe", "id": "a" * 24}
    bob = {"email": "bob@b.example", "linkedin_url": None, "id": "b" * 24}
    assert named(b'x"jane@acme.example"', [jane, bob]) == {jane["email"]}
    assert named(b"xxjane@acme.examplexx|https://LINKEDIN.com/in/jane-doe/|c" + b"ab" * 30, [jane, bob]) == {
        jane["email"], jane["linkedin_url"]}
    assert named(b"f" + b"b" * 24 + b"f" + b"jan@acme.example", [jane, bob]) == {bob["id"]}


@pytest.mark.slow
def test_5000_rows_with_1000_suppressed_emails_and_50_domains_leave_no_trace(tmp_path):
    """None of the suppressed people's identifiers in a request body, in any file of the cache folder (read with
    the store open and after it is closed, -wal and -journal files too; the flattened copies decoded) or in the
    output's person columns; their rows say ``suppressed``."""
    from apollo_frames.sandbox.server import serve

    sb = Sandbox(clock=FakeClock())
    people = _people(sb, 23_000)
    by_domain: dict[str, list[dict]] = {}
    for p in people:
        by_domain.setdefault(p["email"].split("@")[1], []).append(p)
    domains = sorted(d for d, at in by_domain.items() if 2 <= len(at) <= 6)[:50]  # everyone at them
    at_domains = [p for d in domains for p in by_domain[d]]
    others = [p for p in people if p["email"].split("@")[1] not in set(domains)]
    rows = at_domains + others[: 5_000 - len(at_domains)]
    frame = pd.DataFrame({"email": [p["email"] for p in rows]}).sample(frac=1, random_state=3, ignore_index=True)
    listed = others[:1_000]  # the 1,000 suppressed e-mails (all in the frame)
    gone = listed + at_domains
    assert len(frame) == 5_000 and frame["email"].is_unique and len(domains) == 50 and len(at_domains) > 100
    app = Recorder(sb)
    cache = tmp_path / "cache"
    with serve(app) as url, _loopback_client(url, cache, sb.clock) as client:
        # half in the folder's list, written as a user would; the rest and the 50 domains as the run's file
        af.suppress([p["email"].upper() for p in listed[:500]], reason="opt-out", client=client)
        optouts = tmp_path / "optouts.csv"
        optouts.write_text("\n".join([p["email"] for p in listed[500:]] + domains) + "\n")
        out = af.enrich_people(frame, client=client, progress=False, suppress=optouts)
        open_bytes = all_bytes(cache)  # the store still open: its -wal file holds what was written
    closed_bytes = all_bytes(cache)
    blocked = frame["email"].isin({p["email"] for p in gone})
    assert blocked.sum() == len(gone)
    assert (out.loc[blocked, "apollo_status"] == "suppressed").all()
    assert (out.loc[~blocked, "apollo_status"] == "matched").all()
    assert out.attrs["apollo"]["suppressed"] == len(gone) and sb.credits_consumed == 5_000 - len(gone)
    person = out.loc[:, [c for c in out.columns if c.startswith("person.")]]
    assert person.loc[blocked].isna().all().all()
    shown = "\n".join(person.astype("string").fillna("").to_numpy().ravel().tolist()).encode()
    flat = flat_text(cache).encode()
    kept = others[1_000:1_010]  # (the search finds what is there)
    wanted = {v for p in gone for v in (p["email"], p["linkedin_url"], p["id"]) if v}
    for where, data in {"request bodies": app.sent(), "output": shown, "open store": open_bytes,
                        "closed store": closed_bytes, "flattened copies": flat}.items():
        found = named(data, gone + kept)
        assert not found & wanted, where
        assert {p["email"] for p in kept} <= found, where
    for domain in domains:
        assert domain.encode() not in app.sent() and domain.encode() not in closed_bytes, domain


def test_an_answer_another_process_stored_during_the_run_is_checked_against_the_list(tmp_path, monkeypatch):
    """Between the plan and the send another process stores the answer of a row named by its LinkedIn URL; that
    answer names a suppressed e-mail: the row ends ``suppressed`` and the e-mail is not returned."""
    from apollo_frames.engine import runner

    sb = Sandbox(clock=FakeClock())
    person = next(p for p in sb.world.people if p.get("email") and p.get("linkedin_url"))
    frame = pd.DataFrame({"linkedin_url": [person["linkedin_url"]]})
    real = runner.plan_work

    def plan_then_another_process_stores(*args, **kwargs):
        plan = real(*args, **kwargs)
        client = args[3] if len(args) > 3 else kwargs["client"]
        client.cache.set_many({plan.cache_keys[0]: dict(person)}, ttl=None)
        return plan

    monkeypatch.setattr(runner, "plan_work", plan_then_another_process_stores)
    with sb.client(cache_dir=tmp_path / "c") as c:
        out = frame.apollo.enrich_people(client=c, progress=False, suppress=[person["email"]])
    assert out["apollo_status"].tolist() == ["suppressed"] and sb.count(path="people/bulk_match") == 0
    assert person["email"] not in out.to_csv()


def test_a_saved_account_suppressed_after_its_page_was_stored_is_not_served(tmp_path):
    """A page read back from the store is checked again: a saved account (listed in ``accounts``, read by its
    organisation's id) suppressed after the page was paid for and stored is dropped, and costs nothing."""
    from apollo_frames.sandbox import client_for

    sb = Sandbox(clock=FakeClock())
    orgs = [o for o in sb.world.orgs if o.get("primary_domain")][:3]
    domains = [o["primary_domain"] for o in orgs]
    sb.store.create_account({"name": orgs[0]["name"], "domain": domains[0], "organization_id": orgs[0]["id"]})
    with client_for(sb, cache_dir=tmp_path / "cache", clock=sb.clock) as client:
        first = af.search_orgs(client=client, progress=False, q_organization_domains_list=domains)
        af.suppress([orgs[0]["id"]], client=client)
        again = af.search_orgs(client=client, progress=False, q_organization_domains_list=domains)
    saved = first[first["org.id"] == orgs[0]["id"]]
    assert len(saved) == 1 and saved["org.account_id"].notna().all()  # listed as a saved account
    assert orgs[0]["id"] not in set(again["org.id"]) and len(again) == len(first) - 1
    assert again.attrs["apollo"]["suppressed"] == 1 and again.attrs["apollo"]["credits_consumed"] == 0
