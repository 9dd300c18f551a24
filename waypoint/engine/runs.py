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
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from msgspec import structs
from pydantic import BaseModel, ValidationError

from waypoint._messages import misfit, unknown_keys
from waypoint.checkpoints.memory import MemoryStore
from waypoint.checkpoints.protocol import Store, signals_of
from waypoint.checkpoints.records import RunInfo, RunStatus, Step
from waypoint.engine import _lease
from waypoint.engine._budget import Budget
from waypoint.engine._create import create_run_record, new_run_id
from waypoint.engine._ids import check_user_run_id
from waypoint.engine._loop import RunLoop
from waypoint.engine._resumable import (
    check_not_held,
    check_resumable,
    check_same_graph,
    pick_gate,
    stale_answer,
    validate_answer,
)
from waypoint.engine.edits import edit_step
from waypoint.engine.events import Event, EventBus
from waypoint.engine.handles import RunHandle, RunResult, Stop, finish
from waypoint.engine.hooks import HookCaller, ObservedBus, RunHooks
from waypoint.engine.waits import Answer, answered_step
from waypoint.errors import (
    LeaseError,
    RunError,
    RunMovedError,
    RunNotFoundError,
    RunStateError,
    StoreError,
    WaypointError,
)
from waypoint.graphs.graph import Graph
from waypoint.nodes.resources import begin as execution_resources

S = TypeVar("S")  # the graph's state model: start(Graph[Essay], ...) gives RunHandle[Essay]


async def start(
    graph: Graph[S], input: Any = None, *, store: Store | None = None, deps: Any = None,
    run_id: str | None = None, graph_ref: str | None = None, max_concurrency: int | None = None,
    budget: Budget | None = None, if_exists: Literal["error", "resume"] = "error",
    hooks: RunHooks | Sequence[RunHooks] | None = None, tracer_provider: Any = None,
    trace_content: bool = False,
) -> RunHandle[S]:
    """Create a run of `graph` from `input` (a state model, a dict or None) and execute it.

    `deps` (clients, connections) reach nodes as `ctx.deps` and are never
    persisted; `budget` caps tokens, LLM calls and tool calls for the run.

    A `run_id` of yours makes the start idempotent with `if_exists="resume"`: when
    that run exists, `input` is ignored and you get the existing run: resumed if it
    failed, was interrupted or crashed; still waiting at its gates; or, when done, a
    handle whose result is its final state. (A run another live process executes
    is a `LeaseError`.) With the default "error", an existing id is a `RunStateError`.

    `hooks` (a `RunHooks`, or a list) are called as the run's live work happens;
    `tracer_provider` (an OpenTelemetry TracerProvider, never the global one) gets
    its spans, with message content only if `trace_content=True`: docs/observability.md.
    """
    if if_exists not in ("error", "resume"):
        raise ValueError(f"start(if_exists={if_exists!r}): use 'error' or 'resume'.")
    store = store or MemoryStore()
    await store.open()
    run_id = new_run_id() if run_id is None else check_user_run_id(run_id)
    options = _Options(deps, max_concurrency, budget, watch=_watch(hooks, tracer_provider, trace_content))
    existing = await _existing(store, run_id) if if_exists == "resume" else None
    if existing is not None:
        return await _attach(graph, store, existing, options)
    state = _initial_state(graph, input, run_id)
    try:
        owner = await create_run_record(store, graph, run_id, state, graph_ref=graph_ref)
    except RunStateError:
        if if_exists == "error":
            raise
        # created meanwhile by another start
        return await _attach(graph, store, await store.get_run(run_id), options)
    return _launch(graph, store, run_id, owner, {}, options, "run_started")


def _initial_state(graph: Graph[Any], input: Any, run_id: str) -> BaseModel:
    """The run's first state from `input`; a misfit (unknown keys included) names each field."""
    error = None
    try:
        state = graph.schema.initial(input)
    except ValidationError as exc:
        error = exc
    if error is not None or unknown_keys(input, graph.state_type):
        raise RunError(f"graph {graph.name!r}: {misfit('the input', input, graph.state_type, error)} "
                       "Nothing was written.", run_id=run_id) from None
    return state


async def _existing(store: Store, run_id: str) -> RunInfo | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None


