"""A file run's stored rows read ahead: the store's flattened copies read once, each row spilled to the chunk(s) of
the file that need it.

A chunk of a shuffled file has keys in nearly every stored block, so reading each chunk's rows from the store
decodes the whole store once per chunk (the work grows as rows x stored rows). When the first chunk's keys are
scattered like that, :func:`read_ahead` computes every chunk's dedupe and store keys first (one pass over the
input, keys only: 32 bytes a record, 4 a row; each chunk's run starts from its own, so no row is hashed twice),
reads the copies once in block order (:meth:`FlatCopies.scan`, a batch of blocks at a time) and writes the rows
chunks need, each chunk's end to end, to one file per batch in a private folder of the store's
(:mod:`apollo_frames.client.spills`; Arrow, uncompressed, a message per chunk: a chunk reads only its own
bytes; at most about half the store's size on disk, while the run lasts). Each chunk then reads its
own rows (:meth:`ReadAhead.take_for`); keys without a spilled row are read from the store as ever (answers
stored since, raw answers without a copy). Memory: the keys, a batch of blocks, a chunk. The folder (0700, files
0600) loses a file once every chunk with rows in it read them, and goes when the run ends in any way (an
exception, Ctrl-C); one a killed run left is deleted by the next file run or store opened on the folder, and by
``forget``. A link or file in its place is never followed nor touched (nothing is read ahead then).

The spilled rows are those the store held when the run started. An answer an earlier chunk fetched again
(``max_age``) is stale in the spill as it was in the store, so it is not a hit: the runner finds the new answer
stored before sending (as for any answer stored by another run meanwhile). After a ``forget`` (an erasure
recorded since the read, looked for before each batch spilled and each chunk) no spilled row is used any more:
the spill is deleted (``forget`` deletes it too) and the chunks left read the store. A row naming an identifier
the run suppresses (the folder's list, read after the erasure mark, and ``suppress=``) is never spilled,
whatever names the person in the file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.client.flat import FlatCopies, matched
from apollo_frames.client.spills import SpillFolder, sweep_spills
from apollo_frames.core.columnwise import take_rows
from apollo_frames.engine.cached import Take, copies_for
from apollo_frames.engine.runner import Keyed, stored_reasons
from apollo_frames.engine.suppressing import Suppressor

__all__ = ["ReadAhead", "StoredKeys", "digests", "read_ahead", "scattered"]

#: a chunk's keys are read ahead when the blocks they point at hold more than this many times their number
SCATTERED = 4
#: stored bytes of blocks decoded at a time: a batch and the copy of its rows routed to chunks are what the read
#: adds to a run's memory (16 MB: about 100 MB more at the peak of 100,000 1 KB answers than 4 MB)
SCAN_BYTES = 4 << 20
#: keys compared at a time
_STEP = 1 << 16
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


def _lookup(prefixes: np.ndarray, keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per digest of ``wanted``, its index into ``keys`` (digests whose distinct ``prefixes`` are sorted), or -1."""
    if not len(prefixes) or not len(wanted):
        return np.full(len(wanted), -1, np.int64)
    asked = _prefixes(wanted)
    at = np.minimum(np.searchsorted(prefixes, asked), len(prefixes) - 1)
    return np.where((prefixes[at] == asked) & np.all(keys[at] == wanted, axis=1), at, -1)


def scattered(copies: FlatCopies, keys: Sequence[str]) -> bool:
    """Whether the blocks holding the copies of ``keys`` hold more than :data:`SCATTERED` times their number of
    rows (a chunk of a file in another order than the store's blocks): then the store is read once, not per chunk."""
    return bool(keys) and copies.block_rows(keys) > SCATTERED * len(keys)


