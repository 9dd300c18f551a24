"""What SQLiteStore runs inside its connection's thread: schema, migrations, transactions.

Every function takes the raw `sqlite3.Connection` (opened with
isolation_level=None, so BEGIN/COMMIT are ours) and is called through one
`ConnectionThread.run` hop (`_sqlite_thread`). All SQL is constant text with bound
parameters; no identifier ever comes from input.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from waypoint import _faults
from waypoint.checkpoints._rows import RUN_COLUMNS, encode_info, encode_waiting
from waypoint.checkpoints.fence import Append, held, lost, moved, not_found, refusal
from waypoint.checkpoints.records import RunInfo
from waypoint.errors import RunStateError, SchemaVersionError, StoreError, WaypointError

Job = tuple[Callable[..., Any], tuple[Any, ...]]  # fn(raw, now, *args), run inside a batch


def _v1(raw: sqlite3.Connection) -> None:
    # `info` keeps the RunInfo as created; columns hold what changes and what is filtered
    # on. A new RunInfo field with a default then needs no migration.
    raw.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, graph TEXT NOT NULL, "
                "status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
                "last_seq INTEGER NOT NULL, lease_owner TEXT, lease_expiry REAL NOT NULL, "
                "lease_ttl REAL NOT NULL, error TEXT, waiting BLOB NOT NULL, info BLOB NOT NULL)")
    raw.execute("CREATE INDEX runs_status ON runs (status)")
    raw.execute("CREATE INDEX runs_created_at ON runs (created_at)")
    raw.execute("CREATE TABLE steps (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
                "node TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")
    raw.execute("CREATE TABLE snapshots (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                "payload BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")


MIGRATIONS = {1: _v1}  # MIGRATIONS[n] takes a file from schema version n - 1 to n
SCHEMA_VERSION = max(MIGRATIONS)


def setup(raw: sqlite3.Connection, pragma_synchronous: str, path: str, busy_timeout: float = 5.0) -> None:
    """Set the PRAGMAs, then create or migrate the schema (writing nothing if it is current).

    Processes opening a fresh file at the same moment race to switch it to WAL and
    create the schema; SQLite can refuse the loser at once ("database is locked")
    without waiting in its busy handler, so the whole setup is retried until
    `busy_timeout` has passed. Every step of it is idempotent.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return _setup_once(raw, pragma_synchronous, path)
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _setup_once(raw: sqlite3.Connection, pragma_synchronous: str, path: str) -> None:
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(pragma_synchronous)  # one of two constant strings, never input
    if _user_version(raw, path) == SCHEMA_VERSION:
        return  # nothing to write, so a read-only file opens too
    raw.execute("BEGIN IMMEDIATE")
    try:  # re-read under the write lock: another process may have migrated meanwhile
        for version in range(_user_version(raw, path) + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](raw)
            raw.execute(f"PRAGMA user_version = {version:d}")  # PRAGMA takes no parameters; our int
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise


def _user_version(raw: sqlite3.Connection, path: str) -> int:
    version = raw.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{path} has schema version {version}, written by a newer waypoint; "
                                 f"this one reads up to version {SCHEMA_VERSION}. Upgrade waypoint "
                                 "to open it (files are never downgraded)")
    return version


