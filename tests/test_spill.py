"""A shuffled file run reads the store once and spills each chunk's rows (apollo_frames.io.spill): the same output as
reading the store per chunk, nothing left behind however the run ends, resume and forgetting unchanged."""

from __future__ import annotations

import stat

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from frames import answers

import apollo_frames as af
from apollo_frames.core.errors import RunInterrupted
from apollo_frames.io import spill, stream
from apollo_frames.io.spill import ReadAhead, digests
from apollo_frames.sandbox import Sandbox

CHUNK = 30


@pytest.fixture
def world(small_config, tmp_path):
    """A store holding 240 people's answers, flattened in blocks of a chunk (file order); a shuffled file of them,
    with 20 people not stored yet, one a repeat of a stored person in a later chunk, an invalid row."""
    sb = Sandbox(small_config)
    people = [p for p in sb.world.people if p.get("email")][:260]
    rows = pd.DataFrame({"Email": [p["email"] for p in people], "First Name": [p["first_name"] for p in people]})
    rows["n"] = range(len(rows))
    rows.iloc[:240].to_parquet(tmp_path / "in.parquet")
    shuffled = pd.concat([rows.sample(frac=1.0, random_state=3),
                          pd.DataFrame({"Email": [people[5]["email"], "not an email"], "First Name": ["again", "x"],
                                        "n": [900, 901]})], ignore_index=True)
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    with sb.client(cache_dir=tmp_path / "cache", retry_backoff=(0.001, 0.01)) as c:
        af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "first.parquet", chunk_rows=CHUNK, client=c,
                          progress=False)
    return sb, people, shuffled


def client_of(sb, tmp_path, name="cache"):
    return sb.client(cache_dir=tmp_path / name, retry_backoff=(0.001, 0.01))


@pytest.fixture
def spills(monkeypatch):
    """Each read-ahead's folder, mode, its files' modes and their bytes, as they were once spilled."""
    seen: list[dict] = []
    real = ReadAhead.spill

    def spy(self, routes):
        real(self, routes)
        files = sorted(self.folder.path.iterdir())
        seen.append({"ahead": self, "folder": self.folder.path, "mode": stat.S_IMODE(self.folder.path.stat().st_mode),
                     "modes": {stat.S_IMODE(f.stat().st_mode) for f in files},
                     "bytes": b"".join(f.read_bytes() for f in files), "rows": self.written})

    monkeypatch.setattr(ReadAhead, "spill", spy)
    return seen


def spill_root(tmp_path, name="cache"):
    """Where the store of ``tmp_path / name`` keeps file runs' spills."""
    return tmp_path / name / "responses" / "spill"


def left_by_a_killed_run(tmp_path) -> tuple:
    """A spill folder as a run killed with kill -9 leaves it (its owner's lock gone with the process), holding rows."""
    folder = spill_root(tmp_path) / "0123456789abcdef"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    (folder / "000000002.000000.arrow").write_bytes(b"rows of a killed run")
    return folder


def run(sb, tmp_path, dst, src="shuffled.parquet", **options):
    with client_of(sb, tmp_path) as c:
        return af.enrich_parquet(tmp_path / src, dst=tmp_path / dst, chunk_rows=CHUNK, client=c, progress=False,
                                 **options)


def per_chunk_reads(monkeypatch):
    """Every chunk reads the store itself (the path before the read-ahead)."""
    monkeypatch.setattr(spill, "SCATTERED", float("inf"))


def assert_as_read_per_chunk(sb, tmp_path, monkeypatch):
    """``out.parquet`` holds the answers a run reading every chunk from the store writes (run now, on the same
    world)."""
    per_chunk_reads(monkeypatch)
    run(sb, tmp_path, "per_chunk.parquet")
    pd.testing.assert_frame_equal(answers(pd.read_parquet(tmp_path / "out.parquet")),
                                  answers(pd.read_parquet(tmp_path / "per_chunk.parquet")))


