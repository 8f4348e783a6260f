"""A hostile cache folder: every planted item ends in seconds with a typed error, a quarantine or a repair."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apollo_frames.client import store_admin
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.entries import SCHEMA_VERSION, encode_entry

K1, K2 = (f"{i:064x}" for i in (1, 2))
DAY = 86400.0


def responses(cache_dir: Path) -> Path:
    folder = cache_dir / "responses"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("name", ["cache.db", "cache.db-wal", "cache.db-shm", "cache.db-journal"])
def test_a_fifo_in_place_of_the_database_or_a_side_file_is_set_aside(tmp_path, name):
    if name != "cache.db":
        AnswerStore(tmp_path).close()
        (responses(tmp_path) / name).unlink(missing_ok=True)
    os.mkfifo(responses(tmp_path) / name)
    with pytest.warns(UserWarning, match="not a plain file: moved to"):
        store = AnswerStore(tmp_path)
    with store:
        store.set_many({K1: {"id": "1"}}, ttl=None)
        assert store.get_many([K1]) == {K1: {"id": "1"}} and store.quarantined == 1
    kept = list((responses(tmp_path) / "quarantine").iterdir())
    assert any(stat.S_ISFIFO(os.lstat(p).st_mode) for p in kept)  # kept, never opened
    assert "verify: 1 checked, 1 ok" in store_admin.cache_command("verify", tmp_path)
    assert "export: 1 checked, 1 ok" in store_admin.cache_command("export", tmp_path, path=tmp_path / "x.parquet")


def test_a_symlinked_database_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file")
    os.chmod(victim, 0o644)
    folder = responses(tmp_path / "c")
    (folder / "cache.db").symlink_to(victim)
    (folder / "cache.db-wal").symlink_to(tmp_path / "elsewhere-wal")
    with pytest.warns(UserWarning, match="was a symlink: moved to"), AnswerStore(tmp_path / "c") as store:
        store.set_many({K1: {"id": "1"}}, ttl=None)
        assert store.get_many([K1]) == {K1: {"id": "1"}}
    assert victim.read_text() == "someone else's file" and victim.stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "elsewhere-wal").exists()


def test_fifos_and_a_10_gb_sparse_file_left_in_the_folder_are_never_read(tmp_path):
    folder = responses(tmp_path)
    (folder / "ab" / "cd").mkdir(parents=True)
    os.mkfifo(folder / "ab" / "cd" / ("0" * 28 + ".val"))  # where diskcache kept large values
    with open(folder / "ab" / ("1" * 28 + ".val"), "wb") as sparse:
        sparse.truncate(10 * 2**30)
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: {"id": "1"}}, ttl=None)
        assert store.get_many([K1]) == {K1: {"id": "1"}}
        assert store.stats().size_bytes < 2**30  # the database's files only
    for action in ("info", "verify", "prune"):
        assert store_admin.cache_command(action, tmp_path)
    assert "1 ok" in store_admin.cache_command("export", tmp_path, path=tmp_path / "x.parquet")


def plant(cache_dir: Path, *statements: str) -> None:
    """Run ``statements`` on a store's database behind its back (what anyone who can write the folder can do)."""
    AnswerStore(cache_dir).close()
    con = sqlite3.connect(responses(cache_dir) / "cache.db")
    with con:
        for statement in statements:
            con.execute(statement)
    con.close()


def test_planted_triggers_are_dropped_and_ours_restored(tmp_path):
    plant(tmp_path, "CREATE TRIGGER wipe AFTER INSERT ON Answers BEGIN DELETE FROM Answers; END",
          "CREATE TRIGGER refuse BEFORE UPDATE ON Answers BEGIN SELECT RAISE(ABORT, 'no'); END",
          "DROP TRIGGER FlatRows_on_delete",
          "CREATE TRIGGER FlatRows_on_delete AFTER DELETE ON Answers BEGIN DELETE FROM Claims; END")
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: {"id": "1"}, K2: None}, ttl=None)
        store.set_many({K1: {"id": "2"}}, ttl=None)
        assert store.get_many([K1, K2]) == {K1: {"id": "2"}, K2: None}
        names = {n for (n,) in store.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert names == {"FlatRows_on_insert", "FlatRows_on_update", "FlatRows_on_delete", "Previous_on_update",
                         "Previous_on_delete"}
        assert store.previous_many([K1], since=0) == {K1: {"id": "1"}}  # (the replaced answer, kept)
        (sql,) = store.query("SELECT sql FROM sqlite_master WHERE name = 'FlatRows_on_delete'")[0]
        assert "FlatRows" in sql and "Claims" not in sql


def test_a_settings_table_with_statements_in_it_is_never_read(tmp_path):
    plant(tmp_path, "CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)",
          "INSERT INTO Settings VALUES ('sqlite_journal_mode', 'wal; DROP TABLE Answers; --')")
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: None}, ttl=None)
        assert store.get_many([K1]) == {K1: None}


