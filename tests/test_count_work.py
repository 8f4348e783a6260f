"""Counting a file's work before a run (``confirm_over``, ``estimate_file``: ``file_work``): a shuffled file's count
is the one of the same file in order, and reads the store's flattened blocks once, not once per chunk (issue 27)."""

from __future__ import annotations

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client import flat
from apollo_frames.core.clock import FakeClock
from apollo_frames.io import spill
from apollo_frames.ops.people import people_job
from apollo_frames.sandbox import Sandbox

CHUNK = 30


def store_keys(client, frame: pd.DataFrame) -> list[str]:
    """The store keys of the rows of ``frame`` (as a file run computes them)."""
    prepared, op, options = people_job(frame)
    return [client.cache.key(op.endpoint, identity, options) for identity in prepared.identities]


@pytest.fixture
def world(small_config, tmp_path):
    """A store of 240 people flattened in blocks of a chunk (a file run in order); 5 of them rewritten with an
    expiry, read again (their copies expire with them) and expired since; 5 raw answers without a copy, 3 stored
    no-matches; files of the same rows (and 20 not stored, a repeat in a later chunk, an invalid row) in that order
    and shuffled."""
    clock = FakeClock()
    sb = Sandbox(small_config, clock=clock)
    people = [p for p in sb.world.people if p.get("email")][:260]
    rows = pd.DataFrame({"Email": [p["email"] for p in people], "First Name": [p["first_name"] for p in people]})
    rows.iloc[:240].to_parquet(tmp_path / "first.parquet")
    misses = [f"nobody{i}@nowhere-at-all.example" for i in range(3)]
    extra = pd.DataFrame({"Email": [people[5]["email"], "not an email", *misses], "First Name": ["again", "x"] + [""] * 3})
    ordered = pd.concat([rows, extra], ignore_index=True)
    ordered.to_parquet(tmp_path / "in.parquet")
    ordered.sample(frac=1.0, random_state=3).to_parquet(tmp_path / "shuffled.parquet")
    with sb.client(cache_dir=tmp_path / "cache") as c:
        af.enrich_parquet(tmp_path / "first.parquet", dst=tmp_path / "first.out.parquet", chunk_rows=CHUNK, client=c,
                          progress=False)
        now = clock.time()
        fresh = dict(zip(store_keys(c, rows.iloc[240:245]), people[240:245], strict=True))
        c.cache.write_entries([(key, data, now, None) for key, data in fresh.items()])  # raw answers, no copy yet
        expiring = c.cache.get_many(store_keys(c, rows.iloc[:5]))
        assert len(expiring) == 5
        c.cache.write_entries([(key, data, now, now + 50) for key, data in expiring.items()])
        af.enrich_people(rows.iloc[:5], client=c, progress=False)  # their copies, expiring with them
        c.cache.set_many(dict.fromkeys(store_keys(c, extra.iloc[2:])), ttl=None)
        clock.advance(100)
    return sb, tmp_path


def counts(est) -> tuple:
    return est.rows, est.invalid, est.unique, est.cached, est.to_fetch, est.api_calls


def test_a_shuffled_files_count_is_the_count_of_the_same_file_in_order(world, monkeypatch):
    sb, tmp_path = world
    with sb.client(cache_dir=tmp_path / "cache") as c:
        ordered = af.estimate_file(tmp_path / "in.parquet", chunk_rows=CHUNK, client=c)
        shuffled = af.estimate_file(tmp_path / "shuffled.parquet", chunk_rows=CHUNK, client=c)
        in_memory = af.estimate(pd.read_parquet(tmp_path / "shuffled.parquet"), client=c)
        read = []
        monkeypatch.setattr(spill.StoredKeys, "read", lambda copies: read.append(copies) or None)
        per_chunk = af.estimate_file(tmp_path / "shuffled.parquet", chunk_rows=CHUNK, client=c)
    assert read  # the shuffled file's count reads the store's keys once (undone here: each chunk reads the store)
    # 245 stored people with a copy or a raw answer, 3 no-matches stored; 5 expired and 15 never stored: to fetch
    assert counts(ordered)[:5] == (265, 1, 263, 243, 20)
    assert counts(shuffled)[:5] == counts(ordered)[:5] == counts(in_memory)[:5]
    assert counts(shuffled) == counts(per_chunk)  # the same calls, chunk by chunk, as reading each chunk's blocks
    assert shuffled.credits_max == ordered.credits_max == 20


def test_a_confirm_over_run_asks_with_the_same_figure_shuffled(world):
    sb, tmp_path = world
    with sb.client(cache_dir=tmp_path / "cache") as c:
        sent = len(sb.requests)
        for name in ("in.parquet", "shuffled.parquet"):
            with pytest.raises(af.BudgetExceededError, match="up to 20 credits"):
                af.enrich_parquet(tmp_path / name, dst=tmp_path / "out.parquet", chunk_rows=CHUNK, client=c,
                                  progress=False, confirm_over=19)
        assert len(sb.requests) == sent


def test_counting_a_shuffled_file_decodes_each_stored_block_once(world, monkeypatch):
    sb, tmp_path = world
    decoded = []
    real = flat.from_ipc
    monkeypatch.setattr(flat, "from_ipc", lambda data, schema, rows: decoded.append(rows) or real(data, schema, rows))
    with sb.client(cache_dir=tmp_path / "cache") as c:
        ((blocks, stored),) = c.cache.query("SELECT count(*), total(rows) FROM FlatBlocks")
        assert blocks >= 8 and stored >= 240
        est = af.estimate_file(tmp_path / "shuffled.parquet", chunk_rows=CHUNK, client=c)
    assert est.cached == 243
    # 9 chunks, each with keys in nearly every block: read per chunk, about 9 x the blocks
    assert len(decoded) <= blocks and sum(decoded) <= stored