async def _attach(graph: Graph[Any], store: Store, info: RunInfo, options: _Options) -> RunHandle[Any]:
    """`start(..., if_exists="resume")` of a run that exists: resume it, or report it done."""
    run_id = info.run_id
    if info.status != "done":
        watch = options.watch
        return await resume(graph, run_id, store=store, deps=options.deps,
                            max_concurrency=options.max_concurrency, budget=options.budget,
                            hooks=watch.hooks, tracer_provider=watch.provider, trace_content=watch.content)
    check_same_graph(graph, info, allow_graph_change=False)
    loop = RunLoop(graph, store, run_id, owner="inspector")
    await loop.load()
    bus = EventBus()
    handle: RunHandle[Any] = RunHandle(run_id, store, bus)
    bus.publish(Event("run_finished", run_id, data={"attached": True}))
    handle._task = asyncio.create_task(_settled(RunResult(run_id, "done", loop.state)))
    return handle


async def _settled(result: RunResult[Any]) -> RunResult[Any]:
    return result


@overload
async def resume(
    graph: Graph[S], run_id: str, answer: Any = None, *, gate: str | None = None,
    answers: Mapping[str, Any] | None = None, by: str | None = None, store: Store,
    deps: Any = None, allow_graph_change: bool = False, max_concurrency: int | None = None,
    budget: Budget | None = None, now: float | None = None, force: bool = False,
    seen_seq: int | None = None, update: Mapping[str, Any] | None = None,
    hooks: RunHooks | Sequence[RunHooks] | None = None, tracer_provider: Any = None,
    trace_content: bool = False, enqueue: Literal[False] = False,
) -> RunHandle[S]: ...
@overload
async def resume(
    graph: Graph[S], run_id: str, answer: Any = None, *, gate: str | None = None,
    answers: Mapping[str, Any] | None = None, by: str | None = None, store: Store,
    allow_graph_change: bool = False, force: bool = False, seen_seq: int | None = None,
    update: Mapping[str, Any] | None = None, enqueue: Literal[True], seen_status: RunStatus | None = None,
) -> RunInfo: ...
async def resume(
    graph: Graph[S], run_id: str, answer: Any = None, *, gate: str | None = None,
    answers: Mapping[str, Any] | None = None, by: str | None = None, store: Store,
    deps: Any = None, allow_graph_change: bool = False, max_concurrency: int | None = None,
    budget: Budget | None = None, now: float | None = None, force: bool = False,
    seen_seq: int | None = None, update: Mapping[str, Any] | None = None,
    hooks: RunHooks | Sequence[RunHooks] | None = None, tracer_provider: Any = None,
    trace_content: bool = False, enqueue: bool = False, seen_status: RunStatus | None = None,
) -> RunHandle[S] | RunInfo:
    """Continue a waiting, failed, interrupted or crashed run, answering gates if given.

    `answer` answers `gate` (or the only pending gate); `answers` maps gate names
    to answers. Answers are validated before anything changes, and apply only to the
    wait they were validated against: if the run moved on meanwhile (another answer
    got there first), nothing is written and a `StaleAnswerError` says who answered,
    when, and what the run waits for now. Pass `seen_seq` (a `GateRequest.seq`, the
    step `waypoint show` printed) to apply answers only to the questions exactly as
    they were read then. An answer that was applied is durable once `resume` returns: it
    is in the run's log (an `answered` step), so a crash of this process right after
    loses nothing; the next execution of the run hands it to its gate.
    A run cancelled on purpose resumes only with `force=True`.
    `update` edits fields of the state first (as `fork(..., update=)` does), validated
    before anything is written and recorded as an `edit` step by `by`. `now` (a Unix time)
    is what gate deadlines are checked against instead of the clock, so a test can see a
    day-long deadline pass:
    `resume(graph, run_id, store=store, now=time.time() + 86400)`.
    `hooks`, `tracer_provider` and `trace_content` are as for `start`; a resume's span
    links to the traced start's.

    `enqueue=True` executes nothing here: the same checks and the same compare-and-set
    claim, then the answers (and the edit) are written to the run's log and the run is
    left "queued" for a worker of its queue (`waypoint worker`), which hands them to
    their gates. It returns the run's row (status "queued"). `seen_status` (with
    enqueue) is the status the caller read: the claim is a compare-and-set on it, so
    of two deadline sweeps re-queueing one run only one does (`RunMovedError`).
    """
    if enqueue and (deps is not None or max_concurrency is not None or budget is not None
                    or now is not None or hooks is not None or tracer_provider is not None):
        raise ValueError("resume(..., enqueue=True) executes nothing here: deps, max_concurrency, "
                         "budget, now, hooks and tracer_provider belong to the worker that will "
                         "execute the run (Worker(..., deps=...)); pass none of them with enqueue=True")
    watch = _watch(hooks, tracer_provider, trace_content)
    await store.open()
    seen = await store.get_run(run_id)
    check_resumable(graph, seen, allow_graph_change, force=force)
    raw = dict(answers or {})
    if answer is not None:
        raw[pick_gate(seen, gate)] = answer
    if seen_status is not None and seen_status != seen.status:  # e.g. re-queued by another sweep
        raise RunMovedError(f"run {run_id!r} moved on since it was read (status {seen_status!r} -> "
                            f"{seen.status!r}); nothing was written: read the run again and decide anew",
                            run_id=run_id, seq=seen.last_seq)
    if seen_seq is not None and seen_seq != seen.last_seq:
        seen = structs.replace(seen, last_seq=seen_seq)  # what the answerer saw: stale now
        raise await stale_answer(store, seen, list(raw) or [gate or "?"])
    try:
        check_not_held(seen)  # a run executing elsewhere is a LeaseError first
    except LeaseError:
        if raw:
            raise await stale_answer(store, seen, list(raw)) from None
        raise
    # Validated before the claim, which is the first write: a refused answer changes nothing.
    checked = {name: Answer(validate_answer(graph, seen, name, value), by) for name, value in raw.items()}
    edit = None if update is None else await _edit(graph, store, seen, update, by)
    owner = await _claim_seen(store, seen, list(raw))
    # The edit and the answers are durable before resume returns (a crash after it loses no
    # accepted answer): each answer an `answered` step under the claim, which the execution,
    # here or a worker's, hands to its gate (RunLoop.load: waits.enqueued_answers).
    steps = [] if edit is None else [edit]
    first = seen.last_seq + len(steps) + 1
    steps += [answered_step(first + i, name, value) for i, (name, value) in enumerate(checked.items())]
    if steps:
        await _append_claimed(store, seen, owner, steps)
    if enqueue:  # answered and left for a worker: release as "queued", and wake the workers
        await store.release(run_id, owner, "queued", waiting=seen.waiting)
        if (signals := signals_of(store)) is not None:
            await signals.notify(seen.queue)
        return await store.get_run(run_id)
    return _launch(graph, store, run_id, owner, {},
                   _Options(deps, max_concurrency, budget, now, watch), "run_resumed")


