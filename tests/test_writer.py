"""The answer writer: a worker's answers are in the store when it takes another batch (a kill -9 loses at most
the batches in flight), answers a broken store refused are kept for the next write, JSON text read one way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest
from frames import answers

from apollo_frames.client.store import AnswerStore
from apollo_frames.core.errors import StorageError
from apollo_frames.engine.keeper import AnswerWriter, Keep

K1, K2, K3 = (f"{i:064x}" for i in (1, 2, 3))

# A process whose worker stored two answers, says so, and waits to be killed (its writer thread never settles).
_CHILD = textwrap.dedent("""
    import sys, time
    from apollo_frames.client.store import AnswerStore
    from apollo_frames.engine.keeper import AnswerWriter, Keep
    store = AnswerStore(sys.argv[1])
    keys = sys.argv[2:]
    assert store.claim(keys, 3600).claimed == keys
    writer = AnswerWriter(store, None, ttl=None)
    writer.store(Keep({keys[0]: {"id": "p1", "name": "Ada"}, keys[1]: None}, 2, keys))
    print("stored", flush=True)
    time.sleep(120)
""")


def test_answers_a_killed_process_stored_are_read_by_the_next_and_its_claims_are_free(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), K1, K2], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stored"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with AnswerStore(tmp_path) as store:
        assert store.get_many([K1, K2, K3]) == {K1: {"id": "p1", "name": "Ada"}, K2: None}
        assert store.claim([K1, K2], 60).claimed == [K1, K2]


def test_an_answer_with_text_that_cannot_be_written_as_utf8_is_stored_escaped(tmp_path):
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: {"x": "\ud800"}}, ttl=None)
    with AnswerStore(tmp_path) as store:
        assert store.get_many([K1]) == {K1: {"x": "\ud800"}} and store.quarantined == 0


def test_an_answer_as_deep_as_an_answer_may_be_is_stored_and_read(tmp_path):
    from apollo_frames.core import jsontext

    deep = b"[" * (jsontext.MAX_DEPTH - 1) + b"]" * (jsontext.MAX_DEPTH - 1)
    answer = jsontext.loads(b'{"x":' + deep + b"}")  # accepted from a server: MAX_DEPTH deep
    with AnswerStore(tmp_path) as store:
        store.set_many({K1: answer, K2: {"id": "p2"}}, ttl=None)
        assert store.get_many([K1, K2]) == {K1: answer, K2: {"id": "p2"}} and store.quarantined == 0


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


def test_a_worker_answering_after_the_writer_closed_stores_its_answers_itself(tmp_path):
    store = AnswerStore(tmp_path)
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
        real = AnswerStore.write_entries

        def full(self, *args, **kwargs):
            raise StorageError("disk full", path=str(self.path), reason="full")

        monkeypatch.setattr(AnswerStore, "write_entries", full)
        with pytest.warns(UserWarning, match="could not be stored"):
            first = af.enrich_people(frame, client=client, progress=False)
        paid = sandbox.credits_consumed
        assert (first["apollo_status"] == "matched").sum() == paid > 0  # in the rows, and kept in memory only
        monkeypatch.setattr(AnswerStore, "write_entries", real)  # room again
        again = af.enrich_people(frame, client=client, progress=False)
    assert (again["apollo_status"] == "matched").all()
    assert sandbox.credits_consumed == 30  # what the first run paid were kept by the store and written once it could


def test_answers_a_full_disk_kept_in_memory_are_served_to_a_rerun_while_the_disk_is_still_full(
        sandbox, tmp_path, monkeypatch):
    import pandas as pd

    import apollo_frames as af

    frame = pd.DataFrame({"Email": [p["email"] for p in sandbox.world.people if p.get("email")][:30]})

    def full(self, *args, **kwargs):
        raise StorageError("disk full", path=str(self.path), reason="full")

    monkeypatch.setattr(AnswerStore, "write_entries", full)
    with sandbox.client(cache_dir=tmp_path / "c") as client:
        with pytest.warns(UserWarning, match="could not be stored"):
            first = af.enrich_people(frame, client=client, progress=False)
        paid = sandbox.credits_consumed
        with warnings.catch_warnings():  # (the rows the first run did not send are sent now: not stored either)
            warnings.simplefilter("ignore", UserWarning)
            again = af.enrich_people(frame, client=client, progress=False)  # the disk still full
        store = client.cache
        assert store.unstored
        store.unstored.clear()
    # (the failure stops the first run: rows it did not send yet are sent by the second, the others never again)
    answered = first["apollo_status"].isin(["matched", "no_match"])
    assert paid > 0 and answered.sum() > 0
    assert (again.loc[answered, "apollo_credits"] == 0).all()
    assert sandbox.credits_consumed - paid == again["apollo_credits"].sum()
    pd.testing.assert_frame_equal(answers(again[answered]), answers(first[answered]))


def test_aliases_are_stored_in_the_group_commit_unless_another_person_holds_the_key_or_two_claim_it(tmp_path):
    """The alias guard, in the writer: read and written in one transaction with the batches' answers."""
    a1, a2, a3, a4, a5 = (f"{i:064x}" for i in range(10, 15))
    with AnswerStore(tmp_path) as store:
        store.set_many({a1: {"id": "other"}, a2: None, a3: {"id": "p1"}}, ttl=None)
        writer = AnswerWriter(store, None, ttl=None)
        p1, p2 = {"id": "p1", "name": "Ada"}, {"id": "p2", "name": "Bo"}
        first = Keep({K1: p1}, 1, [K1], aliases={
            a1: {"p1": p1},  # another person's answer holds it: kept out, counted
            a2: {"p1": p1},  # a stored miss: replaced
            a3: {"p1": p1},  # the same person's: written again
            a4: {"p1": p1, "p2": p2},  # two answers of the batch claim it: kept out, counted
            K2: {"p1": p1},  # the next batch's own key: its own answer stands
        })
        second = Keep({K2: p2}, 1, [K2], aliases={a5: {"p2": p2}})
        writer._waiting = [first]  # both wait: the next worker writes them in one transaction
        writer.store(second)
        assert first.stored and second.stored and writer.saved == 2
        writer.close()
        assert store.get_many([K1, K2, a1, a2, a3, a4, a5]) == {
            K1: p1, K2: p2, a1: {"id": "other"}, a2: p1, a3: p1, a5: p2}
        assert writer.conflicts == 2


