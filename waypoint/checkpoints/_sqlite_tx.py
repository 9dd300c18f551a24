"""What SQLiteStore runs inside its connection's thread: its transactions and reads.

Every function takes the raw `sqlite3.Connection` (opened with
isolation_level=None, so BEGIN/COMMIT are ours) and is called through one
`ConnectionThread.run` hop (`_sqlite_thread`). All SQL is constant text with bound
parameters; no identifier ever comes from input. The schema and how a step is
keyed are in `_sqlite_schema`.

A run's `last_seq` is read, not kept up to date on each append: LAST_SEQ is the
larger of the row's column (set by create, claim, renew and release) and the
last step's seq, found in one seek at the end of the run's key range.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import msgspec

from waypoint import _faults
from waypoint.checkpoints._rows import RUN_COLUMNS as PLAIN_COLUMNS
from waypoint.checkpoints._rows import decode_info, encode_info, encode_waiting
from waypoint.checkpoints._sqlite_schema import SEQ_BITS, SEQ_LIMIT, step_key
from waypoint.checkpoints.fence import Append, Import, held, lost, moved, not_found, refusal
from waypoint.checkpoints.records import RunInfo, claimable
from waypoint.errors import RunStateError, StoreError, WaypointError

__all__ = ["LAST_SEQ", "RUN_COLUMNS", "SEQ_LIMIT", "Job", "append", "checkpoint", "claim", "claim_next",
           "create", "history", "import_run", "load", "number", "release", "renew", "run_row", "select",
           "snapshot_at", "write_batch"]

Job = tuple[Callable[..., Any], tuple[Any, ...]]  # fn(raw, now, *args), run inside a batch
LAST_SEQ = (f"max(runs.last_seq, coalesce((SELECT key - (runs.num << {SEQ_BITS}) FROM steps WHERE key "
            f"BETWEEN runs.num << {SEQ_BITS} AND (runs.num << {SEQ_BITS}) + {SEQ_LIMIT - 1} "
            "ORDER BY key DESC LIMIT 1), 0))")
RUN_COLUMNS = PLAIN_COLUMNS.replace("last_seq", LAST_SEQ)  # the same columns, the log's end derived
_INSERT_STEP = "INSERT INTO steps (key, run_id, seq, kind, node, payload) VALUES (?, ?, ?, ?, ?, ?)"


def write_batch(raw: sqlite3.Connection, jobs: list[Job]) -> list[tuple[bool, Any]]:
    """Run every job in ONE transaction; a job refused (lease, fence, duplicate) fails alone.

    Any other error (disk full, read-only file, I/O) rolls the whole batch back and
    propagates: nothing of it was written.

    A batch of one job (a lone run's append: the common case) needs no savepoint: if it
    is refused, the transaction is rolled back instead of committed, which undoes the
    same writes with two statements fewer per commit.
    """
    now = time.time()
    alone = len(jobs) == 1
    raw.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
    try:
        results = [_one(raw, now, fn, args, alone) for fn, args in jobs]
        _faults.reached("inside_commit")  # crash tests: rows written, COMMIT not yet run
        raw.execute("ROLLBACK" if alone and not results[0][0] else "COMMIT")
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return results


def _one(raw: sqlite3.Connection, now: float, fn: Callable[..., Any],
         args: tuple[Any, ...], alone: bool) -> tuple[bool, Any]:
    """One job, in a savepoint of its own unless it is `alone` in its batch."""
    if not alone:
        raw.execute("SAVEPOINT job")
    try:
        result = (True, fn(raw, now, *args))
    except (WaypointError, sqlite3.IntegrityError) as exc:
        if not alone:  # alone: write_batch rolls the whole transaction back
            raw.execute("ROLLBACK TO job")
        run_id = getattr(args[0], "run_id", args[0])  # every job's first argument names its run
        result = (False, exc if isinstance(exc, WaypointError) else StoreError(
            f"run {run_id!r}: write refused by the database ({exc}); the file holds rows waypoint "
            "did not write for this run, so inspect it or fork the run", run_id=run_id))
    if not alone:
        raw.execute("RELEASE job")
    return result


def create(raw: sqlite3.Connection, now: float, info: RunInfo, owner: str | None, ttl: float,
           snapshot: tuple[int, bytes] | None) -> int:
    """The run row, leased to `owner` if given, and its first snapshot: one savepoint of a batch.
    Returns the run's `num`, which keys its steps and snapshots."""
    status, holder, expiry = ("running", owner, now + ttl) if owner is not None else (
        info.status, info.lease_owner, info.lease_expiry)
    try:
        cur = raw.execute("INSERT INTO runs (run_id, graph, status, created_at, updated_at, last_seq, "
                          "lease_owner, lease_expiry, lease_ttl, error, waiting, info) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (info.run_id, info.graph, status, info.created_at, info.updated_at,
                           info.last_seq, holder, expiry, ttl, info.error,
                           encode_waiting(info.waiting), encode_info(info)))
    except sqlite3.IntegrityError:
        raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                            run_id=info.run_id) from None
    num = int(cur.lastrowid or 0)
    if snapshot is not None:
        _put_snapshot(raw, num, info.run_id, *snapshot)
    return num


