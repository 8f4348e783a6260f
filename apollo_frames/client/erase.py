"""Erasure that really erases: every stored byte naming a person goes, then the files are compacted.

:func:`erase` works on one cache folder's answer store, in this order, so that no answer in flight comes back:

1. the store records an erasure (``AnswerStore.note_erasure``) after the caller has put the identifiers on the
   suppression list: from then on every write, by any process, is checked against the list in its own
   transaction, and an answer naming them is refused;
2. every stored answer is decoded and the ones naming an identifier anywhere inside (a person, a search page
   listing them, a phone payload, an organisation at a forgotten domain) are found; the other identifiers those
   answers name the people by are suppressed too and 1-2 repeated with them until none is new (a phone payload
   names a person by id alone); then the push journal lines of unfinished pushes keyed by any of them;
3. those keys are deleted in one transaction (their quarantine records and claims too), with every flattened
   block holding a row no longer live (blocks are rebuilt from the raw answers that are left);
4. the database is rewritten (``VACUUM``) and its write-ahead log truncated; a database set aside earlier
   (``responses/quarantine/``) that holds one of the identifiers' bytes is deleted, and so is every file run's
   spill of stored rows (``responses/spill/``: a killed run's, and a live run's, which reads the store instead).

The ledger keeps credit sums by run and operation, never an identifier: nothing to remove there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence

from apollo_frames.client.spills import sweep_spills
from apollo_frames.client.storage import sql_blocks, sql_marks
from apollo_frames.client.store import AnswerStore
from apollo_frames.core.entries import BadEntry, decode_entry
from apollo_frames.core.suppress import revealed

#: rows decoded per query while looking for answers naming someone
SCAN_BLOCK = 1_000
#: the push journals' endpoints (``apollo_frames.ops.journal``: ``push-journal:<target>``)
JOURNAL_ENDPOINTS = ("push-journal:contacts", "push-journal:accounts")


@dataclasses.dataclass
class Erased:
    """What :func:`erase` removed from one store, per place."""

    answers: int = 0
    journal_lines: int = 0
    quarantined: int = 0
    flat_blocks: int = 0
    set_aside_files: int = 0
    #: False when another process's read kept part of the write-ahead log (run ``forget`` again later)
    compacted: bool = True
    #: other identifiers (e-mails, LinkedIn URLs, ids) the removed answers named the people by, newly suppressed
    learned: int = 0
    #: replaced versions (kept for ``changes()``) that named them, under answers that no longer do
    previous_versions: int = 0
    #: file runs' spill folders of stored rows deleted (a killed run's, or a live run's)
    spills: int = 0


def erase(store: AnswerStore, pairs: Sequence[tuple[str, str]], suppress: Callable[[list], int]) -> Erased:
    """Remove every stored answer naming one of ``pairs`` (normalised ``(kind, value)``, already suppressed), or
    naming the same people by another identifier (``suppress`` adds those to the list), then compact the files."""
    wanted = set(pairs)
    done = Erased()
    while True:  # (a phone payload names a person by id alone: found once their answer gave the id)
        store.note_erasure()
        named, nonces, learned = _named_keys(store, frozenset(wanted))
        more = [pair for pair in learned if pair not in wanted]
        if not more:
            break
        done.learned += suppress(more)  # before the next erasure mark: writes from then on are checked by them
        wanted.update(more)
    journal = _journal_keys(store, nonces, sorted(wanted))
    present = {key for (key,) in _present(store, journal)}
    answers, done.quarantined, done.flat_blocks = store.erase([*named, *present])
    done.previous_versions = _erase_previous(store, frozenset(wanted))
    done.answers, done.journal_lines = answers - len(present), len(present)
    done.compacted = store.compact()
    done.set_aside_files = _drop_set_aside(store, sorted(wanted))
    done.spills = sweep_spills(store.directory, None)  # live runs' too: they see the erasure and read the store
    return done


def _named_keys(
    store: AnswerStore, wanted: frozenset[tuple[str, str]]
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Keys whose answer names one of ``wanted``; the nonces of unfinished push journals (their lines are keyed
    by them); the strong identifiers those answers named the people by. An entry that does not decode holds
    nothing trusted: it is left to ``cache verify``."""
    named: list[str] = []
    nonces: list[str] = []
    learned: dict[tuple[str, str], None] = {}
    last = 0
    while True:
        rows = store.query("SELECT rowid, key, value FROM Answers WHERE rowid > ? ORDER BY rowid LIMIT ?",
                           [last, SCAN_BLOCK])
        if not rows:
            return named, nonces, list(learned)
        last = rows[-1][0]
        for _, key, value in rows:
            try:
                data = decode_entry(key, value)
            except BadEntry:
                continue
            found = revealed(data, wanted)
            if found is not None:
                named.append(key)
                learned.update(dict.fromkeys(found))
            elif isinstance(data, dict) and data.get("open") is True and isinstance(data.get("nonce"), str):
                nonces.append(data["nonce"])


def _erase_previous(store: AnswerStore, wanted: frozenset[tuple[str, str]]) -> int:
    """Delete the replaced versions that name one of ``wanted`` (an old e-mail the current answer no longer
    gives); those of erased answers went with them."""
    doomed = []
    for key, replaced_at, value in store.query("SELECT key, replaced_at, value FROM Previous", []):
        try:
            data = decode_entry(key, value)
        except BadEntry:
            continue
        if revealed(data, wanted) is not None:
            doomed.append((key, replaced_at))
    if doomed:
        with store.transaction() as con:
            con.executemany("DELETE FROM Previous WHERE key = ? AND replaced_at = ?", doomed)
    return len(doomed)


def _journal_keys(store: AnswerStore, nonces: Iterable[str], pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The keys an unfinished push keeps a row under when its dedupe key is one of the identifiers."""
    return [store.key(endpoint, {"nonce": nonce, "row": value})
            for nonce in nonces for endpoint in JOURNAL_ENDPOINTS for _, value in pairs]


def _present(store: AnswerStore, keys: list[str]) -> list[tuple]:
    found: list[tuple] = []
    for block in sql_blocks(keys):
        found += store.query(f"SELECT key FROM Answers WHERE key IN ({sql_marks(len(block))})", block)
    return found


def _drop_set_aside(store: AnswerStore, pairs: Sequence[tuple[str, str]]) -> int:
    """Delete the databases set aside earlier (damaged, kept for salvage) that hold an identifier's bytes."""
    folder = store.directory / "quarantine"
    needles = [value.encode() for _, value in pairs]
    dropped = 0
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                os.unlink(path)
                dropped += 1
    return dropped

