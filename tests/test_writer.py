"""The answer writer: a worker's answers are in the store when it takes another batch (a kill -9 loses at most
the batches in flight), answers a broken store refused are kept for the next write, JSON text read one way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

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
