"""What PostgresStore runs on a connection: schema, migrations, the writes of a batch.

    await migrate(conn, url)                        # once per open; writes nothing if current
    ok, value = await job(conn, append, prepared)   # one write, in its own savepoint

The SQL lives in `postgres.sql` (package data), one named block per query, so
the schema and every query can be read as SQL. All values are bound
parameters; no identifier ever comes from input. Refusals use the same words
as the other stores (memory.py's `_held`, `_lost`, `_moved`, `_refusal`...).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg

from waypoint.checkpoints.memory import _Append, _held, _lost, _moved, _not_found, _refusal
from waypoint.checkpoints.records import RunInfo
from waypoint.checkpoints.sqlite import _run
from waypoint.errors import LeaseError, RunStateError, SchemaVersionError, StoreError, WaypointError

Conn = psycopg.AsyncConnection


def _load() -> dict[str, str]:
    """The named blocks of postgres.sql: {"claim": "UPDATE ...", "migration_1": "CREATE ..."}."""
    text = resources.files("waypoint.checkpoints").joinpath("postgres.sql").read_text("utf-8")
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


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
            version = (await (await conn.execute(SQL["schema_version"])).fetchone())[0] or 0
    except psycopg.errors.UndefinedTable:
        return 0
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{where} has waypoint schema version {version}, written by a newer "
                                 f"waypoint; this one reads up to version {SCHEMA_VERSION}. Upgrade "
                                 "waypoint to open it (databases are never downgraded)")
    return version


async def job(conn: Conn, fn: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
    """Run one write of a batch in its own savepoint: a refused write fails alone.

    Any other error (server gone, disk full) propagates and the caller's transaction
    rolls back as a whole.
    """
    await conn.execute("SAVEPOINT job")
    try:
        result = (True, await fn(conn, *args))
    except (WaypointError, psycopg.IntegrityError) as exc:
        await conn.execute("ROLLBACK TO SAVEPOINT job")
        run_id = getattr(args[0], "run_id", args[0])  # every job's first argument names its run
        result = (False, exc if isinstance(exc, WaypointError) else StoreError(
            f"run {run_id!r}: write refused by the database ({exc}); the database holds rows "
            "waypoint did not write for this run, so inspect it or fork the run", run_id=run_id))
    await conn.execute("RELEASE SAVEPOINT job")
    return result


async def _row(conn: Conn, name: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    return await (await conn.execute(SQL[name], params)).fetchone()


async def create(conn: Conn, info: RunInfo, owner: str | None, ttl: float,
                 snapshot: tuple[int, bytes] | None, encoded: tuple[bytes, bytes]) -> int:
    """The run row, leased to `owner` if given, and its first snapshot; returns the lease epoch."""
    waiting, blob = encoded
    row = await _row(conn, "create", {
        "run_id": info.run_id, "graph": info.graph, "created_at": info.created_at,
        "status": "running" if owner is not None else info.status, "updated_at": info.updated_at,
        "last_seq": info.last_seq, "owner": owner if owner is not None else info.lease_owner,
        "leased": owner is not None, "ttl": float(ttl), "expiry": info.lease_expiry,
        "error": info.error, "waiting": waiting, "info": blob})
    if row is None:
        raise RunStateError(f"run {info.run_id!r} already exists; pick another run id", run_id=info.run_id)
    if snapshot is not None:
        await conn.execute(SQL["first_snapshot"], {"run_id": info.run_id, "seq": snapshot[0],
                                                   "payload": snapshot[1]})
    return row[0]


async def claim(conn: Conn, run_id: str, owner: str, ttl: float, expect_seq: int | None,
                expect_status: str | None) -> tuple[RunInfo, int]:
    """Take the lease (a compare-and-set with `expect_*`); the run as claimed and its new epoch."""
    row = await _row(conn, "claim", {"run_id": run_id, "owner": owner, "ttl": float(ttl),
                                     "expect_seq": expect_seq, "expect_status": expect_status})
    if row is None:
        now = await run_row(conn, run_id)
        raise (_moved(run_id, now[3], now[1], expect_seq, expect_status)
               or _held(run_id, now[4], now[5], now[9]))
    return _run(run_id, row[:8]), row[8]


async def renew(conn: Conn, run_id: str, owner: str, ttl: float) -> None:
    if await _row(conn, "renew", {"run_id": run_id, "owner": owner, "ttl": float(ttl)}) is None:
        raise _lost(run_id, owner, (await run_row(conn, run_id))[4], "renew the lease")


async def release(conn: Conn, run_id: str, owner: str, status: str, error: str | None,
                  waiting: bytes) -> None:
    params = {"run_id": run_id, "owner": owner, "status": status, "error": error, "waiting": waiting}
    if await _row(conn, "release", params) is None:
        raise _lost(run_id, owner, (await run_row(conn, run_id))[4], f"set status {status!r}")


async def append(conn: Conn, job: _Append, epoch: int | None) -> None:
    """Write one append if its fence holds (our lease, our epoch, nobody appended since)."""
    rows = job.step_rows
    written, found, holder, last_seq, now_epoch = await _row(conn, "append", {
        "run_id": job.run_id, "owner": job.owner, "epoch": epoch, "first": job.first,
        "last": job.last, "snap_seq": job.snap_seq, "snap": job.snap_blob,
        "seqs": [r[1] for r in rows], "kinds": [r[2] for r in rows], "nodes": [r[3] for r in rows],
        "payloads": [r[4] for r in rows]})
    if written:
        return
    if not found:
        raise _not_found(job.run_id)
    raise _refusal(job, holder, last_seq) or LeaseError(
        f"run {job.run_id!r}: {job.owner} lost its lease (epoch {epoch}) and took it again "
        f"elsewhere (epoch {now_epoch}); stop executing this run here, the newer claim goes on",
        run_id=job.run_id)


async def run_row(conn: Conn, run_id: str) -> tuple[Any, ...]:
    """The run's columns (as `_run` reads them), then its epoch and the database's clock."""
    row = await _row(conn, "run", {"run_id": run_id})
    if row is None:
        raise _not_found(run_id)
    return row


async def rows_of_run(conn: Conn, run_id: str, name: str, params: dict[str, Any]) -> list[Any]:
    """Rows of query `name` for an existing run; an unknown run raises RunNotFoundError."""
    if not (await _row(conn, "exists", {"run_id": run_id}))[0]:
        raise _not_found(run_id)
    return await (await conn.execute(SQL[name], {"run_id": run_id, **params})).fetchall()