def test_an_entry_dated_in_the_far_future_is_quarantined_and_a_refresh_replaces_it(tmp_path):
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: {"id": "old"}}, ttl=None)
        with store.transaction() as con:
            con.execute("UPDATE Answers SET stored_at = 1e18 WHERE key = ?", (K1,))
        with pytest.warns(UserWarning, match="dated in the future"):
            assert store.get_many([K1]) == {}
        store.set_many({K1: {"id": "new"}}, ttl=None)  # what a refresh writes
        assert store.get_many([K1]) == {K1: {"id": "new"}}
        # an import can never plant one either: it keeps the entry stored later, and refuses future dates
        path = tmp_path / "future.parquet"
        pq.write_table(pa.Table.from_pylist([{"key": K1, "schema_version": SCHEMA_VERSION, "stored_at": 1e18,
                                              "expires_at": None, "answer": '{"id":"forged"}'}],
                                             schema=store_admin.EXPORT_SCHEMA), path)
        assert dict(store_admin.import_parquet(store, path).skipped) == {"bad stored_at": 1}
        assert store.get_many([K1]) == {K1: {"id": "new"}}


def _export(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records, schema=store_admin.EXPORT_SCHEMA), path)
    return path


def test_an_import_without_an_expiry_expires_with_the_stores_ttl(tmp_path):
    with AnswerStore(tmp_path / "c") as store:
        now = store.clock.time()
        path = _export(tmp_path / "x.parquet", [
            {"key": K1, "schema_version": SCHEMA_VERSION, "stored_at": now - DAY, "expires_at": None,
             "answer": '{"id":"1"}'},
            {"key": K2, "schema_version": SCHEMA_VERSION, "stored_at": now - 40 * DAY, "expires_at": None,
             "answer": '{"id":"2"}'}])
        counts = store_admin.import_parquet(store, path, ttl=30 * DAY)
        assert counts.written == 1 and dict(counts.skipped) == {"expired": 1}
        ((expires,),) = store.query("SELECT expires_at FROM Answers WHERE key = ?", [K1])
        assert expires == pytest.approx(now + 29 * DAY)
    assert "1 written" in store_admin.cache_command("import", tmp_path / "d", path=path)  # the CLI uses the TTL


def test_importing_deeply_nested_json_skips_it_with_a_reason(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    with AnswerStore(tmp_path / "c") as store:
        path = _export(tmp_path / "deep.parquet", [
            {"key": K1, "schema_version": SCHEMA_VERSION, "stored_at": store.clock.time(), "expires_at": None,
             "answer": '{"x":' + deep + "}"},
            {"key": K2, "schema_version": SCHEMA_VERSION, "stored_at": store.clock.time(), "expires_at": None,
             "answer": '{"id":"2"}'}])
        counts = store_admin.import_parquet(store, path)
        assert counts.written == 1 and dict(counts.skipped) == {"answer nested too deeply": 1}


def test_a_store_written_by_diskcache_has_its_entries_moved_over(tmp_path):
    db = responses(tmp_path) / "cache.db"
    con = sqlite3.connect(db)
    with con:
        con.execute("CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)")
        con.execute("CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL, "
                    "expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB, size INTEGER "
                    "DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB, UNIQUE(key, raw))")
        con.execute("CREATE TRIGGER Flat_on_insert AFTER INSERT ON Cache BEGIN SELECT 1; END")
        rows = [(K1, 1, 1.0e9, None, 1, encode_entry(K1, {"id": "paid"})),
                (K2, 1, 1.0e9, None, 4, json.dumps([1]).encode())]  # mode 4 was pickle: checked on read all the same
        con.executemany("INSERT INTO Cache (key, raw, store_time, expire_time, mode, value) VALUES (?, ?, ?, ?, ?, ?)",
                        rows)
    con.close()
    with AnswerStore(tmp_path) as store:
        with pytest.warns(UserWarning, match="not an entry"):
            assert store.get_many([K1, K2]) == {K1: {"id": "paid"}}
        tables = {n for (n,) in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "Cache" not in tables and "Settings" not in tables


def test_leases_for_ever_from_owners_that_are_not_alive_hold_nothing_and_prune_removes_them(tmp_path):
    with AnswerStore(tmp_path) as store:
        owners = store.directory / "owners"
        (owners / "0123456789abcdef").symlink_to(tmp_path / "anything")  # a symlink is no owner's file
        os.mkfifo(owners / "fedcba9876543210")
        with store.transaction() as con:
            con.executemany("INSERT INTO Claims (key, owner, expires) VALUES (?, ?, ?)",
                            [(K1, "0123456789abcdef", 1e18), (K2, "fedcba9876543210", 1e18), ("k", "another-host", 1e18),
                             ("j", store.begin_run(), 1e18)])
        assert store.held_by_others([K1, K2, "k", "j"]) == []  # (even a live owner's lease is not believed for ever)
        assert store_admin.prune(store, older_than=DAY) == 0
        assert store.query("SELECT key FROM Claims") == [("j",)]


def test_an_owner_file_that_is_not_a_plain_file_is_not_alive_and_is_left_where_it_is(tmp_path):
    with AnswerStore(tmp_path) as store:
        owners = store.directory / "owners"
        os.mkfifo(owners / "0123456789abcdef")
        (owners / "fedcba9876543210").mkdir()
        (owners / "00000000000000aa").write_bytes(b"")  # a plain file nobody locks: a dead owner's, removed
        assert [store.holders.alive(o) for o in ("0123456789abcdef", "fedcba9876543210", "00000000000000aa")] == [
            False, False, False]
        assert stat.S_ISFIFO(os.lstat(owners / "0123456789abcdef").st_mode) and (owners / "fedcba9876543210").is_dir()
        assert not (owners / "00000000000000aa").exists() and store.holders.alive(store.owner)
