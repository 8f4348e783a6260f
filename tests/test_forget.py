"""Personal data (issue 25 §2, §3): erasure that really erases, and retention."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from traces import all_bytes, flat_text, named

import apollo_frames as af
from apollo_frames.client.store import AnswerStore
from apollo_frames.client.store_admin import prune
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import ConfigurationError
from apollo_frames.core.settings import Settings
from apollo_frames.ops.journal import PushJournal
from apollo_frames.sandbox import Sandbox

DAY = 86_400.0


def _people(sb: Sandbox, n: int) -> list[dict]:
    return [p for p in sb.world.people if p.get("email") and p.get("linkedin_url")][:n]


def _counting(sb: Sandbox) -> list:
    asked: list = []
    identify = sb.identify
    sb.identify = lambda d: asked.append(dict(d)) or identify(d)  # type: ignore[method-assign]
    return asked


def test_forget_of_100_people_leaves_no_byte_and_a_rerun_pays_nothing(tmp_path):
    """Issue 25, done when (over loopback): after a run, ``forget`` of 100 people leaves none of their e-mails, names
    or LinkedIn URLs in any file of the cache folder (the store still open, and closed); a re-run sends nothing
    for them and marks them suppressed; everyone else comes from the store."""
    from apollo_frames.sandbox import DEFAULT_API_KEY
    from apollo_frames.sandbox.server import serve

    sb = Sandbox(clock=FakeClock())
    people = _people(sb, 300)
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    cache = tmp_path / "cache"
    asked = _counting(sb)

    def client(url: str) -> af.ApolloClient:
        return af.ApolloClient(api_key=DEFAULT_API_KEY, base_url=url, cache_dir=cache, plan="paid", clock=sb.clock,
                               cache_namespace="sandbox", allow_insecure_http=True)

    with serve(sb) as url:
        with client(url) as c:
            af.enrich_people(frame, client=c, progress=False)
            af.enrich_people(frame, client=c, progress=False)  # (flattened copies are kept)
        assert flat_text(cache).count("@") >= 300
        gone = people[:100]
        names = {p["name"] for p in people[100:]}
        # by e-mail, LinkedIn URL and Apollo id, written as a user would
        values = ([p["email"].upper() for p in gone[:80]] + [p["linkedin_url"] for p in gone[80:90]]
                  + [p["id"] for p in gone[90:]])
        with client(url) as c:
            af.enrich_people(frame.head(5), client=c, progress=False)  # the store open, its -wal file in use
            done = af.forget(values, client=c)
            open_bytes = all_bytes(cache)
        # each answer is stored under every key it proves (e-mail, LinkedIn URL, id): three entries a person
        assert (done.identifiers, done.newly_suppressed, done.answers) == (100, 300, 300)  # (+ the other 2 ids each)
        assert done.compacted and done.ledger_details == 0 and "300 stored answer(s)" in str(done)
        stored, flat = all_bytes(cache), flat_text(cache)
        for data in (open_bytes, stored):
            assert not named(data, gone) and len(named(data, people[100:])) > 200
            for p in gone:
                assert p["name"] in names or p["name"].encode() not in data  # (a namesake kept is someone else)
        for p in gone:
            for value in (p["email"], p["linkedin_url"], p["id"]):
                assert value not in flat, value
            assert p["name"] in names or p["name"] not in flat

        asked.clear()
        with client(url) as c:
            again = af.enrich_people(frame, client=c, progress=False)
    assert asked == [] and again.attrs["apollo"]["api_calls"] == 0
    assert (again.loc[:99, "apollo_status"] == "suppressed").all() and again.loc[:99, "person.id"].isna().all()
    assert (again.loc[100:, "apollo_status"] == "matched").all()
    assert again.loc[100:, "person.email"].tolist() == [p["email"] for p in people[100:]]


def test_a_domain_forgets_everyone_at_it(tmp_path):
    sb = Sandbox(clock=FakeClock())
    people = _people(sb, 120)
    domain = people[0]["email"].split("@")[1]
    at = [p for p in people if p["email"].endswith("@" + domain)]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    cache = tmp_path / "cache"
    with sb.client(cache_dir=cache) as client:
        af.enrich_people(frame, client=client, progress=False)
        done = af.forget(domain, client=client)
    assert done.answers == 3 * len(at) >= 3  # (each under its e-mail, LinkedIn URL and id)
    stored = all_bytes(cache)
    assert domain.encode() not in stored
    assert all(p["email"].encode() not in stored for p in at)


def test_an_answer_in_flight_while_its_person_is_forgotten_is_never_written(tmp_path):
    cache = tmp_path / "cache"
    writer = AnswerStore(cache)  # a run in another process, opened before the erasure
    writer.set_many({"k1": {"email": "jane@acme.com", "first_name": "Jane"}}, ttl=None)
    with Sandbox().client(cache_dir=cache) as client:
        assert af.forget(["jane@acme.com"], client=client).answers == 1
    late = {"k2": {"id": "5f1a2b3c4d5e6f7a8b9c0d1e", "email": "JANE@acme.com", "first_name": "Jane"},
            "k3": {"email": "bob@acme.com", "first_name": "Bob"}}
    assert writer.write_entries([(k, v, 0.0, None) for k, v in late.items()]) == 1
    assert set(writer.get_many(["k1", "k2", "k3"])) == {"k3"}
    writer.close()
    assert b"jane@acme.com" not in all_bytes(cache).lower()


def test_forget_removes_the_lines_of_an_unfinished_push(tmp_path):
    with Sandbox().client(cache_dir=tmp_path / "cache") as client:
        journal = PushJournal(client.cache, "contacts", "run-1")
        journal.record({"jane@acme.com": {"status": "created", "id": "c1"}, "bob@x.com": {"status": "created",
                                                                                      "id": "c2"}})
        done = af.forget(["jane@acme.com"], client=client)
        resumed = PushJournal(client.cache, "contacts", "run-1")
        assert resumed.resuming and set(resumed.earlier(["jane@acme.com", "bob@x.com"])) == {"bob@x.com"}
    assert (done.journal_lines, done.answers) == (1, 0)


def test_a_set_aside_database_naming_a_forgotten_person_is_deleted(tmp_path):
    cache = tmp_path / "cache"
    with Sandbox().client(cache_dir=cache) as client:
        folder = client.cache.directory / "quarantine"
        folder.mkdir()
        (folder / "cache.db.old").write_bytes(b"garbage jane@acme.com garbage")
        (folder / "cache.db.other").write_bytes(b"garbage bob@x.com")
        assert af.forget(["jane@acme.com"], client=client).set_aside_files == 1
    assert sorted(p.name for p in folder.iterdir()) == ["cache.db.other"]


def test_the_cli_forgets_values_and_a_file(tmp_path, capsys):
    from apollo_frames import cli

    cache = tmp_path / "cache"
    store = AnswerStore(cache)
    store.set_many({"a": {"email": "jane@acme.com"}, "b": {"email": "bob@x.com"}, "c": {"email": "eve@y.com"}},
                   ttl=None)
    store.close()
    listed = tmp_path / "erase.txt"
    listed.write_text("bob@x.com\n")
    assert cli.main(["forget", "jane@acme.com", "--file", str(listed), "--cache-dir", str(cache)]) == 0
    assert "2 stored answer(s)" in capsys.readouterr().out
    stored = all_bytes(cache)
    assert b"jane@acme.com" not in stored and b"bob@x.com" not in stored and b"eve@y.com" in stored
    assert cli.main(["forget", "--cache-dir", str(cache)]) != 0


# -- retention ------------------------------------------------------------------------------------------------

def test_retention_is_read_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv("APOLLO_FRAMES_RETENTION", raising=False)
    assert Settings.resolve().retention is None
    assert Settings.resolve(retention=dt.timedelta(days=2)).retention == 2 * DAY
    assert Settings.resolve(retention=3600).retention == 3600
    monkeypatch.setenv("APOLLO_FRAMES_RETENTION", "365d")
    assert Settings.resolve().retention == 365 * DAY
    assert af.ApolloClient(api_key="k", cache_dir="/tmp/x").settings.retention == 365 * DAY
    monkeypatch.setenv("APOLLO_FRAMES_RETENTION", "none")
    assert Settings.resolve().retention is None
    monkeypatch.setenv("APOLLO_FRAMES_RETENTION", "a year")
    with pytest.raises(ConfigurationError, match="retention"):
        Settings.resolve()


def test_answers_past_retention_are_not_served_and_gone_after_prune(tmp_path):
    clock = FakeClock()
    sb = Sandbox(clock=clock)
    people = _people(sb, 40)
    old, new = people[:20], people[20:]
    cache = tmp_path / "cache"
    asked = _counting(sb)
    with sb.client(cache_dir=cache, retention="7d") as client:
        af.enrich_people(pd.DataFrame({"email": [p["email"] for p in old]}), client=client, progress=False)
        af.enrich_people(pd.DataFrame({"email": [p["email"] for p in old]}), client=client, progress=False)
    clock.advance(6 * DAY)
    with sb.client(cache_dir=cache, retention="7d") as client:
        af.enrich_people(pd.DataFrame({"email": [p["email"] for p in new]}), client=client, progress=False)
    clock.advance(2 * DAY)  # the first 20 are 8 days old (within the 30-day cache_ttl), the others 2
    asked.clear()
    with sb.client(cache_dir=cache, retention="7d") as client:
        store = client.cache
        assert len(store) == 3 * len(new)  # the old ones were deleted at open (each was under 3 keys)
        assert prune(store, 365 * DAY) == 0
        stored, flat = all_bytes(cache), flat_text(cache)
        for p in old:
            assert p["email"].encode() not in stored and p["email"] not in flat
            assert p["linkedin_url"].encode() not in stored
        out = af.enrich_people(pd.DataFrame({"email": [p["email"] for p in people]}), client=client, progress=False)
    assert len(asked) == 20 and {a.get("email") for a in asked} == {p["email"] for p in old}  # re-fetched, paid
    assert (out["apollo_status"] == "matched").all()


def test_an_answer_read_past_retention_is_a_miss_even_in_an_open_store(tmp_path):
    clock = FakeClock()
    store = AnswerStore(tmp_path, clock=clock, retention=DAY)
    store.set_many({"k": {"email": "jane@acme.com"}}, ttl=None)
    assert "k" in store
    clock.advance(DAY + 1)
    assert "k" not in store
    assert prune(store, 365 * DAY) == 1 and b"jane@acme.com" not in all_bytes(tmp_path)
    store.close()


def test_an_answer_names_a_person_anywhere_inside_it():
    from apollo_frames.core.suppress import revealed

    page = {"people": [{"id": "5f1a2b3c4d5e6f7a8b9c0d1e", "email": "Jane@Acme.com",
                        "linkedin_url": "linkedin.com/in/jane"}, {"email": "bob@x.com"}], "pagination": {"page": 1}}
    found = revealed(page, {("email", "jane@acme.com")})
    assert found is not None and set(found) == {("email", "jane@acme.com"), ("id", "5f1a2b3c4d5e6f7a8b9c0d1e"),
                                                ("linkedin_url", "http://www.linkedin.com/in/jane")}
    org = {"id": "6f1a2b3c4d5e6f7a8b9c0d1e", "primary_domain": "acme.com"}
    assert revealed({"organization": org}, {("domain", "acme.com")}) == [("id", "6f1a2b3c4d5e6f7a8b9c0d1e")]
    assert revealed(page, {("email", "eve@x.com")}) is None and revealed(None, {("domain", "x.com")}) is None


def test_an_answer_another_process_stored_without_retention_is_not_served_past_it(tmp_path):
    clock = FakeClock()
    reader = AnswerStore(tmp_path, clock=clock, retention=DAY)
    writer = AnswerStore(tmp_path, clock=clock)  # opened without a retention: its expiries are not capped
    writer.set_many({"k": {"email": "jane@acme.com"}}, ttl=None)
    assert "k" in reader
    clock.advance(DAY + 1)
    assert "k" not in reader and "k" in writer
    writer.close()
    reader.close()


def test_a_flattened_copy_made_while_its_person_was_forgotten_is_not_kept(tmp_path):
    from apollo_frames.client.flat import FlatCopies

    cache = tmp_path / "cache"
    writer = AnswerStore(cache)
    writer.set_many({"a": {"email": "jane@acme.com"}, "b": {"email": "bob@x.com"}}, ttl=None)
    stamps: dict = {}
    writer.get_many(["a", "b"], stamps=stamps)  # read by a run, flattened while...
    with Sandbox().client(cache_dir=cache) as client:
        af.forget(["jane@acme.com"], client=client)  # ...another process forgets Jane
    schema = pa.schema([("person.email", pa.string())])
    table = pa.table({"person.email": ["jane@acme.com", "bob@x.com"]}, schema=schema)
    FlatCopies(writer, "fp", schema).save(["a", "b"], stamps, [True, True], table)
    writer.close()
    assert "jane@acme.com" not in flat_text(cache)


def test_forget_removes_pending_phone_requests_and_collected_payloads(tmp_path):
    from apollo_frames.sandbox import SandboxConfig

    sb = Sandbox(SandboxConfig(seed=9, n_orgs=60), clock=FakeClock())
    people = [p for p in sb.world.people if p.get("email")][:30]
    with_mobile = [p for p in people if p["id"] in sb.world.mobile_phones]
    gone = with_mobile[0]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    cache = tmp_path / "cache"
    with sb.client(cache_dir=cache) as client:
        out = frame.apollo.enrich_people(client=client, progress=False, reveal_phone_number=True)
        out.iloc[:15].apollo.collect(client=client)  # half collected (payloads kept), half still pending
        phone = sb.world.mobile_phones[gone["id"]]
        digits = "".join(c for c in str(phone) if c.isdigit())
        assert digits.encode() in all_bytes(cache) or gone not in people[:15]
        af.forget([gone["email"]], client=client)
    stored = all_bytes(cache)
    assert gone["email"].encode() not in stored and gone["id"].encode() not in stored
    assert digits[-7:].encode() not in stored


def test_cache_prune_deletes_what_is_past_the_retention_of_the_environment(tmp_path, monkeypatch):
    import time

    from apollo_frames.client.store_admin import cache_command

    store = AnswerStore(tmp_path)
    now = time.time()
    store.write_entries([("old", {"email": "jane@acme.com"}, now - 10 * DAY, None),
                         ("new", {"email": "bob@x.com"}, now - DAY, None)])
    store.close()
    monkeypatch.setenv("APOLLO_FRAMES_RETENTION", "7d")
    assert cache_command("prune", tmp_path, older_than="365d").startswith("prune: 1 entries older than 365d or past")
    stored = all_bytes(tmp_path)
    assert b"jane@acme.com" not in stored and b"bob@x.com" in stored


def test_a_replaced_version_naming_a_forgotten_email_goes_too(tmp_path):
    """The store keeps replaced answers for changes(). A forget follows the person (so a refreshed answer goes with
    the old one), and a replaced version naming the person under a key whose answer no longer does is found too."""
    from apollo_frames.client.erase import erase

    sb = Sandbox(clock=FakeClock())
    person = _people(sb, 1)[0]
    old_email = person["email"]
    frame = pd.DataFrame({"linkedin_url": [person["linkedin_url"]]})
    cache = tmp_path / "c"
    with sb.client(cache_dir=cache) as client:
        af.enrich_people(frame, client=client, progress=False)
        person["email"] = "renamed." + old_email  # Apollo's record changed
        af.enrich_people(frame, client=client, progress=False, refresh=True)
        af.forget([old_email], client=client)
    assert old_email.encode() not in all_bytes(cache) and person["email"].encode() not in all_bytes(cache)

    store = AnswerStore(tmp_path / "s", clock=FakeClock())
    try:
        store.set_many({"k": {"id": "a" * 24, "email": "old@acme.example"}}, ttl=None)
        store.clock.sleep(1)
        store.set_many({"k": {"id": "b" * 24, "email": "new@other.example"}}, ttl=None)  # another person now
        done = erase(store, [("email", "old@acme.example")], lambda more: 0)
        assert (done.answers, done.previous_versions) == (0, 1)
        assert store.get_many(["k"])["k"]["email"] == "new@other.example"
    finally:
        store.close()
    assert b"old@acme.example" not in all_bytes(tmp_path / "s")


def test_an_answer_a_full_disk_kept_in_memory_is_never_written_once_its_person_is_forgotten(tmp_path):
    """Answers a full disk refused wait in memory for any store object of the process: one opened after a
    ``forget`` must not write a forgotten person's answer from there."""
    cache = tmp_path / "cache"
    before = AnswerStore(cache)  # the run that paid for them, on a full disk
    before.unstored.update({k: (k, v, 0.0, None) for k, v in {
        "k1": {"email": "jane@acme.com", "first_name": "Jane"}, "k2": {"email": "bob@acme.com"}}.items()})
    with Sandbox().client(cache_dir=cache) as client:
        af.forget(["jane@acme.com"], client=client)
    after = AnswerStore(cache)  # (a notebook makes a client per call)
    try:
        assert set(after.get_many(["k1", "k2"])) == {"k2"}
    finally:
        after.close()
        before.close()
    assert b"jane@acme.com" not in all_bytes(cache).lower()