def import_run(raw: sqlite3.Connection, now: float, job: Import) -> None:
    """A whole run copied from another store: its row (leased to nobody), steps and snapshots."""
    if job.info.last_seq >= SEQ_LIMIT:
        raise StoreError(f"run {job.info.run_id!r}: seq {job.info.last_seq} is beyond what a SQLite store "
                         f"keeps for one run ({SEQ_LIMIT - 1}); it cannot be copied into a SQLite file",
                         run_id=job.info.run_id)
    num = create(raw, now, job.info, None, 0.0, None)
    raw.executemany(_INSERT_STEP, [(step_key(num, row[1]), *row) for row in job.step_rows])
    for seq, blob in job.snap_rows:
        _put_snapshot(raw, num, job.info.run_id, seq, blob)


def claim(raw: sqlite3.Connection, now: float, run_id: str, owner: str, ttl: float,
          expect_seq: int | None, expect_status: str | None) -> tuple[Any, ...]:
    """Take the lease; with `expect_*`, a compare-and-set on what the caller saw (the log's end read
    from `steps`, where appends put it)."""
    info, status, _, last, holder, expiry, error, waiting = run_row(raw, run_id)
    problem = moved(run_id, last, status, expect_seq, expect_status)
    if problem is not None:
        raise problem
    if holder is not None and holder != owner and expiry >= now:
        raise held(run_id, holder, expiry, now)
    raw.execute("UPDATE runs SET status = 'running', lease_owner = ?, lease_expiry = ?, lease_ttl = ?, "
                "updated_at = ?, last_seq = ? WHERE run_id = ?", (owner, now + ttl, ttl, now, last, run_id))
    return info, "running", now, last, owner, now + ttl, error, waiting


def claim_next(raw: sqlite3.Connection, now: float, queue: str, owner: str, ttl: float,
               graphs: list[str] | None) -> tuple[str, tuple[Any, ...]] | None:
    """Pick the best claimable run of `queue` and claim it, in the batch's one transaction
    (BEGIN IMMEDIATE: no other process writes between the pick and the claim).

    Queue and priority live in the run's `info` blob (schema 2 has no columns for
    them), so the few claimable rows, found by the status index, are decoded here.
    """
    rows = raw.execute("SELECT run_id, graph, status, lease_expiry, info FROM runs WHERE status IN "
                       "('queued', 'running')").fetchall()
    best: tuple[tuple[int, float], str] | None = None
    for run_id, graph, status, expiry, blob in rows:
        if not claimable(status, expiry, now) or (graphs is not None and graph not in graphs):
            continue
        try:
            info = decode_info(blob)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a damaged row is not claimable; `waypoint runs` lists it as damaged
        if info.queue == queue and (best is None or (-info.priority, info.created_at) < best[0]):
            best = ((-info.priority, info.created_at), run_id)
    if best is None:
        return None
    return best[1], claim(raw, now, best[1], owner, ttl, None, None)


def renew(raw: sqlite3.Connection, now: float, run_id: str, owner: str, ttl: float) -> None:
    """Extend the lease; the row's `last_seq` and `updated_at` catch up with the log here."""
    cur = raw.execute("UPDATE runs SET lease_expiry = ?, lease_ttl = ?, updated_at = ?, "
                      f"last_seq = {LAST_SEQ} WHERE run_id = ? AND lease_owner = ?",
                      (now + ttl, ttl, now, run_id, owner))
    if cur.rowcount == 0:
        raise lost(run_id, owner, run_row(raw, run_id)[4], "renew the lease")


