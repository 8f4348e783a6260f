"""Looking after the answer store: prune, verify (and salvage), export and import as Parquet.

Export/import is how a team shares answers without sharing a writable folder: one person exports, others import;
every imported record is checked (key shape, schema version, JSON answer): a bad one is skipped and counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import math
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any, TypeGuard

import pyarrow as pa
import pyarrow.parquet as pq

from apollo_frames.client.flat import drop_stale_blocks
from apollo_frames.client.storage import private_file, storage_errors
from apollo_frames.client.store import FUTURE_SLACK_S, SELECT_ROWS, AnswerStore, Entry, set_aside
from apollo_frames.core import jsontext
from apollo_frames.core.age import age_seconds
from apollo_frames.core.entries import SCHEMA_VERSION, BadEntry
from apollo_frames.core.errors import InputError, StorageError
from apollo_frames.core.settings import Settings

#: Rows read or written per step (one SQL query / one Parquet batch).
BLOCK = 1_000
EXPORT_SCHEMA = pa.schema(
    [("key", pa.string()), ("schema_version", pa.int32()), ("stored_at", pa.float64()), ("expires_at", pa.float64()),
     ("answer", pa.string())],
    metadata={b"apollo_frames.store": json.dumps({"format": 1, "schema_version": SCHEMA_VERSION}).encode()},
)
_KEY = re.compile(r"[0-9a-f]{64}")


def parse_age(text: str) -> float:
    """Seconds in an age like ``30d``, ``12h``, ``90m``, ``2w`` (as ``max_age`` reads it; a bare number is days)."""
    text = str(text).strip()
    if text.replace(".", "", 1).isdigit():
        text += "d"
    return age_seconds(text, name="older_than (default 30d)") or 0.0  # (text is never None)


@dataclasses.dataclass
class Counts:
    """What a verify, export or import did: rows looked at, kept, and set aside or skipped (by reason)."""

    action: str
    checked: int = 0
    ok: int = 0
    skipped: Counter[str] = dataclasses.field(default_factory=Counter)
    note: str = ""
    #: import/salvage: entries written (an import keeps an entry already stored as recently)
    written: int | None = None

    @property
    def bad(self) -> int:
        return sum(self.skipped.values())

    def __str__(self) -> str:
        reasons = "; ".join(f"{n:,} {r}" for r, n in self.skipped.most_common())
        verb = "quarantined" if self.action == "verify" else "skipped"
        text = f"{self.action}: {self.checked:,} checked, {self.ok:,} ok, {self.bad:,} {verb}"
        if self.written is not None:
            text += f", {self.written:,} written"
        return text + (f" ({reasons})" if reasons else "") + (f"; {self.note}" if self.note else "")

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"  # a path or a reason may hold '<' or '&'


def _scan(store: AnswerStore, where: str = "", params: tuple = ()):
    """Every row of the store in rowid order, a block at a time."""
    last = 0
    while True:
        rows = store.query(f"{SELECT_ROWS} WHERE rowid > ? {where} ORDER BY rowid LIMIT ?", (last, *params, BLOCK))
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def prune(store: AnswerStore, older_than: float, *, now: float | None = None) -> int:
    """Delete entries stored more than ``older_than`` seconds before ``now`` (store clock), expired ones and those
    past the store's retention, with the flattened blocks that held them; then compact, so their bytes are gone."""
    now = store.clock.time() if now is None else now
    with store.transaction() as con:  # (a NULL expires_at is never <= now)
        removed = con.execute("DELETE FROM Answers WHERE stored_at < ? OR expires_at <= ?",
                              (now - older_than, now)).rowcount
        con.execute("DELETE FROM Claims WHERE expires <= ?", (now,))
        owners = [owner for (owner,) in con.execute("SELECT DISTINCT owner FROM Claims")]
        con.executemany("DELETE FROM Claims WHERE owner = ?", [(o,) for o in owners if not store.holders.alive(o)])
        drop_stale_blocks(con)  # every block still holding a deleted answer's flattened row (gone with it: triggers)
    removed += store.purge_retention(now)
    store.compact()  # the deleted bytes leave the files too
    return int(removed)


def _check(store: AnswerStore, rows: list[tuple], counts: Counts) -> tuple[dict[str, Any], list]:
    """Decode ``rows`` as a read does, counting them: (answers by key, the bad rows with their reasons)."""
    found: dict[str, Any] = {}
    bad: list = []
    store.decode_rows(rows, found, bad, store.clock.time())
    counts.checked += len(rows)
    counts.ok += len(rows) - len(bad)
    counts.skipped.update(reason for _, _, reason in bad)
    return found, bad


def verify(store: AnswerStore) -> Counts:
    """Check every entry (JSON, key, schema version, date); quarantine the bad ones."""
    counts = Counts("verify")
    for rows in _scan(store):
        _, bad = _check(store, rows, counts)
        if bad:
            store.quarantine(bad, quiet=True)
    return counts


def repair(directory: str | Path) -> tuple[AnswerStore, list[Counts]]:
    """Verify the store; one too damaged to read is set aside and what is readable copied into a fresh one. Returns
    the (open) store and what was done: a salvage, if any, then the verify."""
    db = Path(directory).expanduser() / "responses" / "cache.db"
    store: AnswerStore | None = None
    try:
        store = AnswerStore(directory)
        return store, [verify(store)]
    except StorageError as exc:
        if exc.reason != "corrupt":
            raise
    if store is not None:
        store.close()
    moved = set_aside(db)
    fresh = AnswerStore(directory)
    return fresh, [salvage(moved, fresh), verify(fresh)]


