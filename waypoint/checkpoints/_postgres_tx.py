"""What PostgresStore runs on a connection: schema, migrations, the writes of a batch.

    await migrate(conn, where)                      # once per open; writes nothing if current
    results = await batch(conn, [append(job, epoch), claim(...)])   # [(ok, value or error)]

The SQL lives in `postgres.sql` (package data), one named block per query, so
the schema and every query can be read as SQL. All values are bound
parameters; no identifier ever comes from input. Refusals use the same words
as the other stores (fence.py's `held`, `lost`, `moved`, `refusal`...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any, NamedTuple

import psycopg

from waypoint.checkpoints._rows import encode_info, encode_waiting, run_from_row
from waypoint.checkpoints.fence import Append, Import, held, lost, moved, not_found, refusal
from waypoint.checkpoints.records import RunInfo
from waypoint.errors import LeaseError, RunStateError, SchemaVersionError, StoreError, WaypointError

Conn = psycopg.AsyncConnection


def _load() -> dict[str, str]:
    """The named blocks of postgres.sql: {"claim": "UPDATE ...", "migration_1": "CREATE ..."}."""
    text = resources.files("waypoint.checkpoints").joinpath("postgres.sql").read_text("utf-8")
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


SQL = _load()
MIGRATIONS = sorted(int(name.removeprefix("migration_")) for name in SQL if name.startswith("migration_"))
SCHEMA_VERSION = MIGRATIONS[-1]  # migration_n takes a database from schema version n - 1 to n
assert MIGRATIONS == list(range(1, SCHEMA_VERSION + 1)), "postgres.sql: migrations must be 1..n"


async def migrate(conn: Conn, where: str) -> None:
    """Create or migrate the schema; a current one is only read (so a read-only role opens it)."""
    if await _version(conn, where) == SCHEMA_VERSION:
        return
    async with conn.transaction():
        await conn.execute(SQL["schema_lock"])  # re-read under the lock: another may have migrated
        for version in range(await _version(conn, where) + 1, SCHEMA_VERSION + 1):
            await conn.execute(SQL[f"migration_{version}"])
            await conn.execute(SQL["set_schema_version"], {"version": version})


async def _version(conn: Conn, where: str) -> int:
    try:
        async with conn.transaction():  # a savepoint inside migrate(): the error leaves it usable
            version: int = await _value(conn, "schema_version") or 0  # max() of no rows is NULL
    except psycopg.errors.UndefinedTable:
        return 0
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{where} has waypoint schema version {version}, written by a newer "
                                 f"waypoint; this one reads up to version {SCHEMA_VERSION}. Upgrade "
                                 "waypoint to open it (databases are never downgraded)")
    return version


class Write(NamedTuple):
    """One write of a batch: a statement of postgres.sql, and what its row means."""

    run_id: str
    name: str
    params: dict[str, Any]
    settle: Callable[[tuple[Any, ...] | None], Any]  # the result, or raises the refusal


async def batch(conn: Conn, writes: list[Write]) -> list[tuple[bool, Any]]:
    """Every write in ONE transaction, sent in one pipeline: one round trip for the batch.

    A write the database refuses (a stray row under the primary key) aborts the
    pipeline; the batch is then run again one write at a time, each in a savepoint, so
    that write fails alone. A lost connection propagates: nothing here was committed,
    unless the server had processed the COMMIT (the caller says so).
    """
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            cursors = [await conn.execute(SQL[w.name], w.params) for w in writes]
            await conn.execute("COMMIT")
    except (psycopg.IntegrityError, psycopg.errors.PipelineAborted):
        await conn.execute("ROLLBACK")
        return await _one_by_one(conn, writes)
    return [_settled(w, await cur.fetchone()) for w, cur in zip(writes, cursors, strict=True)]


async def _one_by_one(conn: Conn, writes: list[Write]) -> list[tuple[bool, Any]]:
    async with conn.transaction():
        return [await _savepoint(conn, w) for w in writes]


async def _savepoint(conn: Conn, write: Write) -> tuple[bool, Any]:
    try:
        async with conn.transaction():  # a savepoint: released, or rolled back to on error
            row = await (await conn.execute(SQL[write.name], write.params)).fetchone()
    except psycopg.IntegrityError as exc:
        return False, StoreError(
            f"run {write.run_id!r}: write refused by the database ({exc}); the database holds rows "
            "waypoint did not write for this run, so inspect it or fork the run", run_id=write.run_id)
    return _settled(write, row)


def _settled(write: Write, row: tuple[Any, ...] | None) -> tuple[bool, Any]:
    try:
        return True, write.settle(row)
    except WaypointError as exc:
        return False, exc


def create(info: RunInfo, owner: str | None, ttl: float, snapshot: tuple[int, bytes] | None,
           encoded: tuple[bytes, bytes]) -> Write:
    """The run row, leased to `owner` if given, and its first snapshot; settles to the epoch."""
    def settle(row: tuple[Any, ...] | None) -> int:
        if row is None:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                                run_id=info.run_id)
        epoch: int = row[0]
        return epoch

    waiting, blob = encoded
    return Write(info.run_id, "create", {
        "run_id": info.run_id, "graph": info.graph, "created_at": info.created_at,
        "status": "running" if owner is not None else info.status, "updated_at": info.updated_at,
        "last_seq": info.last_seq, "owner": owner if owner is not None else info.lease_owner,
        "leased": owner is not None, "ttl": float(ttl), "expiry": info.lease_expiry,
        "error": info.error, "waiting": waiting, "info": blob, "queue": info.queue,
        "priority": info.priority,
        "snap_seq": snapshot[0] if snapshot else 0, "snap": snapshot[1] if snapshot else None}, settle)


def import_run(job: Import) -> Write:
    """A whole run copied from another store, leased to nobody, in one statement."""
    def settle(row: tuple[Any, ...] | None) -> None:
        if row is None:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                                run_id=info.run_id)

    info, rows = job.info, job.step_rows
    return Write(info.run_id, "import_run", {
        "run_id": info.run_id, "graph": info.graph, "status": info.status, "created_at": info.created_at,
        "updated_at": info.updated_at, "last_seq": info.last_seq, "error": info.error,
        "waiting": encode_waiting(info.waiting), "info": encode_info(info), "queue": info.queue,
        "priority": info.priority, "seqs": [r[1] for r in rows], "kinds": [r[2] for r in rows],
        "nodes": [r[3] for r in rows], "payloads": [r[4] for r in rows],
        "snap_seqs": [seq for seq, _ in job.snap_rows], "snaps": [blob for _, blob in job.snap_rows]},
        settle)


def claim(run_id: str, owner: str, ttl: float, expect_seq: int | None,
          expect_status: str | None) -> Write:
    """Take the lease (a compare-and-set with `expect_*`); settles to (RunInfo, epoch)."""
    def settle(row: tuple[Any, ...] | None) -> tuple[RunInfo, int]:
        if row is None:
            raise not_found(run_id)
        status, last_seq, holder, expiry, now, *won = row
        if won[0] is None:
            raise (moved(run_id, last_seq, status, expect_seq, expect_status)
                   or held(run_id, holder, expiry, now))
        return run_from_row(run_id, tuple(won[:8])), won[8]

    return Write(run_id, "claim", {"run_id": run_id, "owner": owner, "ttl": float(ttl),
                                   "expect_seq": expect_seq, "expect_status": expect_status}, settle)


def claim_next(queue: str, owner: str, ttl: float, graphs: list[str] | None) -> Write:
    """Pick and claim the next run of `queue`; settles to (RunInfo, epoch), or None if none is ready."""
    def settle(row: tuple[Any, ...] | None) -> tuple[RunInfo, int] | None:
        if row is None:
            return None
        return run_from_row(row[0], tuple(row[1:9])), row[9]

    return Write(f"(next of queue {queue!r})", "claim_next", {
        "queue": queue, "owner": owner, "ttl": float(ttl), "graphs": graphs}, settle)


def renew(run_id: str, owner: str, ttl: float) -> Write:
    params = {"run_id": run_id, "owner": owner, "ttl": float(ttl)}
    return Write(run_id, "renew", params, _fenced(run_id, owner, "renew the lease"))


def release(run_id: str, owner: str, status: str, error: str | None, waiting: bytes) -> Write:
    params = {"run_id": run_id, "owner": owner, "status": status, "error": error, "waiting": waiting}
    return Write(run_id, "release", params, _fenced(run_id, owner, f"set status {status!r}"))


def _fenced(run_id: str, owner: str, what: str) -> Callable[[tuple[Any, ...] | None], None]:
    def settle(row: tuple[Any, ...] | None) -> None:
        if row is None:
            raise not_found(run_id)
        if not row[0]:
            raise lost(run_id, owner, row[1], what)

    return settle


def append(job: Append, epoch: int | None) -> Write:
    """One append, written if its fence holds (our lease, our epoch, nobody appended since)."""
    def settle(row: tuple[Any, ...] | None) -> None:
        if row is None:
            raise not_found(job.run_id)
        written, holder, last_seq, now_epoch = row
        if not written:
            raise refusal(job, holder, last_seq) or LeaseError(
                f"run {job.run_id!r}: {job.owner} lost its lease (epoch {epoch}) and took it again "
                f"elsewhere (epoch {now_epoch}); stop executing this run here, the newer claim "
                "goes on", run_id=job.run_id)

    rows = job.step_rows
    return Write(job.run_id, "append", {
        "run_id": job.run_id, "owner": job.owner, "epoch": epoch, "first": job.first,
        "last": job.last, "snap_seq": job.snap_seq, "snap": job.snap_blob,
        "seqs": [r[1] for r in rows], "kinds": [r[2] for r in rows], "nodes": [r[3] for r in rows],
        "payloads": [r[4] for r in rows]}, settle)


async def _row(conn: Conn, name: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    return await (await conn.execute(SQL[name], params)).fetchone()


async def _value(conn: Conn, name: str, params: dict[str, Any] | None = None) -> Any:
    """The one column of the one row a query always returns (an aggregate, EXISTS)."""
    row = await (await conn.execute(SQL[name], params)).fetchone()
    assert row is not None, f"postgres.sql {name!r} returns one row whatever the data"
    return row[0]


async def run_row(conn: Conn, run_id: str) -> tuple[Any, ...]:
    """The run's columns, as `_rows.run_from_row` reads them into a RunInfo."""
    row = await _row(conn, "run", {"run_id": run_id})
    if row is None:
        raise not_found(run_id)
    return row


async def rows_of_run(conn: Conn, run_id: str, name: str, params: dict[str, Any]) -> list[Any]:
    """Rows of query `name` for an existing run; an unknown run raises RunNotFoundError."""
    if not await _value(conn, "exists", {"run_id": run_id}):
        raise not_found(run_id)
    return await (await conn.execute(SQL[name], {"run_id": run_id, **params})).fetchall()
