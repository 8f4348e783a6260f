"""The persistent credit ledger: what every batch cost, and the rate limits Apollo last reported.

One SQLite file beside the cache (``<cache_dir>/ledger.sqlite``), in WAL mode
with a busy timeout, so several processes (a notebook and a nightly script)
can append to it at once without losing a row. Every successful batch the
runner sends becomes one row: time (UTC), run id, operation, endpoint, records
sent and matched, credits charged, HTTP status. A request can be written before
it leaves (:meth:`Ledger.begin`, with its worst-case credits) and settled with
the server's figure when it answers (:meth:`Ledger.settle`): one never settled
(the process was killed, or the attempt got no usable answer) shows as
``in_doubt`` with its worst case. The runner writes one row per attempt the
server may have charged (a retry after a lost answer is a row of its own), so
lost answers never make the ledger under-report. The last rate-limit reading
per endpoint and window is kept too, with the time it was seen; estimates use
it and ``apollo-frames usage`` falls back to it when ``usage_stats`` is refused.

The public helpers ``apollo_frames.client.ledger()``, ``credit_summary()`` and
``plot_credits()`` read it through a client (``client=None`` builds one from
the environment, i.e. the default cache folder).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from apollo_frames.client.ratelimit import WindowReading
from apollo_frames.client.storage import (
    database_files,
    private_dir,
    private_file,
    storage_errors,
    tighten,
    wal_mode,
)
from apollo_frames.core.clock import SYSTEM_CLOCK, WINDOWS, Clock
from apollo_frames.core.errors import InputError

#: Bump with a migration when the tables change (2: begin/settle, in doubt; 3: unverified).
LEDGER_VERSION = 3
#: How long a writer waits for another process's transaction before giving up (ms).
BUSY_TIMEOUT_MS = 30_000

FRAME_COLUMNS = (
    "time",
    "operation",
    "endpoint",
    "records_sent",
    "records_matched",
    "credits",
    "http_status",
    "run_id",
    "status",
    "unverified",
)
#: ``status`` of a request answered (credits are the server's) or never answered (credits are the worst case)
SETTLED, IN_DOUBT = "settled", "in_doubt"
#: stored states shown as in doubt: sent and never settled, or credits the meter counted beyond the answers
_DOUBTFUL = "('sent', 'gap')"
#: columns added since version 1, for ledgers written by older versions
_MIGRATIONS = {
    "state": "TEXT NOT NULL DEFAULT 'settled'",
    "worst_credits": "REAL",
    "pid": "INTEGER",
    "settled_at": "REAL",
    "unverified": "INTEGER NOT NULL DEFAULT 0",
}
_CORRUPT_REMEDY = "move it aside (the credits it recorded are then no longer summed) and run again"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spend (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        run_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        records_sent INTEGER NOT NULL,
        records_matched INTEGER NOT NULL,
        credits REAL NOT NULL,
        http_status INTEGER,
        state TEXT NOT NULL DEFAULT 'settled',
        worst_credits REAL,
        pid INTEGER,
        settled_at REAL,
        unverified INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS spend_time ON spend (time)",
    # Apollo's credit meter against this ledger, once per run that read it (apollo_frames.engine.meter)
    """CREATE TABLE IF NOT EXISTS meter_checks (
        time REAL NOT NULL,
        run_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        ledger_credits REAL NOT NULL,
        meter_change REAL NOT NULL,
        drift REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS spend_operation ON spend (operation)",
    """CREATE TABLE IF NOT EXISTS limits (
        endpoint TEXT NOT NULL,
        window TEXT NOT NULL,
        limit_value INTEGER,
        usage INTEGER,
        left_value INTEGER,
        seen_at REAL NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (endpoint, window)
    )""",
)


#: settlements per statement (six variables each, within SQLite's oldest limit of 999)
_SETTLE_ROWS = 999 // 6


def _settle_sql(rows: int) -> str:
    """One UPDATE settling ``rows`` entries, each given as (credits, status, matched, settled_at, unverified, id)."""
    columns = {"credits": "c", "http_status": "s", "records_matched": "m", "settled_at": "t", "unverified": "u"}
    sets = ", ".join(f"{column} = (SELECT {v} FROM v WHERE v.id = spend.id)" for column, v in columns.items())
    return (f"WITH v(c, s, m, t, u, id) AS (VALUES {','.join(['(?, ?, ?, ?, ?, ?)'] * rows)}) "
            f"UPDATE spend SET state = 'settled', {sets} WHERE id IN (SELECT id FROM v)")


