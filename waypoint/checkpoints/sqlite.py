"""SQLiteStore: runs in one SQLite file, durable per node, group-committed.

    store = SQLiteStore("runs.db")                      # WAL, synchronous=FULL
    store = SQLiteStore("runs.db", synchronous="NORMAL")  # no fsync per commit

FULL survives power loss; NORMAL keeps process-crash durability (a SIGKILL
loses nothing) and drops the fsync per commit. Every write transaction is
`BEGIN IMMEDIATE`; concurrent appends (of one run or many) are committed in one
transaction by a single writer task, one thread hop per batch.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import msgspec

from waypoint import _faults
from waypoint.checkpoints import _schema
from waypoint.checkpoints.records import (
    RunInfo, RunStatus, Snapshot, Step, decode_snapshot, decode_step, encode,
)
from waypoint.errors import LeaseError, RunNotFoundError, RunStateError, StoreError

_run_encoder = msgspec.msgpack.Encoder()
_run_decoder = msgspec.msgpack.Decoder(RunInfo)


class SQLiteStore:
    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
                 busy_timeout: float = 5.0) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._conn is not None and self._loop is loop:
            return
        if self._conn is not None:  # opened by an event loop that is gone (asyncio.run twice)
            self._conn.stop()
            self._conn = None
        self._loop = loop
        if not self.path.parent.exists():
            raise StoreError(f"cannot open {self.path}: folder {self.path.parent} does not exist; "
                             "create it or choose another path.")
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None,
                                           timeout=self.busy_timeout)
            await conn._execute(self._setup, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from None
        self._conn = conn
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    def _setup(self, conn: aiosqlite.Connection) -> None:
        raw = conn._conn
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(f"PRAGMA synchronous={self.synchronous}")  # a checked literal, not input
        raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        _schema.migrate(raw, self.path)

    async def close(self) -> None:
        if self._conn is None:
            return
        writer, self._writer = self._writer, None
        if writer is not None:
            await self._queue.put(None)  # drain what is queued, then stop
            await writer
        conn, self._conn = self._conn, None
        await conn.close()

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- runs --------------------------------------------------------------
    async def create_run(self, info: RunInfo) -> None:
        def create(raw: sqlite3.Connection) -> None:
            try:
                raw.execute("INSERT INTO runs (run_id, graph, status, created_at, parent_run_id, info)"
                            " VALUES (?, ?, ?, ?, ?, ?)",
                            (info.run_id, info.graph, info.status, info.created_at,
                             info.parent_run_id, _run_encoder.encode(info)))
            except sqlite3.IntegrityError:
                raise RunStateError(f"run {info.run_id!r} already exists; pick another run id.",
                                    run_id=info.run_id) from None

        await self._write(create)

    async def get_run(self, run_id: str) -> RunInfo:
        rows = await self._read("SELECT info FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFoundError(
                f"no run {run_id!r} in {self.path}; list runs with `waypoint runs` or check "
                "the database path (--db / WAYPOINT_DB).", run_id=run_id)
        return self._decode_run(rows[0][0], run_id)

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        rows = await self._read(
            "SELECT run_id, info FROM runs WHERE (?1 IS NULL OR status = ?1) AND "
            "(?2 IS NULL OR graph = ?2) ORDER BY created_at DESC, run_id LIMIT ?3",
            (status, graph, limit))
        return [self._decode_run(info, run_id) for run_id, info in rows]

    async def claim(self, run_id: str, owner: str, ttl: float) -> RunInfo:
        def claim(raw: sqlite3.Connection) -> RunInfo:
            info = _get(raw, run_id)
            now = time.time()
            if info.lease_owner not in (None, owner) and info.lease_expiry >= now:
                raise LeaseError(
                    f"run {run_id!r} is being executed by {info.lease_owner} (lease until "
                    f"{time.ctime(info.lease_expiry)}); wait for it to finish, or for its lease "
                    "to expire if that process died.", run_id=run_id)
            return _put(raw, info, lease_owner=owner, lease_expiry=now + ttl, status="running")

        return await self._write(claim)

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        def renew(raw: sqlite3.Connection) -> None:
            _put(raw, _fenced(_get(raw, run_id), owner), lease_expiry=time.time() + ttl)

        await self._write(renew)

    async def release(self, run_id: str, owner: str, status: RunStatus, *,
                      error: str | None = None, waiting: list[str] | None = None) -> None:
        def release(raw: sqlite3.Connection) -> None:
            _put(raw, _fenced(_get(raw, run_id), owner), lease_owner=None, lease_expiry=0.0,
                 status=status, error=error, waiting=list(waiting or []))

        await self._write(release)

    # -- the log -----------------------------------------------------------
    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        await self._write(_Append(run_id, owner, steps, snapshot))

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        snapshot = await self.snapshot_at(run_id, 2**62)
        return snapshot, await self.history(run_id, after=snapshot.seq if snapshot else 0)

    async def history(self, run_id: str, *, after: int = 0, upto: int | None = None) -> list[Step]:
        rows = await self._read(
            "SELECT seq, payload FROM steps WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (run_id, after, 2**62 if upto is None else upto))
        return [decode_step(payload, run_id=run_id, seq=seq) for seq, payload in rows]

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        rows = await self._read(
            "SELECT seq, payload FROM snapshots WHERE run_id = ? AND seq <= ? "
            "ORDER BY seq DESC LIMIT 1", (run_id, seq))
        return decode_snapshot(rows[0][1], run_id=run_id, seq=rows[0][0]) if rows else None

    # -- plumbing ----------------------------------------------------------
    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        await self.open()
        try:
            return await self._conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    async def _write(self, work: Any) -> Any:
        await self.open()
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((work, future))
        return await future

    async def _write_loop(self) -> None:
        """The single writer: everything queued while a transaction ran goes in the next one."""
        stop = False
        while not stop:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = any(item is None for item in batch)
            jobs = [item for item in batch if item is not None]
            if not jobs:
                continue
            # One hop into aiosqlite's thread for the whole transaction: the public API
            # would cost a hop per statement (BEGIN, INSERTs, UPDATE, COMMIT).
            try:
                results = await self._conn._execute(_transaction, self._conn._conn, jobs, self.path)
            except BaseException as exc:
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(jobs, results):
                if not future.done():
                    future.set_result(value) if ok else future.set_exception(value)

    def _decode_run(self, data: bytes, run_id: str) -> RunInfo:
        try:
            return _run_decoder.decode(data)
        except msgspec.DecodeError as exc:
            from waypoint.errors import CorruptRecordError

            raise CorruptRecordError(f"run {run_id!r}: its row in {self.path} cannot be decoded "
                                     f"({exc}).", run_id=run_id) from None


class _Append:
    """An append as a unit of work inside a group transaction."""

    def __init__(self, run_id: str, owner: str, steps: list[Step], snapshot: Snapshot | None):
        self.run_id, self.owner, self.steps, self.snapshot = run_id, owner, steps, snapshot

    def __call__(self, raw: sqlite3.Connection) -> None:
        info = _fenced(_get(raw, self.run_id), self.owner)
        if self.steps and self.steps[0].seq != info.last_seq + 1:
            raise LeaseError(
                f"run {self.run_id!r}: step {self.steps[0].seq} does not follow step "
                f"{info.last_seq}; another process wrote to this run.",
                run_id=self.run_id, seq=self.steps[0].seq)
        raw.executemany(
            "INSERT INTO steps (run_id, seq, kind, node, payload) VALUES (?, ?, ?, ?, ?)",
            [(self.run_id, s.seq, s.kind, s.node, encode(s)) for s in self.steps])
        if self.snapshot is not None:
            raw.execute("INSERT OR REPLACE INTO snapshots (run_id, seq, payload) VALUES (?, ?, ?)",
                        (self.run_id, self.snapshot.seq, encode(self.snapshot)))
        if self.steps:
            _put(raw, info, last_seq=self.steps[-1].seq)


def _transaction(raw: sqlite3.Connection, jobs: list[tuple[Any, Any]], path: Path) -> list[tuple[bool, Any]]:
    """Run each job in one BEGIN IMMEDIATE transaction; a job's own error fails only that job."""
    results: list[tuple[bool, Any]] = []
    try:
        raw.execute("BEGIN IMMEDIATE")
        for work, _ in jobs:
            raw.execute("SAVEPOINT job")
            try:
                results.append((True, work(raw)))
                raw.execute("RELEASE job")
            except (LeaseError, RunNotFoundError, RunStateError) as exc:
                raw.execute("ROLLBACK TO job")
                raw.execute("RELEASE job")
                results.append((False, exc))
        _faults.reached("inside_commit")
        raw.execute("COMMIT")
    except sqlite3.Error as exc:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        error = StoreError(f"writing to {path} failed: {exc}; what was committed before is "
                           "intact. Check the disk, the file's permissions and its folder.")
        return [(False, error) for _ in jobs]
    return results


def _get(raw: sqlite3.Connection, run_id: str) -> RunInfo:
    row = raw.execute("SELECT info FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(f"no run {run_id!r} in this database.", run_id=run_id)
    return _run_decoder.decode(row[0])


def _fenced(info: RunInfo, owner: str) -> RunInfo:
    if info.lease_owner != owner:
        raise LeaseError(
            f"run {info.run_id!r} is no longer leased to {owner} (holder: {info.lease_owner}); "
            "this process must stop executing it.", run_id=info.run_id)
    return info


def _put(raw: sqlite3.Connection, info: RunInfo, **changes: Any) -> RunInfo:
    info = msgspec.structs.replace(info, updated_at=time.time(), **changes)
    raw.execute("UPDATE runs SET status = ?, info = ? WHERE run_id = ?",
                (info.status, _run_encoder.encode(info), info.run_id))
    return info