def write_batch(raw: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Run every job in ONE transaction; a job refused (lease, fence, duplicate) fails alone.

    Any other error (disk full, read-only file, I/O) rolls the whole batch back and
    propagates: nothing of it was written.
    """
    now = time.time()
    raw.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
    try:
        results = [_one(raw, now, fn, args) for fn, args in jobs]
        _faults.reached("inside_commit")  # crash tests: rows written, COMMIT not yet run
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return results


def _one(raw: sqlite3.Connection, now: float, fn: Callable[..., Any],
         args: tuple[Any, ...]) -> tuple[bool, Any]:
    raw.execute("SAVEPOINT job")
    try:
        result = (True, fn(raw, now, *args))
    except (WaypointError, sqlite3.IntegrityError) as exc:
        raw.execute("ROLLBACK TO job")
        run_id = getattr(args[0], "run_id", args[0])  # every job's first argument names its run
        result = (False, exc if isinstance(exc, WaypointError) else StoreError(
            f"run {run_id!r}: write refused by the database ({exc}); the file holds rows waypoint "
            "did not write for this run, so inspect it or fork the run", run_id=run_id))
    raw.execute("RELEASE job")
    return result


def create(raw: sqlite3.Connection, now: float, info: RunInfo, owner: str | None, ttl: float,
           snapshot: tuple[int, bytes] | None) -> None:
    """The run row, leased to `owner` if given, and its first snapshot: one savepoint of a batch."""
    status, holder, expiry = ("running", owner, now + ttl) if owner is not None else (
        info.status, info.lease_owner, info.lease_expiry)
    try:
        raw.execute("INSERT INTO runs (run_id, graph, status, created_at, updated_at, last_seq, "
                    "lease_owner, lease_expiry, lease_ttl, error, waiting, info) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (info.run_id, info.graph, status, info.created_at, info.updated_at,
                     info.last_seq, holder, expiry, ttl, info.error,
                     encode_waiting(info.waiting), encode_info(info)))
    except sqlite3.IntegrityError:
        raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                            run_id=info.run_id) from None
    if snapshot is not None:
        raw.execute("INSERT OR REPLACE INTO snapshots (run_id, seq, payload) VALUES (?, ?, ?)",
                    (info.run_id, *snapshot))


def claim(raw: sqlite3.Connection, now: float, run_id: str, owner: str, ttl: float,
          expect_seq: int | None, expect_status: str | None) -> tuple[Any, ...]:
    """Take the lease; with `expect_*`, a compare-and-set on what the caller saw."""
    cur = raw.execute("UPDATE runs SET status = 'running', lease_owner = ?, lease_expiry = ?, "
                      "lease_ttl = ?, updated_at = ? WHERE run_id = ? AND (lease_owner IS NULL "
                      "OR lease_owner = ? OR lease_expiry < ?) AND (? IS NULL OR last_seq = ?) "
                      "AND (? IS NULL OR status = ?)",
                      (owner, now + ttl, ttl, now, run_id, owner, now, expect_seq, expect_seq,
                       expect_status, expect_status))
    row = run_row(raw, run_id)
    if cur.rowcount == 0:
        raise (moved(run_id, row[3], row[1], expect_seq, expect_status)
               or held(run_id, row[4], row[5], now))
    return row


def renew(raw: sqlite3.Connection, now: float, run_id: str, owner: str, ttl: float) -> None:
    cur = raw.execute("UPDATE runs SET lease_expiry = ?, lease_ttl = ? WHERE run_id = ? AND "
                      "lease_owner = ?", (now + ttl, ttl, run_id, owner))
    if cur.rowcount == 0:
        raise lost(run_id, owner, run_row(raw, run_id)[4], "renew the lease")


def release(raw: sqlite3.Connection, now: float, run_id: str, owner: str, status: str,
            error: str | None, waiting: list[str]) -> None:
    cur = raw.execute("UPDATE runs SET status = ?, error = ?, waiting = ?, lease_owner = NULL, "
                      "lease_expiry = 0, updated_at = ? WHERE run_id = ? AND lease_owner = ?",
                      (status, error, encode_waiting(waiting), now, run_id, owner))
    if cur.rowcount == 0:
        raise lost(run_id, owner, run_row(raw, run_id)[4], f"set status {status!r}")


def append(raw: sqlite3.Connection, now: float, job: Append) -> None:
    """Write one append if its fence holds: still our lease, and nobody appended since."""
    if job.first is None:  # snapshot only: the log must already reach the snapshot
        cur = raw.execute("UPDATE runs SET updated_at = ?, lease_expiry = max(lease_expiry, ? + "
                          "lease_ttl) WHERE run_id = ? AND lease_owner = ? AND last_seq >= ?",
                          (now, now, job.run_id, job.owner, job.snap_seq))
    else:  # an append proves the holder alive, so it extends the lease like a renew
        cur = raw.execute("UPDATE runs SET last_seq = ?, updated_at = ?, lease_expiry = "
                          "max(lease_expiry, ? + lease_ttl) WHERE run_id = ? AND lease_owner = ? "
                          "AND last_seq = ?", (job.last, now, now, job.run_id, job.owner, job.first - 1))
    if cur.rowcount == 0:
        row = raw.execute("SELECT lease_owner, last_seq FROM runs WHERE run_id = ?", (job.run_id,)).fetchone()
        raise not_found(job.run_id) if row is None else refusal(job, *row)
    raw.executemany("INSERT INTO steps (run_id, seq, kind, node, payload) VALUES (?, ?, ?, ?, ?)",
                    job.step_rows)
    if job.snap_blob is not None:
        raw.execute("INSERT OR REPLACE INTO snapshots (run_id, seq, payload) VALUES (?, ?, ?)",
                    (job.run_id, job.snap_seq, job.snap_blob))


def checkpoint(raw: sqlite3.Connection) -> None:
    """A passive checkpoint: copies what it can of the WAL into the database, never waits."""
    raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def run_row(raw: sqlite3.Connection, run_id: str) -> tuple[Any, ...]:
    row = raw.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise not_found(run_id)
    return row


def select(raw: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return raw.execute(sql, params).fetchall()


def select_of_run(raw: sqlite3.Connection, run_id: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Rows of `sql` (whose first parameter is the run id); an unknown run raises RunNotFoundError."""
    if raw.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise not_found(run_id)
    return raw.execute(sql, (run_id, *params)).fetchall()


def load(raw: sqlite3.Connection, run_id: str) -> tuple[Any, list[Any]]:
    snaps = select_of_run(raw, run_id, "SELECT seq, payload FROM snapshots WHERE run_id = ? "
                          "ORDER BY seq DESC LIMIT 1", ())
    rows = raw.execute("SELECT seq, payload FROM steps WHERE run_id = ? AND seq > ? ORDER BY seq",
                       (run_id, snaps[0][0] if snaps else 0)).fetchall()
    return (snaps[0] if snaps else None), rows