class _Routes:
    """Which chunks hold each key: the file's distinct keys sorted by their first 8 bytes, and per key its chunks."""

    def __init__(self, per_chunk: list[np.ndarray]):
        """``per_chunk``: each chunk's keys (emptied here: the keys are held once)."""
        full = np.concatenate(per_chunk) if per_chunk else np.zeros((0, 32), np.uint8)
        sizes = [len(k) for k in per_chunk]
        chunk_of = np.repeat(np.arange(len(per_chunk), dtype=np.int32), sizes)
        per_chunk.clear()
        self.prefixes, first, inverse = np.unique(_prefixes(full), return_index=True, return_inverse=True)
        self.keys = full[first]
        #: False when two keys share their first 8 bytes (never seen; then nothing is read ahead)
        self.exact = all(np.array_equal(full[i:i + _STEP], self.keys[inverse[i:i + _STEP]])
                         for i in range(0, len(full), _STEP))  # (a slice at a time: no copy of every key)
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(first)))])
        self.chunks = chunk_of[np.argsort(inverse, kind="stable")]
        #: per chunk, its keys as indices into :attr:`keys` (4 bytes each, not a 64-character text)
        self.index = np.split(inverse.astype(np.int32), np.cumsum(sizes)[:-1]) if sizes else []
        #: per key, whether a chunk run so far held it (a file run counts a record once)
        self.seen = np.zeros(len(first), bool)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Per digest of ``keys``, its index into :attr:`keys`, or -1 when no chunk of the file held it."""
        return _lookup(self.prefixes, self.keys, keys)

    def route(self, keys: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, chunk) pairs for the rows of ``keys`` (stored rows' digests) that are ``live`` and some chunk
        holds, by chunk."""
        at = self.find(keys)
        rows = np.flatnonzero(live & (at >= 0))
        first, counts = self.starts[at[rows]], np.diff(self.starts)[at[rows]]
        entries = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        rows, chunks = np.repeat(rows, counts), self.chunks[entries]
        order = np.argsort(chunks, kind="stable")
        return rows[order], chunks[order]


def hex_keys(keys: np.ndarray) -> list[str]:
    """The store keys (lowercase hex) of (n, 32) digests: :func:`digests` undone."""
    text = keys.tobytes().hex()
    return [text[i:i + 64] for i in range(0, len(text), 64)]


class _ChunkKeys:
    """What a chunk's run starts from, held compactly (4 bytes a row and a record) until the chunk runs."""

    def __init__(self, keyed: Keyed):
        self.row_unique = np.asarray(keyed.row_unique, np.int32)
        self.first_rows = np.asarray(keyed.first_rows, np.int32)
        self.statuses = keyed.statuses


class _FileKeys:
    """Every chunk's dedupe and store keys from the key pass: each chunk's run starts from its own (no row is
    hashed twice), and a record is counted once in the file by a flag per key (not a set of 32-byte keys)."""

    def __init__(self, chunks: list[_ChunkKeys], routes: _Routes):
        self.chunks, self.routes = chunks, routes
        #: keys of records no chunk held at the key pass (counted once all the same)
        self.others: set[bytes] = set()
        #: the keys :meth:`keyed` gave last, and their indices into the routes' keys
        self.given: tuple[list[str] | None, np.ndarray] = (None, np.zeros(0, np.int32))

    def keyed(self, chunk: int) -> Keyed | None:
        """Chunk ``chunk``'s keys (each chunk asks once: they are let go of)."""
        if chunk >= len(self.chunks) or self.chunks[chunk] is None:
            return None
        held, self.chunks[chunk] = self.chunks[chunk], None  # type: ignore[call-overload]
        index = self.routes.index[chunk]
        keyed = Keyed(held.row_unique.tolist(), held.first_rows.tolist(), hex_keys(self.routes.keys[index]),
                      held.statuses)
        self.given = (keyed.cache_keys, index)
        return keyed

    def first_seen(self, keys: list[str]) -> list[int]:
        """The indices of ``keys`` (a chunk's, distinct) that no earlier chunk's run held; they count as held now."""
        if keys is self.given[0]:  # the keys :meth:`keyed` gave (a plan computed again has its own)
            at = self.given[1]
        else:
            found = digests(pa.array(keys, pa.string()))
            if found is None:  # (never: the store's keys are SHA-256 hex)
                return [j for j, key in enumerate(keys) if _new(key.encode(), self.others)]
            at = self.routes.find(found)
        first = np.zeros(len(keys), bool)
        known = np.flatnonzero(at >= 0)
        first[known] = ~self.routes.seen[at[known]]
        self.routes.seen[at[known]] = True
        for j in np.flatnonzero(at < 0).tolist():
            first[j] = _new(bytes.fromhex(keys[j]), self.others)
        return np.flatnonzero(first).tolist()


