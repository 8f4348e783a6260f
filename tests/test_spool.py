"""The answer spool: answers appended before the store has them, replayed after a kill, never trusted blindly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from apollo_frames.client import spool as spool_module
from apollo_frames.client.spool import Spool, replay, spool_line
from apollo_frames.client.store import SCHEMA_VERSION, ResponseCache, encode_entry, spooled_entry
from apollo_frames.core.errors import StorageError
from apollo_frames.engine.keeper import AnswerWriter, Keep

K1, K2, K3 = (f"{i:064x}" for i in (1, 2, 3))

# A process whose writer thread never gets to store: its worker spools two answers, says so, and waits to be killed.
_CHILD = textwrap.dedent("""
    import sys, threading, time
    from apollo_frames.client.store import ResponseCache
    from apollo_frames.engine.keeper import AnswerWriter, Keep
    store = ResponseCache(sys.argv[1])
    never = threading.Event()
    store.write_entries = lambda *a, **k: never.wait()
    keys = sys.argv[2:]
    assert store.claim(keys, 3600).claimed == keys
    writer = AnswerWriter(store, None, ttl=None)
    writer.store(Keep({keys[0]: {"id": "p1", "name": "Ada"}, keys[1]: None}, 2, keys))
    print("spooled", flush=True)
    time.sleep(120)
