"""Signals between the processes sharing a store, as the stores implement them.

    await store.signals.notify("default")          # after a run was queued (submit, enqueue)
    why = await store.signals.wait("default", 5.0)  # "notified", "polled" or "listening"
    async with store.signals.try_lock("waypoint tick") as mine:  # one holder across processes
        if mine: ...

The contract is `protocol.Signals` (optional for a store: `protocol.signals_of`);
this module is its one implementation, which the three stores hold as
`store.signals`. `LocalSignals` (MemoryStore, SQLiteStore): wake-ups reach the
waiters of this process on the same database (a worker in another process finds
work by polling); the lock is a flag per database in this process and, for a
SQLite file, `flock` on a file beside it, so it is exclusive across processes
too. `PgSignals` (PostgresStore): LISTEN on one dedicated connection per store
(channel `waypoint_work`, the payload is the queue); the database itself sends
NOTIFY from the transaction that makes a run "queued" (a trigger, postgres.sql
migration_3), so a worker anywhere wakes at that commit; a listener connection
that drops is opened again at the next wait. Its lock is `pg_try_advisory_lock`
held on a dedicated connection (released with it, so a dead holder frees it).
Wake-ups are sent on enqueue and answer only, never per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from waypoint.checkpoints.protocol import Wakeup
from waypoint.errors import StoreError

__all__ = ["CHANNEL", "LocalSignals", "PgSignals"]

CHANNEL = "waypoint_work"
_waiters: dict[str, set[tuple[str, asyncio.Event]]] = {}  # database key -> (queue, event) of waiters here
_held: dict[str, set[str]] = {}  # database key -> names of the locks held in this process


class LocalSignals:
    """Wake-ups within this process and a lock per database: `key` names the database (two
    store objects on one SQLite file share it); `beside` is the SQLite file to flock beside."""

    wakes_other_processes = False

    def __init__(self, key: str, beside: Path | None = None) -> None:
        self.key, self.beside = key, beside

    async def notify(self, queue: str) -> None:
        """Wake this process's waiters of `queue` on this database."""
        _wake(self.key, queue)

    async def wait(self, queue: str, timeout: float) -> Wakeup:
        """Up to `timeout` seconds for a `notify(queue)`: "notified" or "polled"."""
        with _waiting(self.key, queue) as event:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
            return "notified" if event.is_set() else "polled"

    @contextlib.asynccontextmanager
    async def try_lock(self, name: str) -> AsyncIterator[bool]:
        """Hold lock `name` for the block if nobody holds it: True, or False at once."""
        with _local_lock(self.key, name) as mine:
            if mine and self.beside is not None:
                with _file_lock(self.beside, name) as on_file:
                    yield on_file
            else:
                yield mine

    async def close(self) -> None:
        """Nothing to close."""


class PgSignals:
    """LISTEN/NOTIFY wake-ups and advisory locks on the PostgreSQL database at `url`."""

    wakes_other_processes = True

    def __init__(self, url: str, where: str) -> None:
        self.url, self.where = url, where
        self.key = f"pg:{id(self)}"  # local wake-ups: a notify of this store object wakes its waiters now
        self._listener: _Listener | None = None

    async def notify(self, queue: str) -> None:
        """Wake this object's waiters now; every process is woken by the database's own NOTIFY,
        sent by the transaction that made the run "queued"."""
        _wake(self.key, queue)

    async def wait(self, queue: str, timeout: float) -> Wakeup:
        """Up to `timeout` seconds for a NOTIFY of `queue`. "listening" at once when the LISTEN
        connection was (re)opened (claim: anything before it was missed); a connection that
        fails raises StoreError (poll meanwhile: the next call opens a new one)."""
        listener = self._listener
        if listener is None or listener.loop is not asyncio.get_running_loop():
            listener = self._listener = _Listener(self)
        with _waiting(self.key, queue) as event:
            return await listener.wait(queue, timeout, event)

    @contextlib.asynccontextmanager
    async def try_lock(self, name: str) -> AsyncIterator[bool]:
        """`pg_try_advisory_lock` on a connection of its own, held for the block."""
        import psycopg

        key = zlib.crc32(name.encode())  # a stable 32-bit key for the name
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5,
                                                         application_name="waypoint lock")
        except psycopg.OperationalError as exc:
            raise StoreError(f"PostgreSQL at {self.where}: cannot take lock {name!r} "
                             f"({' '.join(str(exc).split())}); it is tried again later") from None
        async with conn:
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
            mine = bool(row and row[0])
            try:
                yield mine
            finally:
                if mine and not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    async def close(self) -> None:
        """Close the LISTEN connection, if one is open in this event loop (the next wait opens one)."""
        listener, self._listener = self._listener, None
        if listener is not None and listener.loop is asyncio.get_running_loop():
            await listener.drop()


def _wake(key: str, queue: str) -> None:
    for waiting_queue, event in list(_waiters.get(key, ())):
        if waiting_queue == queue:
            event.set()


@contextlib.contextmanager
def _waiting(key: str, queue: str) -> Iterator[asyncio.Event]:
    event = asyncio.Event()
    waiters = _waiters.setdefault(key, set())
    waiters.add((queue, event))
    try:
        yield event
    finally:
        waiters.discard((queue, event))


class _Listener:
    """One LISTEN connection for a PgSignals; opened again when it drops."""

    def __init__(self, signals: PgSignals) -> None:
        self.signals, self.loop = signals, asyncio.get_running_loop()
        self.conn: Any = None
        self.lock = asyncio.Lock()

    async def wait(self, queue: str, timeout: float, local: asyncio.Event) -> Wakeup:
        deadline = self.loop.time() + timeout
        async with self.lock:  # one reader of the connection at a time
            try:
                if self.conn is None or self.conn.closed:
                    await self._connect()
                    return "listening"
                while not local.is_set() and ((left := deadline - self.loop.time()) > 0 or timeout == 0):
                    async with contextlib.aclosing(self.conn.notifies(timeout=max(left, 0.0))) as notes:
                        async for note in notes:  # closed on return: it holds the connection's lock
                            if note.payload == queue:
                                return "notified"
                    if timeout == 0:
                        break
            except Exception as exc:  # the connection dropped: the next wait opens a new one
                await self.drop()
                raise StoreError(f"PostgreSQL at {self.signals.where}: the LISTEN connection for "
                                 f"wake-ups failed ({' '.join(str(exc).split())}); workers poll "
                                 "meanwhile, and it is opened again at the next wait") from None
        return "notified" if local.is_set() else "polled"

    async def _connect(self) -> None:
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(
            self.signals.url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=15,
            keepalives_interval=5, keepalives_count=3, application_name="waypoint listener")
        await self.conn.execute(f"LISTEN {CHANNEL}")  # a constant identifier

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


@contextlib.contextmanager
def _local_lock(key: str, name: str) -> Iterator[bool]:
    held = _held.setdefault(key, set())
    if name in held:
        yield False
        return
    held.add(name)
    try:
        yield True
    finally:
        held.discard(name)


@contextlib.contextmanager
def _file_lock(db: Path, name: str) -> Iterator[bool]:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    path = db.with_name(f"{db.name}-{slug}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
