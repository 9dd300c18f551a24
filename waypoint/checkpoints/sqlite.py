"""SQLiteStore: runs in one SQLite file, durable per commit, group-committed.

    store = SQLiteStore("runs.db")                        # WAL, synchronous=FULL
    store = SQLiteStore("runs.db", synchronous="NORMAL")  # no fsync per commit
    async with store:
        await store.append(run_id, owner, steps)          # returns once durable

FULL survives power loss; NORMAL survives a process crash (SIGKILL loses
nothing) but not an OS crash or power cut, and drops the fsync per commit.

Every write (append, create_run, claim, renew, release) joins a queue drained
by one writer task, which commits everything queued, from any run, in ONE
`BEGIN IMMEDIATE` transaction run in ONE hop into the connection's own daemon
thread (`_sqlite_thread`). A lone append costs one hop and one fsync; a hundred
concurrent ones cost about the same. At NORMAL there is no fsync and the hop would cost more than the commit,
so the transaction runs on the loop's own thread through a second connection
(`_sqlite_direct`), and goes through the hop only when another process holds
the write lock. Each write is fenced on its own (a savepoint each), so a
refused append fails alone while the rest of its batch commits.

Several processes may share the file: leases live in the `runs` table, the
fence reads the holder there and the log's end in `steps` (an append writes
only its step, see `_sqlite_schema`), and the busy timeout queues their write
transactions.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from waypoint.checkpoints import _sqlite_cache as cache
from waypoint.checkpoints import _sqlite_slots as slots
from waypoint.checkpoints import _sqlite_tx as tx
from waypoint.checkpoints._group_commit import GroupCommit, Outcome
from waypoint.checkpoints._rows import listed, run_from_row
from waypoint.checkpoints._sqlite_direct import DirectWriter
from waypoint.checkpoints._sqlite_file import FileWatch
from waypoint.checkpoints._sqlite_schema import SCHEMA_VERSION, setup
from waypoint.checkpoints._sqlite_thread import ConnectionThread
from waypoint.checkpoints.fence import first_snapshot, imported, prepare
from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot, Step, decode_snapshot, decode_step
from waypoint.checkpoints.signals import LocalSignals
from waypoint.errors import StoreError

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

_PRAGMA_SYNCHRONOUS = {"FULL": "PRAGMA synchronous=FULL", "NORMAL": "PRAGMA synchronous=NORMAL"}


class SQLiteStore:
    """The Store protocol on one SQLite file (a `file:...?mode=ro` URI opens it read-only)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
                 busy_timeout: float = 5.0) -> None:
        if synchronous not in _PRAGMA_SYNCHRONOUS:
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous, self.busy_timeout = synchronous, busy_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Task[None] | None = None
        self._conn: ConnectionThread | None = None
        self._writes: GroupCommit[tx.Job] = GroupCommit(self._commit)
        self._file: FileWatch | None = None  # is the file we write still the one on disk?
        self._direct: DirectWriter | None = None  # at NORMAL: commits on the loop's own thread
        self._checkpoint: asyncio.Task[Any] | None = None
        # Wake-ups for this process's store objects on the file; a lock flocked beside it.
        self.signals = LocalSignals(f"sqlite:{self.path.resolve()}", beside=self.path)

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, set the PRAGMAs, create or migrate the schema. Idempotent; every method calls it."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (asyncio.run called again)
            self._forget()
            self._loop = loop
        if self._opening is None:
            self._opening = loop.create_task(self._connect())
        opening = self._opening
        try:
            await asyncio.shield(opening)  # concurrent first calls share one connection attempt
        except BaseException:
            if opening.done() and self._opening is opening:
                self._opening = None  # it failed: let the next call try again
            raise

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the file. Idempotent."""
        if self._opening is None or self._loop is not asyncio.get_running_loop():
            return self._forget()
        try:
            await asyncio.shield(self._opening)
        except Exception:
            return None
        await self._writes.drain()
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        self._release_files()  # before the last connection, which checkpoints and removes the WAL
        conn, self._conn, self._opening = self._conn, None, None
        self._writes.forget()
        if conn is not None:  # None: a close() racing this one got there first
            await conn.close()

    async def create_run(self, info: RunInfo, *, owner: str | None = None, ttl: float = 0.0,
                         snapshot: Snapshot | None = None) -> None:
        snap = None if snapshot is None else (snapshot.seq, first_snapshot(info, snapshot))
        await self._write(tx.create, info, owner, ttl, snap)

    async def import_run(self, info: RunInfo, steps: list[Step], snapshots: list[Snapshot]) -> None:
        await self._write(tx.import_run, imported(info, steps, snapshots))

    async def get_run(self, run_id: str) -> RunInfo:
        return run_from_row(run_id, await self._read(tx.run_row, run_id))

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        filters = [(sql, value) for sql, value in (("status = ?", status), ("graph = ?", graph))
                   if value is not None]
        where = f"WHERE {' AND '.join(sql for sql, _ in filters)} " if filters else ""
        rows = await self._read(tx.select, f"SELECT run_id, graph, created_at, {tx.RUN_COLUMNS} FROM "
                                f"runs {where}ORDER BY created_at DESC, rowid DESC LIMIT ?",  # constants
                                (*(value for _, value in filters), limit))
        return [listed(*row) for row in rows]

    async def claim(self, run_id: str, owner: str, ttl: float, *, expect_seq: int | None = None,
                    expect_status: RunStatus | None = None) -> RunInfo:
        row = await self._write(tx.claim, run_id, owner, ttl, expect_seq, expect_status)
        return run_from_row(run_id, row)

    async def claim_next(self, queue: str, owner: str, ttl: float, *,
                         graphs: list[str] | None = None) -> RunInfo | None:
        claimed = await self._write(tx.claim_next, queue, owner, ttl, graphs)
        return None if claimed is None else run_from_row(*claimed)

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        await self._write(tx.renew, run_id, owner, ttl)

    async def release(self, run_id: str, owner: str, status: RunStatus, *, error: str | None = None,
                      waiting: list[str] | None = None) -> None:
        await self._write(tx.release, run_id, owner, status, error, list(waiting or []))

    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        await self._write(tx.append, prepare(run_id, owner, steps, snapshot))

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        snap, rows = await self._read(tx.load, run_id)
        snapshot = None if snap is None else decode_snapshot(snap[1], run_id=run_id, seq=snap[0])
        return snapshot, [decode_step(payload, run_id=run_id, seq=seq) for seq, payload in rows]

    async def history(self, run_id: str, *, after: int = 0, upto: int | None = None) -> list[Step]:
        rows = await self._read(tx.history, run_id, after, tx.SEQ_LIMIT if upto is None else upto)
        return [decode_step(payload, run_id=run_id, seq=seq) for seq, payload in rows]

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        row = await self._read(tx.snapshot_at, run_id, seq)
        return decode_snapshot(row[1], run_id=run_id, seq=row[0]) if row else None

    async def cache_get(self, key: str) -> bytes | None:
        value: bytes | None = await self._read(cache.cache_get, key, time.time())
        return value

    async def cache_put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self._write(cache.cache_put, key, value, ttl)

    async def claim_slot(self, name: str, size: int, holder: str, ttl: float) -> int | None:
        slot: int | None = await self._write(slots.claim_slot, name, size, holder, ttl)
        return slot

    async def renew_slot(self, name: str, slot: int, holder: str, ttl: float) -> bool:
        renewed: bool = await self._write(slots.renew_slot, name, slot, holder, ttl)
        return renewed

    async def release_slot(self, name: str, slot: int, holder: str) -> None:
        await self._write(slots.release_slot, name, slot, holder)

    # -- plumbing ------------------------------------------------------------------------

    async def _connect(self) -> None:
        target = str(self.path)
        uri = target.startswith("file:")
        if not uri and not self.path.parent.is_dir():
            raise StoreError(f"cannot open {self.path}: its folder {self.path.parent} does not "
                             "exist; create it first or choose another path")
        try:
            conn = await ConnectionThread.open(target, uri=uri, timeout=self.busy_timeout)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite file {self.path}: {exc}") from None
        try:
            await self._hop(conn, setup, _PRAGMA_SYNCHRONOUS[self.synchronous], target,
                            self.busy_timeout)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._file = None if uri else FileWatch.of(self.path)
        if self.synchronous == "NORMAL" and not uri:
            self._direct = DirectWriter.open(target)
        self._writes.start()

    def _forget(self) -> None:
        """Drop what belongs to another event loop; its thread is told to close the file."""
        if self._conn is not None:
            self._conn.stop()
        self._conn, self._opening = None, None
        self._writes.forget()
        self._release_files()

    def _release_files(self) -> None:
        """Close what this store holds besides its connection thread."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        self._checkpoint = None

    async def _ready(self) -> ConnectionThread:
        if self._conn is None or self._loop is not asyncio.get_running_loop():
            await self.open()
        if self._writes.closing:
            raise StoreError(f"SQLite store {self.path} is closing; open it again to use it")
        return self._connection()

    def _connection(self) -> ConnectionThread:
        if self._conn is None:  # closed under this call by another task
            raise StoreError(f"SQLite store {self.path} was closed; open it again to use it")
        return self._conn

    async def _read(self, fn: Any, *args: Any) -> Any:
        return await self._hop(await self._ready(), fn, *args)

    async def _write(self, fn: Any, *args: Any) -> Any:
        await self._ready()
        return await self._writes.submit((fn, args))

    async def _hop(self, conn: ConnectionThread, fn: Any, *args: Any) -> Any:
        # `fn` runs a whole transaction on the raw sqlite3 connection in its thread: one hop.
        try:
            return await conn.run(fn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from None

    async def _commit(self, jobs: list[tx.Job]) -> list[Outcome]:
        """One batch (`GroupCommit` calls it): a transaction, unless the file is gone."""
        gone, outcome = self._gone(), "nothing written"
        if gone is None:
            results = await self._transaction(jobs)
            gone, outcome = self._gone(), "this write went into the file that is no longer there"
        if gone is not None:  # a commit there would be lost when the store closes
            results = [(False, self._lost(gone, outcome, args[0])) for _, args in jobs]
        return results

    async def _transaction(self, jobs: list[tx.Job]) -> list[Outcome]:
        direct = self._direct
        try:
            results = direct.commit(jobs) if direct is not None else None
            if results is None:  # FULL, or another process holds the lock: in the connection's thread
                hopped: list[Outcome] = await self._hop(self._connection(), tx.write_batch, jobs)
                return hopped
        except Exception as exc:  # rolled back as a whole: every write of the batch failed
            return [(False, StoreError(f"SQLite store {self.path}: nothing written, the transaction "
                                       f"failed ({exc}); what was committed before is intact"))
                    for _ in jobs]
        if direct is not None and direct.checkpoint_due() and self._checkpoint is None:
            self._checkpoint = asyncio.get_running_loop().create_task(self._passive_checkpoint())
        return results

    async def _passive_checkpoint(self) -> None:
        """Copy the WAL into the database in the connection's thread, off the loop (NORMAL only)."""
        try:
            await self._hop(self._connection(), tx.checkpoint)
        except StoreError:
            pass  # SQLite checkpoints again at the next chance, or when the file closes
        finally:
            self._checkpoint = None

    def _gone(self) -> str | None:
        """What became of the database file if it is no longer the one on disk (one stat)."""
        return self._file.problem() if self._file is not None else None

    def _lost(self, gone: str, outcome: str, subject: Any) -> StoreError:
        run_id = getattr(subject, "run_id", subject)  # every job's first argument names its run
        return StoreError(
            f"run {run_id!r}: SQLite database {self.path} was {gone} while this store had it "
            f"open; {outcome}. Put the database back where it was (or restore it from a backup) "
            "and resume the run from what that file holds", run_id=run_id)
