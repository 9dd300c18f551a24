"""One sqlite3 connection in its own daemon thread: a whole transaction per hop.

    conn = await ConnectionThread.open("runs.db", uri=False, timeout=5.0)
    rows = await conn.run(lambda raw: raw.execute("SELECT 1").fetchall())
    await conn.close()       # or conn.stop() from a loop that can no longer wait

`run(fn, *args)` calls `fn(raw, *args)` in the thread that owns the connection
and awaits its result: a function that runs BEGIN ... COMMIT costs one hop, not
one per statement as a statement-level async wrapper would. SQLite connections
belong to the thread that made them, so the thread connects, serves the calls
one at a time in order, and closes.

The thread is a daemon: a store that is never closed (`open()` is implicit)
must not keep the interpreter from exiting. What was committed is durable
either way; SQLite recovers the WAL at the next open.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectionThread"]

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class ConnectionThread:
    """A sqlite3 connection served by one daemon thread; see the module docstring."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._raw: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._serve, name="waypoint-sqlite", daemon=True)

    @classmethod
    async def open(cls, target: str, *, uri: bool, timeout: float) -> ConnectionThread:
        """Start the thread and connect in it (autocommit: transactions are explicit)."""
        conn = cls()
        conn._thread.start()
        try:
            await conn.run(conn._connect, target, uri, timeout)
        except BaseException:
            conn.stop()
            raise
        return conn

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(raw_connection, *args)` in the connection's thread; its exception is raised here."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, args, loop, future))
        return await future

    def stop(self) -> None:
        """Tell the thread to close the connection once the calls queued before are served."""
        self._jobs.put(None)

    async def close(self) -> None:
        """Close the connection in its thread and wait until it is closed."""
        await self.run(_close)
        self.stop()

    def _connect(self, _: None, target: str, uri: bool, timeout: float) -> None:
        self._raw = sqlite3.connect(target, isolation_level=None, uri=uri, timeout=timeout)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, loop, future = job
            try:
                outcome: tuple[bool, Any] = (True, fn(self._raw, *args))
            except BaseException as exc:  # handed to the awaiting task as it is
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for this result any more
        _close(self._raw)


def _close(raw: sqlite3.Connection | None) -> None:
    if raw is not None:
        raw.close()  # closing twice is a no-op


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile
        return
    ok, value = outcome
    future.set_result(value) if ok else future.set_exception(value)
