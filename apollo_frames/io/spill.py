"""A file run's stored rows read ahead: the store's flattened copies read once, each row spilled to the chunk(s) of
the file that need it.

A chunk of a shuffled file has keys in nearly every stored block, so reading each chunk's rows from the store
decodes the whole store once per chunk (the work grows as rows x stored rows). When the first chunk's keys are
scattered like that, :func:`read_ahead` computes every row's store key first (one pass over the input, keys
only: 32 bytes each), reads the copies once in block order (:meth:`FlatCopies.scan`, a batch of blocks at a
time) and writes the rows each chunk needs to files of that chunk in a private folder beside the output (Arrow
IPC, uncompressed: read back once, soon; at most about half the store's size on disk, while the run lasts).
Each chunk then reads its own rows (:meth:`ReadAhead.take_for`); keys without a spilled row are read from the
store as ever (answers stored since, raw answers without a copy). Memory: the keys, a batch of blocks, a chunk.
The folder (0700, files 0600) loses each chunk's files as the chunk reads them, and goes when the run ends in
any way (an exception, Ctrl-C); one a killed run left is deleted by the next run on the same output. A file,
link or folder there that is not a spill is never touched (nothing is read ahead then).

The spilled rows are those the store held when the run started. An answer an earlier chunk fetched again
(``max_age``) is stale in the spill as it was in the store, so it is not a hit: the runner finds the new answer
stored before sending (as for any answer stored by another run meanwhile). After a ``forget`` (an erasure
recorded since the read) no spilled row is used any more: the spill is deleted and the chunks left read the
store. A row naming an identifier the run suppresses (the folder's list, read after the erasure mark, and
``suppress=``) is never spilled, whatever names the person in the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from apollo_frames.client.flat import FlatCopies, matched, take_rows
from apollo_frames.client.storage import DIR_MODE, FILE_MODE
from apollo_frames.engine.cached import Take, copies_for
from apollo_frames.engine.runner import stored_reasons
from apollo_frames.engine.suppressing import Suppressor

__all__ = ["ReadAhead", "digests", "read_ahead"]

#: a chunk's keys are read ahead when the blocks they point at hold more than this many times their number
SCATTERED = 4
#: stored bytes of blocks decoded at a time: a batch and the copy of its rows routed to chunks are what the read
#: adds to a run's memory (16 MB: about 100 MB more at the peak of 100,000 1 KB answers than 4 MB)
SCAN_BYTES = 4 << 20
#: the name of a spilled file (chunk.batch.arrow): only such files are deleted from a spill folder
_SPILLED = re.compile(r"[0-9]{9,}\.[0-9]{6,}\.arrow")
#: hex digit -> its value (255: not a lowercase hex digit)
_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def digests(keys: pa.Array) -> np.ndarray | None:
    """The (n, 32) bytes of n store keys (SHA-256 in lowercase hex); None when one is not such a key."""
    keys = keys.cast(pa.string())
    if keys.null_count:
        return None
    offsets = np.frombuffer(keys.buffers()[1], np.int32)[keys.offset:keys.offset + len(keys) + 1]
    if len(keys) and not bool(np.all(np.diff(offsets) == 64)):
        return None
    data = keys.buffers()[2]
    text = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    nibbles = _NIBBLE[text.reshape(-1, 64)]
    if bool((nibbles == 255).any()):
        return None
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def _prefixes(keys: np.ndarray) -> np.ndarray:
    """Each digest's first 8 bytes as one unsigned integer (what keys are sorted and searched by)."""
    return np.ascontiguousarray(keys[:, :8]).view(">u8").ravel().astype(np.uint64)