async def _claim_seen(store: Store, seen: RunInfo, gates: list[str]) -> str:
    """Claim the run as `seen` (compare-and-set on its log end and status); a new owner."""
    owner = _lease.new_owner()
    try:
        await _lease.claim(store, seen.run_id, owner, expect_seq=seen.last_seq, expect_status=seen.status)
    except RunMovedError:
        if gates:
            raise await stale_answer(store, seen, gates) from None
        check_not_held(await store.get_run(seen.run_id))  # another resume took it: say who executes it
        raise
    return owner


async def _edit(graph: Graph[Any], store: Store, seen: RunInfo, update: Mapping[str, Any],
                by: str | None) -> Step:
    """The `edit` step of `resume(update=...)`, checked against the run's state as it stands
    (its validators included) before anything is written."""
    loop = RunLoop(graph, store, seen.run_id, owner="inspector")
    await loop.load()
    return edit_step(graph, update, seq=seen.last_seq + 1, by=by, state=loop.state,
                     where=f"resume of run {seen.run_id!r}", run_id=seen.run_id)


async def _append_claimed(store: Store, seen: RunInfo, owner: str, steps: list[Step]) -> None:
    """Write a resume's edit and answers under the lease just claimed; on failure,
    hand the run back as it was."""
    try:
        await store.append(seen.run_id, owner, steps)
    except BaseException:
        await finish(store, seen.run_id, owner, seen.status, seen.error, seen.waiting)
        raise


@dataclass(frozen=True)
class _Options:
    """Per-execution settings: given again at each start/resume, never persisted."""

    deps: Any = None
    max_concurrency: int | None = None
    budget: Budget | None = None
    now: float | None = None  # the time gate deadlines are checked against; None: the clock
    watch: _Watch = field(default_factory=lambda: _Watch())
    ttl: float = _lease.LEASE_TTL  # the lease's length, renewed every ttl/3 (a worker's --ttl)
    claimed: bool = False  # executed by a worker (launch_claimed): a store failure lets the lease lapse


