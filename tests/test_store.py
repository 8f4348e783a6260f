"""The answer store and the ledger as storage: never executes what it reads, private files, typed
storage errors, leases, in-doubt ledger rows, and the `apollo-frames cache` subcommand."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import apollo_frames as af
from apollo_frames.cli import main
from apollo_frames.client import store_admin
from apollo_frames.client.ledger import Ledger
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.entries import SCHEMA_VERSION, encode_entry
from apollo_frames.core.errors import ApolloError, StorageError

DAY = 86400.0


class Clock:
    """A clock a test moves by hand; ``sleep`` advances it (no test sleeps)."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Payload:
    """Unpickling this runs a shell command that creates ``flag``: what an attacker would store."""

    def __init__(self, flag: Path):
        self.flag = str(flag)

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def people_frame(sandbox, n: int) -> pd.DataFrame:
    people = [p for p in sandbox.world.people if p.get("email")][:n]
    assert len(people) == n
    return pd.DataFrame({"email": [p["email"] for p in people]})


def db_of(cache_dir: Path) -> Path:
    return cache_dir / "responses" / "cache.db"


def poison(db: Path, flag: Path) -> int:
    """Replace every stored value by hostile bytes in four ways; returns the number of rows."""
    evil = pickle.dumps(Payload(flag))
    conn = sqlite3.connect(db)
    with conn:
        rows = conn.execute("SELECT rowid, key FROM Answers ORDER BY rowid").fetchall()
        for i, (rowid, key) in enumerate(rows):
            kind = i % 4
            if kind == 0:  # pickle bytes where JSON should be
                conn.execute("UPDATE Answers SET value = ? WHERE rowid = ?", (evil, rowid))
            elif kind == 1:  # pickle bytes as text
                conn.execute("UPDATE Answers SET value = ? WHERE rowid = ?", (evil.decode("latin-1"), rowid))
            elif kind == 2:  # a number where bytes should be
                conn.execute("UPDATE Answers SET value = 4 WHERE rowid = ?", (rowid,))
            else:  # garbage
                conn.execute("UPDATE Answers SET value = ? WHERE rowid = ?", (os.urandom(64), rowid))
        # a pickled key, and settings (diskcache, which this store once was, turned them into a PRAGMA)
        conn.execute("INSERT INTO Answers (key, stored_at, expires_at, value) VALUES (?, 0, NULL, ?)", (evil, evil))
        conn.execute("CREATE TABLE IF NOT EXISTS Settings (key TEXT NOT NULL UNIQUE, value)")
        conn.execute("INSERT OR REPLACE INTO Settings VALUES ('sqlite_evil', 'x y z')")
        conn.execute("INSERT OR REPLACE INTO Settings VALUES ('sqlite_cache_size', '1; DROP TABLE Answers')")
    conn.close()
    return len(rows)


# -- never executes what it reads ---------------------------------------------------------------


def test_poisoned_store_runs_no_code_returns_every_row_and_pays_for_what_it_set_aside(sandbox, tmp_path):
    cache_dir, flag = tmp_path / "cache", tmp_path / "pwned"
    frame = people_frame(sandbox, 12)
    with sandbox.client(cache_dir=cache_dir) as client:
        first = af.enrich_people(frame, client=client, progress=False)
    paid_once = sandbox.credits_consumed
    assert paid_once > 0 and (first["apollo_status"] == "matched").all()
    rows = poison(db_of(cache_dir), flag)
    assert rows > 12  # answers are stored under their aliases too

    with sandbox.client(cache_dir=cache_dir) as client:
        with pytest.warns(UserWarning, match=r"could not be trusted"):
            again = af.enrich_people(frame, client=client, progress=False)
        # every record looked up was bad, and so were its id and LinkedIn keys, read before the new answers were
        # stored under them (an answer never overwrites another person's)
        assert client.cache.quarantined == 3 * 12
        assert client.cache.stats().quarantined == 3 * 12
    assert not flag.exists()
    assert len(again) == len(frame) and (again["apollo_status"] == "matched").all()
    assert list(again["person.email"]) == list(first["person.email"])
    assert sandbox.credits_consumed == 2 * paid_once  # the set-aside answers were asked (and paid) again

    # the re-run rewrote the records and their aliases; verify walks every row and finds the pickled key
    with AnswerStore(cache_dir) as store:
        report = store_admin.verify(store)
        assert (report.checked, report.ok, dict(report.skipped)) == (rows + 1, rows, {"key not text": 1})
        assert store_admin.verify(store).checked == rows  # set aside, not read again
    assert not flag.exists()