def _utc(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def _since_seconds(since: Any, now: float) -> float | None:
    """POSIX seconds from a datetime, Timestamp, ISO string or a timedelta back from ``now``."""
    if since is None:
        return None
    if isinstance(since, (dt.timedelta, pd.Timedelta)):
        return now - pd.Timedelta(since).total_seconds()
    stamp = pd.Timestamp(since)
    if stamp is pd.NaT:
        raise InputError(f"since must be a date/time or a timedelta, got {since!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


class Ledger:
    """Record of credit spend (requests sent, then settled), plus the last rate-limit readings, in one SQLite file."""

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK):
        self.path = Path(path).expanduser()
        self.clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        with storage_errors(self.path, "the credit ledger", _CORRUPT_REMEDY):
            private_dir(self.path.parent, tighten_existing=False)
            private_file(self.path)
            self._conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._setup()
        tighten(database_files(self.path))

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def _setup(self) -> None:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = wal_mode(conn)
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory
            warnings.warn(f"credit ledger {self.path} could not use WAL mode (got {mode!r}); writes may wait longer",
                stacklevel=2,
            )
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock, self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._migrate(conn)
            conn.execute(f"PRAGMA user_version={LEDGER_VERSION}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the connection (hold ``_lock``): committed, or rolled back on any exception."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one that goes on
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Add the columns a ledger written by an older version lacks (its rows are all settled)."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
        for column, declaration in _MIGRATIONS.items():
            if column not in have:
                conn.execute(f"ALTER TABLE spend ADD COLUMN {column} {declaration}")
        conn.execute("CREATE INDEX IF NOT EXISTS spend_state ON spend (state)")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the credit ledger {self.path} is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock, storage_errors(self.path, "writing the credit ledger", _CORRUPT_REMEDY):
            cursor = self._connection().execute(sql, params)
            return int(cursor.lastrowid or 0)

    def begin(self, *, run_id: str, operation: str, endpoint: str, records_sent: int, worst_credits: float) -> int:
        """Write a request as sent, before it leaves, with the most it can cost; returns its id for :meth:`settle`."""
        return self._write(
            "INSERT INTO spend (time, run_id, operation, endpoint, records_sent, records_matched, credits, "
            "http_status, state, worst_credits, pid) VALUES (?, ?, ?, ?, ?, 0, 0, NULL, 'sent', ?, ?)",
            (
                self.clock.time(),
                str(run_id),
                str(operation),
                str(endpoint),
                int(records_sent),
                float(worst_credits),
                os.getpid(),
            ),
        )

    def settle(
        self, entry_id: int, *, credits: float, status: int | None, records_matched: int = 0, unverified: bool = False
    ) -> None:
        """Settle a request written by :meth:`begin` with the server's figure (0 credits when it failed).

        ``unverified``: the server's figure was not believable, so ``credits`` is the worst case.
        """
        self.settle_many([(entry_id, {"credits": credits, "status": status, "records_matched": records_matched,
                                      "unverified": unverified})])

    def settle_many(self, settlements: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """:meth:`settle` each (entry id, settle arguments), all in one transaction."""
        now = self.clock.time()
        rows = [(float(kw["credits"]), None if kw.get("status") is None else int(kw["status"]),
                 int(kw.get("records_matched", 0)), now, int(bool(kw.get("unverified", False))), int(entry_id))
                for entry_id, kw in settlements]
        if not rows:
            return
        writing = storage_errors(self.path, "writing the credit ledger", _CORRUPT_REMEDY)
        if len(rows) <= _SETTLE_ROWS:  # one statement is a transaction of its own: the lock is held for one step
            with self._lock, writing:
                self._connection().execute(_settle_sql(len(rows)), [value for row in rows for value in row])
            return
        with self._lock, writing, self._transaction() as conn:
            for start in range(0, len(rows), _SETTLE_ROWS):  # one statement per block: one step, not one per row
                block = rows[start:start + _SETTLE_ROWS]
                conn.execute(_settle_sql(len(block)), [value for row in block for value in row])

    def record(
        self,
        *,
        run_id: str,
        operation: str,
        endpoint: str,
        records_sent: int,
        records_matched: int,
        credits: float,
        status: int | None,
        unverified: bool = False,
    ) -> None:
        """Append one answered batch (timestamped now, UTC): begin and settle in a single, atomic INSERT.

        ``unverified``: the server's credit figure was not believable, so ``credits`` is the worst case.
        """
        now = self.clock.time()
        self._write(
            "INSERT INTO spend (time, run_id, operation, endpoint, records_sent, records_matched, credits, "
            "http_status, state, worst_credits, pid, settled_at, unverified) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'settled', ?, ?, ?, ?)",
            (
                now,
                str(run_id),
                str(operation),
                str(endpoint),
                int(records_sent),
                int(records_matched),
                float(credits),
                None if status is None else int(status),
                float(credits),
                os.getpid(),
                now,
                int(bool(unverified)),
            ),
        )

    def note_meter(self, *, run_id: str, operation: str, ledger_credits: float, meter_change: float) -> None:
        """Record a run's credits beside the change of Apollo's credit meter over the run."""
        self._write(
            "INSERT INTO meter_checks (time, run_id, operation, ledger_credits, meter_change, drift) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.clock.time(),
                str(run_id),
                str(operation),
                float(ledger_credits),
                float(meter_change),
                float(meter_change) - float(ledger_credits),
            ),
        )

    def note_gap(self, *, run_id: str, operation: str, endpoint: str, credits: float) -> None:
        """Record credits Apollo's meter counted during a run beyond its settled and in-doubt rows, as in doubt.

        A server may report fewer credits than it charged; the meter is the only other witness. The row is
        never settled (``state`` 'gap'): it shows as in doubt, for the run and the endpoint that read the meter.
        """
        now = self.clock.time()
        self._write(
            "INSERT INTO spend (time, run_id, operation, endpoint, records_sent, records_matched, credits, "
            "http_status, state, worst_credits, pid) VALUES (?, ?, ?, ?, 0, 0, ?, NULL, 'gap', ?, ?)",
            (now, str(run_id), str(operation), str(endpoint), float(credits), float(credits), os.getpid()),
        )

    def meter_checks(self) -> pd.DataFrame:
        """Every recorded meter check, oldest first (time in UTC)."""
        rows = self._query(
            "SELECT time, run_id, operation, ledger_credits, meter_change, drift FROM meter_checks ORDER BY time"
        )
        frame = pd.DataFrame(rows, columns=["time", "run_id", "operation", "ledger_credits", "meter_change", "drift"])
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame

    def note_limits(self, endpoint: str, readings: Mapping[str, WindowReading], *, source: str = "headers") -> None:
        """Remember the latest limit/left per window for ``endpoint``.

        ``readings`` is ``parse_rate_headers(response.headers)``. An empty dict
        (no limit headers at all) changes nothing; otherwise a window missing
        from it is stored as unlimited, since Apollo leaves out unlimited windows.
        """
        if not readings:
            return
        now = self.clock.time()
        rows: list[tuple[Any, ...]] = []
        for window in WINDOWS:
            reading = readings.get(window)
            if reading is None:
                rows.append((endpoint, window, None, None, None, now, source))
            else:
                rows.append((endpoint, window, reading.limit, reading.usage, reading.left, now, source))
        with self._lock, storage_errors(self.path, "writing the credit ledger", _CORRUPT_REMEDY):
            self._connection().executemany(
                "INSERT OR REPLACE INTO limits (endpoint, window, limit_value, usage, left_value, seen_at, source) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # -- reading -------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock, storage_errors(self.path, "reading the credit ledger", _CORRUPT_REMEDY):
            return self._connection().execute(sql, params).fetchall()

    def frame(self, since: Any = None) -> pd.DataFrame:
        """Every request (optionally since a time, or a timedelta back from now), oldest first.

        ``status`` is ``settled`` (credits: the server's figure) or ``in_doubt``
        (sent, never answered: credits is its worst case). ``unverified``: the
        server's figure was not believable, so credits is the worst case.
        """
        start = _since_seconds(since, self.clock.time())
        sql = (
            "SELECT time, operation, endpoint, records_sent, records_matched, "
            "CASE WHEN state = 'sent' THEN COALESCE(worst_credits, credits) ELSE credits END, http_status, run_id, "
            f"CASE WHEN state IN {_DOUBTFUL} THEN '{IN_DOUBT}' ELSE '{SETTLED}' END, unverified FROM spend"
        )
        rows = self._query(
            sql + (" WHERE time >= ? ORDER BY time, id" if start is not None else " ORDER BY time, id"),
            (start,) if start is not None else (),
        )
        columns: list[Any] = list(zip(*rows, strict=False)) if rows else [() for _ in FRAME_COLUMNS]
        data = dict(zip(FRAME_COLUMNS, columns, strict=False))
        return pd.DataFrame(
            {
                "time": pd.to_datetime(pd.Series(data["time"], dtype="float64"), unit="s", utc=True),
                "operation": pd.Series(data["operation"], dtype="string"),
                "endpoint": pd.Series(data["endpoint"], dtype="string"),
                "records_sent": pd.Series(data["records_sent"], dtype="int64"),
                "records_matched": pd.Series(data["records_matched"], dtype="int64"),
                "credits": pd.Series(data["credits"], dtype="float64"),
                "http_status": pd.Series(data["http_status"], dtype="Int64"),
                "run_id": pd.Series(data["run_id"], dtype="string"),
                "status": pd.Series(data["status"], dtype="string"),
                "unverified": pd.Series(data["unverified"], dtype="int64").astype(bool),
            }
        )

    def in_doubt(self) -> tuple[int, float]:
        """(requests sent and never settled, or meter gaps; their worst-case credits)."""
        ((count, worst),) = self._query(
            f"SELECT COUNT(*), COALESCE(SUM(COALESCE(worst_credits, credits)), 0) FROM spend WHERE state IN {_DOUBTFUL}"
        )
        return int(count), float(worst)

    def in_doubt_note(self) -> str | None:
        """One line for ``apollo-frames usage`` when some requests are in doubt, else None."""
        count, worst = self.in_doubt()
        if not count:
            return None
        return (
            f"ledger: {count} request(s) in doubt (sent, never answered usably: a killed run, a timeout, a lost or "
            "unreadable answer; or credits Apollo's meter counted beyond the answers' figures), "
            f"up to {worst:g} "
            f"credits the server may have charged; see apollo_frames.ledger() (status == 'in_doubt')"
        )

    def limits(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{endpoint: {window: {"limit", "usage", "left", "seen_at", "source"}}}``; limit None = unlimited."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        rows = self._query(
            "SELECT endpoint, window, limit_value, usage, left_value, seen_at, source FROM limits ORDER BY endpoint"
        )
        order = {w: i for i, w in enumerate(WINDOWS)}
        for endpoint, window, limit, usage, left, seen_at, source in sorted(
            rows, key=lambda r: (r[0], order.get(r[1], 9))
        ):
            found.setdefault(endpoint, {})[window] = {
                "limit": limit,
                "usage": usage,
                "left": left,
                "seen_at": _utc(seen_at),
                "source": source,
            }
        return found

    def match_rate(self, operation: str) -> tuple[float, int] | None:
        """(records matched / records sent, records sent) over every recorded batch of ``operation``."""
        ((sent, matched),) = self._query(
            "SELECT COALESCE(SUM(records_sent), 0), COALESCE(SUM(records_matched), 0) FROM spend "
            "WHERE operation = ? AND state = 'settled' "
            "AND (http_status IS NULL OR (http_status >= 200 AND http_status < 400))",
            (operation,),
        )
        if not sent:
            return None
        return matched / sent, int(sent)

    def total_credits(self, *, run_id: str | None = None, operation: str | None = None) -> float:
        """Credits settled, optionally for one run or one operation (requests in doubt: :meth:`in_doubt`)."""
        clauses, params = ["state = 'settled'"], []
        for column, value in (("run_id", run_id), ("operation", operation)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        ((total,),) = self._query("SELECT COALESCE(SUM(credits), 0) FROM spend" + where, tuple(params))
        return float(total)