@dataclass(frozen=True)
class _Watch:
    """What observes an execution: hooks and an OpenTelemetry tracer provider (engine/hooks.py,
    engine/tracing.py), both fed by the run's events."""

    hooks: Any = None
    provider: Any = None
    content: bool = False

    def bus(self, graph: Graph[Any], run_id: str) -> tuple[EventBus, Any, HookCaller | None]:
        if self.hooks is None and self.provider is None:
            return EventBus(), None, None
        bus = ObservedBus()
        tracer = None
        if self.provider is not None:
            from waypoint.engine.tracing import RunTracer  # OpenTelemetry only when asked for
            tracer = RunTracer(self.provider, graph.name, run_id, content=self.content)
            bus.listeners.append(tracer)
        caller = None if self.hooks is None else HookCaller(self.hooks, bus)
        if caller is not None:
            bus.listeners.append(caller)
        return bus, tracer, caller


def _watch(hooks: Any, provider: Any, content: bool) -> _Watch:
    """Checked before anything is written: a bad hook or a missing OpenTelemetry is said first."""
    if hooks is not None:
        HookCaller(hooks, EventBus())
    if provider is not None:
        try:
            import waypoint.engine.tracing  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"tracer_provider= needs the OpenTelemetry API ({exc}); install it with: "
                "pip install 'waypoint-workflows[otel]'") from None
    return _Watch(hooks, provider, content)


def _launch(graph: Graph[Any], store: Store, run_id: str, owner: str, answers: dict[str, Answer],
            options: _Options, first_event: str) -> RunHandle[Any]:
    bus, tracer, caller = options.watch.bus(graph, run_id)
    handle: RunHandle[Any] = RunHandle(run_id, store, bus)
    handle._stop.owner = owner
    bus.publish(Event(first_event, run_id, data={"graph": graph.name}))
    handle._task = asyncio.create_task(
        _execute(graph, store, run_id, owner, answers, options, bus, handle._stop,
                 _Begin(tracer, caller, resumed=first_event == "run_resumed")))
    return handle


async def _execute(graph: Graph[Any], store: Store, run_id: str, owner: str, answers: dict[str, Answer],
                   options: _Options, bus: EventBus, stop: Stop,
                   begin: _Begin | None = None) -> RunResult[Any]:
    current = asyncio.current_task()

    def lost(exc: LeaseError) -> None:  # another owner has the run: stop, write nothing more
        stop.lost = exc
        if current is not None:
            current.cancel()

    beat = asyncio.create_task(_lease.heartbeat(store, run_id, owner, options.ttl, lost))
    loop = RunLoop(graph, store, run_id, owner, deps=options.deps, answers=answers, bus=bus,
                   max_concurrency=options.max_concurrency, budget=options.budget, now=options.now)
    # per-execution resources (an MCP server's connection): shared by its activations, closed at its end
    close_resources = execution_resources()
    try:
        if begin is not None:
            await begin(store, owner)
        await loop.load()
        outcome = await loop.drive()
    except asyncio.CancelledError:
        return await stop.settle(store, run_id, getattr(loop, "state", None), bus)
    except WaypointError as exc:
        if _left_to_lapse(options, exc):
            return _lapsing(run_id, getattr(loop, "state", None), exc, bus)
        await finish(store, run_id, owner, "failed", exc, [])
        bus.publish(Event("run_failed", run_id, exc.node, data={"error": str(exc)}))
        return RunResult(run_id, "failed", getattr(loop, "state", None), error=exc)
    except Exception as exc:  # a bug of ours: still leave the run failed and resumable
        error = RunError(f"run {run_id!r} stopped on an internal error {type(exc).__name__}: "
                         f"{exc}; resume it, and please report this.", run_id=run_id)
        await finish(store, run_id, owner, "failed", error, [])
        bus.publish(Event("run_failed", run_id, data={"error": str(error)}))
        raise
    finally:
        beat.cancel()
        await close_resources()
    if outcome.error is not None and _left_to_lapse(options, outcome.error):
        return _lapsing(run_id, outcome.state, outcome.error, bus)
    await finish(store, run_id, owner, outcome.status, outcome.error, outcome.waiting)
    kind = {"done": "run_finished", "waiting": "run_waiting", "failed": "run_failed"}[outcome.status]
    data: dict[str, Any] = {"waiting": outcome.waiting} if outcome.waiting else {}
    if outcome.error is not None:
        data["error"] = str(outcome.error)
    bus.publish(Event(kind, run_id, data=data))
    return RunResult(run_id, outcome.status, outcome.state, outcome.waiting, outcome.error)


