"""Refresh only what is old, and say what changed (issue 24 §2, §3)."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import InputError
from apollo_frames.sandbox import Sandbox, SandboxConfig

DAY = 86_400.0
BULK = "people/bulk_match"


def _emails(sb: Sandbox, n: int) -> list[str]:
    found = [p["email"] for p in sb.world.people if p.get("email")][:n]
    assert len(found) == n
    return found


def _enrich(frame: pd.DataFrame, client, **kw) -> pd.DataFrame:
    return af.enrich_people(frame, client=client, progress=False, **kw)


def test_max_age_sends_only_the_old_answers_and_estimate_said_so(tmp_path):
    """2,000 stored answers, 1,500 of them older than max_age: ceil(1,500 / 10) bulk_match requests, as estimated."""
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=220), clock=clock)
    emails = _emails(sb, 2000)
    with sb.client(cache_dir=tmp_path / "c") as client:
        first = _enrich(pd.DataFrame({"email": emails[:1500]}), client)
        clock.advance(40 * DAY)
        _enrich(pd.DataFrame({"email": emails[1500:]}), client)
        clock.advance(DAY)
        frame = pd.DataFrame({"email": emails})
        estimate = af.estimate(frame, operation="enrich_people", client=client, max_age="30d")
        calls = sb.count(BULK)
        again = _enrich(frame, client, max_age=dt.timedelta(days=30))
        after = af.estimate(frame, operation="enrich_people", client=client, max_age="30d")
    sent = sb.count(BULK) - calls
    assert estimate.to_fetch == 1500 and estimate.api_calls == math.ceil(1500 / 10) == sent
    assert again.attrs["apollo"]["api_calls"] == sent and again.attrs["apollo"]["cache_hits"] == 500
    assert after.to_fetch == 0  # all fresh now
    fetched = again["apollo_fetched_at"]
    assert str(fetched.dtype).startswith("datetime64") and fetched.notna().all()
    old = first["apollo_fetched_at"].iloc[0]
    assert (fetched.iloc[:1500] - old).dt.total_seconds().min() == pytest.approx(41 * DAY)  # fetched again now
    assert (fetched.iloc[1500:] - old).dt.total_seconds().max() == pytest.approx(40 * DAY)  # from the store


def test_the_cached_rows_carry_the_time_their_answer_was_stored(tmp_path):
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=40), clock=clock)
    frame = pd.DataFrame({"email": [*_emails(sb, 3), None]})
    with sb.client(cache_dir=tmp_path / "c") as client:
        first = _enrich(frame, client)
        clock.advance(3600)
        second = _enrich(frame, client)
        third = _enrich(frame, client, max_age="30m")
    pd.testing.assert_series_equal(first["apollo_fetched_at"], second["apollo_fetched_at"])
    assert first["apollo_fetched_at"].isna().tolist() == [False, False, False, True]  # an invalid row: never answered
    assert (third["apollo_fetched_at"].iloc[:3] - first["apollo_fetched_at"].iloc[:3]).dt.total_seconds().tolist() \
        == [3600.0] * 3
    assert str(first["apollo_fetched_at"].dt.tz) == "UTC"


@pytest.mark.parametrize("bad", [-1, "soon", True, float("nan")])
def test_a_max_age_that_cannot_be_read_is_a_typed_error_before_anything_is_sent(tmp_path, bad):
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=20), clock=FakeClock())
    with sb.client(cache_dir=tmp_path / "c") as client, pytest.raises(InputError, match="max_age"):
        _enrich(pd.DataFrame({"email": _emails(sb, 2)}), client, max_age=bad)
    assert sb.requests == []


def _moving_world(tmp_path, n: int = 1000):
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(seed=6, n_orgs=120), clock=clock)
    people = [p for p in sb.world.people if p.get("email")][:n]
    assert len(people) == n
    return sb, clock, pd.DataFrame({"email": [p["email"] for p in people]}, index=[f"r{i}" for i in range(n)]), people


def test_changes_list_every_mover_as_a_job_change_and_every_retitled_person_as_a_title_change(tmp_path):
    """10 % move, 5 % are retitled between runs: changes() names each with its kind; a refresh right after
    lists nothing."""
    sb, clock, frame, people = _moving_world(tmp_path)
    with sb.client(cache_dir=tmp_path / "c") as client:
        _enrich(frame, client)
        clock.advance(100 * DAY)
        moved = sb.move(0.10, retitle=0.05, seed=3)
        refreshed = _enrich(frame, client, max_age="90d")
        again = _enrich(frame, client, refresh=True)
    label = {p["id"]: row for p, row in zip(people, frame.index, strict=True)}
    found = refreshed.apollo.changes()
    kinds = found.groupby("row")["change_kind"].first()
    movers = {label[i] for i in moved.moved if i in label}
    retitled = {label[i] for i in moved.retitled if i in label}
    assert len(movers) > 50 and len(retitled) > 25
    assert set(kinds[kinds == "job_change"].index) == movers
    assert set(kinds[kinds == "title_change"].index) == retitled
    assert len(set(kinds.index) - movers - retitled) <= 0.01 * len(frame)
    assert list(found.columns) == ["row", "change_kind", "field", "old", "new"]
    one = found[(found["row"] == next(iter(retitled))) & (found["field"] == "person.title")].iloc[0]
    person = next(p for p in people if label[p["id"]] == one["row"])
    assert one["new"] == person["title"] != one["old"]
    assert again.apollo.changes().empty and refreshed.attrs["apollo"]["api_calls"] == 100


def test_a_person_with_no_current_employer_left_and_the_previous_answer_is_kept_in_the_store(tmp_path):
    sb, clock, frame, people = _moving_world(tmp_path, 3)
    with sb.client(cache_dir=tmp_path / "c") as client:
        _enrich(frame, client)
        clock.advance(DAY)
        was = people[0]["organization_id"]
        people[0]["organization"], people[0]["organization_id"] = None, None
        people[1]["email_status"] = "guessed"
        out = _enrich(frame, client, refresh=True)
        keys = [key for (key,) in client.cache.query("SELECT key FROM Previous")]
        kept = client.cache.previous_many(keys, since=0)
    kinds = out.apollo.changes().groupby("row")["change_kind"].first().to_dict()
    assert kinds == {"r0": "left", "r1": "other"}
    assert len(keys) >= 3  # each replaced answer kept (under each identifier it was stored under)
    assert any(v["id"] == people[0]["id"] and v["organization"]["id"] == was for v in kept.values())


def test_a_frame_that_is_no_result_has_no_changes_to_list():
    with pytest.raises(InputError, match="changes"):
        pd.DataFrame({"a": [1]}).apollo.changes()


def test_the_cli_fetches_old_answers_again_and_writes_what_changed(tmp_path, monkeypatch, capsys):
    """enrich-people --max-age 0s --changes FILE: every answer is fetched again; the movers' rows are listed."""
    import apollo_frames.sandbox as sandbox_module
    from apollo_frames.cli import main

    sb = Sandbox(SandboxConfig(seed=7, n_orgs=40))
    monkeypatch.setattr(sandbox_module, "Sandbox", lambda *a, **k: sb)  # one world for both runs
    emails = _emails(sb, 60)
    src, out, changed = tmp_path / "in.csv", tmp_path / "out.parquet", tmp_path / "changes.csv"
    pd.DataFrame({"email": emails}).to_csv(src, index=False)
    run = ["enrich-people", str(src), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path / "c")]
    assert main(run) == 0
    estimate = ["estimate", str(src), "--op", "enrich-people", "--sandbox", "--cache-dir", str(tmp_path / "c")]
    capsys.readouterr()
    assert main(estimate) == 0 and "0 to fetch" in capsys.readouterr().out
    assert main([*estimate, "--max-age", "0s"]) == 0 and "60 to fetch" in capsys.readouterr().out
    moved = set(sb.move(0.5, seed=2).moved)
    assert main([*run, "--max-age", "0s", "--changes", str(changed)]) == 0
    listed = pd.read_csv(changed)
    person = {p["email"]: p["id"] for p in sb.world.people if p.get("email")}
    expected = {i for i, e in enumerate(emails) if person[e] in moved}
    assert expected and set(listed["row"]) == expected
    assert set(listed["change_kind"]) == {"job_change"} and "person.organization.name" in set(listed["field"])
    assert pd.read_parquet(out)["apollo_fetched_at"].notna().all()
    assert main([*run, "--max-age", "0s", "--changes", str(changed)]) == 0
    assert pd.read_csv(changed).empty  # nothing changed since
    with pytest.raises(SystemExit) as exited:
        main([*run, "--max-age", "soon"])
    assert exited.value.code == 2 and "--max-age" in capsys.readouterr().err