def test_every_kind_of_bad_entry_is_a_counted_miss(tmp_path):
    clock = Clock()
    store = AnswerStore(tmp_path, clock=clock)
    keys = [store.key("people/match", {"email": f"p{i}@x.example"}) for i in range(6)]
    store.set_many({k: {"id": k[:6]} for k in keys}, ttl=None)
    conn = sqlite3.connect(db_of(tmp_path))
    with conn:
        conn.execute("UPDATE Answers SET value = ? WHERE key = ?", (encode_entry(keys[0], {"id": "x"}), keys[1]))
        conn.execute("UPDATE Answers SET value = ? WHERE key = ?",
                     (json.dumps({"v": SCHEMA_VERSION - 1, "k": keys[2], "d": {}}).encode(), keys[2]))
        conn.execute("UPDATE Answers SET value = ? WHERE key = ?", (encode_entry(keys[3], [1, 2]), keys[3]))
        conn.execute("UPDATE Answers SET stored_at = ? WHERE key = ?", (clock.now + 1e9, keys[4]))
    conn.close()
    with pytest.warns(UserWarning, match="4 stored answer"):
        found = store.get_many(keys)
    assert found == {keys[0]: {"id": keys[0][:6]}, keys[5]: {"id": keys[5][:6]}}
    assert store.quarantined == 4 and store.stats().quarantined == 4
    assert set(store.quarantine_reasons) == {
        "carries another key", f"schema version {SCHEMA_VERSION - 1}", "answer of type list",
        "dated in the future",
    }
    assert len(store) == 2  # the bad rows were moved out of the way
    store.close()


def test_a_bad_entry_a_full_disk_keeps_from_being_set_aside_is_still_a_counted_miss(tmp_path, monkeypatch):
    store = AnswerStore(tmp_path)
    key = "a" * 64
    with store.transaction() as con:
        con.execute("INSERT INTO Answers (key, stored_at, expires_at, value) VALUES (?, 1.0, NULL, ?)", (key, b"{"))

    def full(*_: object) -> None:
        raise StorageError("writing the answer store: disk full", path=str(db_of(tmp_path)), reason="full")

    monkeypatch.setattr(store, "transaction", full)
    with pytest.warns(UserWarning, match="1 stored answer"):
        assert store.get_many([key]) == {}  # a miss, not an error
    assert store.quarantined == 1
    monkeypatch.undo()
    assert len(store) == 1  # left on disk: still a miss on the next read
    store.close()


def test_a_cached_miss_is_not_an_absence_and_ttl_follows_the_clock(tmp_path):
    clock = Clock()
    with AnswerStore(tmp_path, clock=clock) as store:
        store.set_many({"a": None, "b": {"x": 1}}, ttl=DAY)
        assert store.get_many(["a", "b", "c"]) == {"a": None, "b": {"x": 1}}
        assert "a" in store and "c" not in store
        clock.now += DAY + 1
        assert store.get_many(["a", "b"]) == {}
        assert store.quarantined == 0


def test_get_many_reads_a_block_of_keys_in_one_query(tmp_path):
    with AnswerStore(tmp_path) as store:
        keys = [f"{i:064x}" for i in range(2000)]
        store.set_many({k: {"n": i} for i, k in enumerate(keys)}, ttl=None)
        selects: list[str] = []
        store._con().set_trace_callback(lambda sql: selects.append(sql) if sql.startswith("SELECT") else None)
        found = store.get_many(keys)
        store._con().set_trace_callback(None)
        assert len(found) == 2000 and found[keys[1999]] == {"n": 1999}
        assert len(selects) == 3  # 900 keys per statement