def test_a_shuffled_run_spills_and_writes_what_reading_per_chunk_writes(world, tmp_path, spills, monkeypatch):
    sb, people, shuffled = world
    spent = sb.credits_consumed
    summary = run(sb, tmp_path, "spilled.parquet")
    # every stored person once, the repeated one twice (two chunks hold them)
    assert len(spills) == 1 and spills[0]["rows"] == 241
    assert spills[0]["mode"] == 0o700 and spills[0]["modes"] == {0o600}
    cold_chunks = {i // CHUNK for i in np.flatnonzero(shuffled["n"].between(240, 259).to_numpy())}
    assert sb.credits_consumed - spent == 20 and summary["api_calls"] == len(cold_chunks)  # only those not stored

    per_chunk_reads(monkeypatch)
    again = run(sb, tmp_path, "per_chunk.parquet")
    assert len(spills) == 1 and again["api_calls"] == 0
    ours, theirs = pd.read_parquet(tmp_path / "spilled.parquet"), pd.read_parquet(tmp_path / "per_chunk.parquet")
    pd.testing.assert_frame_equal(answers(ours), answers(theirs))  # rows, order, statuses, values, flags
    assert ours["apollo_credits"].sum() == 20 and theirs["apollo_credits"].sum() == 0
    assert list(ours["n"]) == list(shuffled["n"])
    assert ours["apollo_status"].value_counts().to_dict() == {"matched": 261, "invalid": 1}
    for key in ("rows", "matched", "invalid", "unique_inputs"):
        assert summary[key] == again[key], key
    assert summary["cache_hits"] == 240 and again["cache_hits"] == 260
    assert not spills[0]["folder"].exists() and list(spill_root(tmp_path).iterdir()) == []
    assert spills[0]["folder"].parent == spill_root(tmp_path)  # the store's own folder, not beside the output


def test_a_file_in_store_order_reads_the_store_per_chunk(world, tmp_path, spills):
    sb, _, _ = world
    assert run(sb, tmp_path, "again.parquet", src="in.parquet")["cache_hits"] == 240
    assert spills == []


@pytest.mark.parametrize("error", [RuntimeError("disk trouble"), KeyboardInterrupt()])
def test_the_spill_is_deleted_when_the_run_fails_or_is_interrupted(world, tmp_path, spills, monkeypatch, error):
    sb, _, _ = world
    real, calls = stream.assemble_table, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise error
        return real(*args)

    monkeypatch.setattr(stream, "assemble_table", failing)
    with pytest.raises(RunInterrupted if isinstance(error, KeyboardInterrupt) else RuntimeError):
        run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and spills[0]["bytes"]  # there was a spill, of some rows, when the run failed
    assert not spills[0]["folder"].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "first.parquet", "in.parquet", "shuffled.parquet"]


def test_a_folder_left_by_a_killed_run_is_deleted_by_the_next(world, tmp_path, spills):
    sb, _, _ = world
    left = left_by_a_killed_run(tmp_path)
    run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and b"killed run" not in spills[0]["bytes"] and not left.exists()


def test_a_folder_left_by_a_killed_run_is_deleted_when_the_store_opens(world, tmp_path):
    sb, _, _ = world
    left = left_by_a_killed_run(tmp_path)
    with client_of(sb, tmp_path) as c:
        store = c.cache  # (opened when first used)
        assert not left.exists()
        live = spill_root(tmp_path) / store.begin_run()  # a live run's (its owner's file locked) is kept
        live.mkdir()
        with client_of(sb, tmp_path) as again:
            assert again.cache is not store and live.exists()


