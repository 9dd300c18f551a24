"""Workers: claim queued runs from a shared store and execute them, many at once, on many hosts.

    worker = Worker([graph], store=PostgresStore(url), queue="default", concurrency=8)
    stats = await worker.run()                  # until worker.drain() (SIGTERM in `waypoint worker`)
    stats = await worker.run(until_idle=True)   # until nothing is claimable and nothing runs
    stats = await worker.run(once=True)         # claim one batch (up to concurrency), execute it, return

What a worker does, and what it promises (docs/workers.md says it for users):

- It claims with `Store.claim_next(queue, owner, ttl, graphs=names)`: runs of its
  queue and of the graphs it was given (matched by name), status "queued" (submitted,
  answered with `resume(..., enqueue=True)`, handed back by a draining worker, or a due
  gate re-queued by the deadline sweep) or "running" under a lapsed lease (a dead
  worker's). Each claim takes a fresh owner `host:pid:nonce`, so a claim is one lease.
  A run held by a dead process on this host (SIGKILL, OOM) is handed back to the queue
  when the worker finds it idle, without waiting for its lease to lapse.
- A claimed run is executed as `resume` executes one (`runs.launch_claimed`): the
  same scheduler, the lease renewed every ttl/3. A run whose graph structure differs
  from the worker's (same name, other shape) is left "failed" with the reason, never
  executed: resume it with the right graph, or re-queue it once that graph is deployed.
- A worker that loses a run's lease (its renewal finds another owner, or the store
  could not be reached for a whole ttl) stops that run's in-flight nodes and writes
  nothing more for it (appends are fenced by owner and epoch); it logs `lost RUN`.
- A run whose store fails under it (PostgreSQL restarting, unreachable: a StoreError)
  is not marked failed: it keeps its lease, unrenewed, and any worker claims it once
  that lapses (logged `left RUN to its lease`). A damaged record still fails the run.
- `drain()` stops claiming; in-flight runs finish, or after `grace` seconds are
  stopped and handed back to the queue ("queued"), so another worker carries them on
  from their last committed step; a second `drain()` hands them back at once.
- Between claims it sleeps until a run of its ends, the store signals new work
  (`store.signals.wait`, `protocol.Signals`: LISTEN/NOTIFY on PostgreSQL, an in-process
  event elsewhere) or `poll` seconds pass.
- Every `tick` seconds one worker of the store at a time (`store.signals.try_lock`) sweeps
  gate deadlines: waiting runs of its graphs and queue with a due gate are re-queued
  (`tick(..., enqueue=True)`), and a worker executes their escalation.
- A store without `signals` (one of your own) is polled, and swept without the lock: each
  re-queue is a compare-and-set claim, so concurrent sweeps re-queue a run once. The worker
  says so once, when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from waypoint.checkpoints.protocol import Store, signals_of
from waypoint.checkpoints.records import RunInfo
from waypoint.engine import _lease
from waypoint.engine.handles import RunHandle, RunResult, finish
from waypoint.engine.runs import launch_claimed
from waypoint.errors import GraphChangedError, LeaseError, StoreError, WaypointError
from waypoint.graphs.graph import Graph

__all__ = ["Worker", "WorkerStats"]

_logger = logging.getLogger("waypoint.worker")
_REAP_LIMIT = 1000  # running runs looked at per pass for a dead holder on this host


@dataclass
class WorkerStats:
    """What a worker did: runs claimed, how their executions ended, and its wake-ups."""

    claimed: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # status of each execution -> count
    lost: int = 0  # executions stopped because another owner took the run
    requeued: int = 0  # handed back to the queue by a drain
    lapsed: int = 0  # the store failed under them: left to their lease, which lapses unrenewed
    refused: int = 0  # claimed runs of another graph structure, left failed
    notified: int = 0  # wake-ups by the store's signal (NOTIFY), not by the poll timer
    ticks: int = 0  # deadline sweeps this worker ran


class Worker:
    """Claims runs of `graphs` from `queue` in `store` and executes up to `concurrency` at once."""

    def __init__(self, graphs: Sequence[Graph[Any]], *, store: Store, queue: str = "default",
                 concurrency: int = 1, ttl: float = _lease.LEASE_TTL, poll: float = 1.0,
                 grace: float = 30.0, tick: float | None = 30.0, deps: Any = None,
                 max_concurrency: int | None = None, log: Callable[[str], object] | None = None) -> None:
        """`ttl`: each run's lease, renewed every ttl/3 (a dead worker's runs are claimed again
        once it lapses); `poll`: the longest sleep between claims; `grace`: how long a drain
        lets in-flight runs finish; `tick`: seconds between deadline sweeps (None: never);
        `deps` and `max_concurrency` are given to every run, as to `start`; `log` gets one
        line per event (claimed, ended, lost, requeued, woken...), default: logging."""
        self.graphs = _by_name(graphs)
        if not queue:
            raise ValueError("Worker(queue=''): name the queue to serve, e.g. 'default'; the empty "
                             "name holds child runs, which their parent's executor runs")
        if concurrency < 1 or ttl <= 0 or poll <= 0 or grace < 0 or (tick is not None and tick <= 0):
            raise ValueError(f"Worker: concurrency ({concurrency}) must be at least 1, ttl ({ttl}), "
                             f"poll ({poll}) and tick ({tick}) positive, grace ({grace}) not negative")
        self.store, self.queue, self.concurrency = store, queue, concurrency
        self.signals = signals_of(store)  # None: a store without wake-ups or locks
        self.ttl, self.poll, self.grace, self.tick = ttl, poll, grace, tick
        self.deps, self.max_concurrency = deps, max_concurrency
        self.say: Callable[[str], object] = log or _logger.info
        self.stats = WorkerStats()
        self.running: dict[str, RunHandle[Any]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()  # a run of ours ended, or a drain began
        self._draining = False
        self._hurry = asyncio.Event()  # a second drain: hand back now
        self._reaped = -float("inf")  # when dead local holders were last looked for

    @property
    def draining(self) -> bool:
        """Whether `drain()` was called: the worker claims nothing more."""
        return self._draining

    def drain(self) -> None:
        """Stop claiming; in-flight runs finish, or are handed back to the queue after `grace`
        seconds. Called again: hand them back now. Safe to call from a signal handler."""
        if self._draining:
            self._hurry.set()
        self._draining = True
        self._changed.set()

    async def run(self, *, until_idle: bool = False, once: bool = False) -> WorkerStats:
        """Claim and execute until `drain()` (then drain), or, with `until_idle`, until nothing
        is claimable and no run of this worker is executing, or, with `once`, until the runs of
        one claim (up to `concurrency`, maybe none) have ended."""
        await self.store.open()
        if self.signals is None:
            self.say(f"polling queue {self.queue!r} every {self.poll:g}s: {type(self.store).__name__} has "
                     "no signals (waypoint.checkpoints.protocol.Signals), so no wake-ups, and deadline "
                     "sweeps run without a lock")
        elif self.signals.wakes_other_processes:  # listen before the first claim: none is missed
            await self._wake()
        else:
            self.say(f"polling queue {self.queue!r} every {self.poll:g}s (wake-ups within this process only)")
        sweeper = None if self.tick is None else asyncio.create_task(self._sweep())
        try:
            while not self._draining:
                if once:
                    await self._batch()
                    break
                claimed = await self._fill()
                if until_idle and not claimed and not self.running:
                    break
                await self._wait()
            await self._drain()
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await asyncio.shield(self._hand_back())  # cancelled: nothing is left leased to us
            if self.signals is not None:
                await self.signals.close()
        return self.stats

    # -- claiming ---------------------------------------------------------------------
    async def _fill(self) -> int:
        """Claim runs until every slot is taken or none is claimable; how many were claimed."""
        self._changed.clear()  # before claiming: a run ending from here on wakes the next wait
        claimed = 0
        while len(self.running) < self.concurrency and not self._draining:
            try:
                info = await self.store.claim_next(self.queue, _lease.new_owner(), self.ttl,
                                                   graphs=sorted(self.graphs))
            except StoreError as exc:
                self.say(f"cannot claim from queue {self.queue!r}: {exc}; trying again within {self.poll:g}s")
                break
            if info is None and await self._reap():  # a dead local holder: claim its run now
                continue
            if info is None:
                break
            claimed += 1
            self._start(info)
        return claimed

    async def _batch(self) -> None:
        """`once`: claim up to `concurrency` runs, then wait until they have ended (or a drain)."""
        await self._fill()
        while self.running and not self._draining:
            self._changed.clear()
            await self._changed.wait()  # a run of ours ended, or a drain began

    async def _reap(self) -> bool:
        """Hand back to the queue the runs of ours whose holder is a dead process on this host
        (SIGKILLed, OOM-killed): they are claimable now instead of when their lease lapses.
        At most every ttl/3 s; True if any was handed back."""
        now = time.monotonic()
        if now - self._reaped < self.ttl / 3:
            return False
        self._reaped = now
        reaped = False
        try:
            running = await self.store.list_runs(status="running", limit=_REAP_LIMIT)
        except StoreError:
            return False  # the next pass looks again
        for info in running:
            holder = info.lease_owner
            if (info.queue != self.queue or info.graph not in self.graphs or info.parent_run_id is not None
                    or not _lease.holder_is_dead(holder)):
                continue
            assert holder is not None
            with contextlib.suppress(WaypointError):  # another worker reaped or claimed it first
                await self.store.release(info.run_id, holder, "queued", waiting=info.waiting)
                self.say(f"reaped {info.run_id}: its worker {holder} is dead")
                reaped = True
        return reaped

    def _start(self, info: RunInfo) -> None:
        self.stats.claimed += 1
        assert info.lease_owner is not None
        self.say(f"claimed {info.run_id} (graph {info.graph}, owner {info.lease_owner})")
        try:
            handle: RunHandle[Any] = launch_claimed(
                self.graphs[info.graph], self.store, info, ttl=self.ttl, deps=self.deps,
                max_concurrency=self.max_concurrency)
        except GraphChangedError as exc:
            self._watch(info.run_id, None, self._refuse(info, exc))
            return
        self.running[info.run_id] = handle
        self._watch(info.run_id, handle, handle.result(raise_on_failure=False))

    async def _refuse(self, info: RunInfo, exc: GraphChangedError) -> RunResult[Any]:
        """A run of this graph's name but another structure: left failed, with the reason."""
        assert info.lease_owner is not None
        self.stats.refused += 1
        await finish(self.store, info.run_id, info.lease_owner, "failed",
                     f"{exc} (refused by a worker whose graph {info.graph!r} has another structure)", [])
        return RunResult(info.run_id, "failed", None, error=exc)

    def _watch(self, run_id: str, handle: RunHandle[Any] | None, outcome: Any) -> None:
        task = asyncio.create_task(self._ended(run_id, outcome))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _ended(self, run_id: str, outcome: Any) -> None:
        try:
            result: RunResult[Any] = await outcome
        except Exception as exc:  # an internal error: _execute left the run failed and resumable
            self.say(f"ended {run_id}: internal error {type(exc).__name__}: {exc}")
            self.stats.ended["failed"] = self.stats.ended.get("failed", 0) + 1
        else:
            self._count(result)
        finally:
            self.running.pop(run_id, None)
            self._changed.set()

    def _count(self, result: RunResult[Any]) -> None:
        if isinstance(result.error, LeaseError):
            self.stats.lost += 1
            self.say(f"lost {result.run_id}: {result.error}")
            return
        if result.status == "running":  # the store failed under it: its lease lapses, then anyone's
            self.stats.lapsed += 1
            self.say(f"left {result.run_id} to its lease: {result.error}")
            return
        self.stats.ended[result.status] = self.stats.ended.get(result.status, 0) + 1
        if result.status == "queued":
            self.stats.requeued += 1
        why = f": {result.error}" if result.error is not None else ""
        self.say(f"ended {result.run_id}: {result.status}{why}")

    async def _wait(self) -> None:
        """Until a run of ours ends or a drain begins; with a free slot, also until the store
        signals work or `poll` seconds pass."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
        if len(self.running) < self.concurrency:
            waits.append(asyncio.ensure_future(self._wake()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _wake(self) -> None:
        if self.signals is None:
            await asyncio.sleep(self.poll)
            return
        try:
            why = await self.signals.wait(self.queue, self.poll)
        except StoreError as exc:  # the listener dropped: poll meanwhile; the next wait reconnects
            self.say(f"no wake-ups from the store ({exc}); listening again in {min(self.poll, 1.0):g}s")
            await asyncio.sleep(min(self.poll, 1.0))
            return
        if why == "notified":
            self.stats.notified += 1
            self.say(f"woken: work in queue {self.queue!r}")
        elif why == "listening":
            self.say(f"listening for work in queue {self.queue!r} (NOTIFY), polling every {self.poll:g}s")

    # -- stopping ---------------------------------------------------------------------
    async def _drain(self) -> None:
        if not self.running:
            return
        self.say(f"draining: {len(self.running)} run(s) in flight, {self.grace:g}s to finish")
        finished = asyncio.ensure_future(asyncio.wait(set(self._watchers)))
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait([finished, hurry], timeout=self.grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            hurry.cancel()
        await self._hand_back()

    async def _hand_back(self) -> None:
        """Stop what still executes here and hand it back to the queue ("queued")."""
        handed = list(self.running.items())
        for run_id, handle in handed:
            with contextlib.suppress(WaypointError):
                await handle.requeue(reason="its worker stopped")
            self.say(f"handed back {run_id}")
        if handed and self.signals is not None:
            await self.signals.notify(self.queue)  # another worker takes them at once
        if self._watchers:
            await asyncio.wait(set(self._watchers))

    # -- deadlines --------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Every `tick` seconds, if no other worker is sweeping: re-queue runs with due gates."""
        from waypoint.engine.gates import tick  # gates imports runs: load it on use

        assert self.tick is not None
        while True:
            await asyncio.sleep(self.tick)
            try:
                unlocked = contextlib.nullcontext(True)
                async with self.signals.try_lock("waypoint tick") if self.signals else unlocked as mine:
                    if not mine:
                        continue
                    swept = await tick(self._graph_for, store=self.store, enqueue=True)
            except WaypointError as exc:
                self.say(f"deadline sweep failed: {exc}; trying again in {self.tick:g}s")
                continue
            self.stats.ticks += 1
            for info in swept.queued:
                self.say(f"due {info.run_id}: a gate's deadline passed; queued for its escalation")

    def _graph_for(self, info: RunInfo) -> Graph[Any] | None:
        return self.graphs.get(info.graph) if info.queue == self.queue else None


def _by_name(graphs: Sequence[Graph[Any]]) -> dict[str, Graph[Any]]:
    named: dict[str, Graph[Any]] = {}
    for graph in graphs:
        other = named.setdefault(graph.name, graph)
        if other is not graph and other.structure_hash != graph.structure_hash:
            raise ValueError(f"Worker: two graphs are named {graph.name!r}; a worker claims runs by "
                             "graph name, so give each graph its own name (GraphBuilder(..., name=))")
    if not named:
        raise ValueError("Worker: give it at least one graph to execute")
    return named
