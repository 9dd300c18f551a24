"""PostgresStore: runs in PostgreSQL (psycopg 3, a connection pool), group-committed.

    store = PostgresStore("postgresql://waypoint@db.internal/waypoint")
    store = PostgresStore(url, max_size=20, timeout=5.0, keepalives_idle=15)
    async with store:
        await store.append(run_id, owner, steps)   # returns once committed

Install with `pip install "waypoint-workflows[postgres]"`. Every write (append,
create_run, claim, renew, release) joins a queue drained by one writer task,
which commits everything queued, from any run, in ONE transaction on one pooled
connection, sent as one pipeline (one round trip for the batch). Each write is
one statement that locks its run's row and writes only if its fence holds, so
a refused append fails alone while the rest of its batch commits; a write the
database itself refuses (a stray row under the primary key) makes the batch run
again with a savepoint per write. Leases expire on the database's clock
(`now()`), never a worker's. An append is fenced by the owner, the lease epoch
this store's claim got (when it claimed) and the previous seq, with the primary
key (run_id, seq) as the backstop.

No server-side prepared statements (`prepare_threshold=None`), so the store
works behind PgBouncer in transaction mode. The schema and every query are in
`postgres.sql`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # the extra is optional: say how to get it
    raise ImportError(f"PostgresStore needs psycopg 3 and psycopg-pool ({exc}); install them with "
                      "pip install 'waypoint-workflows[postgres]' (from a clone: "
                      "pip install -e '.[postgres]')") from exc

from waypoint.checkpoints import _postgres_tx as tx
from waypoint.checkpoints._group_commit import GroupCommit, Outcome
from waypoint.checkpoints._rows import encode_info, encode_waiting, listed, run_from_row
from waypoint.checkpoints.fence import first_snapshot, imported, prepare
from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot, Step, decode_snapshot, decode_step
from waypoint.checkpoints.signals import PgSignals
from waypoint.errors import StoreError

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

SCHEMA_VERSION = tx.SCHEMA_VERSION
_LAST = 2**63 - 1


class _ConnectArgs(TypedDict):
    """What every connection, the probe's and the pool's, is opened with (psycopg/libpq names)."""

    autocommit: bool
    prepare_threshold: int | None  # None: PgBouncer-safe
    connect_timeout: int
    keepalives: int
    keepalives_idle: int
    keepalives_interval: int
    keepalives_count: int
    application_name: str


class PostgresStore:
    """The Store protocol on a PostgreSQL database, shared by any number of processes."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0,
                 connect_timeout: int = 5, max_idle: float = 600.0, keepalives_idle: int = 30,
                 keepalives_interval: int = 10, keepalives_count: int = 3, prepare: bool = False) -> None:
        """`timeout`: how long a call waits for a pooled connection (then StoreError);
        `connect_timeout` and `keepalives_*` are libpq's: a dead server or a silent network
        is noticed in seconds, not at the TCP default of two hours. `prepare=True` lets
        psycopg prepare the statements run often (about 2x the appends/s, as the server
        plans each once): only on a direct connection, or a PgBouncer that keeps prepared
        statements (1.21+, max_prepared_statements); the default prepares nothing."""
        self.url, self.where = url, safe_url(url)
        self.min_size, self.max_size, self.timeout, self.max_idle = min_size, max_size, timeout, max_idle
        self._connect: _ConnectArgs = {"autocommit": True,
                         "prepare_threshold": 5 if prepare else None,
                         "connect_timeout": connect_timeout, "keepalives": 1,
                         "keepalives_idle": keepalives_idle, "keepalives_interval": keepalives_interval,
                         "keepalives_count": keepalives_count, "application_name": "waypoint"}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[None] | None = None
        self._pool: AsyncConnectionPool | None = None
        self._writes: GroupCommit[tx.Write] = GroupCommit(self._transaction)
        self._epochs: dict[tuple[str, str], int] = {}  # (run, owner) -> the epoch our claim got
        self.signals = PgSignals(url, self.where)  # LISTEN/NOTIFY wake-ups, advisory locks

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Fill the pool, create or migrate the schema. Idempotent; every method calls it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (asyncio.run called again)
            self._opening, self._pool, self._loop = None, None, loop
            self._writes.forget()
        if self._opening is None:
            self._opening = loop.create_task(self._start())
        opening = self._opening
        try:
            await asyncio.shield(opening)  # concurrent first calls share one pool
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None  # it failed: let the next call try again
            raise

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the pool. Idempotent."""
        await self.signals.close()  # its LISTEN connection, opened by a wait even before open()
        if self._opening is None or self._loop is not asyncio.get_running_loop():
            return None
        try:
            await asyncio.shield(self._opening)
        except Exception:
            return None
        await self._writes.drain()
        pool, self._pool, self._opening = self._pool, None, None
        self._writes.forget()
        if pool is not None:  # None: a close racing this one closed it
            await pool.close()

    async def create_run(self, info: RunInfo, *, owner: str | None = None, ttl: float = 0.0,
                         snapshot: Snapshot | None = None) -> None:
        snap = None if snapshot is None else (snapshot.seq, first_snapshot(info, snapshot))
        encoded = (encode_waiting(info.waiting), encode_info(info))
        epoch = await self._write(tx.create(info, owner, ttl, snap, encoded))
        if owner is not None:
            self._epochs[info.run_id, owner] = epoch

    async def import_run(self, info: RunInfo, steps: list[Step], snapshots: list[Snapshot]) -> None:
        await self._write(tx.import_run(imported(info, steps, snapshots)))

    async def get_run(self, run_id: str) -> RunInfo:
        return run_from_row(run_id, await self._read(run_id, tx.run_row, run_id))

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        rows = await self._read(None, _fetch, "list_runs", {"status": status, "graph": graph, "limit": limit})
        return [listed(*row) for row in rows]

    async def claim(self, run_id: str, owner: str, ttl: float, *, expect_seq: int | None = None,
                    expect_status: RunStatus | None = None) -> RunInfo:
        info: RunInfo
        info, epoch = await self._write(tx.claim(run_id, owner, ttl, expect_seq, expect_status))
        self._epochs[run_id, owner] = epoch
        return info

    async def claim_next(self, queue: str, owner: str, ttl: float, *,
                         graphs: list[str] | None = None) -> RunInfo | None:
        claimed: tuple[RunInfo, int] | None = await self._write(tx.claim_next(queue, owner, ttl, graphs))
        if claimed is None:
            return None
        info, self._epochs[info.run_id, owner] = claimed
        return info

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        await self._write(tx.renew(run_id, owner, ttl))

    async def release(self, run_id: str, owner: str, status: RunStatus, *, error: str | None = None,
                      waiting: list[str] | None = None) -> None:
        await self._write(tx.release(run_id, owner, status, error, encode_waiting(list(waiting or []))))
        self._epochs.pop((run_id, owner), None)

    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        job = prepare(run_id, owner, steps, snapshot)
        await self._write(tx.append(job, self._epochs.get((run_id, owner))))

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        snapshot = await self.snapshot_at(run_id, _LAST)
        return snapshot, await self.history(run_id, after=snapshot.seq if snapshot else 0)

    async def history(self, run_id: str, *, after: int = 0, upto: int | None = None) -> list[Step]:
        rows = await self._read(run_id, tx.rows_of_run, run_id, "history",
                                {"after": after, "upto": _LAST if upto is None else upto})
        return [decode_step(payload, run_id=run_id, seq=seq) for seq, payload in rows]

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        rows = await self._read(run_id, tx.rows_of_run, run_id, "snapshot_at", {"seq": seq})
        return decode_snapshot(rows[0][1], run_id=run_id, seq=rows[0][0]) if rows else None

    async def cache_get(self, key: str) -> bytes | None:
        rows = await self._read(None, _fetch, "cache_get", {"key": key})
        return bytes(rows[0][0]) if rows else None

    async def cache_put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        # One autocommit statement, outside the group commit: no run's fence is involved.
        await self._read(None, _execute, "cache_put", {"key": key, "value": value, "ttl": ttl})

    async def claim_slot(self, name: str, size: int, holder: str, ttl: float) -> int | None:
        rows = await self._read(None, _fetch, "claim_slot",
                                {"name": name, "size": size, "holder": holder, "ttl": ttl})
        return int(rows[0][0]) if rows else None

    async def renew_slot(self, name: str, slot: int, holder: str, ttl: float) -> bool:
        rows = await self._read(None, _fetch, "renew_slot",
                                {"name": name, "slot": slot, "holder": holder, "ttl": ttl})
        return bool(rows)

    async def release_slot(self, name: str, slot: int, holder: str) -> None:
        await self._read(None, _execute, "release_slot", {"name": name, "slot": slot, "holder": holder})

    # -- plumbing ------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            await self._probe(migrate=True)
            pool = await self._new_pool()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._unreachable(exc, "nothing was read or written") from None
        self._pool = pool
        self._suspect, self._recovering = False, asyncio.Lock()
        self._writes.start()

    async def _probe(self, *, migrate: bool = False) -> None:
        # One direct connection: a server that is down says why (refused, bad password) at
        # once, where a pool would retry until its timeout and say only that it timed out.
        async with await psycopg.AsyncConnection.connect(self.url, **self._connect) as conn:
            if migrate:
                await tx.migrate(conn, self.where)

    async def _new_pool(self) -> AsyncConnectionPool:
        pool = AsyncConnectionPool(self.url, min_size=self.min_size, max_size=self.max_size,
                                   timeout=self.timeout, max_idle=self.max_idle, kwargs=dict(self._connect),
                                   open=False, name=f"waypoint {self.where}")
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException:
            await pool.close()
            raise
        return pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; after a failure to reach the server, a fresh pool once it is back."""
        if self._suspect:
            await self._recover()
        try:
            async with self._open_pool().connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout):
            self._suspect = True
            raise

    async def _recover(self) -> None:
        # The pool retries a lost server with a growing backoff (seconds); a probe instead
        # fails fast with the real reason while it is down, and a new pool works at once
        # when it is back.
        async with self._recovering:
            if not self._suspect:
                return
            await self._probe()
            old, self._pool, self._suspect = self._pool, await self._new_pool(), False
            if old is not None:  # None: closed meanwhile
                await old.close(timeout=1.0)

    async def _ready(self) -> AsyncConnectionPool:
        if self._pool is None or self._loop is not asyncio.get_running_loop():
            await self.open()
        if self._writes.closing:
            raise StoreError(f"PostgreSQL store {self.where} is closing; open it again to use it")
        return self._open_pool()

    def _open_pool(self) -> AsyncConnectionPool:
        if self._pool is None:  # close() ran while this call waited for open()
            raise StoreError(f"PostgreSQL store {self.where} was closed while a call was under way; "
                             "open it again (or call again: every method opens it) to use it")
        return self._pool

    async def _read(self, run_id: str | None, fn: Any, *args: Any) -> Any:
        await self._ready()
        try:
            async with self._connection() as conn:
                return await fn(conn, *args)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._unreachable(exc, "nothing was read", run_id) from None

    async def _write(self, write: tx.Write) -> Any:
        await self._ready()
        return await self._writes.submit(write)

    async def _transaction(self, writes: list[tx.Write]) -> list[Outcome]:
        """One batch (`GroupCommit` calls it): every write in ONE transaction; if the
        transaction fails, every write of it fails."""
        sent = False
        try:
            async with self._connection() as conn:
                sent = True
                return await tx.batch(conn, writes)
        except (psycopg.Error, PoolTimeout) as exc:
            # Sent in one pipeline with its COMMIT: a connection lost meanwhile leaves the
            # outcome unknown; any other failure rolled the whole batch back.
            lost = sent and isinstance(exc, psycopg.OperationalError)
            outcome = ("the connection was lost with the write sent, so it may or may not be "
                       "written: read the run again" if lost else "nothing was written")
            return [(False, self._unreachable(exc, outcome, w.run_id)) for w in writes]

    def _unreachable(self, exc: BaseException, outcome: str, subject: Any = None) -> StoreError:
        """A failure to talk to the server: where, what happened to the call, what to do."""
        run_id = getattr(subject, "run_id", subject)  # every call's first argument names its run
        about = f"run {run_id!r}: " if isinstance(run_id, str) else ""
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return StoreError(f"{about}PostgreSQL at {self.where} failed ({reason}); {outcome}. Check "
                          f"that the server is up and reachable (pg_isready -d '{self.where}'), "
                          "then retry; a run that was executing resumes from what was committed",
                          run_id=run_id if isinstance(run_id, str) else None)


async def _fetch(conn: psycopg.AsyncConnection, name: str, params: dict[str, Any]) -> list[Any]:
    return await (await conn.execute(tx.SQL[name], params)).fetchall()


async def _execute(conn: psycopg.AsyncConnection, name: str, params: dict[str, Any]) -> None:
    await conn.execute(tx.SQL[name], params)


def safe_url(url: str) -> str:
    """The URL (or conninfo) without its password, for messages: postgresql://u@host/db."""
    if "://" not in url:
        parts = psycopg.conninfo.conninfo_to_dict(url)
        return " ".join(f"{k}={v}" for k, v in parts.items() if k != "password")
    split = urlsplit(url)
    host = split.netloc.rpartition("@")[2]
    user = f"{split.username}@" if split.username else ""
    query = urlencode([(k, v) for k, v in parse_qsl(split.query) if k != "password"])
    return urlunsplit(split._replace(netloc=f"{user}{host}", query=query))
