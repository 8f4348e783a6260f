"""Flattened copies of stored answers: used on re-runs, never in place of an answer that changed or went away."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames.client import flat
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.entries import canonical_json
from apollo_frames.engine import cached


def people_frame(sandbox, n: int) -> pd.DataFrame:
    people = [p for p in sandbox.world.people if p.get("email")][:n]
    return pd.DataFrame({"email": [p["email"] for p in people], "first_name": [p["first_name"] for p in people]})


def db_of(cache_dir: Path) -> Path:
    return cache_dir / "responses" / "cache.db"


def count(cache_dir: Path, table: str) -> int:
    con = sqlite3.connect(db_of(cache_dir))
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def no_raw_reads(monkeypatch) -> list[int]:
    """Make every raw read fail loudly; returns nothing (a run that still works read copies only)."""
    def refuse(self, keys, **kw):
        keys = list(keys)
        if keys:
            raise AssertionError(f"raw answers read for {len(keys)} keys")
        return {}
    monkeypatch.setattr(AnswerStore, "get_many", refuse)
    return []


def rerun_pays_nothing_and_matches(sandbox, frame: pd.DataFrame, first: pd.DataFrame, cache_dir: Path) -> None:
    paid = sandbox.credits_consumed
    with sandbox.client(cache_dir=cache_dir) as client:
        again = af.enrich_people(frame, client=client, progress=False)
    assert sandbox.credits_consumed == paid
    pd.testing.assert_frame_equal(answers(again), answers(first))


@pytest.fixture
def filled(sandbox, tmp_path):
    """A frame of 12 people with two rows repeated and one nobody, enriched once (answers and copies stored)."""
    frame = people_frame(sandbox, 12)
    frame = pd.concat([frame, frame.iloc[[3, 5]], pd.DataFrame({"email": ["ghost@nowhere-at-all.example"],
                                                                  "first_name": ["G"]})], ignore_index=True)
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        first = af.enrich_people(frame, client=client, progress=False)
    return frame, first, tmp_path / "c"


def test_the_fetching_run_keeps_copies_and_a_rerun_reads_only_them(sandbox, filled, monkeypatch):
    frame, first, cache_dir = filled
    assert count(cache_dir, "FlatRows") == 13 and count(cache_dir, "FlatBlocks") == 1  # 12 matches and one no-match
    paid = sandbox.credits_consumed
    no_raw_reads(monkeypatch)
    with sandbox.client(cache_dir=cache_dir) as client:
        again = af.enrich_people(frame, client=client, progress=False)
    assert sandbox.credits_consumed == paid and again.attrs["apollo"]["cache_hits"] == 13
    pd.testing.assert_frame_equal(answers(again), answers(first))
    assert (again["apollo_status"] == "no_match").sum() == 1


def test_another_flatten_version_rebuilds_from_the_raw_answers(sandbox, filled, monkeypatch):
    frame, first, cache_dir = filled
    monkeypatch.setattr(cached, "FLATTEN_VERSION", 10_000)
    reads = []
    original = AnswerStore.get_many
    monkeypatch.setattr(AnswerStore, "get_many",
                        lambda self, keys, **kw: reads.append(1) or original(self, keys, **kw))
    with sandbox.client(cache_dir=cache_dir) as client:
        rebuilt = af.enrich_people(frame, client=client, progress=False)
        assert reads  # the copies of the other version were not used
        reads.clear()
        again = af.enrich_people(frame, client=client, progress=False)
        assert not reads  # ... and the rebuilt ones are
    pd.testing.assert_frame_equal(answers(rebuilt), answers(first))
    pd.testing.assert_frame_equal(answers(again), answers(first))
    assert count(cache_dir, "FlatBlocks") == 1  # the replaced block was dropped


@pytest.mark.parametrize("bad", ["garbage", "other schema", "row count"])
def test_a_bad_block_is_a_miss_of_the_copy_never_a_crash(sandbox, filled, bad):
    frame, first, cache_dir = filled
    con = sqlite3.connect(db_of(cache_dir))
    with con:
        if bad == "garbage":
            con.execute("UPDATE FlatBlocks SET data = ?", (b"\xff" * 300,))
        elif bad == "other schema":
            con.execute("UPDATE FlatBlocks SET data = ?", (flat.to_ipc(pa.table({"x": list(range(13))})),))
        else:
            con.execute("UPDATE FlatBlocks SET rows = rows + 1")
    con.close()
    rerun_pays_nothing_and_matches(sandbox, frame, first, cache_dir)
    assert count(cache_dir, "FlatRows") == 13 and count(cache_dir, "FlatBlocks") == 1  # rebuilt from the raw answers


def test_a_rewritten_or_removed_answer_takes_its_copy_with_it(sandbox, filled):
    frame, first, cache_dir = filled
    with sandbox.client(cache_dir=cache_dir) as client:
        keys = client.cache.keys("people/bulk_match", [f'{{"email":"{frame["email"][0]}"}}'],
                                 {"reveal_personal_emails": False, "reveal_phone_number": False})
        assert keys[0] in client.cache
        client.cache.set_many({keys[0]: {"id": "0" * 24, "title": "Rewritten"}}, ttl=None)
        assert count(cache_dir, "FlatRows") == 12
        again = af.enrich_people(frame, client=client, progress=False)
        assert again["person.title"][0] == "Rewritten"
        pd.testing.assert_frame_equal(answers(again).iloc[1:], answers(first).iloc[1:])
        client.cache.clear()
    assert count(cache_dir, "FlatRows") == 0 and count(cache_dir, "FlatBlocks") == 0


def test_keys_from_identity_texts_are_the_keys(tmp_path):
    store = AnswerStore(tmp_path)
    options = {"reveal_personal_emails": False}
    identities = [{"email": "a@b.example"}, {"first_name": "ann", "last_name": "lée", "domain": "b.example"}]
    texts = ['{"email":"a@b.example"}', canonical_json(identities[1])]
    assert store.keys("people/bulk_match", texts, options) == [store.key("people/bulk_match", i, options)
                                                               for i in identities]


def test_rows_of_any_frame_are_taken_from_the_copies_in_its_order_and_nothing_is_saved_again(sandbox, tmp_path,
                                                                                               monkeypatch):
    frame = people_frame(sandbox, 12)
    with sandbox.client(cache_dir=tmp_path) as client:
        whole = af.enrich_people(frame, client=client, progress=False)
        af.enrich_people(frame.iloc[:6], client=client, progress=False)  # a frame enriched after the first
        assert count(tmp_path, "FlatBlocks") == 1
        no_raw_reads(monkeypatch)
        for rows in ([6, 0], [11, 3, 5, 0], list(range(11, -1, -1))):  # a subset, another order, shuffled
            picked = frame.iloc[rows].reset_index(drop=True)
            again = af.enrich_people(picked, client=client, progress=False)
            expected = whole.iloc[rows].reset_index(drop=True)
            pd.testing.assert_frame_equal(answers(again), answers(expected))
            assert again["apollo_credits"].sum() == 0
    assert count(tmp_path, "FlatBlocks") == 1  # read where they are: no block was written again


@pytest.mark.parametrize(("batch_bytes", "factor"), [(1, 0), (1 << 30, 4)])
def test_blocks_read_a_batch_at_a_time_give_the_rows_in_the_frames_order(sandbox, tmp_path, monkeypatch, batch_bytes,
                                                                          factor):
    frame = people_frame(sandbox, 12)
    with sandbox.client(cache_dir=tmp_path) as client:
        whole = af.enrich_people(frame, client=client, progress=False)
        for start in (0, 4, 8):  # three more blocks, each a third of the people
            af.enrich_people(frame.iloc[start:start + 4], client=client, progress=False, refresh=True)
        assert count(tmp_path, "FlatBlocks") == 3
        monkeypatch.setattr(flat, "_BATCH_BYTES", batch_bytes)  # 1: every block a batch of its own
        monkeypatch.setattr(flat, "_LOOKUP_FACTOR", factor)  # 0: the blocks always hold "too many" rows
        no_raw_reads(monkeypatch)
        for rows in ([9, 0, 5], [11, 3, 7, 0, 4], list(range(11, -1, -1)), list(range(12))):
            again = af.enrich_people(frame.iloc[rows].reset_index(drop=True), client=client, progress=False)
            pd.testing.assert_frame_equal(answers(again), answers(whole.iloc[rows].reset_index(drop=True)))


@pytest.mark.parametrize("identity", [
    {"email": "a@b.example"}, {"email": 'a"b@c.example'}, {"email": "a\\b@c.example"}, {"email": "jöhn@b.example"},
    {"email": "a\x01b@c.example"}, {"id": "5f1a2b3c4d5e6f7a8b9c0d1e"}, {"email": 5},
    {"first_name": "ann", "last_name": "lee", "domain": "b.example"}, {"name": "ann lee", "organization_name": "x"},
])
def test_identity_text_is_canonical_json(identity):
    from apollo_frames.engine.runner import identity_text

    assert identity_text(identity) == canonical_json(identity)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_copy_expires_with_its_answer(tmp_path, monkeypatch):
    from apollo_frames.ops.people import OPERATION

    clock = Clock()
    store = AnswerStore(tmp_path, clock=clock)
    keys = [store.key("people/bulk_match", {"email": f"p{i}@x.example"}) for i in range(5)]
    store.set_many({k: {"id": f"{i:024x}", "title": f"T{i}"} for i, k in enumerate(keys)}, ttl=100)
    first = cached.read_cached(keys, OPERATION, store)
    assert first.cached == dict.fromkeys(range(5), True) and count(tmp_path, "FlatRows") == 5
    no_raw_reads(monkeypatch)
    again = cached.read_cached(keys, OPERATION, store)
    assert again.cached == first.cached and again.table().equals(first.table())
    monkeypatch.undo()
    clock.now += 101
    assert cached.read_cached(keys, OPERATION, store).cached == {}


def test_a_copy_is_never_tied_to_an_answer_rewritten_after_it_was_read(tmp_path):
    from apollo_frames.ops.people import OPERATION

    clock = Clock()
    store = AnswerStore(tmp_path, clock=clock)
    key = store.key("people/bulk_match", {"email": "p@x.example"})
    store.set_many({key: {"id": "a" * 24, "title": "Old"}}, ttl=None)
    stamps: dict = {}
    old = store.get_many([key], stamps=stamps)
    clock.now += 1
    store.set_many({key: {"id": "a" * 24, "title": "New"}}, ttl=None)
    copies = cached.copies_for(OPERATION, store)
    copies.save([key], stamps, [True], OPERATION.flatten([old[key]]))
    assert count(tmp_path, "FlatRows") == 0  # the copy of "Old" was refused
    read = cached.read_cached([key], OPERATION, store)
    assert read.table().column("person.title").to_pylist() == ["New"]


@pytest.mark.parametrize("edit", ["block = 'x'", "block = block + 1", "block = -1", "key = 'k' || key",
                                  "block = 12345"])
def test_a_hand_edited_reference_is_a_miss_of_the_copy(sandbox, filled, edit):
    frame, first, cache_dir = filled
    con = sqlite3.connect(db_of(cache_dir))
    with con:
        con.execute(f"UPDATE FlatRows SET {edit}")
    con.close()
    rerun_pays_nothing_and_matches(sandbox, frame, first, cache_dir)


def test_prune_takes_the_copies_and_their_blocks(sandbox, filled):
    from apollo_frames.client import store_admin

    _, _, cache_dir = filled
    with AnswerStore(cache_dir) as store:
        assert store_admin.prune(store, older_than=0, now=store.clock.time() + 1) >= 13
    assert count(cache_dir, "FlatRows") == 0 and count(cache_dir, "FlatBlocks") == 0


def test_take_rows_gives_what_a_take_gives_also_for_columns_without_a_value():
    from apollo_frames.core.columnwise import take_rows

    table = pa.table({"a": pa.array(["x", None, "z", "w"]), "b": pa.nulls(4, pa.string()),
                      "c": pa.nulls(4, pa.list_(pa.int64())), "d": pa.array([1.0, 2.0, None, 4.0])})
    table = pa.concat_tables([table.slice(0, 2), table.slice(2)])  # chunked, as blocks are
    for at in ([3, 0, 2, 1], [1, 1, 0], [], [2]):
        taken = take_rows(table, np.asarray(at, np.int64))
        assert taken.equals(table.take(pa.array(at, pa.int64()))) and taken.schema == table.schema


def test_take_columns_lets_go_of_each_column_it_took():
    from apollo_frames.core.columnwise import take_columns

    table = pa.table({"a": ["x", "y", "z"], "b": [1, 2, 3]})
    columns = list(table.columns)
    taken = take_columns(columns, np.asarray([2, 0], np.int64))
    assert columns == [None, None] and [c.to_pylist() for c in taken] == [["z", "x"], [3, 1]]


def test_cached_read_maps_each_hit_to_its_row_in_the_order_read():
    read = cached.CachedRead()
    read.add(pa.table({"x": [1, 2]}), np.array([5, 2]), np.array([True, False]))
    read.add(pa.table({"x": [3]}), [0], [True])
    assert read.cached == {5: True, 2: False, 0: True} and read.rows == {5: 0, 2: 1, 0: 2}
    assert read.table().column("x").to_pylist() == [1, 2, 3]
    bare = cached.CachedRead()
    bare.add(None, np.array([1]), np.array([False]))
    assert bare.cached == {1: False} and bare.rows == {} and bare.table() is None



def test_hits_read_as_arrays_until_used_by_key_then_as_a_dict():
    hits = cached.Hits(np.array([7, 3, 5]), np.array([True, False, True]))
    keys, values = cached.hit_arrays(hits, bool)
    assert keys.tolist() == [7, 3, 5] and values.tolist() == [True, False, True] and len(hits) == 3
    assert list(hits) == [7, 3, 5] and hits[3] is False and 5 in hits and 4 not in hits
    del hits[7]
    hits[9] = False
    assert hits.pop(5) is True and dict(hits) == {3: False, 9: False} and len(hits) == 2
    keys, values = cached.hit_arrays(hits, bool)  # (after a change: from the dict, in its order)
    assert keys.tolist() == [3, 9] and values.tolist() == [False, False]
    assert cached.hit_arrays({4: 1}, np.int64)[1].tolist() == [1]


def test_cached_read_makes_a_column_without_a_value_one_chunk_of_nulls():
    read = cached.CachedRead()
    for x in ([1, 2], [3]):
        read.add(pa.table({"x": x, "empty": pa.nulls(len(x), pa.string()), "also": pa.nulls(len(x), pa.string())}),
                 np.arange(len(x)), np.ones(len(x), bool))
    table = read.table()
    assert table.column("x").to_pylist() == [1, 2, 3] and table.column("x").num_chunks == 2
    assert [table.column(c).num_chunks for c in ("empty", "also")] == [1, 1]
    assert table.column("empty").to_pylist() == [None] * 3 and table.schema.field("empty").type == pa.string()


@pytest.mark.parametrize("at", [[0, 1, 2, 3, 4], [0, 1, 4], [3, 4], [4, 0, 2], []])
def test_rows_taken_from_blocks_in_any_order_are_those_rows(at):
    tables = [pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}), pa.table({"k": ["d", "e"], "v": [4, 5]})]
    taken = flat._taken(tables, np.asarray(at, np.int64), ["v"])
    assert taken.column_names == ["v"] and taken.column("v").to_pylist() == [[1, 2, 3, 4, 5][i] for i in at]