def test_a_file_that_is_not_a_database_is_set_aside_and_the_run_goes_on(sandbox, tmp_path):
    cache_dir = tmp_path / "cache"
    db = db_of(cache_dir)
    db.parent.mkdir(parents=True)
    db.write_bytes(pickle.dumps(Payload(tmp_path / "pwned")) * 50)
    frame = people_frame(sandbox, 5)
    with sandbox.client(cache_dir=cache_dir) as client:
        with pytest.warns(UserWarning, match="not a SQLite database: moved to"):
            out = af.enrich_people(frame, client=client, progress=False)
        assert client.cache.quarantined == 1
    assert (out["apollo_status"] == "matched").all()
    kept = list((db.parent / "quarantine").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"\x80")
    assert not (tmp_path / "pwned").exists()


# -- private by default -------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_store_and_ledger_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cache_dir = tmp_path / "new" / "cache"
        with AnswerStore(cache_dir) as store, Ledger(cache_dir / "ledger.sqlite") as ledger:
            store.set_many({"k": {"email": "a@b.example"}}, ttl=None)
            ledger.record(run_id="r", operation="enrich_people", endpoint="e", records_sent=1, records_matched=1,
                          credits=1, status=200)
            modes = _modes(tmp_path / "new")
    finally:
        os.umask(old)
    assert {"cache/ledger.sqlite-wal", "cache/responses/cache.db-wal"} <= set(modes)
    for name, mode in modes.items():
        if name in (".", "cache"):
            continue
        assert mode == (0o700 if (tmp_path / "new" / name).is_dir() else 0o600), (name, oct(mode))
    assert modes["cache"] == 0o700 and modes["."] == 0o700  # folders this store created


def test_files_left_world_readable_by_an_older_version_are_tightened(tmp_path):
    folder = tmp_path / "responses"
    folder.mkdir(mode=0o755)
    sqlite3.connect(folder / "cache.db").close()
    os.chmod(folder / "cache.db", 0o644)
    os.chmod(folder, 0o755)
    AnswerStore(tmp_path).close()
    assert folder.stat().st_mode & 0o777 == 0o700 and (folder / "cache.db").stat().st_mode & 0o777 == 0o600


# -- typed storage errors -----------------------------------------------------------------------