def test_a_file_run_with_max_age_sends_what_the_file_estimate_said(tmp_path):
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=60), clock=clock)
    emails = _emails(sb, 300)
    old, src = tmp_path / "old.csv", tmp_path / "all.csv"
    pd.DataFrame({"email": emails[:200]}).to_csv(old, index=False)
    pd.DataFrame({"email": emails}).to_csv(src, index=False)
    with sb.client(cache_dir=tmp_path / "c") as client:
        af.enrich_parquet(old, dst=tmp_path / "o1.parquet", operation="enrich_people", client=client, progress=False)
        clock.advance(10 * DAY)
        _enrich(pd.DataFrame({"email": emails[200:]}), client)  # fresh: from the store
        said = af.estimate_file(src, operation="enrich_people", client=client, chunk_rows=70, max_age="1w")
        calls = sb.count(BULK)
        done = af.enrich_parquet(src, dst=tmp_path / "o2.parquet", operation="enrich_people", client=client, progress=False,
                                 chunk_rows=70, max_age="1w")
    assert said.to_fetch == 200 and said.api_calls == sb.count(BULK) - calls == done["api_calls"]
    assert done["changes"] == {"row": [], "field": [], "old": [], "new": []}  # the world did not change


def test_an_old_answer_that_could_not_be_fetched_again_stays_in_its_row(tmp_path):
    """max_credits leaves no room: the old rows are skipped (and say so) but keep the answer the store had."""
    clock = FakeClock()
    sb = Sandbox(SandboxConfig(seed=5, n_orgs=40), clock=clock)
    frame = pd.DataFrame({"email": _emails(sb, 20)})
    with sb.client(cache_dir=tmp_path / "c") as client:
        first = _enrich(frame, client)
        clock.advance(DAY)
        with pytest.warns(UserWarning, match="skipped"):
            later = _enrich(frame, client, max_age="1h", max_credits=10)
    assert (later["apollo_status"] == "matched").sum() == 10 and (later["apollo_status"] == "skipped").sum() == 10
    skipped = later["apollo_status"] == "skipped"
    pd.testing.assert_series_equal(later.loc[skipped, "person.id"], first.loc[skipped, "person.id"])
    pd.testing.assert_series_equal(later.loc[skipped, "apollo_fetched_at"], first.loc[skipped, "apollo_fetched_at"])


