"""FlatAnswers: a run's answers flattened a block at a time, in the plan's order, and let go of (issue 27)."""

from typing import Any

import pyarrow as pa
import pytest

from apollo_frames.engine.answered import FlatAnswers, system_pool


def _flatten(calls):
    def flatten(answers):
        calls.append([a["id"] if a else None for a in answers])
        return pa.table({"id": pa.array([a["id"] if a else None for a in answers], pa.string())})
    return flatten


def _answer(j):
    return {"id": f"p{j}"}


def test_blocks_follow_the_plan_order_whatever_order_answers_arrive_in():
    calls = []
    results = [None] * 6
    flat = FlatAnswers(_flatten(calls), results, order=[0, 1, 2, 3, 4, 5], block=3)
    for j in (2, 0):
        results[j] = _answer(j)
    flat.took([2, 0])
    assert calls == [] and results[2] is not None  # j=1 not answered yet: the first block waits
    results[1] = _answer(1)
    flat.took([1])
    assert calls == [["p0", "p1", "p2"]] and results[:3] == [None] * 3  # flattened in order, objects let go of
    for j in (5, 4, 3):
        results[j] = None if j == 4 else _answer(j)  # 4: no match
        flat.took([j])
    table, order, found = flat.done(["matched", "matched", "matched", "matched", "no_match", "matched"])
    assert calls[1] == ["p3", None, "p5"] and order == [0, 1, 2, 3, 4, 5]
    assert found == [True, True, True, True, False, True] and table.column("id").to_pylist()[4] is None


def test_answers_far_ahead_of_a_missing_one_do_not_wait_and_only_answered_rows_come_back():
    calls = []
    results = [None] * 10
    flat = FlatAnswers(_flatten(calls), results, order=list(range(10)), block=2, ahead=3)
    for j in (3, 5, 7):  # 0 never answered (its batch failed)
        results[j] = _answer(j)
        flat.took([j])
    assert calls == [["p3", "p5", "p7"]]
    results[5] = _answer(5)  # answered again (another process stored it): its new row replaces the old one
    flat.took([5])
    outcome = [None, None, None, "matched", None, "matched", None, "error", None, None]  # 7 turned out an error
    table, order, found = flat.done(outcome)
    assert order == [3, 5] and table.column("id").to_pylist() == ["p3", "p5"] and found == [True, True]
    assert calls[-1] == ["p5"]


def test_nothing_answered():
    flat = FlatAnswers(_flatten([]), [None, None], order=[0, 1], block=2)
    assert flat.done([None, "error"]) == (None, [], [])


def test_rows_in_order_gives_the_take_whether_as_slices_or_taken():
    import numpy as np

    from apollo_frames.engine.runner import MAX_RUNS, rows_in_order

    table = pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)]})
    cases = [[3, 4, 5, 0, 1, 9, 9, 2], list(range(10)), [], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0] * (MAX_RUNS // 9)]
    for take in cases:
        indices = np.asarray(take, dtype=np.int64)
        parts = [table.slice(0, 4), table.slice(4)]
        got = rows_in_order(parts, indices)
        assert got.equals(table.take(pa.array(indices, pa.int64()))) and parts == []


def test_answers_are_flattened_a_step_at_a_time_and_kept_in_blocks(monkeypatch):
    import apollo_frames.engine.answered as answered

    monkeypatch.setattr(answered, "STEP", 2)
    calls = []
    results = [None] * 10
    flat = FlatAnswers(_flatten(calls), results, order=list(range(10)), block=4)
    for j in range(10):
        results[j] = _answer(j)
        flat.took([j])
    assert calls == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"], ["p6", "p7"], ["p8", "p9"]]
    assert [part.num_rows for part in flat.parts] == [4, 4]  # two steps put together per block
    table, order, _ = flat.done(["matched"] * 10)
    assert order == list(range(10)) and table.column("id").to_pylist() == [f"p{j}" for j in range(10)]
    assert [len(chunk) for chunk in table.column("id").chunks] == [4, 4, 2]  # one chunk per block


def test_by_default_a_block_of_answers_waits_at_most():
    calls = []
    results = [None] * 8
    flat = FlatAnswers(_flatten(calls), results, order=list(range(8)), block=2)
    for j in (2, 3, 4):  # 0 not answered yet
        results[j] = _answer(j)
        flat.took([j])
    assert calls == [["p2", "p3"]] and results[2] is None and results[4] is not None


def test_a_run_allocates_from_the_system_pool_and_gives_the_callers_pool_back():
    seen = []

    def run(depth: int) -> str:
        with system_pool():
            seen.append(pa.default_memory_pool().backend_name)
            if depth:
                run(depth - 1)  # (a run inside a run: still the system pool, the caller's only after the outer one)
                seen.append(pa.default_memory_pool().backend_name)
        return "done"

    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        assert run(1) == "done"
        assert seen == ["system", "system", "system"]
        assert pa.default_memory_pool().backend_name == "mimalloc"
        pa.set_memory_pool(pa.jemalloc_memory_pool())  # a pool the caller chose is kept
        seen.clear()
        run(0)
        assert seen == ["jemalloc"]
    finally:
        pa.set_memory_pool(before)


def test_the_callers_pool_comes_back_when_a_run_fails():
    def run() -> None:
        with system_pool():
            raise ValueError("no")

    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        with pytest.raises(ValueError):
            run()
        assert pa.default_memory_pool().backend_name == "mimalloc"
    finally:
        pa.set_memory_pool(before)


def test_give_back_uses_glibcs_malloc_trim_where_there_is_one(monkeypatch):
    import platform

    from apollo_frames.engine import answered

    assert (answered._TRIM is not None) == (platform.libc_ver()[0] == "glibc")
    calls: list[int] = []
    monkeypatch.setattr(answered, "_TRIM", calls.append)
    answered.give_back()
    assert calls == [0]


def test_only_a_run_that_sends_switches_the_pool(sandbox, tmp_path, monkeypatch):
    import pandas as pd

    import apollo_frames as af
    from apollo_frames.engine import answered

    entered = []
    monkeypatch.setattr(answered._SYSTEM_POOL, "enter", lambda: entered.append(True))
    monkeypatch.setattr(answered._SYSTEM_POOL, "exit", lambda: None)
    people = [p for p in sandbox.world.people if p.get("email")][:5]
    frame = pd.DataFrame({"email": [p["email"] for p in people]})
    with sandbox.client(cache_dir=tmp_path) as client:
        af.enrich_people(frame, client=client, progress=False)
        assert entered  # sending, then flattening and building the frame: the system allocator
        entered.clear()
        again = af.enrich_people(frame, client=client, progress=False)
    assert again.attrs["apollo"]["api_calls"] == 0 and entered == []  # a cached re-run keeps mimalloc's warm pages


def test_malloc_trim_is_called_with_its_c_signature():
    """``malloc_trim(size_t pad)`` returns an int: declared, so ctypes passes a size_t, not a C int."""
    import ctypes

    from apollo_frames.engine import answered

    if answered._TRIM is None:
        pytest.skip("no glibc malloc_trim here")
    trim: Any = answered._TRIM
    assert trim.argtypes == [ctypes.c_size_t] and trim.restype is ctypes.c_int