_FULL_DISK_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from apollo_frames.client.ledger import Ledger
    from apollo_frames.client.store import AnswerStore
    from apollo_frames.core.errors import StorageError
    folder, which = sys.argv[1], sys.argv[2]
    store, ledger = AnswerStore(folder), Ledger(folder + "/ledger.sqlite")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        for i in range(400):
            if which == "store":
                store.set_many({f"{i:064x}": {"blob": "x" * 4000}}, ttl=None)
            else:
                ledger.record(run_id="r" * 2000, operation="o" * 2000, endpoint="e", records_sent=1,
                              records_matched=1, credits=1, status=200)
    except StorageError as exc:
        print(json.dumps({"error": "StorageError", "reason": exc.reason, "path": exc.path, "message": str(exc)}))
    else:
        print(json.dumps({"error": None}))
    """
)


@pytest.mark.parametrize("which", ["store", "ledger"])
def test_a_full_disk_gives_storage_error(tmp_path, which):
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path), which],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] == "StorageError", result
    assert result["reason"] in ("full", "io")
    expected = db_of(tmp_path) if which == "store" else tmp_path / "ledger.sqlite"
    assert result["path"] == str(expected) and str(expected) in result["message"]
    assert "free some space" in result["message"]


def test_a_read_only_store_gives_storage_error(tmp_path):
    with AnswerStore(tmp_path) as store:
        store.set_many({"a": {"x": 1}}, ttl=None)
        store._con().execute("PRAGMA query_only = ON")  # what a read-only mount does to SQLite, even for root
        assert store.get_many(["a"]) == {"a": {"x": 1}}  # reading still works
        with pytest.raises(StorageError, match="read-only") as caught:
            store.set_many({"b": None}, ttl=None)
        assert caught.value.reason == "read_only" and caught.value.path == str(db_of(tmp_path))
        assert isinstance(caught.value, ApolloError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any folder")
def test_a_read_only_folder_gives_storage_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        with pytest.raises(StorageError) as caught:
            AnswerStore(folder)
        assert caught.value.reason == "read_only" and str(folder) in str(caught.value)
        with pytest.raises(StorageError, match="ledger"):
            Ledger(folder / "ledger.sqlite")
    finally:
        os.chmod(folder, 0o700)


def _damage(db: Path) -> None:
    """Overwrite four pages in the middle of a real database with garbage: a damaged copy."""
    data = db.read_bytes()
    assert len(data) > 4096 * 30
    db.write_bytes(data[:4096 * 20] + os.urandom(4096 * 4) + data[4096 * 24:])


def test_a_corrupt_store_names_the_file_and_cache_verify_salvages_it(tmp_path):
    with AnswerStore(tmp_path) as store:
        store.set_many({f"{i:064x}": {"n": i, "pad": "x" * 300} for i in range(300)}, ttl=None)
        store._con().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(db_of(tmp_path))
    with pytest.raises(StorageError) as caught, AnswerStore(tmp_path) as store:
        store.get_many([f"{i:064x}" for i in range(300)])
    assert caught.value.reason == "corrupt" and str(db_of(tmp_path)) in str(caught.value)
    assert "apollo-frames cache verify" in str(caught.value)
    text = store_admin.cache_command("verify", tmp_path)
    assert "salvage:" in text and "the damaged file is kept at" in text
    with AnswerStore(tmp_path) as store:  # opens again: what was readable was kept
        assert 0 < len(store) < 300 and store_admin.verify(store).bad == 0
        kept = store.get_many([f"{i:064x}" for i in range(300)])
        assert len(kept) == len(store) and all(v["n"] == int(k, 16) for k, v in kept.items())


def test_a_corrupt_ledger_names_the_file(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 100)
    with pytest.raises(StorageError, match="credit ledger") as caught:
        Ledger(path)
    assert caught.value.reason == "corrupt" and caught.value.path == str(path) and str(path) in str(caught.value)


# -- the ledger knows what is in doubt -----------------------------------------------------------


def test_begin_without_settle_is_in_doubt_with_its_worst_case(tmp_path):
    clock = Clock()
    with Ledger(tmp_path / "l.sqlite", clock=clock) as ledger:
        answered = ledger.begin(run_id="r1", operation="enrich_people", endpoint="people/bulk_match",
                                records_sent=10, worst_credits=10)
        ledger.begin(run_id="r1", operation="enrich_people", endpoint="people/bulk_match",
                     records_sent=10, worst_credits=10)
        ledger.settle(answered, credits=7, status=200, records_matched=7)
        ledger.record(run_id="r2", operation="enrich_orgs", endpoint="organizations/bulk_enrich",
                      records_sent=3, records_matched=3, credits=3, status=200)
        frame = ledger.frame()
        assert list(frame["status"]) == ["settled", "in_doubt", "settled"]
        assert list(frame["credits"]) == [7.0, 10.0, 3.0]
        assert ledger.in_doubt() == (1, 10.0)
        assert ledger.total_credits() == 10.0 and ledger.total_credits(run_id="r1") == 7.0
        assert ledger.match_rate("enrich_people") == (0.7, 10)  # the unanswered batch is not a miss
        assert "1 request(s) in doubt" in ledger.in_doubt_note() and "up to 10 credits" in ledger.in_doubt_note()


def test_in_doubt_after_kill_9_shows_in_reports_and_usage(sandbox, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    with sandbox.client(cache_dir=cache_dir) as client:
        path = client.ledger.path
    child = textwrap.dedent(
        f"""
        import os, signal
        from apollo_frames.client.ledger import Ledger
        ledger = Ledger({str(path)!r})
        ledger.begin(run_id="killed", operation="enrich_people", endpoint="people/bulk_match",
                     records_sent=10, worst_credits=10)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL
    with sandbox.client(cache_dir=cache_dir) as client:
        af.enrich_people(people_frame(sandbox, 3), client=client, progress=False)
        frame = af.ledger(client=client)
        assert frame.set_index("run_id").loc["killed", "status"] == "in_doubt"
        summary = af.credit_summary(by="run", client=client).set_index("run_id")
        assert summary.loc["killed", "in_doubt_credits"] == 10 and summary.loc["killed", "credits"] == 0
        assert summary.drop(index="killed")["in_doubt_credits"].sum() == 0
        assert summary["credits"].sum() == sandbox.credits_consumed
    assert main(["usage", "--sandbox", "--cache-dir", str(cache_dir)]) == 0
    assert "1 request(s) in doubt" in capsys.readouterr().out