def test_an_answer_deleted_takes_its_previous_versions_with_it(tmp_path):
    """Previous versions live in the store's own file and go with their answer (what forgets an answer forgets
    them); at most a few are kept per key."""
    clock = FakeClock()
    with AnswerStore(tmp_path, clock=clock) as store:
        for n in range(6):
            store.set_many({"k1": {"id": str(n)}, "k2": {"id": str(n)}}, ttl=None)
            clock.advance(1)
        assert store.query("SELECT COUNT(*) FROM Previous WHERE key = 'k1'") == [(3,)]
        assert store.previous_many(["k1"], since=0) == {"k1": {"id": "4"}}  # the latest replaced
        with store.transaction() as con:
            con.execute("DELETE FROM Answers WHERE key = 'k1'")
        assert store.query("SELECT key FROM Previous GROUP BY key") == [("k2",)]
        store.clear()
        assert store.query("SELECT COUNT(*) FROM Previous") == [(0,)]


def test_changes_name_rows_by_label_in_a_subset_of_the_result_too(tmp_path):
    sb, clock, frame, people = _moving_world(tmp_path, 30)
    frame = frame.iloc[::-1]  # labels r29 ... r0
    with sb.client(cache_dir=tmp_path / "c") as client:
        _enrich(frame, client)
        people[3]["title"] = "Chief Listening Officer"
        out = _enrich(frame, client, refresh=True)
    subset = out[out["apollo_status"] == "matched"].head(5)  # (keeps the attrs)
    for found in (out.apollo.changes(), subset.apollo.changes()):
        assert found.loc[found["field"] == "person.title", ["row", "change_kind", "new"]].values.tolist() == [
            ["r3", "title_change", "Chief Listening Officer"]]
