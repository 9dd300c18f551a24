"""Run handles, and stopping runs: interrupted (resumable as it is) or cancelled on purpose.

    handle = await start(graph, input, store=store)
    result = await handle.result()    # RunResult: done, waiting, failed, interrupted, cancelled
    await handle.interrupt()          # stop here; resumable as it is
    await handle.cancel(reason="x")   # stop for good; resume needs force=True
    await cancel("order-42", store=store, reason="withdrawn", by="ann")   # a run not running here
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus, Step
from waypoint.engine import _lease
from waypoint.engine.events import Event, EventBus
from waypoint.errors import LeaseError, RunStateError, WaypointError

S = TypeVar("S")  # the graph's state model: start(Graph[Essay], ...) gives RunHandle[Essay]


@dataclass
class RunResult(Generic[S]):
    """Where a run stands after an execution: `status` is done, waiting, failed,
    interrupted or cancelled; `state` is the graph's state model (`RunResult[Essay]`)."""

    run_id: str
    status: RunStatus
    state: S
    waiting: list[str] = field(default_factory=list)
    error: WaypointError | None = None
    note: str | None = None  # what the caller should know, e.g. that an in-memory run is gone


class RunHandle(Generic[S]):
    """A run executing in the background of this event loop.

        handle = await start(graph, input, store=store)
        result = await handle.result()    # done, waiting, interrupted or cancelled
        await handle.interrupt()          # stop here; resumable as it is ("interrupted")
        await handle.cancel(reason="x")   # stop for good ("cancelled"; resume needs force=True)
    """

    def __init__(self, run_id: str, store: Store, bus: EventBus) -> None:
        self.run_id = run_id
        self.store = store
        self._bus = bus
        self._task: asyncio.Task[RunResult[S]] | None = None
        self._stop = Stop()

    async def result(self, *, raise_on_failure: bool = True) -> RunResult[S]:
        """Wait for the run to finish, fail, wait at a gate or be stopped."""
        assert self._task is not None
        try:
            result = await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise  # it is us, the caller, who is being cancelled
            # Cancelled before its first line ran, so before anything could release its lease.
            result = await self._stop.settle_unstarted(self.store, self.run_id)
        if result.status == "failed" and raise_on_failure and result.error is not None:
            raise result.error
        return result

    def events(self) -> AsyncIterator[Event]:
        """The run's events from its start until it stops; iterate with `async for`."""
        return self._bus.subscribe()

    async def interrupt(self) -> RunResult[S]:
        """Stop this execution (in-flight nodes are cancelled, the lease released): the run
        is left "interrupted", and `resume` carries it on from its last committed step."""
        return await self._halt("interrupted")

    async def requeue(self, *, reason: str | None = None) -> RunResult[S]:
        """Stop this execution and hand the run back to its queue: it is left "queued", and a
        worker claims it and carries it on from its last committed step (a draining worker)."""
        return await self._halt("queued", reason)

    async def cancel(self, *, reason: str | None = None, by: str | None = None) -> RunResult[S]:
        """Stop the run on purpose: it is left "cancelled", and `resume` refuses it unless
        given `force=True`. `reason` and `by` are recorded in its log."""
        return await self._halt("cancelled", reason, by)

    async def _halt(self, status: RunStatus, reason: str | None = None,
                    by: str | None = None) -> RunResult[S]:
        assert self._task is not None
        self._stop.request(status, reason, by)
        self._task.cancel()
        return await self.result(raise_on_failure=False)

    def __await__(self) -> Generator[Any, None, RunResult[S]]:
        return self.result().__await__()


@dataclass
class Stop:
    """How an execution stopped from outside ends: the status its run is left in, and why.

    Without a request (a task cancelled by its event loop's shutdown, say) the run is
    "interrupted": nothing was decided about it, so it stays resumable.
    """

    status: RunStatus = "interrupted"
    reason: str | None = None
    by: str | None = None
    owner: str | None = None  # the lease the execution holds, known once it is launched
    settled: asyncio.Future[RunResult[Any]] | None = None
    lost: LeaseError | None = None  # set when the heartbeat found the lease taken: writes nothing more

    def request(self, status: RunStatus, reason: str | None, by: str | None) -> None:
        self.status, self.reason, self.by = status, reason, by

    async def settle(self, store: Store, run_id: str, state: Any, bus: EventBus | None) -> RunResult[Any]:
        """Record the stop (a cancel's who and why as an event step) and release the lease."""
        assert self.owner is not None
        if self.lost is not None:  # the run is someone else's now: release nothing, record nothing
            if bus is not None:
                bus.publish(Event("lease_lost", run_id, data={"error": str(self.lost)}))
            return RunResult(run_id, "interrupted", state, error=self.lost)
        note = None
        if self.status == "cancelled":
            note = cancel_note(self.reason, self.by)
            with contextlib.suppress(WaypointError):  # the record is a courtesy; the status is not
                await record_cancel(store, run_id, self.owner, self.reason, self.by)
        await finish(store, run_id, self.owner, self.status, note, [])
        if bus is not None:
            bus.publish(Event(f"run_{self.status}", run_id, data={"reason": self.reason}))
        return RunResult(run_id, self.status, state)

    async def settle_unstarted(self, store: Store, run_id: str) -> RunResult[Any]:
        if self.settled is None:  # once, however many callers wait for the result
            self.settled = asyncio.ensure_future(self.settle(store, run_id, None, None))
        return await asyncio.shield(self.settled)


async def cancel(run_id: str, *, store: Store, reason: str | None = None, by: str | None = None) -> RunInfo:
    """Cancel a run on purpose: it is left "cancelled" and `resume` refuses it without
    `force=True`. `reason` and `by` are recorded in its log. A run that another live
    process executes is a `LeaseError` (stop it there: `handle.cancel()`); a finished
    run is a `RunStateError`.

        await cancel("order-42", store=store, reason="customer withdrew", by="ann")
    """
    await store.open()
    seen = await store.get_run(run_id)
    if seen.status == "done":
        raise RunStateError(f"run {run_id!r} already finished; there is nothing to cancel.",
                            run_id=run_id)
    owner = _lease.new_owner()
    await _lease.claim(store, run_id, owner, expect_seq=seen.last_seq, expect_status=seen.status)
    try:
        await record_cancel(store, run_id, owner, reason, by)
    finally:
        # The gates it waited at stay named: `resume(..., force=True)` may answer them.
        await finish(store, run_id, owner, "cancelled", cancel_note(reason, by), seen.waiting)
    return await store.get_run(run_id)


async def record_cancel(store: Store, run_id: str, owner: str, reason: str | None, by: str | None) -> None:
    info = await store.get_run(run_id)
    extra = {"event": "cancelled", "reason": reason, "by": by}
    await store.append(run_id, owner, [Step(seq=info.last_seq + 1, kind="event", node="", activation="",
                                            at=time.time(), extra={k: v for k, v in extra.items() if v})])


def cancel_note(reason: str | None, by: str | None) -> str:
    return "cancelled" + (f" by {by}" if by else "") + (f": {reason}" if reason else "")


async def finish(store: Store, run_id: str, owner: str, status: RunStatus, error: BaseException | str | None,
                  waiting: list[str]) -> None:
    try:
        await store.release(run_id, owner, status, error=str(error) if error else None,
                            waiting=waiting)
    except WaypointError:
        pass  # lost the lease or the store is gone: whoever holds it now decides