class _Routes:
    """Which chunks hold each key: the file's distinct keys sorted by their first 8 bytes, and per key its chunks."""

    def __init__(self, per_chunk: list[np.ndarray]):
        """``per_chunk``: each chunk's keys (emptied here: the keys are held once)."""
        full = np.concatenate(per_chunk) if per_chunk else np.zeros((0, 32), np.uint8)
        chunk_of = np.repeat(np.arange(len(per_chunk), dtype=np.int32), [len(k) for k in per_chunk])
        per_chunk.clear()
        self.prefixes, first, inverse = np.unique(_prefixes(full), return_index=True, return_inverse=True)
        self.keys = full[first]
        #: False when two keys share their first 8 bytes (never seen; then nothing is read ahead)
        self.exact = bool(np.array_equal(full, self.keys[inverse]))
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(first)))])
        self.chunks = chunk_of[np.argsort(inverse, kind="stable")]

    def route(self, keys: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, chunk) pairs for the rows of ``keys`` (stored rows' digests) that are ``live`` and some chunk
        holds, by chunk."""
        if not len(self.prefixes) or not len(keys):
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        prefixes = _prefixes(keys)
        at = np.minimum(np.searchsorted(self.prefixes, prefixes), len(self.prefixes) - 1)
        rows = np.flatnonzero(live & (self.prefixes[at] == prefixes) & np.all(self.keys[at] == keys, axis=1))
        first, counts = self.starts[at[rows]], np.diff(self.starts)[at[rows]]
        entries = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        rows, chunks = np.repeat(rows, counts), self.chunks[entries]
        order = np.argsort(chunks, kind="stable")
        return rows[order], chunks[order]


class ReadAhead:
    """The stored rows of a file run's chunks, spilled to ``folder``: :meth:`take_for` gives a chunk its own."""

    def __init__(self, folder: Path, copies: FlatCopies, suppressor: Callable[[], Suppressor | None]):
        """``suppressor``: the run's suppression, read after the erasure mark (a ``forget`` under way lists its
        people before it marks, and erases their answers after: the rows of those not erased yet are not spilled)."""
        self.folder, self.copies = folder, copies
        self.erasure = copies.store.latest_erasure()
        self.suppressor = suppressor()
        #: chunk -> its files, in the order written
        self.pieces: dict[int, list[Path]] = {}
        self.written = 0
        self.closed = False

    def spill(self, routes: _Routes) -> None:
        """Read the copies once in block order; write each row to a file of each chunk holding its key."""
        for batch, (table, live) in enumerate(self.copies.scan(SCAN_BYTES)):
            keys = digests(table.column("_key").combine_chunks())
            if keys is None:
                continue  # (never: the store's keys are SHA-256 hex) such a batch's keys are read from the store
            rows, chunks = routes.route(keys, live)
            routed, chunks = self._unsuppressed(table.take(pa.array(rows)), chunks)  # each chunk's rows end to end
            del table
            if not len(chunks):
                continue  # blocks of answers no chunk of this file needs (another file's)
            starts = np.r_[0, np.flatnonzero(np.diff(chunks)) + 1]
            for chunk, start, end in zip(chunks[starts].tolist(), starts.tolist(), [*starts[1:].tolist(), len(chunks)],
                                         strict=True):
                self._write(chunk, batch, routed.slice(start, end - start))
            del routed
            pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise

    def _unsuppressed(self, routed: pa.Table, chunks: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The routed rows (and their chunks) but those naming a suppressed identifier: never written to disk."""
        if self.suppressor is None or not routed.num_rows:
            return routed, chunks
        why = stored_reasons(routed, self.suppressor)
        keep = np.fromiter((why(row) is None for row in range(routed.num_rows)), bool, routed.num_rows)
        return routed.filter(pa.array(keep)), chunks[keep]

    def _write(self, chunk: int, batch: int, rows: pa.Table) -> None:
        path = self.folder / f"{chunk:09d}.{batch:06d}.arrow"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        with os.fdopen(fd, "wb") as fh, pa.ipc.new_stream(pa.PythonFile(fh, mode="w"), rows.schema) as writer:
            writer.write_table(rows)  # uncompressed: read back once, soon, memory-mapped (LZ4 cost 2x the time)
        self.pieces.setdefault(chunk, []).append(path)
        self.written += rows.num_rows

    def take_for(self, chunk: int) -> Take | None:
        """What reads the copies of chunk ``chunk`` (counted from 0) from its spilled rows (its files are read and
        deleted); None once a ``forget`` ran since the read (the spill is deleted: the chunk reads the store)."""
        if self.closed:
            return None
        if self.copies.store.latest_erasure() != self.erasure:
            self.close()
            return None
        try:
            tables = [self._read(path) for path in self.pieces.pop(chunk, [])]
            table = pa.concat_tables(tables) if tables else self.copies.stored_schema.empty_table()
        except (OSError, pa.ArrowException):  # a file gone or cut short (the folder cleared by another run on
            self.close()  # this output): the spill is not trusted any more, this chunk and the next read the store
            return None
        return lambda keys, rows=True: self._take(table, keys, rows)

    def _read(self, path: Path) -> pa.Table:
        try:
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_stream(source).read_all()
        finally:
            path.unlink(missing_ok=True)

    def _take(self, table: pa.Table, keys: Sequence[str], rows: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """As :meth:`FlatCopies.take`, from the chunk's spilled rows (those not expired since)."""
        found, at, hits = matched(table, pa.array(keys, pa.string()), self.copies.store.clock.time())
        return found, hits, take_rows(table.select(self.copies.read_schema.names), at) if rows else None

    def close(self) -> None:
        """Delete the folder and every file left in it; no spilled row is used from now on."""
        self.pieces.clear()
        self.closed = True
        _remove(self.folder)


def _remove(folder: Path) -> bool:
    """Delete the spill at ``folder``: a real folder of this user, its spilled files, then itself. Anything else
    there (a file, a link, another user's folder, files not named as spilled ones) is not ours to delete: it is
    left alone. Returns whether nothing is there any more."""
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return True
    if stat.S_ISDIR(info.st_mode) and info.st_uid == getattr(os, "getuid", lambda: info.st_uid)():
        for name in os.listdir(folder):
            if _SPILLED.fullmatch(name):
                (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # (something not ours in it: the folder stays)
            folder.rmdir()
    return not os.path.lexists(folder)


@contextlib.contextmanager
def read_ahead(chunk_keys: Iterator[tuple[list[str], Any]], cache: Any, folder: Path,
               suppressor: Callable[[], Suppressor | None] = lambda: None) -> Iterator[ReadAhead | None]:
    """The stored rows of every chunk spilled to ``folder`` (made 0700 anew), when the first chunk's keys are
    scattered over the store's blocks and the file has more than one chunk; else None (each chunk reads the
    store). ``chunk_keys``: per chunk of the file, its store keys and its operation; ``suppressor``: reads the
    run's suppression (the rows of suppressed people are not spilled). The folder is deleted when
    the block ends, however it ends. Something else at ``folder`` (not a spill) is left alone: nothing is read
    ahead."""
    if not _remove(folder):  # one a killed run left goes; what is not a spill stays, and each chunk reads the store
        yield None
        return
    try:
        ahead = _spilled(chunk_keys, cache, folder, suppressor)
        yield ahead
    finally:
        _remove(folder)


def _spilled(chunk_keys: Iterator[tuple[list[str], Any]], cache: Any, folder: Path,
             suppressor: Callable[[], Suppressor | None]) -> ReadAhead | None:
    """Read the keys, decide, spill (see :func:`read_ahead`)."""
    first = next(chunk_keys, None)
    if first is None:
        return None
    keys, op = first
    copies = copies_for(op, cache)
    if not keys or copies.block_rows(keys) <= SCATTERED * len(keys):
        return None
    per_chunk = [digests(pa.array(keys, pa.string()))]
    for more, _ in chunk_keys:
        per_chunk.append(digests(pa.array(more, pa.string())))
    known = [k for k in per_chunk if k is not None]
    if len(per_chunk) < 2 or len(known) < len(per_chunk):
        return None
    del per_chunk
    routes = _Routes(known)
    if not routes.exact:
        return None
    try:
        os.mkdir(folder, DIR_MODE)
        os.chmod(folder, DIR_MODE)
        ahead = ReadAhead(folder, copies, suppressor)
        ahead.spill(routes)
    except OSError:  # a full disk, a folder not writable: reading ahead only saves time, each chunk reads the store
        _remove(folder)
        return None
    return ahead