def release(raw: sqlite3.Connection, now: float, run_id: str, owner: str, status: str,
            error: str | None, waiting: list[str]) -> None:
    cur = raw.execute("UPDATE runs SET status = ?, error = ?, waiting = ?, lease_owner = NULL, "
                      f"lease_expiry = 0, updated_at = ?, last_seq = {LAST_SEQ} WHERE run_id = ? "
                      "AND lease_owner = ?", (status, error, encode_waiting(waiting), now, run_id, owner))
    if cur.rowcount == 0:
        raise lost(run_id, owner, run_row(raw, run_id)[4], f"set status {status!r}")


def append(raw: sqlite3.Connection, now: float, job: Append) -> None:
    """Write one append if its fence holds: still our lease, and nobody appended since.

    The fence is read, not written: the holder from `runs`, the log's end from `steps`
    (one seek), so a commit of a step that fits a page writes one page. The lease is
    renewed on its own schedule (`renew`), not by every append.
    """
    num, holder, last = raw.execute(f"SELECT num, lease_owner, {LAST_SEQ} FROM runs WHERE run_id = ?",
                                    (job.run_id,)).fetchone() or (None, None, 0)
    if num is None:
        raise not_found(job.run_id)
    problem = refusal(job, holder, last)
    if problem is not None:
        raise problem
    if job.last is not None and job.last >= SEQ_LIMIT:
        raise StoreError(f"run {job.run_id!r}: seq {job.last} is beyond what a SQLite store keeps for "
                         f"one run ({SEQ_LIMIT - 1}); fork the run to continue it", run_id=job.run_id)
    rows = [(step_key(num, row[1]), *row) for row in job.step_rows]
    if len(rows) == 1:  # one step per append for a lone run: execute costs less than executemany
        raw.execute(_INSERT_STEP, rows[0])
    else:
        raw.executemany(_INSERT_STEP, rows)
    if job.snap_blob is not None:
        _put_snapshot(raw, num, job.run_id, job.snap_seq, job.snap_blob)


def _put_snapshot(raw: sqlite3.Connection, num: int, run_id: str, seq: int, blob: bytes) -> None:
    raw.execute("INSERT OR REPLACE INTO snapshots (key, run_id, seq, payload) VALUES (?, ?, ?, ?)",
                (step_key(num, seq), run_id, seq, blob))


def checkpoint(raw: sqlite3.Connection) -> None:
    """A passive checkpoint: copies what it can of the WAL into the database, never waits."""
    raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def run_row(raw: sqlite3.Connection, run_id: str) -> tuple[Any, ...]:
    row = raw.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise not_found(run_id)
    return tuple(row)


def select(raw: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return raw.execute(sql, params).fetchall()


def number(raw: sqlite3.Connection, run_id: str) -> int:
    """The run's `num`, which keys its steps and snapshots; RunNotFoundError if there is no such run."""
    row = raw.execute("SELECT num FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise not_found(run_id)
    return int(row[0])


def history(raw: sqlite3.Connection, run_id: str, after: int, upto: int) -> list[Any]:
    """(seq, payload) of the steps with after < seq <= upto, in order."""
    num = number(raw, run_id)
    return raw.execute("SELECT seq, payload FROM steps WHERE key > ? AND key <= ? ORDER BY key",
                       (_bound(num, after), _bound(num, upto))).fetchall()


def snapshot_at(raw: sqlite3.Connection, run_id: str, seq: int) -> Any:
    """(seq, payload) of the run's last snapshot at or before `seq`, or None."""
    num = number(raw, run_id)
    return raw.execute("SELECT seq, payload FROM snapshots WHERE key >= ? AND key <= ? ORDER BY key "
                       "DESC LIMIT 1", (step_key(num, 0), _bound(num, seq))).fetchone()


def load(raw: sqlite3.Connection, run_id: str) -> tuple[Any, list[Any]]:
    snap = snapshot_at(raw, run_id, SEQ_LIMIT)
    return snap, history(raw, run_id, snap[0] if snap else 0, SEQ_LIMIT)


def _bound(num: int, seq: int) -> int:
    """The key of `seq` in run `num`, with seq clamped to the run's key range."""
    return step_key(num, min(max(seq, -1), SEQ_LIMIT - 1))
