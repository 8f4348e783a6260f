"""The answers a run receives, flattened a step at a time as they arrive (issue 27: a cold run's memory).

Kept whole until the run ends, 100,000 answers of 8 KB took gigabytes as Python objects, where their flattened
rows take a few hundred MB of Arrow. :class:`FlatAnswers` flattens each step of answers as soon as it is
complete, on the thread that fans the answers out, and lets go of the objects (``results[j]`` becomes None:
the record's outcome says whether it matched), so a run holds about a block of answers as objects at most.

Blocks follow the plan's order (``to_fetch``), not the order answers arrive in (requests in flight finish in
any order): when every record was fetched once, in order, the rows are already where the output wants them
and are not copied again. An answer that arrives far ahead of a record not answered yet (a failed batch, one
another process holds) is flattened without waiting once ``ahead`` answers wait (a block's worth by default:
the answers waiting as objects are what a cold run's allocators keep the high-water mark of; the rows flattened
out of order are put back in order as a few runs of slices, not copied).

Answers are flattened ``step`` at a time (a quarter of a block) and their rows put together into parts of a
block: fewer answers wait as objects for their block to complete (the answers of a cold run are parsed on 8
worker threads, whose allocators keep the high-water mark of what waits), while the output and the stored
copies still see blocks of ``block`` rows, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

#: the outcomes of a record that has its answer (a no-match is an answer too: an all-null row)
ANSWERED = ("matched", "no_match")
#: at most this many answers are flattened at once (a quarter of the runner's block of 1,000)
STEP = 250


class _SystemPool:
    """Arrow's default pool set to the system allocator while any run is in progress (counted: runs in threads
    nest), the caller's pool set back after the last. Only when the default is mimalloc (pyarrow's own default;
    a pool the caller chose is kept).

    Why (issue 27, a cold run's peak): mimalloc keeps the pages of freed buffers resident, per thread, and
    reuses them little across a run's phases (flattening while sending, the stored copies' encoding, the
    match-quality kernels, the pandas conversion), so each phase raised the high-water mark anew; with the
    system allocator a large buffer freed goes back to the system. 100,000 8 KB answers: 1,066 -> 992 MB peak,
    the same CPU. Buffers allocated before or after keep the pool they came from (Arrow frees each to its own).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.before: pa.MemoryPool | None = None

    def enter(self) -> None:
        with self.lock:
            if self.users == 0 and pa.default_memory_pool().backend_name == "mimalloc":
                self.before = pa.default_memory_pool()
                pa.set_memory_pool(pa.system_memory_pool())
            self.users += 1

    def exit(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.before is not None:
                pa.set_memory_pool(self.before)
                self.before = None


_SYSTEM_POOL = _SystemPool()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # (glibc's; absent elsewhere)
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int  # int malloc_trim(size_t pad)
    return trim


_TRIM = _malloc_trim()


def give_back() -> None:
    """Hand the C heap's free pages back to the system between a run's phases (glibc's ``malloc_trim``; nothing
    where there is none). The buffers a phase frees (the answers parsed on the worker threads, Arrow's
    temporaries in the system pool) otherwise stay resident below live ones, and the next phase allocates anew:
    each raised a cold run's high-water mark (issue 27). A few ms."""
    if _TRIM is not None:
        _TRIM(0)


@contextlib.contextmanager
def system_pool(active: bool = True) -> Iterator[None]:
    """Arrow allocating from the system allocator inside (see :class:`_SystemPool`) when ``active``: a run that
    sends. A cached re-run keeps the pool as it is: mimalloc's warm pages serve its rows, and a switch left the
    caller's next Arrow work (a ``read_parquet``) to fault in fresh pages, up to twice as slow."""
    if not active:
        yield
        return
    _SYSTEM_POOL.enter()
    try:
        yield
    finally:
        _SYSTEM_POOL.exit()


class FlatAnswers:
    """The flattened rows of the answers in ``results`` (one run's, by unique index), a step at a time, kept in
    parts of ``block`` rows."""

    def __init__(self, flatten: Callable[[Sequence[dict | None]], pa.Table], results: list[dict | None],
                 order: Sequence[int], block: int, ahead: int | None = None):
        self.flatten, self.results, self.block = flatten, results, block
        self.step = min(block, STEP)
        self.plan_order = order  # the unique indices to fetch, in the plan's order
        self.cursor = 0  # plan_order[cursor:] is not flattened in order yet
        self.seen = 0  # plan_order[cursor:seen] are answered (or flattened)
        self.ahead = block if ahead is None else ahead
        self.pending: set[int] = set()  # unique indices answered, not flattened yet
        self.parts: list[pa.Table] = []  # of ``block`` rows (the last one may be shorter)
        self.pieces: list[pa.Table] = []  # flattened, not put together into a part yet
        self.order: list[int] = []  # the unique index of each flattened row, in table order
        self.found: list[bool] = []  # per flattened row: an answer (False: no match)
        self.row: dict[int, int] = {}  # unique index -> its latest flattened row

    def took(self, indices: Iterable[int]) -> None:
        """Note answers put in ``results`` (again, for one flattened before: its new row replaces the old)."""
        self.pending.update(indices)
        order, n = self.plan_order, len(self.plan_order)
        while self.cursor < n:
            end = min(self.cursor + self.step, n)
            while self.seen < end and (order[self.seen] in self.pending or order[self.seen] in self.row):
                self.seen += 1
            if self.seen < end:
                break
            self._flatten([j for j in order[self.cursor:end] if j in self.pending])
            self.cursor = end
        if len(self.pending) >= self.ahead:
            self.flush()

    def flush(self) -> None:
        """Flatten every answer noted and not flattened yet (in the plan's order) and let go of them."""
        self._flatten(sorted(self.pending))

    def _flatten(self, js: list[int]) -> None:
        if not js:
            return
        self.pending.difference_update(js)
        answers = [self.results[j] for j in js]
        self.pieces.append(self.flatten(answers))
        for j, answer in zip(js, answers, strict=True):
            self.row[j] = len(self.order)
            self.order.append(j)
            self.found.append(answer is not None)
            self.results[j] = None
        if sum(piece.num_rows for piece in self.pieces) >= self.block:
            self._put_together()

    def _put_together(self) -> None:
        """The pieces flattened so far as one part (one chunk per column: a copy of a block's rows at most)."""
        if self.pieces:
            pieces, self.pieces = self.pieces, []
            self.parts.append(pa.concat_tables(pieces).combine_chunks() if len(pieces) > 1 else pieces[0])

    def done(self, outcome: Sequence[str | None]) -> tuple[pa.Table | None, list[int], list[bool]]:
        """(the flattened rows, their unique indices, which are answers) of the records whose outcome is still an
        answer, one row each; None when there are none."""
        self.flush()
        self._put_together()
        rows = [r for j, r in self.row.items() if outcome[j] in ANSWERED]
        if not rows:
            return None, [], []
        rows.sort()
        table = pa.concat_tables(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.parts = []
        if len(rows) < table.num_rows:  # (rare: a record answered twice, or answered and then not)
            table = table.take(pa.array(np.asarray(rows, dtype=np.int64)))
        return table, [self.order[r] for r in rows], [self.found[r] for r in rows]