def test_an_alias_a_batch_before_proved_for_another_person_in_the_same_commit_is_a_conflict(tmp_path):
    alias = f"{99:064x}"
    with AnswerStore(tmp_path) as store:
        writer = AnswerWriter(store, None, ttl=None)
        p1, p2 = {"id": "p1"}, {"id": "p2"}
        first = Keep({K1: p1}, 1, [K1], aliases={alias: {"p1": p1}})
        writer._waiting = [first]
        writer.store(Keep({K2: p2}, 1, [K2], aliases={alias: {"p2": p2}}))
        writer.close()
        assert store.get_many([alias]) == {alias: p1} and writer.conflicts == 1


def test_aliases_a_full_disk_refused_are_kept_in_memory_with_the_answers_and_counted_once(tmp_path, monkeypatch):
    alias, taken = f"{98:064x}", f"{97:064x}"
    with AnswerStore(tmp_path) as store:
        store.set_many({taken: {"id": "other"}}, ttl=None)

        def full(self, *args, **kwargs):
            raise StorageError("disk full", path=str(self.path), reason="full")

        monkeypatch.setattr(AnswerStore, "write_entries", full)
        writer = AnswerWriter(store, None, ttl=None)
        p1 = {"id": "p1"}
        writer.store(Keep({K1: p1}, 1, [K1], aliases={alias: {"p1": p1}, taken: {"p1": p1}}))
        writer.close()
        assert writer.error is not None and writer.saved == 0
        assert {key: entry[1] for key, entry in store.unstored.items()} == {K1: p1, alias: p1}
        assert writer.conflicts == 1
        store.unstored.clear()


def test_the_writer_checkpoints_every_so_many_answers_and_leaves_the_last_to_the_store(tmp_path, monkeypatch):
    from apollo_frames.engine import keeper

    monkeypatch.setattr(keeper, "CHECKPOINT_EVERY", 3)
    with AnswerStore(tmp_path) as store:
        calls: list[int] = []
        monkeypatch.setattr(store, "checkpoint", lambda: calls.append(1))
        writer = AnswerWriter(store, None, ttl=None)
        for i in range(4):
            writer.store(Keep({f"{i + 20:064x}": {"id": str(i)}}, 1))
        writer.close()
        assert len(calls) == 1 and writer.saved == 4  # after the third answer; none for the last one at the end
        monkeypatch.undo()
    with AnswerStore(tmp_path) as again:  # the log not checkpointed is as durable
        assert len(again.get_many([f"{i + 20:064x}" for i in range(4)])) == 4


@pytest.mark.parametrize("key", [K1, "plain", 'a "quoted" key', "Zoë", "back\\slash", "tab\tkey", ""])
def test_an_entry_quotes_its_key_as_json_does(key):
    from apollo_frames.core.entries import SCHEMA_VERSION, decode_entry, encode_entry

    blob = encode_entry(key, {"id": "p1"})
    assert json.loads(blob)["k"] == key and decode_entry(key, blob) == {"id": "p1"}
    assert blob.startswith(f'{{"v":{SCHEMA_VERSION},"k":{json.dumps(key, ensure_ascii=False)},'.encode())


def test_on_a_full_disk_an_alias_never_overwrites_another_persons_answer_kept_in_memory(tmp_path, monkeypatch):
    """Answers a full disk refused wait in ``unstored``: a later batch's alias is checked against them too (a
    row's own answer, or an alias an earlier batch proved for another person, must not be replaced)."""
    alias = f"{96:064x}"
    with AnswerStore(tmp_path) as store:

        def full(self, *args, **kwargs):
            raise StorageError("disk full", path=str(self.path), reason="full")

        monkeypatch.setattr(AnswerStore, "write_entries", full)
        writer = AnswerWriter(store, None, ttl=None)
        p1, p2, p3 = {"id": "p1"}, {"id": "p2"}, {"id": "p3"}
        writer.store(Keep({K2: p2}, 1, [K2], aliases={alias: {"p2": p2}}))  # its own commit, refused
        writer.store(Keep({K1: p1}, 1, [K1], aliases={K2: {"p1": p1}}))  # K2 is p2's row: p1 must not take it
        writer.store(Keep({K3: p3}, 1, [K3], aliases={alias: {"p3": p3}}))  # p2 proved it first
        writer.close()
        assert {key: entry[1] for key, entry in store.unstored.items()} == {K1: p1, K2: p2, K3: p3, alias: p2}
        assert writer.conflicts == 2
        store.unstored.clear()
