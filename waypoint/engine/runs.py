"""Starting, resuming and forking runs.

    store = SQLiteStore("runs.db")
    handle = await start(graph, {"topic": "tides"}, store=store)
    result = await handle.result()            # RunResult(status="waiting", ...)
    handle = await resume(graph, result.run_id, {"approved": True}, store=store)
    result = await handle.result()            # status "done"

    run_sync(graph, {"topic": "tides"}, store=store)   # the same, without async

`result()` raises the run's error when it failed; `resume` it once the cause is
fixed and only the failed and interrupted nodes run again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Mapping

from pydantic import BaseModel, ValidationError

from waypoint.checkpoints.memory import MemoryStore
from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot
from waypoint.engine import _lease
from waypoint.engine._budget import Budget
from waypoint.engine._frontier import Frontier
from waypoint.engine._loop import Answer, RunLoop
from waypoint.engine.events import Event, EventBus
from waypoint.errors import RunError, RunNotFoundError, RunStateError, WaypointError
from waypoint.engine._resumable import (
    check_not_held, check_resumable, check_same_graph, pick_gate, validate_answer,
)
from waypoint.graphs.graph import Graph


@dataclass
class RunResult:
    """Where a run stands after an execution: `status` is done, waiting or cancelled."""

    run_id: str
    status: RunStatus
    state: Any
    waiting: list[str] = field(default_factory=list)
    error: WaypointError | None = None


class RunHandle:
    """A run executing in the background of this event loop."""

    def __init__(self, run_id: str, store: Store, bus: EventBus) -> None:
        self.run_id = run_id
        self.store = store
        self._bus = bus
        self._task: asyncio.Task[RunResult] | None = None

    async def result(self, *, raise_on_failure: bool = True) -> RunResult:
        """Wait for the run to finish, fail or wait at a gate."""
        assert self._task is not None
        result = await asyncio.shield(self._task)
        if result.status == "failed" and raise_on_failure and result.error is not None:
            raise result.error
        return result

    def events(self) -> AsyncIterator[Event]:
        """The run's events from its start until it stops; iterate with `async for`."""
        return self._bus.subscribe()

    async def cancel(self) -> RunResult:
        """Stop the run; it stays resumable (status "cancelled")."""
        assert self._task is not None
        self._task.cancel()
        return await self.result(raise_on_failure=False)

    def __await__(self):
        return self.result().__await__()


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:12]


async def create_run_record(
    store: Store, graph: Graph, run_id: str, state: BaseModel, *, owner: str | None = None,
    graph_ref: str | None = None, parent_run_id: str | None = None, forked_from: str | None = None,
    frontier: Frontier | None = None, seq: int = 0,
) -> str:
    """Insert the run row, leased, with its first snapshot; returns the lease owner holding it.

    One atomic write: a crash leaves either no run (start it again) or one that resumes.
    """
    now = time.time()
    owner = owner or _lease.new_owner()
    frontier = frontier or Frontier.initial(graph)
    snapshot = Snapshot(seq=seq, state=graph.schema.encode_state(state), frontier=frontier.to_plain())
    await store.create_run(RunInfo(
        run_id=run_id, graph=graph.name, graph_hash=graph.structure_hash, status="running",
        created_at=now, updated_at=now, last_seq=seq, graph_ref=graph_ref,
        parent_run_id=parent_run_id, forked_from=forked_from),
        owner=owner, ttl=_lease.LEASE_TTL, snapshot=snapshot)
    return owner


async def start(
    graph: Graph, input: Any = None, *, store: Store | None = None, deps: Any = None,
    run_id: str | None = None, graph_ref: str | None = None, max_concurrency: int | None = None,
    budget: Budget | None = None, if_exists: Literal["error", "resume"] = "error",
) -> RunHandle:
    """Create a run of `graph` from `input` (a state model, a dict or None) and execute it.

    `deps` (clients, connections) reach nodes as `ctx.deps` and are never
    persisted; `budget` caps tokens, LLM calls and tool calls for the run.

    A `run_id` of yours makes the start idempotent with `if_exists="resume"`: when
    that run exists, `input` is ignored and you get the existing run: resumed if it
    failed, was cancelled or crashed; still waiting at its gates; or, when done, a
    handle whose result is its final state. (A run another live process executes
    is a `LeaseError`.) With the default "error", an existing id is a `RunStateError`.
    """
    if if_exists not in ("error", "resume"):
        raise ValueError(f"start(if_exists={if_exists!r}): use 'error' or 'resume'.")
    store = store or MemoryStore()
    await store.open()
    run_id = run_id or new_run_id()
    options = _Options(deps, max_concurrency, budget)
    existing = await _existing(store, run_id) if if_exists == "resume" else None
    if existing is not None:
        return await _attach(graph, store, existing, options)
    try:
        state = graph.schema.initial(input)
    except ValidationError as exc:
        raise RunError(f"graph {graph.name!r}: the input does not fit {graph.state_type.__name__}: "
                       f"{exc}", run_id=run_id) from None
    try:
        owner = await create_run_record(store, graph, run_id, state, graph_ref=graph_ref)
    except RunStateError:
        if if_exists == "error":
            raise
        # created meanwhile by another start
        return await _attach(graph, store, await store.get_run(run_id), options)
    return _launch(graph, store, run_id, owner, {}, options, "run_started")


async def _existing(store: Store, run_id: str) -> RunInfo | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None


