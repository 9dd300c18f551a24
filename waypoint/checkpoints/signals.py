"""Signals between the processes sharing a store: wake-ups on new work, and a lock for one.

    await notify(store, "default")                 # after a run was queued (submit, enqueue)
    why = await wait_for_work(store, "default", timeout=5.0)   # "notified", "polled" or "listening"
    async with try_lock(store, "waypoint tick") as mine:          # one holder across processes
        if mine: ...

Workers sleep in `wait_for_work` between claims. On PostgreSQL it is LISTEN on
one dedicated connection per store (channel `waypoint_work`, the payload is the
queue), and the database itself sends NOTIFY from the transaction that makes a
run "queued" (a trigger, postgres.sql migration_3), so a worker anywhere wakes
at that commit, whoever queued the run and however; a listener
connection that drops is opened again at the next wait, and meanwhile the
caller's polling finds the work. On SQLite and in memory, wake-ups reach the
waiters of this process only (a worker in another process finds work by
polling). `try_lock` is `pg_try_advisory_lock` on PostgreSQL (released with its
connection, so a dead holder frees it), `flock` on a file beside a SQLite
database, and a flag in memory. Wake-ups are sent on enqueue and answer only,
never per step. A store of your own may define `wait_for_work`, `notify` and
`try_lock` methods of these shapes; without them it is polled and never locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import weakref
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from waypoint.errors import StoreError

__all__ = ["CHANNEL", "Wakeup", "close_listener", "notify", "try_lock", "wait_for_work",
           "wakes_other_processes"]

CHANNEL = "waypoint_work"
_waiters: dict[str, set[tuple[str, asyncio.Event]]] = {}  # store key -> (queue, event) of waiters here
_listeners: weakref.WeakKeyDictionary[Any, _Listener] = weakref.WeakKeyDictionary()
_held: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _kind(store: Any) -> str:
    name = type(store).__name__
    return name if name in ("PostgresStore", "SQLiteStore", "MemoryStore") else "other"


def _key(store: Any) -> str:
    """What names one database across store objects of this process."""
    path = getattr(store, "path", None)
    return f"sqlite:{Path(str(path)).resolve()}" if _kind(store) == "SQLiteStore" else f"object:{id(store)}"


async def notify(store: Any, queue: str) -> None:
    """Wake the waiters of `queue` in this process after a run was queued (on PostgreSQL
    the database has already notified every process, in the transaction that queued it)."""
    own = getattr(store, "notify", None)
    if _kind(store) == "other" and own is not None:
        await own(queue)
        return
    for waiting_queue, event in list(_waiters.get(_key(store), ())):
        if waiting_queue == queue:
            event.set()
    # PostgreSQL needs nothing more: the transaction that made the run "queued" sent
    # NOTIFY (a trigger of postgres.sql, migration_3), for every process, at its commit.


Wakeup = Literal[
    "notified",  # a run of the queue was queued: claim now
    "polled",  # the time is up: claim anyway (a wake-up may be missed, polling never is)
    "listening",  # the LISTEN connection was (re)opened: claim now, anything before it was missed
]


async def wait_for_work(store: Any, queue: str, timeout: float) -> Wakeup:
    """Wait up to `timeout` seconds for a run of `queue` to be queued; say why it returned.
    A LISTEN connection that fails raises StoreError (poll meanwhile: the next call opens a
    new one, and returns "listening" at once)."""
    own = getattr(store, "wait_for_work", None)
    if _kind(store) == "other":
        if own is None:
            await asyncio.sleep(timeout)
            return "polled"
        return "notified" if await own(queue, timeout) else "polled"
    event = asyncio.Event()
    waiters = _waiters.setdefault(_key(store), set())
    waiters.add((queue, event))
    try:
        if _kind(store) == "PostgresStore":
            return await _listener(store).wait(queue, timeout, event)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return "notified" if event.is_set() else "polled"
    finally:
        waiters.discard((queue, event))


def wakes_other_processes(store: Any) -> bool:
    """Whether a `notify` reaches workers in other processes (PostgreSQL), not only this one."""
    return _kind(store) == "PostgresStore"


def _listener(store: Any) -> _Listener:
    listener = _listeners.get(store)
    if listener is None or listener.loop is not asyncio.get_running_loop():
        listener = _listeners[store] = _Listener(store)
    return listener


class _Listener:
    """One LISTEN connection for a PostgresStore; opened again when it drops."""

    def __init__(self, store: Any) -> None:
        self.store, self.loop = store, asyncio.get_running_loop()
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
                await self._drop()
                raise StoreError(f"PostgreSQL at {self.store.where}: the LISTEN connection for "
                                 f"wake-ups failed ({' '.join(str(exc).split())}); workers poll "
                                 "meanwhile, and it is opened again at the next wait") from None
        return "notified" if local.is_set() else "polled"

    async def _connect(self) -> None:
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(
            self.store.url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=15,
            keepalives_interval=5, keepalives_count=3, application_name="waypoint listener")
        await self.conn.execute(f"LISTEN {CHANNEL}")  # a constant identifier

    async def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


async def close_listener(store: Any) -> None:
    """Close the LISTEN connection of `store`, if it has one (a worker does when it stops)."""
    listener = _listeners.pop(store, None)
    if listener is not None and listener.loop is asyncio.get_running_loop():
        await listener._drop()


@contextlib.asynccontextmanager
async def try_lock(store: Any, name: str) -> AsyncIterator[bool]:
    """Hold the lock `name` for the block if no other holder (any process) has it now: yields
    True, or False at once when another holds it. A holder that dies frees it."""
    kind = _kind(store)
    own = getattr(store, "try_lock", None)
    if kind == "other":
        if own is None:
            yield False
            return
        async with own(name) as mine:
            yield mine
        return
    if kind == "PostgresStore":
        async with _pg_lock(store, name) as mine:
            yield mine
        return
    async with _local_lock(store, name) as mine:
        if mine and kind == "SQLiteStore":
            with _file_lock(Path(store.path), name) as on_file:
                yield on_file
        else:
            yield mine


@contextlib.asynccontextmanager
async def _local_lock(store: Any, name: str) -> AsyncIterator[bool]:
    held = _held.setdefault(store, set())
    if name in held:
        yield False
        return
    held.add(name)
    try:
        yield True
    finally:
        held.discard(name)


@contextlib.contextmanager
def _file_lock(db: Path, name: str) -> Any:
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


@contextlib.asynccontextmanager
async def _pg_lock(store: Any, name: str) -> AsyncIterator[bool]:
    import psycopg

    key = zlib.crc32(name.encode())  # a stable 32-bit key for the name
    try:
        conn = await psycopg.AsyncConnection.connect(store.url, autocommit=True, connect_timeout=5,
                                                     application_name="waypoint lock")
    except psycopg.OperationalError as exc:
        raise StoreError(f"PostgreSQL at {store.where}: cannot take lock {name!r} "
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