def salvage(source: Path, store: AnswerStore, give_up_after: int = 20) -> Counts:
    """Copy every entry still readable in the damaged database ``source`` into ``store``: a block of rowids at a
    time (one that cannot be read, row by row), until ``give_up_after`` blocks in a row hold nothing."""
    counts = Counts("salvage", note=f"the damaged file is kept at {source}", written=0)
    try:
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error:
        return counts
    start, empty = 0, 0
    with contextlib.closing(conn):
        while empty < give_up_after:
            rows = _readable(conn, range(start, start + BLOCK), counts)
            found, _ = _check(store, rows, counts)
            counts.written = (counts.written or 0) + store.write_entries(
                [(key, found[key], stored_at, expires) for _, key, _, stored_at, expires in rows if key in found])
            empty = 0 if rows else empty + 1
            start += BLOCK
    return counts


def _readable(conn: sqlite3.Connection, rowids: range, counts: Counts) -> list[tuple]:
    """The rows of ``rowids`` that can be read: in one query, or one at a time in a damaged block."""
    try:
        return conn.execute(f"{SELECT_ROWS} WHERE rowid BETWEEN ? AND ?", (rowids[0], rowids[-1])).fetchall()
    except sqlite3.Error:
        counts.skipped["unreadable block"] += 1
    rows = []
    for rowid in rowids:
        with contextlib.suppress(sqlite3.Error):
            rows += conn.execute(f"{SELECT_ROWS} WHERE rowid = ?", (rowid,)).fetchall()
    return rows


def export_parquet(store: AnswerStore, path: str | Path) -> Counts:
    """Write every current, valid entry to a Parquet file (0600: it holds personal data)."""
    path = Path(path)
    counts = Counts("export")
    now = store.clock.time()
    with storage_errors(path, "exporting the answer store"):
        private_file(path)
        with pq.ParquetWriter(str(path), EXPORT_SCHEMA) as writer:
            for rows in _scan(store, "AND (expires_at IS NULL OR expires_at > ?)", (now,)):
                found, _ = _check(store, rows, counts)
                writer.write_table(pa.Table.from_pylist([
                    {"key": key, "schema_version": SCHEMA_VERSION, "stored_at": stored_at, "expires_at": expires_at,
                     "answer": jsontext.dumps(found[key]).decode("utf-8", "surrogatepass")}
                    for _, key, _, stored_at, expires_at in rows if key in found], schema=EXPORT_SCHEMA))
    return counts


def import_parquet(store: AnswerStore, path: str | Path, *, ttl: float | None = None) -> Counts:
    """Add the valid records of an exported Parquet file; an entry already stored more recently is kept. ``ttl``: an
    entry exported without an expiry expires ``ttl`` seconds after it was stored (None: never)."""
    counts = Counts("import", written=0)
    try:
        source = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"{path} is not a Parquet file exported by `apollo-frames cache export`: {exc}") from None
    missing = set(EXPORT_SCHEMA.names) - set(source.schema_arrow.names)
    if missing:
        raise InputError(f"{path} lacks the columns {sorted(missing)}: not an export of the answer store")
    now = store.clock.time()
    for batch in source.iter_batches(batch_size=BLOCK, columns=EXPORT_SCHEMA.names):
        entries = []
        for record in batch.to_pylist():
            counts.checked += 1
            try:
                entries.append(_import_entry(record, now, ttl))
            except BadEntry as exc:
                counts.skipped[str(exc)] += 1
        counts.ok += len(entries)
        counts.written = (counts.written or 0) + store.write_entries(entries, newer_only=True)
    return counts


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _import_entry(record: dict, now: float, ttl: float | None) -> Entry:
    """(key, answer, stored_at, expires_at) of one exported record, or :class:`BadEntry`."""
    key, answer, stored, expires = (record.get(k) for k in ("key", "answer", "stored_at", "expires_at"))
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise BadEntry("malformed key")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise BadEntry(f"schema version {record.get('schema_version')!r}")
    if not _finite(stored) or stored > now + FUTURE_SLACK_S:
        raise BadEntry("bad stored_at")
    if expires is None and ttl is not None:
        expires = stored + ttl
    elif expires is not None and not _finite(expires):
        raise BadEntry("expired")
    if expires is not None and expires <= now:
        raise BadEntry("expired")
    if not isinstance(answer, str):
        raise BadEntry("no answer")
    try:
        data = jsontext.loads(answer)
    except ValueError:
        raise BadEntry("answer not JSON") from None
    except RecursionError:
        raise BadEntry("answer nested too deeply") from None
    if data is not None and not isinstance(data, dict):
        raise BadEntry(f"answer of type {type(data).__name__}")
    return key, data, float(stored), None if expires is None else float(expires)


def cache_command(action: str, cache_dir: str | Path | None = None, *, older_than: str = "30d",
                  path: str | Path | None = None) -> str:
    """What ``apollo-frames cache ACTION`` prints: info, prune, verify, export PATH, import PATH."""
    settings = Settings.resolve(cache_dir=cache_dir)
    if action == "verify":
        store, done = repair(settings.cache_dir)
        with store:
            return "\n".join(str(c) for c in done)
    with AnswerStore(settings.cache_dir, retention=settings.retention) as store:
        if action == "info":
            return str(store.stats())
        if action == "prune":
            removed = prune(store, parse_age(older_than)) + store.purged
            past = "" if settings.retention is None else " or past the retention"
            return f"prune: {removed:,} entries older than {older_than}{past} or expired removed; {len(store):,} left"
        if path is None:
            raise InputError(f"cache {action} needs a .parquet path")
        if action == "export":
            return f"{export_parquet(store, path)}; written to {path}"
        if action == "import":
            return f"{import_parquet(store, path, ttl=settings.cache_ttl)}; {len(store):,} entries in {store.directory}"
    raise InputError(f"unknown cache action {action!r}")