""")


def _spool_and_kill(folder) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder), K1, K2], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spooled"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_answers_a_killed_process_spooled_are_stored_by_the_next_process_to_open_the_store(tmp_path):
    _spool_and_kill(tmp_path)
    (left,) = (tmp_path / "responses" / "spool").iterdir()  # the killed writer's file, unlocked now
    assert left.stat().st_mode & 0o777 == 0o600
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1, K2]) == {K1: {"id": "p1", "name": "Ada"}, K2: None}
        assert list(store.spool_dir.iterdir()) == [] and store.quarantined == 0


def test_a_store_open_during_the_kill_replays_the_spool_when_it_takes_over_the_dead_process_claims(tmp_path):
    with ResponseCache(tmp_path) as store:  # opened before: its own replay found nothing
        _spool_and_kill(tmp_path)
        assert store.get_many([K1, K2]) == {}
        got = store.claim([K1, K2, K3], 60)
        assert got.claimed == [K1, K2, K3] and got.held_by_others == {}  # the killed process's leases are free
        assert store.get_many([K1, K2]) == {K1: {"id": "p1", "name": "Ada"}, K2: None}  # answered, not paid again


def test_a_spool_its_writer_still_holds_is_left_alone(tmp_path):
    store = ResponseCache(tmp_path)
    spool = Spool.open(store.spool_dir)
    assert spool is not None
    spool.append(spool_line(store.encode({K1: {"id": "p1"}}), 1.0, None))
    with ResponseCache(tmp_path) as other:  # another store object: it may not take a live writer's file
        assert other.get_many([K1]) == {} and len(list(other.spool_dir.iterdir())) == 1
    spool.close()  # a line not stored: the file stays for a replay
    with ResponseCache(tmp_path) as later:
        assert later.get_many([K1]) == {K1: {"id": "p1"}}
    store.close()


def test_a_spool_whose_lines_are_stored_is_removed_and_a_full_file_is_rotated(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 200)
    spool = Spool(tmp_path)
    first = spool.append(b"x" * 250 + b"\n")
    spool.stored(first)  # over the size: a new file is opened, the old one (all stored) removed
    second = spool.append(b"y\n")
    assert second == first + 1 and [p.read_bytes() for p in tmp_path.iterdir()] == [b"y\n"]
    third = spool.append(b"z" * 250 + b"\n")
    assert third == second
    spool.stored(second)  # rotated again, but the file still has a line not stored: kept until it is
    assert len(list(tmp_path.iterdir())) == 2
    spool.stored(third)
    assert len(list(tmp_path.iterdir())) == 1
    spool.close()
    assert list(tmp_path.iterdir()) == []


def _orphan(folder, name: str, content: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def test_spool_lines_that_are_not_ours_are_skipped_counted_and_never_trusted(tmp_path):
    good = spool_line({K1: encode_entry(K1, {"id": "p1"}), K2: encode_entry(K2, None)}, 5.0, 4e9)
    entry = json.dumps({"v": SCHEMA_VERSION, "k": K3, "d": {"id": "p3"}}).encode()
    bad = [
        b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94.\n",  # a pickle
        b'\x1e{"t": 1.0, "e": null, "entries": [{"v": 1, "k": "' + K3.encode() + b'", "d": {}}]}\n',  # old schema
        b'\x1e{"t": 1.0, "e": null, "entries": [{"v": 2, "k": "../../etc", "d": {}}]}\n',  # not a store key
        b'\x1e{"t": 1.0, "e": null, "entries": [{"v": 2, "k": "' + K3.encode() + b'", "d": [1]}]}\n',  # not an object
        b'\x1e{"t": NaN, "e": null, "entries": [' + entry + b"]}\n",  # no time
        b"\x1e" + b"[" * 100_000 + b"\n",  # deep enough to break a recursive parser
        b'\x1e{"t": 1.0, "e": null, "entries": [' + entry + b', {"v": 2, "k": 5, "d": null}]}\n',  # one bad entry
    ]
    folder = tmp_path / "responses" / "spool"
    _orphan(folder, "host-1-0000abcd.jsonl", good + b"".join(bad) + b'{"t": 1.0, "e": null, "entr')  # cut last
    _orphan(folder, "not-a-spool.txt", good)
    os.symlink(folder / "host-1-0000abcd.jsonl", folder / "host-2-0000abce.jsonl")
    with pytest.warns(UserWarning, match="7 line"), ResponseCache(tmp_path) as store:
        assert store.get_many([K1, K2, K3]) == {K1: {"id": "p1"}, K2: None}  # a line is taken whole or not at all
        assert store.quarantined == 7
        reasons = set(store.quarantine_reasons)
        assert {"spool line of schema version 1", "spool line with a key that is not a store key",
                "spool line with bad times", "spool line not JSON"} <= reasons, reasons
        rows = store.query("SELECT store_time, expire_time FROM Cache WHERE key = ?", [K1])
    assert rows == [(5.0, 4e9)]
    assert sorted(p.name for p in folder.iterdir()) == ["host-2-0000abce.jsonl", "not-a-spool.txt"]


def test_a_replayed_answer_never_replaces_one_stored_later(tmp_path):
    folder = tmp_path / "responses" / "spool"
    with ResponseCache(tmp_path) as store:
        store.write_entries([(K1, {"title": "new"}, 50.0, None)])
    _orphan(folder, "h-1-0000abcd.jsonl", spool_line({K1: encode_entry(K1, {"title": "old"})}, 10.0, None))
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1]) == {K1: {"title": "new"}}


def test_answers_a_broken_store_could_not_take_stay_in_the_spool_for_the_next_run(tmp_path):
    store = ResponseCache(tmp_path)

    def full(*args, **kwargs):
        raise StorageError("disk full", path=str(store.path), reason="full")

    store.write_entries = full  # type: ignore[method-assign]
    writer = AnswerWriter(store, None, ttl=None)
    writer.store(Keep({K1: {"id": "p1"}}, 1, [K1]))
    writer.close()
    assert isinstance(writer.error, StorageError) and writer.saved == 0
    store.close()
    with ResponseCache(tmp_path) as again:  # the disk has room again
        assert again.get_many([K1]) == {K1: {"id": "p1"}}


def test_a_spool_that_cannot_be_written_makes_the_workers_store_directly(tmp_path, monkeypatch):
    store = ResponseCache(tmp_path)
    writer = AnswerWriter(store, None, ttl=None)

    def no_room(self, line):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Spool, "append", no_room)
    writer.store(Keep({K1: {"id": "p1"}}, 1, [K1]))
    assert store.get_many([K1]) == {K1: {"id": "p1"}}  # stored before store() returned, by the worker itself
    writer.close()
    assert writer.saved == 1 and writer.error is None
    store.close()


def test_appends_from_many_threads_are_whole_lines(tmp_path):
    spool = Spool(tmp_path)
    lines = [spool_line({f"{i:064x}": encode_entry(f"{i:064x}", {"n": i, "pad": "x" * 3000})}, 1.0, None)
             for i in range(400)]

    def append(part):
        for line in part:
            spool.append(line)

    threads = [threading.Thread(target=append, args=(lines[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spool.close()  # nothing stored: the file stays
    entries = []
    got = replay(tmp_path, lambda block, blobs: entries.extend(block), spooled_entry)
    assert got.bad == [] and got.files == 1 and sorted(e[1]["n"] for e in entries) == list(range(400))


def test_the_writer_stores_spooled_answers_that_arrive_together_in_one_transaction(tmp_path, monkeypatch):
    from apollo_frames.engine import keeper

    monkeypatch.setattr(keeper, "GATHER_S", 30.0)  # a window no test waits out: close() ends it
    store = ResponseCache(tmp_path)
    real, calls = store.write_entries, []
    store.write_entries = lambda entries, **kw: calls.append(len(entries)) or real(entries, **kw)  # type: ignore
    writer = AnswerWriter(store, None, ttl=None)
    keys = [f"{i:064x}" for i in range(5)]
    for key in keys:
        writer.store(Keep({key: {"id": key[-4:]}}, 1, [key]))
    writer.close()
    assert calls == [5] and writer.saved == 5 and len(store.get_many(keys)) == 5
    store.close()


def test_json_text_reads_one_way_and_writes_back_what_it_read():
    from apollo_frames.core import jsontext

    assert jsontext.loads(b'{"a": NaN, "b": -Infinity, "n": 18446744073709551617, "s": "\\ud800"}') == {
        "a": "NaN", "b": "-Infinity", "n": 18446744073709551617, "s": "\ud800"}  # nothing taken for a number
    assert jsontext.loads(b'{"n": 18446744073709551617}') == {"n": 1.8446744073709552e19}  # as its docstring says
    for depth in (jsontext.MAX_DEPTH + 1, 1010, 200_000):
        with pytest.raises(RecursionError):
            jsontext.loads(b"[" * depth + b"]" * depth)
        with pytest.raises(RecursionError):  # the same through the other parser
            jsontext.loads(b"[" * depth + b"NaN" + b"]" * depth)
    assert jsontext.loads(b"[" * jsontext.MAX_DEPTH + b"]" * jsontext.MAX_DEPTH) is not None
    # the nesting of a text json's parser is about to read: strings left out, even one left open at the end
    assert [jsontext._text_depth(t) for t in ('{"a":"[[","b":[1,[2]]}', '["\\"]]", {"x": []}]', '[["open [[',
                                              '["x\\', "[" + '\\"' * 1000)] == [3, 3, 2, 1, 1]
    with pytest.raises(RecursionError):  # bytes json's parser reads as UTF-16 are measured as that text
        jsontext.loads(('["\u2200",' + "[" * 600 + "]" * 600 + "]").encode("utf-16-le"))
    with pytest.raises(ValueError):  # text that is not JSON, however it is built, is refused (in one pass)
        jsontext.loads(b"[" + b'\\"' * 100_000)
    for value in ({"s": "\ud800", "n": 2**70, 1: "int key"}, {"name": "Zoë", "x": [1.5, None, True]}):
        text = jsontext.dumps(value)
        assert isinstance(text, bytes) and json.loads(text) == json.loads(json.dumps(value))


def test_a_spooled_answer_with_text_that_cannot_be_written_as_utf8_is_stored_escaped(tmp_path):
    folder = tmp_path / "responses" / "spool"
    line = (b'\x1e{"t":5.0,"e":null,"entries":[{"v":2,"k":"' + K1.encode() + b'","d":{"x":"\\ud800"}}]}\n')
    _orphan(folder, "h-1-0000abcd.jsonl", line)
    for _ in range(2):  # once replayed, the store opens as usual
        with ResponseCache(tmp_path) as store:
            assert store.get_many([K1]) == {K1: {"x": "\ud800"}} and store.quarantined == 0


def test_files_in_the_spool_folder_that_are_not_plain_files_are_left_alone(tmp_path):
    folder = tmp_path / "responses" / "spool"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "h-1-0000abc0.jsonl")  # opening it to read would wait for a writer for ever
    (folder / "h-1-0000abc1.jsonl").mkdir()  # sorts before the real one
    _orphan(folder, "h-1-0000abc2.jsonl", spool_line({K1: encode_entry(K1, {"id": "p1"})}, 5.0, None))
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1]) == {K1: {"id": "p1"}}
    assert sorted(p.name for p in folder.iterdir()) == ["h-1-0000abc0.jsonl", "h-1-0000abc1.jsonl"]


def test_an_infinite_ttl_spools_lines_that_replay(tmp_path):
    store = ResponseCache(tmp_path)

    def full(*args, **kwargs):
        raise StorageError("disk full", path=str(store.path), reason="full")

    store.write_entries = full  # type: ignore[method-assign]  # the store takes nothing: the spool keeps it
    writer = AnswerWriter(store, None, ttl=math.inf)
    writer.store(Keep({K1: {"id": "p1"}}, 1, [K1]))
    writer.close()
    store.close()
    with ResponseCache(tmp_path) as again:
        assert again.get_many([K1]) == {K1: {"id": "p1"}} and again.quarantined == 0


def test_a_replay_never_takes_a_file_this_process_still_writes(tmp_path, monkeypatch):
    # where flock is emulated by POSIX locks (NFS) a process does not see its own lock: its own live files are
    # skipped by name (host and pid), unless it closed them itself
    monkeypatch.setattr(spool_module.fcntl, "flock", lambda fd, op: None)  # every lock "succeeds", as there
    with ResponseCache(tmp_path) as store:
        spool = Spool.open(store.spool_dir)
        assert spool is not None
        spool.append(spool_line(store.encode({K1: {"id": "p1"}}), 1.0, None))
        assert store.replay_spool() == 0 and len(list(store.spool_dir.iterdir())) == 1
        spool.close()
        assert store.replay_spool() == 1 and store.get_many([K1]) == {K1: {"id": "p1"}}


def test_a_file_replayed_and_removed_by_another_process_meanwhile_is_not_read_again(tmp_path, monkeypatch):
    folder = tmp_path / "spool"
    _orphan(folder, "h-1-0000abcd.jsonl", spool_line({K1: encode_entry(K1, {"id": "p1"})}, 1.0, None))
    real_flock = spool_module.fcntl.flock

    def other_replay_first(fd, op):  # between our open and our lock, another process replays and removes it
        real_flock(fd, op)
        (folder / "h-1-0000abcd.jsonl").unlink()

    monkeypatch.setattr(spool_module.fcntl, "flock", other_replay_first)
    taken: list = []
    assert replay(folder, lambda entries, blobs: taken.extend(entries), spooled_entry).files == 0 and taken == []


def test_a_worker_answering_after_the_writer_closed_stores_its_answers_itself(tmp_path):
    store = ResponseCache(tmp_path)
    writer = AnswerWriter(store, None, ttl=None)
    writer.close()  # an interrupt stopped waiting for this worker
    writer.store(Keep({K1: {"id": "p1"}}, 1, [K1]))
    assert store.get_many([K1]) == {K1: {"id": "p1"}} and writer.saved == 1
    store.close()


def test_answers_a_full_disk_kept_out_of_the_store_come_back_on_the_next_run_in_the_same_process(
        sandbox, tmp_path, monkeypatch):
    import pandas as pd

    import apollo_frames as af

    frame = pd.DataFrame({"Email": [p["email"] for p in sandbox.world.people if p.get("email")][:30]})
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        real = ResponseCache.write_entries

        def full(self, *args, **kwargs):
            raise StorageError("disk full", path=str(self.path), reason="full")

        monkeypatch.setattr(ResponseCache, "write_entries", full)
        with pytest.warns(UserWarning, match="could not be stored"):
            first = af.enrich_people(frame, client=client, progress=False)
        paid = sandbox.credits_consumed
        assert (first["apollo_status"] == "matched").sum() == paid > 0  # in the rows, and in the spool only
        monkeypatch.setattr(ResponseCache, "write_entries", real)  # room again
        again = af.enrich_people(frame, client=client, progress=False)
    assert (again["apollo_status"] == "matched").all()
    assert sandbox.credits_consumed == 30  # what the first run paid came from its spool, not from Apollo again


def test_a_file_named_with_this_host_and_pid_that_no_writer_holds_is_replayed(tmp_path):
    # a container restarted after an OOM kill: the same hostname, the same pid 1, the old file left unlocked
    name = f"{spool_module._host()}-{os.getpid()}-0000abcd.jsonl"
    _orphan(tmp_path / "responses" / "spool", name, spool_line({K1: encode_entry(K1, {"id": "p1"})}, 1.0, None))
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1]) == {K1: {"id": "p1"}}


def test_a_spooled_answer_as_deep_as_an_answer_may_be_replays(tmp_path):
    from apollo_frames.core import jsontext

    deep = b"[" * (jsontext.MAX_DEPTH - 1) + b"]" * (jsontext.MAX_DEPTH - 1)
    answer = jsontext.loads(b'{"x":' + deep + b"}")  # accepted from a server: MAX_DEPTH deep
    line = spool_line({K1: encode_entry(K1, answer), K2: encode_entry(K2, {"id": "p2"})}, 1.0, None)
    _orphan(tmp_path / "responses" / "spool", "h-1-0000abcd.jsonl", line)
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1, K2]) == {K1: answer, K2: {"id": "p2"}} and store.quarantined == 0


def test_a_line_appended_onto_a_cut_one_is_salvaged(tmp_path):
    whole = spool_line({K2: encode_entry(K2, {"t": 1, "id": "p2"})}, 2.0, None)  # an answer starting {"t": too
    cut = spool_line({K1: encode_entry(K1, {"t": 0, "id": "p1"})}, 1.0, None)[:40]  # a full disk cut it
    _orphan(tmp_path / "responses" / "spool", "h-1-0000abcd.jsonl", cut + whole)
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1, K2]) == {K2: {"t": 1, "id": "p2"}} and store.quarantined == 0


def test_a_key_spooled_twice_replays_its_latest_answer(tmp_path):
    lines = (spool_line({K1: encode_entry(K1, {"v": "new"})}, 20.0, None)
             + spool_line({K1: encode_entry(K1, {"v": "old"})}, 10.0, None))
    _orphan(tmp_path / "responses" / "spool", "h-1-0000abcd.jsonl", lines)
    with ResponseCache(tmp_path) as store:
        assert store.get_many([K1]) == {K1: {"v": "new"}}
        assert store.query("SELECT store_time FROM Cache WHERE key = ?", [K1]) == [(20.0,)]


def test_a_file_left_half_made_by_a_kill_is_removed(tmp_path):
    folder = tmp_path / "responses" / "spool"
    _orphan(folder, ".0000abcd.new", b"")
    with ResponseCache(tmp_path):
        assert list(folder.iterdir()) == []


def test_a_cut_line_never_passes_an_object_inside_an_answer_for_a_line(tmp_path):
    # an answer holding an object shaped like a spool line, the line cut by a full disk right after that object
    poison = b'{"t":9e15,"e":null,"entries":[' + encode_entry("f" * 64, {"name": "poisoned"}) + b"]}"
    answer = encode_entry(K1, {"note": "x"})[:-1] + b',"inner":' + poison + b"}"
    line = spool_line({K1: answer}, 1.0, None)
    cut = line[:line.index(poison) + len(poison)] + b"\n"
    _orphan(tmp_path / "responses" / "spool", "h-1-0000abcd.jsonl", cut)
    with pytest.warns(UserWarning, match="could not be trusted"), ResponseCache(tmp_path) as store:
        assert store.get_many(["f" * 64, K1]) == {}


def test_a_line_after_one_a_full_disk_cut_short_replays_and_the_cut_one_is_not_read(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    real_write, calls = os.write, []

    def half_then_whole(fd, data):
        calls.append(1)
        return real_write(fd, data[: len(data) // 2]) if len(calls) == 1 else real_write(fd, data)

    monkeypatch.setattr(spool_module.os, "write", half_then_whole)
    with pytest.raises(OSError):
        spool.append(spool_line({K1: encode_entry(K1, {"id": "p1"})}, 1.0, None))
    spool.append(spool_line({K2: encode_entry(K2, {"id": "p2"})}, 2.0, None))
    monkeypatch.setattr(spool_module.os, "write", real_write)
    spool.close()
    entries: list = []
    got = replay(tmp_path, lambda block, blobs: entries.extend(block), spooled_entry)
    assert [e[:2] for e in entries] == [(K2, {"id": "p2"})] and got.bad == []