def test_a_version_1_ledger_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE spend (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, run_id TEXT NOT NULL, "
        "operation TEXT NOT NULL, endpoint TEXT NOT NULL, records_sent INTEGER NOT NULL, "
        "records_matched INTEGER NOT NULL, credits REAL NOT NULL, http_status INTEGER)"
    )
    conn.execute("INSERT INTO spend VALUES (NULL, 1.0e9, 'old', 'enrich_people', 'e', 4, 2, 2.0, 200)")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    with Ledger(path) as ledger:
        assert list(ledger.frame()["status"]) == ["settled"] and ledger.total_credits() == 2.0
        assert ledger.in_doubt() == (0, 0.0)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (3,)  # 3: the unverified flag


# -- leases across processes ---------------------------------------------------------------------


def test_claims_leases_and_waiting_for_another_process(tmp_path):
    clock = Clock()
    mine, theirs = AnswerStore(tmp_path, clock=clock), AnswerStore(tmp_path, clock=clock)
    assert mine.claim(["a", "b"], lease_s=60).claimed == ["a", "b"]
    got = theirs.claim(["a", "c"], lease_s=60)
    assert got.claimed == ["c"] and list(got.held_by_others) == ["a"]
    assert got.held_by_others["a"].owner == mine.owner and got.held_by_others["a"].expires == clock.now + 60

    def sleep_and_answer(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 3:
            mine.set_many({"a": {"answer": 1}}, ttl=None)
            mine.release(["a"])

    waited = theirs.wait_for(["a"], timeout=30, poll=1, sleep=sleep_and_answer)
    assert waited.found == {"a": {"answer": 1}} and waited.still_held == [] and len(clock.slept) == 3

    waited = theirs.wait_for(["b"], timeout=5, poll=1, sleep=clock.sleep)  # held, never answered: gives up
    assert waited.still_held == ["b"] and waited.found == {} and clock.slept[-5:] == [1, 1, 1, 1, 1]
    clock.now += 60  # the holder was killed: its lease runs out and the key is free to take over
    assert theirs.wait_for(["b"], timeout=5, sleep=clock.sleep).free == ["b"]
    assert theirs.claim(["b"], lease_s=60).claimed == ["b"]
    mine.close()
    theirs.close()


# -- the cache subcommand ------------------------------------------------------------------------


def test_cache_cli_info_prune_verify_export_import(tmp_path, capsys):
    source, target = tmp_path / "a", tmp_path / "b"
    now = store_admin.AnswerStore(source).clock.time()
    with AnswerStore(source) as store:
        store.set_many({f"{i:064x}": {"n": i} for i in range(20)}, ttl=None)
        store.set_many({f"{i:064x}": None for i in range(20, 25)}, ttl=None)
        store.write_entries([(f"{i:064x}", {"old": i}, now - 40 * DAY, None) for i in range(25, 30)])
    assert main(["cache", "info", "--cache-dir", str(source)]) == 0
    assert "entries     30" in capsys.readouterr().out
    assert main(["cache", "prune", "--older-than", "30d", "--cache-dir", str(source)]) == 0
    assert "prune: 5 entries" in capsys.readouterr().out
    assert main(["cache", "verify", "--cache-dir", str(source)]) == 0
    assert "verify: 25 checked, 25 ok, 0 quarantined" in capsys.readouterr().out

    out = tmp_path / "answers.parquet"
    assert main(["cache", "export", str(out), "--cache-dir", str(source)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600 and pq.read_table(out).num_rows == 25
    # a colleague's file with bad rows in it: each is refused, the rest imported
    table = pq.read_table(out).to_pandas()
    bad = pd.DataFrame([
        {"key": "not-a-key", "schema_version": SCHEMA_VERSION, "stored_at": now, "expires_at": None, "answer": "{}"},
        {"key": "f" * 64, "schema_version": 1, "stored_at": now, "expires_at": None, "answer": "{}"},
        {"key": "e" * 64, "schema_version": SCHEMA_VERSION, "stored_at": now, "expires_at": None, "answer": "[1]"},
        {"key": "d" * 64, "schema_version": SCHEMA_VERSION, "stored_at": now, "expires_at": None,
         "answer": "cos\nsystem\n(S'touch x'\ntR."},
        {"key": "c" * 64, "schema_version": SCHEMA_VERSION, "stored_at": now, "expires_at": now - 1, "answer": "{}"},
    ])
    shared = tmp_path / "shared.parquet"
    pd.concat([table, bad], ignore_index=True).astype({"schema_version": "int32"}).to_parquet(shared)
    assert main(["cache", "import", str(shared), "--cache-dir", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "import: 30 checked, 25 ok, 5 skipped" in printed and "25 written" in printed
    keys = [f"{i:064x}" for i in range(25)]
    with AnswerStore(source) as a, AnswerStore(target) as b:
        assert b.get_many(keys) == a.get_many(keys) and len(b) == 25
    assert main(["cache", "import", str(tmp_path / "nope.parquet"), "--cache-dir", str(target)]) == 2


def test_prune_uses_the_injected_time(tmp_path):
    clock = Clock()
    with AnswerStore(tmp_path, clock=clock) as store:
        store.set_many({"a": {"x": 1}}, ttl=None)
        store.set_many({"b": {"x": 2}}, ttl=DAY)
        assert store_admin.prune(store, 30 * DAY) == 0
        assert store_admin.prune(store, 30 * DAY, now=clock.now + 2 * DAY) == 1  # b expired
        assert store_admin.prune(store, 30 * DAY, now=clock.now + 31 * DAY) == 1
        assert len(store) == 0
    assert store_admin.parse_age("12h") == 12 * 3600 and store_admin.parse_age("2w") == 14 * DAY
    with pytest.raises(ValueError, match="30d"):
        store_admin.parse_age("soon")


@pytest.mark.parametrize("key", ["ab" * 32, 'a "quoted" key\\ with é', "line\nbreak"])
def test_an_entry_is_the_json_of_its_version_key_and_answer_whatever_the_key(key):
    answer = {"id": "p1", "name": "Zoë", "tags": ["a", None]}
    stored = encode_entry(key, answer)
    assert json.loads(stored) == {"v": SCHEMA_VERSION, "k": key, "d": answer}
    assert stored == json.dumps({"v": SCHEMA_VERSION, "k": key, "d": answer}, separators=(",", ":"),
                                ensure_ascii=False).encode()


@pytest.mark.parametrize("identity", [{"id": "5f2a" * 6}, {"id": "Zoë"}, {"id": 'a "quoted" \\ id'},
                                      {"email": "a@b.example", "first_name": "Ann"}, {"id": "tab\there"}])
def test_keys_from_identity_texts_are_the_keys_of_the_identities(tmp_path, identity):
    from apollo_frames.engine.runner import identity_text

    options = {"reveal_personal_emails": True}
    with AnswerStore(tmp_path) as store:
        assert store.keys("people/bulk_match", [identity_text(identity)], options) == [
            store.key("people/bulk_match", identity, options)]


def test_an_entry_nested_too_deeply_to_read_is_a_counted_miss(tmp_path):
    with AnswerStore(tmp_path) as store:
        key = "b" * 64
        store.set_many({key: {"id": "p1"}}, ttl=None)
        deep = b'{"v":2,"k":"' + key.encode() + b'","d":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
        with store.transaction() as con:
            con.execute("UPDATE Answers SET value = ? WHERE key = ?", (deep, key))
        with pytest.warns(UserWarning, match="nested too deeply"):
            assert store.get_many([key]) == {}
        assert store.quarantined == 1


def test_connections_of_threads_that_ended_are_closed(tmp_path):
    import threading

    with AnswerStore(tmp_path) as store:
        for i in range(20):  # twenty runs' worker threads, one after another
            thread = threading.Thread(target=store.set_many, args=({f"{i:064x}": None},), kwargs={"ttl": None})
            thread.start()
            thread.join()
        assert len(store) == 20 and len(store._connections) <= 2  # this thread's and the last worker's


def test_a_store_report_in_a_notebook_escapes_its_text():
    from apollo_frames.client.store_admin import Counts

    counts = Counts("verify", checked=1, note="set aside to /tmp/<script>&")
    assert "<script>" not in counts._repr_html_() and "&lt;script&gt;&amp;" in counts._repr_html_()


def test_the_newest_erasure_is_read_in_the_writing_transaction(tmp_path):
    """A write checks for a ``forget`` on its own connection, inside its transaction: an erasure recorded there is
    seen, while another connection still sees none (a write racing a ``forget`` is erased by it or checked)."""
    with AnswerStore(tmp_path) as store, AnswerStore(tmp_path) as other:
        with pytest.raises(KeyboardInterrupt), store.transaction() as con:  # (rolled back)
            con.execute("INSERT INTO Erasures (time) VALUES (1.0)")
            assert store.latest_erasure() == 1 and other.latest_erasure() == 0
            raise KeyboardInterrupt
        assert store.latest_erasure() == 0


def test_answers_kept_in_memory_are_served_within_their_expiry_and_the_retention_only(tmp_path, monkeypatch):
    from apollo_frames.client.suppression import SuppressionList

    clock = Clock(1000.0)
    store = AnswerStore(tmp_path, clock=clock, retention=100)
    SuppressionList(tmp_path, clock=clock).add([("email", "gone@x.com")])
    fresh, old, expired, miss, gone = (f"{i:064x}" for i in range(20, 25))
    store.unstored.update({fresh: (fresh, {"id": "p1"}, 950.0, None), old: (old, {"id": "p2"}, 850.0, None),
                           expired: (expired, {"id": "p3"}, 990.0, 995.0), miss: (miss, None, 990.0, 2000.0),
                           gone: (gone, {"email": "gone@x.com"}, 990.0, None)})

    def full(*_: object, **__: object) -> int:
        raise StorageError("writing the answer store: disk full", path=str(store.path), reason="full")

    monkeypatch.setattr(store, "write_entries", full)
    stamps: dict = {}
    assert store.get_many([fresh, old, expired, miss, gone, "z" * 64], stamps=stamps) == {fresh: {"id": "p1"},
                                                                                           miss: None}
    assert stamps == {fresh: (950.0, None), miss: (990.0, 2000.0)}
    assert gone not in store.unstored and fresh in store.unstored  # a suppressed one is let go of, the others wait
    monkeypatch.undo()
    assert store.get_many([fresh]) == {fresh: {"id": "p1"}} and not store.unstored  # written once the disk takes it
    assert store.query("SELECT expires_at FROM Answers WHERE key = ?", [fresh]) == [(1050.0,)]  # (the retention)
    store.close()