async def _attach(graph: Graph, store: Store, info: RunInfo, options: _Options) -> RunHandle:
    """`start(..., if_exists="resume")` of a run that exists: resume it, or report it done."""
    run_id = info.run_id
    if info.status != "done":
        return await resume(graph, run_id, store=store, deps=options.deps,
                            max_concurrency=options.max_concurrency, budget=options.budget)
    check_same_graph(graph, info, allow_graph_change=False)
    loop = RunLoop(graph, store, run_id, owner="inspector")
    await loop.load()
    bus = EventBus()
    handle = RunHandle(run_id, store, bus)
    bus.publish(Event("run_finished", run_id, data={"attached": True}))
    handle._task = asyncio.create_task(_settled(RunResult(run_id, "done", loop.state)))
    return handle


async def _settled(result: RunResult) -> RunResult:
    return result


async def resume(
    graph: Graph, run_id: str, answer: Any = None, *, gate: str | None = None,
    answers: Mapping[str, Any] | None = None, by: str | None = None, store: Store,
    deps: Any = None, allow_graph_change: bool = False, max_concurrency: int | None = None,
    budget: Budget | None = None, now: float | None = None,
) -> RunHandle:
    """Continue a waiting, failed, cancelled or crashed run, answering gates if given.

    `answer` answers `gate` (or the only pending gate); `answers` maps gate names
    to answers. Answers are validated before anything changes. `now` (a Unix time)
    is what gate deadlines are checked against instead of the clock, so a test can
    see a day-long deadline pass: `resume(graph, run_id, store=store, now=time.time() + 86400)`.
    """
    await store.open()
    info = await store.get_run(run_id)
    check_resumable(graph, info, allow_graph_change)
    check_not_held(info)  # a run executing elsewhere is a LeaseError first
    raw = dict(answers or {})
    if answer is not None:
        raw[pick_gate(info, gate)] = answer
    # Validated before the claim, which is the first write: a refused answer changes nothing.
    checked = {name: Answer(validate_answer(graph, info, name, value), by) for name, value in raw.items()}
    owner = _lease.new_owner()
    await _lease.claim(store, run_id, owner)
    return _launch(graph, store, run_id, owner, checked,
                   _Options(deps, max_concurrency, budget, now), "run_resumed")


@dataclass(frozen=True)
class _Options:
    """Per-execution settings: given again at each start/resume, never persisted."""

    deps: Any = None
    max_concurrency: int | None = None
    budget: Budget | None = None
    now: float | None = None  # the time gate deadlines are checked against; None: the clock


def _launch(graph, store, run_id, owner, answers, options: _Options, first_event) -> RunHandle:
    bus = EventBus()
    handle = RunHandle(run_id, store, bus)
    bus.publish(Event(first_event, run_id, data={"graph": graph.name}))
    handle._task = asyncio.create_task(_execute(graph, store, run_id, owner, answers, options, bus))
    return handle


async def _execute(graph, store, run_id, owner, answers, options: _Options, bus) -> RunResult:
    current = asyncio.current_task()
    beat = asyncio.create_task(_lease.heartbeat(
        store, run_id, owner, _lease.LEASE_TTL, lambda exc: current and current.cancel()))
    loop = RunLoop(graph, store, run_id, owner, deps=options.deps, answers=answers, bus=bus,
                   max_concurrency=options.max_concurrency, budget=options.budget, now=options.now)
    try:
        await loop.load()
        outcome = await loop.drive()
    except asyncio.CancelledError:
        await _finish(store, run_id, owner, "cancelled", None, [])
        bus.publish(Event("run_cancelled", run_id))
        return RunResult(run_id, "cancelled", getattr(loop, "state", None))
    except WaypointError as exc:
        await _finish(store, run_id, owner, "failed", exc, [])
        bus.publish(Event("run_failed", run_id, exc.node, data={"error": str(exc)}))
        return RunResult(run_id, "failed", getattr(loop, "state", None), error=exc)
    except Exception as exc:  # a bug of ours: still leave the run failed and resumable
        error = RunError(f"run {run_id!r} stopped on an internal error {type(exc).__name__}: "
                         f"{exc}; resume it, and please report this.", run_id=run_id)
        await _finish(store, run_id, owner, "failed", error, [])
        bus.publish(Event("run_failed", run_id, data={"error": str(error)}))
        raise
    finally:
        beat.cancel()
    await _finish(store, run_id, owner, outcome.status, outcome.error, outcome.waiting)
    kind = {"done": "run_finished", "waiting": "run_waiting", "failed": "run_failed"}[outcome.status]
    data = {"waiting": outcome.waiting} if outcome.waiting else {}
    if outcome.error is not None:
        data["error"] = str(outcome.error)
    bus.publish(Event(kind, run_id, data=data))
    return RunResult(run_id, outcome.status, outcome.state, outcome.waiting, outcome.error)


async def _finish(store, run_id, owner, status, error, waiting) -> None:
    try:
        await store.release(run_id, owner, status, error=str(error) if error else None,
                            waiting=waiting)
    except WaypointError:
        pass  # lost the lease or the store is gone: whoever holds it now decides


def run_sync(graph: Graph, input: Any = None, *, store: Store | None = None, **options: Any) -> RunResult:
    """Start a run and wait for it, without async; closes the store's connection after."""
    async def main() -> RunResult:
        s = store or MemoryStore()
        try:
            return await (await start(graph, input, store=s, **options)).result()
        finally:
            await s.close()

    return asyncio.run(main())


def resume_sync(graph: Graph, run_id: str, answer: Any = None, *, store: Store, **options: Any) -> RunResult:
    """`resume` and wait, without async; closes the store's connection after."""
    async def main() -> RunResult:
        try:
            return await (await resume(graph, run_id, answer, store=store, **options)).result()
        finally:
            await store.close()

    return asyncio.run(main())