def _left_to_lapse(options: _Options, error: WaypointError) -> bool:
    """A worker's run whose store failed under it (unreachable, restarting: a plain StoreError,
    not a damaged record) is not marked failed: it keeps its lease, unrenewed, and once that
    lapses any worker carries it on from what was committed."""
    return options.claimed and type(error) is StoreError


def _lapsing(run_id: str, state: Any, error: WaypointError, bus: EventBus) -> RunResult[Any]:
    bus.publish(Event("run_lapsing", run_id, data={"error": str(error)}))
    return RunResult(run_id, "running", state, error=error,
                     note="the store failed under this execution; the run's lease lapses unrenewed "
                          "and a worker claims it again")


@dataclass(frozen=True)
class _Begin:
    """Before the first node: open the run's span (storing or linking its trace), and fail
    the run on a strict run-start hook that raised."""

    tracer: Any
    caller: HookCaller | None
    resumed: bool

    async def __call__(self, store: Store, owner: str) -> None:
        if self.tracer is not None:
            await self.tracer.begin(store, owner, resumed=self.resumed)
        if self.caller is not None:
            self.caller.check()


def launch_claimed(graph: Graph[S], store: Store, info: RunInfo, *, ttl: float, deps: Any = None,
                   max_concurrency: int | None = None, hooks: RunHooks | Sequence[RunHooks] | None = None,
                   tracer_provider: Any = None) -> RunHandle[S]:
    """Execute a run this process has just claimed (`Store.claim_next`, by a worker) as
    `resume` executes one after its claim: the lease is `info.lease_owner`'s, renewed every
    ttl/3. A run of another graph structure is a `GraphChangedError` (nothing is launched)."""
    check_same_graph(graph, info, allow_graph_change=False)
    assert info.lease_owner is not None, "launch_claimed: the run must be claimed first"
    options = _Options(deps, max_concurrency, watch=_watch(hooks, tracer_provider, False), ttl=ttl,
                       claimed=True)
    first = "run_started" if info.last_seq == 0 else "run_resumed"
    return _launch(graph, store, info.run_id, info.lease_owner, {}, options, first)


def run_sync(graph: Graph[S], input: Any = None, *, store: Store | None = None,
             **options: Any) -> RunResult[S]:
    """Start a run and wait for it, without async; closes the store's connection after.

    Without `store=`, the run lives in memory for this call only: one that stops at a
    gate or fails cannot be resumed later, and its result (`note`) or error says so.
    """
    async def main() -> RunResult[S]:
        s = store or MemoryStore()
        try:
            return await (await start(graph, input, store=s, **options)).result(raise_on_failure=False)
        finally:
            await s.close()

    result = asyncio.run(main())
    if store is None and result.status != "done":
        result = _gone_with_memory(result)
    if result.status == "failed" and result.error is not None:
        raise result.error
    return result


_IN_MEMORY = ("run {run_id!r} was kept in memory (run_sync was given no store=), so it is gone "
              "now and cannot be resumed; to keep runs you can resume, pass a durable store: "
              "run_sync(graph, input, store=SQLiteStore('runs.db')).")


def _gone_with_memory(result: RunResult[Any]) -> RunResult[Any]:
    note = _IN_MEMORY.format(run_id=result.run_id)
    error = result.error
    if error is not None:
        cause = error.__cause__
        error = copy.copy(error)  # its class and attributes kept (a GuardrailTripped's verdict too)
        error.args = (f"{error} Note: {note}",)
        error.__cause__ = cause
    return RunResult(result.run_id, result.status, result.state, result.waiting, error, note=note)


def resume_sync(graph: Graph[S], run_id: str, answer: Any = None, *, store: Store,
                **options: Any) -> RunResult[S]:
    """`resume` and wait, without async; closes the store's connection after."""
    async def main() -> RunResult[S]:
        try:
            handle: RunHandle[S] = await resume(graph, run_id, answer, store=store, **options)
            return await handle.result()
        finally:
            await store.close()

    return asyncio.run(main())