def test_forget_deletes_what_a_killed_run_spilled(world, tmp_path, spills, monkeypatch):
    """kill -9 in the middle of a shuffled run: the spill stays behind; ``forget`` leaves no byte of it."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    sb, people, _ = world
    gone = people[11]
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path[:0] = {sys.path!r}
        import apollo_frames as af
        from apollo_frames.io.spill import ReadAhead
        from apollo_frames.sandbox import Sandbox, SandboxConfig
        real = ReadAhead.spill
        def killed(self, routes):
            real(self, routes)
            os.kill(os.getpid(), signal.SIGKILL)  # spilled, then killed before the chunks run
        ReadAhead.spill = killed
        sb = Sandbox(SandboxConfig(seed=11, n_orgs=300))
        with sb.client(cache_dir={str(tmp_path / "cache")!r}) as c:
            af.enrich_parquet({str(tmp_path / "shuffled.parquet")!r}, dst={str(tmp_path / "out.parquet")!r},
                              chunk_rows={CHUNK}, client=c, progress=False)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=os.getcwd())
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = spill_root(tmp_path).iterdir()
    spilled = b"".join(f.read_bytes() for f in left.iterdir())
    assert gone["id"].encode() in spilled  # the killed run left their stored rows on disk
    monkeypatch.setattr("apollo_frames.client.store.sweep_spills", lambda *a: 0)  # (not the store's open)
    with client_of(sb, tmp_path) as c:
        forgotten = af.forget([gone["email"]], client=c)
    assert forgotten is not None and not left.exists() and list(spill_root(tmp_path).iterdir()) == []


def test_a_linked_spill_folder_is_not_followed(world, tmp_path, spills, monkeypatch):
    sb, people, _ = world
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "0123456789abcdef").mkdir(parents=True)
    (elsewhere / "0123456789abcdef" / "000000002.000000.arrow").write_bytes(b"someone's own file")
    spill_root(tmp_path).symlink_to(elsewhere, target_is_directory=True)
    summary = run(sb, tmp_path, "out.parquet")
    assert spills == [] and summary["cache_hits"] == 240  # nothing spilled through the link: read per chunk
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)
    with client_of(sb, tmp_path) as c:
        af.forget([people[3]["email"]], client=c)  # nor deleted through it
    assert [p.name for p in elsewhere.rglob("*")] == ["0123456789abcdef", "000000002.000000.arrow"]
    assert spill_root(tmp_path).is_symlink()


def test_a_linked_run_folder_is_not_followed(world, tmp_path, spills):
    sb, people, _ = world
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "000000002.000000.arrow").write_bytes(b"someone's own file")
    spill_root(tmp_path).mkdir()
    (spill_root(tmp_path) / "0123456789abcdef").symlink_to(elsewhere, target_is_directory=True)
    run(sb, tmp_path, "out.parquet")
    with client_of(sb, tmp_path) as c:
        af.forget([people[3]["email"]], client=c)
    assert len(spills) == 1 and [p.name for p in elsewhere.iterdir()] == ["000000002.000000.arrow"]


def test_each_row_is_deduped_and_hashed_once(world, tmp_path, spills, monkeypatch):
    from apollo_frames.engine import runner

    sb, _, shuffled = world
    real, rows = runner.dedupe, []

    def counting(prepared):
        out = real(prepared)
        rows.append(len(out[0]))
        return out

    monkeypatch.setattr(runner, "dedupe", counting)
    summary = run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and sum(rows) == len(shuffled)  # the key pass's keys serve the chunks' runs
    assert summary["unique_inputs"] == 260 and summary["cache_hits"] == 240
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


def test_resume_after_an_interrupted_spilled_run(world, tmp_path, spills, monkeypatch):
    sb, _, shuffled = world
    spent = sb.credits_consumed
    real, calls = stream.assemble_table, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 7:  # after every chunk holding the people not stored yet was sent
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(stream, "assemble_table", interrupted)
    with pytest.raises(RunInterrupted):
        run(sb, tmp_path, "out.parquet")
    paid = sb.credits_consumed - spent
    monkeypatch.setattr(stream, "assemble_table", real)
    summary = run(sb, tmp_path, "out.parquet")
    assert len(spills) == 2 and 0 < paid and sb.credits_consumed - spent == 20  # nothing paid for twice
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)
    assert summary["rows"] == len(shuffled) and summary["matched"] == 261


def test_a_suppressed_person_is_never_spilled_nor_returned(world, tmp_path, spills):
    sb, people, shuffled = world
    gone = people[7]
    summary = run(sb, tmp_path, "out.parquet", suppress=[gone["email"]])
    out = pd.read_parquet(tmp_path / "out.parquet")
    row = out[out["Email"] == gone["email"]]
    assert row["apollo_status"].tolist() == ["suppressed"] and row["person.id"].isna().all()
    assert gone["email"].encode() not in spills[0]["bytes"] and gone["id"].encode() not in spills[0]["bytes"]
    assert people[8]["id"].encode() in spills[0]["bytes"]  # (the bytes are searchable: another person's are there)
    assert summary["suppressed"] == 1 and not spills[0]["folder"].exists()


def test_a_person_forgotten_during_the_run_is_not_served_from_the_spill(world, tmp_path, spills, monkeypatch):
    sb, people, shuffled = world
    later = shuffled.iloc[5 * CHUNK:]["Email"].tolist()
    gone = next(p for p in people[:240] if p["email"] in later)
    real = ReadAhead.take_for

    def forgetting(self, chunk):
        if chunk == 2:  # another process forgets this person (by their LinkedIn URL, not the e-mail in the file)
            with client_of(sb, tmp_path) as c:
                af.forget([gone["linkedin_url"]], client=c)
        return real(self, chunk)

    monkeypatch.setattr(ReadAhead, "take_for", forgetting)
    run(sb, tmp_path, "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert gone["linkedin_url"] not in set(out["person.linkedin_url"].dropna())
    assert out.loc[out["Email"] == gone["email"], "apollo_status"].tolist() == ["suppressed"]
    assert spills[0]["ahead"].closed and not spills[0]["folder"].exists()  # deleted at the forget


def test_digests_are_the_keys_bytes_and_refuse_what_is_not_a_key():
    keys = ["%064x" % (i * 7919) for i in range(5)]
    got = digests(pa.array(keys))
    assert got is not None and [bytes(row).hex() for row in got] == keys
    assert digests(pa.array(keys).slice(2)).shape == (3, 32)
    assert digests(pa.array(["ABCD" * 16])) is None and digests(pa.array(["ab"])) is None
    assert digests(pa.array([keys[0], None])) is None
    assert np.array_equal(digests(pa.array([], pa.string())), np.zeros((0, 32), np.uint8))


def test_an_answer_an_earlier_chunk_fetched_again_is_not_paid_for_twice(small_config, tmp_path, spills):
    from apollo_frames.core.clock import FakeClock

    sb = Sandbox(small_config, clock=FakeClock())
    people = [p for p in sb.world.people if p.get("email")][:150]
    rows = pd.DataFrame({"Email": [p["email"] for p in people]})
    rows.to_parquet(tmp_path / "in.parquet")
    # shuffled, and every person twice, in chunks far apart
    twice = rows.sample(frac=1.0, random_state=4)
    pd.concat([twice, twice.sample(frac=1.0, random_state=5)], ignore_index=True).to_parquet(tmp_path / "sh.parquet")
    with client_of(sb, tmp_path) as c:
        af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "a.parquet", chunk_rows=CHUNK, client=c,
                          progress=False)
        sb.clock.sleep(1000)  # every stored answer is now older than max_age
        spent = sb.credits_consumed
        summary = af.enrich_parquet(tmp_path / "sh.parquet", dst=tmp_path / "b.parquet", chunk_rows=CHUNK,
                                    client=c, progress=False, max_age=500)
    assert len(spills) == 1 and spills[0]["rows"] == 300  # the old rows were read ahead, for both chunks
    # each fetched again once: the later chunk finds its spilled row stale, and the new answer stored
    assert sb.credits_consumed - spent == 150 and summary["api_calls"] == 15
    assert pd.read_parquet(tmp_path / "b.parquet")["apollo_status"].eq("matched").all() and summary["rows"] == 300


def test_a_refreshing_run_deletes_the_folder_a_killed_run_left(world, tmp_path, spills, monkeypatch):
    sb, _, _ = world
    left = left_by_a_killed_run(tmp_path)
    monkeypatch.setattr("apollo_frames.client.store.sweep_spills", lambda *a: 0)  # (not the store's open)
    run(sb, tmp_path, "out.parquet", refresh=True)  # reads nothing stored: no read-ahead, but the leftover goes
    assert spills == [] and not left.exists()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_what_is_not_a_spill_at_its_place_is_left_alone(world, tmp_path, spills, monkeypatch, kind):
    sb, _, _ = world
    theirs = spill_root(tmp_path) / "0123456789abcdef"
    spill_root(tmp_path).mkdir()
    if kind == "folder":  # a run's folder (its owner dead) holding a file not named as a spilled one
        theirs.mkdir()
        (theirs / "notes.txt").write_text("someone's own notes")
    else:
        spill_root(tmp_path).rmdir()
        spill_root(tmp_path).write_text("someone's own notes")
    summary = run(sb, tmp_path, "out.parquet")
    assert len(spills) == (kind == "folder") and summary["cache_hits"] == 240
    assert (theirs / "notes.txt" if kind == "folder" else spill_root(tmp_path)).read_text() == "someone's own notes"
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


def test_a_spill_the_disk_cannot_hold_leaves_the_chunks_reading_the_store(world, tmp_path, spills, monkeypatch):
    import errno

    sb, _, _ = world
    real, writes = ReadAhead._write, []

    def full(self, batch, rows, chunks):
        writes.append(batch)
        if len(writes) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, batch, rows, chunks)

    monkeypatch.setattr(ReadAhead, "_write", full)
    monkeypatch.setattr(spill, "SCAN_BYTES", 1)  # a block at a time: the disk is full at the 4th
    summary = run(sb, tmp_path, "out.parquet")
    assert len(writes) == 4 and summary["cache_hits"] == 240 and summary["api_calls"] > 0
    assert list(spill_root(tmp_path).iterdir()) == []
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


def test_spilled_files_gone_missing_are_read_from_the_store(world, tmp_path, spills, monkeypatch):
    import shutil

    sb, _, _ = world
    real = ReadAhead.take_for

    def swept(self, chunk):
        if chunk == 3:  # deleted by someone else (the run sees no erasure)
            shutil.rmtree(self.folder.path)
        return real(self, chunk)

    monkeypatch.setattr(ReadAhead, "take_for", swept)
    summary = run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and summary["cache_hits"] == 240
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


def test_stored_blocks_no_chunk_needs_are_passed_over(world, tmp_path, spills, monkeypatch):
    sb, _, shuffled = world
    others = [p for p in sb.world.people if p.get("email")][300:360]
    pd.DataFrame({"Email": [p["email"] for p in others]}).to_parquet(tmp_path / "others.parquet")
    run(sb, tmp_path, "others.out.parquet", src="others.parquet")  # blocks of people the shuffled file lacks
    monkeypatch.setattr(spill, "SCAN_BYTES", 1)  # a block at a time: some batches hold no row a chunk needs
    summary = run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and spills[0]["rows"] == 241 and summary["cache_hits"] == 240
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["n"]) == list(shuffled["n"]) and out["apollo_status"].eq("matched").sum() == 261


@pytest.mark.parametrize("where", ["run", "folder"])
def test_a_person_suppressed_by_what_their_answer_says_is_never_spilled(world, tmp_path, spills, where):
    sb, people, _ = world
    gone = people[7]  # suppressed by their LinkedIn URL: the file names them by e-mail
    if where == "folder":
        with client_of(sb, tmp_path) as c:
            af.suppress([gone["linkedin_url"]], client=c)
    run(sb, tmp_path, "out.parquet", **({"suppress": [gone["linkedin_url"]]} if where == "run" else {}))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.loc[out["Email"] == gone["email"], "apollo_status"].tolist() == ["suppressed"]
    assert len(spills) == 1 and gone["id"].encode() not in spills[0]["bytes"]
    assert gone["email"].encode() not in spills[0]["bytes"] and people[8]["id"].encode() in spills[0]["bytes"]


def test_a_forget_under_way_as_the_spill_is_read_leaves_nothing_of_them_on_disk(world, tmp_path, spills, monkeypatch):
    sb, people, _ = world
    gone, real = people[9], ReadAhead.__init__

    def racing(self, folder, copies, suppressor):
        # another process's forget, half done: the person listed and the erasure marked, the answers not erased yet
        with client_of(sb, tmp_path) as c:
            af.suppress([gone["linkedin_url"]], client=c)
        copies.store.note_erasure()
        real(self, folder, copies, suppressor)

    monkeypatch.setattr(ReadAhead, "__init__", racing)
    run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and gone["id"].encode() not in spills[0]["bytes"]
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.loc[out["Email"] == gone["email"], "apollo_status"].tolist() == ["suppressed"]


def test_a_forget_begun_while_spilling_stops_it_and_deletes_what_was_spilled(world, tmp_path, monkeypatch):
    sb, _, _ = world
    real, seen = ReadAhead._write, []

    def marking(self, batch, rows, chunks):
        real(self, batch, rows, chunks)
        seen.append((self, sorted(p.name for p in self.folder.path.iterdir())))
        if len(seen) == 2:
            self.copies.store.note_erasure()  # another process's forget has begun

    monkeypatch.setattr(ReadAhead, "_write", marking)
    monkeypatch.setattr(spill, "SCAN_BYTES", 1)  # a block at a time
    summary = run(sb, tmp_path, "out.parquet")
    ahead = seen[0][0]
    assert len(seen) == 2 and len(seen[1][1]) == 2 and ahead.closed  # no batch spilled after the mark
    assert not ahead.folder.path.exists() and summary["cache_hits"] == 240
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


@pytest.mark.parametrize("error", [RuntimeError("store trouble"), KeyboardInterrupt()])
def test_the_spill_is_deleted_when_reading_ahead_fails_or_is_interrupted(world, tmp_path, monkeypatch, error):
    """An error or a Ctrl-C while the store is read ahead (after a first batch is spilled) leaves no spilled row on
    disk, and the run's owner is let go: the process lives on (a notebook), so no sweep would find it dead."""
    sb, _, _ = world
    monkeypatch.setattr(spill, "SCAN_BYTES", 1)  # a batch a block: several batches
    real, seen = ReadAhead._write, []

    def write_then_fail(self, *args):
        real(self, *args)
        seen.append((self.folder.path, sorted(self.folder.path.iterdir()), dict(self.copies.store.holders.held)))
        raise error

    monkeypatch.setattr(ReadAhead, "_write", write_then_fail)
    with pytest.raises((KeyboardInterrupt, RunInterrupted, RuntimeError)), client_of(sb, tmp_path) as c:
        af.enrich_parquet(tmp_path / "shuffled.parquet", dst=tmp_path / "out.parquet", chunk_rows=CHUNK, client=c,
                          progress=False)
    folder, files, held = seen[0]
    assert files and folder.name in held  # there was a spill of some rows, under an owner of the run's
    assert not folder.exists() and list(spill_root(tmp_path).iterdir()) == []


