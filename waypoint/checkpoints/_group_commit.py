"""Group commit: one writer task per store, committing everything queued meanwhile in one go.

    writes = GroupCommit(commit)   # commit(jobs) -> [(ok, value), ...]: one outcome per job
    writes.start()                 # in the event loop the store is opened in
    value = await writes.submit(job)   # returns the job's value, or raises what refused it
    await writes.drain()           # commit what is queued, then stop the writer
    writes.forget()                # drop the writer of an event loop that is gone

The SQLite and PostgreSQL stores share it: whatever arrives while a transaction is
in flight goes into the next one, so durability is per write and throughput per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

J = TypeVar("J")
Outcome = tuple[bool, Any]  # (True, value) or (False, the exception to raise)


class GroupCommit(Generic[J]):
    """The queue of a store's writes and the single task that commits them in batches."""

    def __init__(self, commit: Callable[[list[J]], Awaitable[list[Outcome]]]) -> None:
        self._commit = commit
        self._queue: list[tuple[J, asyncio.Future[Any]]] = []
        self._waker: asyncio.Future[None] | None = None  # set while the writer waits for work
        self._task: asyncio.Task[None] | None = None
        self.closing = False  # drain() has begun: no new writes are taken

    def start(self) -> None:
        self._queue, self._waker, self.closing = [], None, False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, job: J) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._wake()
        return await future

    async def drain(self) -> None:
        self.closing = True
        self._wake()
        if self._task is not None:  # wait() does not re-raise if the task was cancelled
            await asyncio.wait([self._task])

    def forget(self) -> None:
        self._task, self._queue, self._waker, self.closing = None, [], None, False

    def _wake(self) -> None:
        """Wake the writer if it waits for work (a future of its own: no asyncio.Event's
        waiter list to build and scan for each commit)."""
        waker = self._waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue or not self.closing:
            if not self._queue:
                self._waker = loop.create_future()
                try:
                    await self._waker
                finally:
                    self._waker = None
                continue
            batch, self._queue = [(job, f) for job, f in self._queue if not f.done()], []
            if batch:
                await self._settle(batch)

    async def _settle(self, batch: list[tuple[J, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._commit([job for job, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(value) if ok else future.set_exception(value)