def _new(key: bytes, seen: set[bytes]) -> bool:
    """Whether ``key`` was not in ``seen`` (it is now)."""
    fresh = key not in seen
    seen.add(key)
    return fresh


class ReadAhead:
    """The stored rows of a file run's chunks, spilled to ``folder``: :meth:`take_for` gives a chunk its own."""

    def __init__(self, folder: SpillFolder, copies: FlatCopies, suppressor: Callable[[], Suppressor | None]):
        """``suppressor``: the run's suppression, read after the erasure mark (a ``forget`` under way lists its
        people before it marks, and erases their answers after: the rows of those not erased yet are not spilled)."""
        self.folder, self.copies = folder, copies
        self.erasure = copies.store.latest_erasure()
        self.suppressor = suppressor()
        #: chunk -> its rows: (file, where its message starts, its size), in the order written
        self.pieces: dict[int, list[tuple[str, int, int]]] = {}
        #: file -> how many chunks have not read their rows of it yet
        self.readers: dict[str, int] = {}
        #: the spilled rows' schema
        self.schema = copies.stored_schema
        self.written = 0
        self.closed = False
        #: every chunk's keys, from the key pass
        self.keys: _FileKeys | None = None

    def spill(self, routes: _Routes) -> None:
        """Read the copies once in block order; write each batch's rows that chunks need to a file of the batch,
        sorted by chunk (a row once per chunk holding its key)."""
        for batch, (table, live) in enumerate(self.copies.scan(SCAN_BYTES)):
            if self._forgotten():
                return  # a forget began: nothing more is spilled, and what was is deleted
            keys = digests(table.column("_key").combine_chunks())
            if keys is None:
                continue  # (never: the store's keys are SHA-256 hex) such a batch's keys are read from the store
            rows, chunks = routes.route(keys, live)
            routed, chunks = self._unsuppressed(table.take(pa.array(rows)), chunks)  # each chunk's rows end to end
            del table
            if len(chunks):  # (else blocks of answers no chunk of this file needs: another file's)
                self._write(batch, routed, chunks)
            del routed
            pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise

    def _unsuppressed(self, routed: pa.Table, chunks: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """The routed rows (and their chunks) but those naming a suppressed identifier: never written to disk."""
        if self.suppressor is None or not routed.num_rows:
            return routed, chunks
        why = stored_reasons(routed, self.suppressor)
        keep = np.fromiter((why(row) is None for row in range(routed.num_rows)), bool, routed.num_rows)
        return routed.filter(pa.array(keep)), chunks[keep]

    def _write(self, batch: int, rows: pa.Table, chunks: np.ndarray) -> None:
        """Write ``rows`` (row i for chunk ``chunks[i]``, sorted by chunk) to one file: an Arrow stream (uncompressed:
        read back once; LZ4 cost 2x the time) of one message per chunk, so that a chunk reads only its own
        bytes. One file per batch, not per chunk and batch: at 1,000,000 rows the files of every chunk and
        batch cost more than the rows (7,200 files of 140 rows)."""
        name = f"{0:09d}.{batch:06d}.arrow"
        whole = rows.combine_chunks().to_batches()[0]
        starts = np.r_[0, np.flatnonzero(np.diff(chunks)) + 1]
        pieces = [whole.slice(start, end - start)
                  for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(chunks)], strict=True)]
        # where each chunk's message starts: after the schema's, each of its exact size (the stream ends with 8 bytes)
        places = np.cumsum([rows.schema.serialize().size, *map(pa.ipc.get_record_batch_size, pieces)]).tolist()
        data = pa.allocate_buffer(places[-1] + 8)  # written in place: a growing buffer peaks at twice its size
        with pa.ipc.new_stream(pa.FixedSizeBufferWriter(data), rows.schema) as writer:
            for piece in pieces:
                writer.write_batch(piece)
        if pa.ipc.read_message(data.slice(places[0])).type != "record batch":
            raise OSError("an Arrow stream not laid out as expected")  # (never) each chunk reads the store
        fd = self.folder.create(name)
        try:
            view, done = memoryview(data), 0
            while done < len(view):
                done += os.write(fd, view[done:])
        finally:
            os.close(fd)
        self.schema = rows.schema
        for chunk, at, end in zip(chunks[starts].tolist(), places, places[1:], strict=False):
            self.pieces.setdefault(chunk, []).append((name, at, end - at))
        self.readers[name] = len(starts)
        self.written += len(chunks)

    def take_for(self, chunk: int) -> Take | None:
        """What reads the copies of chunk ``chunk`` (counted from 0) from its spilled rows (a file goes once every
        chunk with rows in it read them); None once a ``forget`` ran since the read (the spill is deleted: the
        chunk reads the store)."""
        if self.closed or self._forgotten():
            return None
        try:
            tables = [self._read(*piece) for piece in self.pieces.pop(chunk, [])]
            table = pa.Table.from_batches(tables, self.schema) if tables else self.schema.empty_table()
        except (OSError, EOFError, ValueError, pa.ArrowException):  # a file gone, cut short or not ours (an end of
            self.close()  # stream): the spill is not trusted any more, this chunk and the next read the store
            return None
        return lambda keys, rows=True: self._take(table, keys, rows)

    def _forgotten(self) -> bool:
        """Whether a ``forget`` began since the read (then the spill is deleted: its rows are not used)."""
        if self.copies.store.latest_erasure() != self.erasure:
            self.close()
        return self.closed

    def _read(self, name: str, at: int, size: int) -> pa.RecordBatch:
        """The rows of the message of ``size`` bytes at byte ``at`` of spilled file ``name``, read into memory of
        its own (a memory map of the file would count whole pages cached around it: 2 MB a file, 144 MB a chunk
        at 1,000,000 rows); the file is deleted once its last reader read it."""
        fd = self.folder.open(name)
        try:
            data = pa.allocate_buffer(size)
            if os.preadv(fd, [data], at) != size:
                raise OSError(f"{name} is cut short")
        finally:
            os.close(fd)
            self.readers[name] -= 1
            if not self.readers[name]:
                self.folder.unlink(name)
        return pa.ipc.read_record_batch(data, self.schema)

    def _take(self, table: pa.Table, keys: Sequence[str], rows: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """As :meth:`FlatCopies.take`, from the chunk's spilled rows (those not expired since)."""
        found, at, hits = matched(table, pa.array(keys, pa.string()), self.copies.store.clock.time())
        return found, hits, take_rows(table.select(self.copies.read_schema.names), at) if rows else None

    def close(self) -> None:
        """Delete the folder and every file left in it, and end the run's claim owner; no spilled row is used
        from now on."""
        self.pieces.clear()
        self.closed = True
        self.folder.remove()
        self.copies.store.end_run(self.folder.name)


@contextlib.contextmanager
def read_ahead(chunk_keys: Iterator[tuple[Keyed, Any]], cache: Any,
               suppressor: Callable[[], Suppressor | None] = lambda: None) -> Iterator[ReadAhead | None]:
    """The stored rows of every chunk spilled to a folder of the store's (:class:`SpillFolder`), when the first
    chunk's keys are scattered over the store's blocks and the file has more than one chunk; else None (each
    chunk reads the store). ``chunk_keys``: per chunk of the file, its keys (:func:`key_rows`) and its operation;
    ``suppressor``: reads the run's suppression (the rows of suppressed people are not spilled). The folder is
    deleted when the block ends, however it ends; those of killed runs are deleted first."""
    sweep_spills(cache.directory, cache.holders.alive)
    ahead = None
    try:
        ahead = _spilled(chunk_keys, cache, suppressor)
        yield ahead
    finally:
        if ahead is not None:
            ahead.close()


def _spilled(chunk_keys: Iterator[tuple[Keyed, Any]], cache: Any,
             suppressor: Callable[[], Suppressor | None]) -> ReadAhead | None:
    """Read the keys, decide, spill (see :func:`read_ahead`)."""
    first = next(chunk_keys, None)
    if first is None:
        return None
    keyed, op = first
    copies = copies_for(op, cache)
    if not scattered(copies, keyed.cache_keys):
        return None
    chunks, per_chunk = [], []
    for keyed, _ in itertools.chain([first], chunk_keys):
        per_chunk.append(digests(pa.array(keyed.cache_keys, pa.string())))
        chunks.append(_ChunkKeys(keyed))
    known = [k for k in per_chunk if k is not None]
    if len(per_chunk) < 2 or len(known) < len(per_chunk):
        return None
    del per_chunk
    routes = _Routes(known)
    if not routes.exact:
        return None
    owner = cache.begin_run()  # the folder lives while this owner does (a killed run's is found dead)
    try:
        ahead = ReadAhead(SpillFolder(cache.directory, owner), copies, suppressor)
    except OSError:  # not a folder of ours in the way (not followed), a full disk: each chunk reads the store
        cache.end_run(owner)
        return None
    ahead.keys = _FileKeys(chunks, routes)
    try:
        ahead.spill(routes)
    except (OSError, pa.ArrowException):  # a full disk, a folder deleted under us: reading ahead only saves time
        ahead.close()
        return None
    except BaseException:  # anything else (a Ctrl-C, the store failing): nothing spilled stays, and it is raised
        ahead.close()
        raise
    return ahead


class StoredKeys:
    """The keys of an operation's live flattened copies, read once (:meth:`FlatCopies.scan`): per key whether it is
    a match and when it expires, 49 bytes a stored row, never the rows. What counts a shuffled file's work
    (``confirm_over``, ``estimate_file``): each chunk's keys point at nearly every block, and a :meth:`FlatCopies.take`
    per chunk decodes the whole store once per chunk; this reads it once, then answers each chunk by array lookups."""

    def __init__(self, copies: FlatCopies, keys: np.ndarray, hits: np.ndarray, expires: np.ndarray):
        order = np.argsort(_prefixes(keys), kind="stable")
        self.copies, self.keys, self.hits, self.expires = copies, keys[order], hits[order], expires[order]
        self.prefixes = _prefixes(self.keys)

    @classmethod
    def read(cls, copies: FlatCopies) -> StoredKeys | None:
        """The live copies' keys, read once; None when a stored key is not a store key or two share their first 8
        bytes (never seen: the chunks read the store then)."""
        keys, hits, expires = [np.zeros((0, 32), np.uint8)], [np.zeros(0, bool)], [np.zeros(0, np.float64)]
        for table, live in copies.scan(SCAN_BYTES):
            rows = table.select(["_key", "_hit", "_expires_at"]).filter(pa.array(live)).combine_chunks()
            found = digests(rows.column("_key").combine_chunks())
            if found is None:
                return None
            keys.append(found)
            hits.append(np.asarray(rows.column("_hit").to_numpy(), bool))
            expires.append(pc.fill_null(rows.column("_expires_at"), np.inf).to_numpy())
        stored = cls(copies, np.concatenate(keys), np.concatenate(hits), np.concatenate(expires))
        return stored if bool(np.all(np.diff(stored.prefixes) > 0)) else None

    def take(self, keys: Sequence[str], rows: bool = True) -> tuple[np.ndarray, np.ndarray, Any]:
        """As :meth:`FlatCopies.take` of ``keys`` (those with a copy unexpired now, ascending; whether each is a
        match); the rows, when asked, are read from the store."""
        wanted = digests(pa.array(keys, pa.string()))
        if rows or wanted is None or not len(self.prefixes):
            return self.copies.take(keys, rows=rows)
        at = _lookup(self.prefixes, self.keys, wanted)
        found = np.flatnonzero(at >= 0)
        found = found[self.expires[at[found]] > self.copies.store.clock.time()]
        return found.astype(np.int64), self.hits[at[found]], None