@pytest.mark.parametrize("harm", ["truncated", "garbage", "another_schema", "huge"])
def test_spilled_files_tampered_with_are_not_trusted(world, tmp_path, spills, monkeypatch, harm):
    """A spilled file cut short, overwritten with garbage, with another schema's rows, or grown huge: the run does
    not crash, and each chunk's rows are those a run reading the store writes."""
    sb, _, _ = world
    real = ReadAhead.take_for

    def tampered(self, chunk):
        if chunk == 1:
            other = pa.record_batch([pa.array([1, 2])], names=["x"])
            for f in sorted(self.folder.path.iterdir()):
                data = f.read_bytes()
                f.write_bytes({"truncated": data[:len(data) // 2], "garbage": bytes(range(256)) * (len(data) // 256),
                               "another_schema": other.serialize().to_pybytes() * (len(data) // 64 + 1),
                               "huge": data + b"\xff" * (1 << 20)}[harm])
        return real(self, chunk)

    monkeypatch.setattr(ReadAhead, "take_for", tampered)
    run(sb, tmp_path, "out.parquet")
    assert len(spills) == 1 and list(spill_root(tmp_path).iterdir()) == []
    assert_as_read_per_chunk(sb, tmp_path, monkeypatch)


def test_keys_from_the_key_pass_are_not_used_for_other_rows(world, tmp_path):
    """Keys computed for rows of another number (the input rewritten between the key pass and the run) are not
    used: the rows are keyed again, so no row is given another row's answer."""
    from apollo_frames.engine.runner import key_rows, plan_work
    from apollo_frames.ops import registry

    sb, people, _ = world
    spec = registry.get("enrich_people", kind="enrich")
    assert spec.job is not None
    with client_of(sb, tmp_path) as c:
        frame = pd.DataFrame({"Email": [p["email"] for p in people[:3]]})
        short, op, options = spec.job(frame.iloc[1:].reset_index(drop=True))
        stale = key_rows(short, op, options, c)
        prepared, op, options = spec.job(frame)
        plan = plan_work(prepared, op, options, c, keys=stale)
        assert plan.row_unique == [0, 1, 2] and plan.cache_keys == key_rows(prepared, op, options, c).cache_keys
