"""What the server does to runs, shared by the JSON API and the pages.

    from waypoint.web import actions

    info = await actions.answer(ctx, run_id, {"approved": True}, gate="review", by=current_user(request))
    try: ...
    except InvalidAnswer as exc:        # a GateError: 422, with exc.fields [(("approved",), "msg"), ...]
    except WaypointError as exc:        # status_of(exc): 404, 409, 400...

Each returns the run's row (`RunInfo`) as it stands once the change is written: a
started, answered or forked run then executes in this server's event loop (a task in
`ctx.tasks`), or is queued for a worker when the server was started with `enqueue`.
Every refusal is a `WaypointError` whose message is the one the CLI prints, and
`status_of` gives its HTTP status. Nothing is written when one is raised.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import ValidationError

from waypoint._messages import located, unknown_keys
from waypoint.checkpoints.records import RunInfo
from waypoint.engine.handles import RunHandle
from waypoint.errors import (
    GateError,
    GraphChangedError,
    LeaseError,
    RunError,
    RunNotFoundError,
    RunStateError,
    StaleAnswerError,
    StoreError,
    UpdateError,
    WaypointError,
)
from waypoint.web.context import WebContext

FieldErrors = list[tuple[tuple[str | int, ...], str]]


class InvalidAnswer(GateError):
    """An answer that does not fit its gate's schema: the message the CLI prints, and
    `fields`, each problem at its location in the answer (a form shows it beside the input)."""

    def __init__(self, message: str, fields: FieldErrors, *, run_id: str, node: str) -> None:
        super().__init__(message, run_id=run_id, node=node)
        self.fields = fields


class NotPending(GateError):
    """An answer to a gate the run does not wait at now: answered already, or not reached (409)."""


class GraphNotServed(RunError):
    """The run's graph (or the graph named) is not one this server was given."""


def status_of(exc: WaypointError) -> int:
    """The HTTP status of a refusal: 404 unknown, 409 conflict/stale, 422 invalid, 400 else."""
    if isinstance(exc, (RunNotFoundError, GraphNotServed)):
        return 404
    if isinstance(exc, InvalidAnswer | UpdateError):
        return 422
    if isinstance(exc, (LeaseError, RunStateError, GraphChangedError, NotPending)):
        return 409  # executing elsewhere, moved on (a stale answer), finished, cancelled
    if isinstance(exc, StoreError):
        return 503
    return 400


def graph_named(ctx: WebContext, name: str, run_id: str | None = None) -> Any:
    graph = ctx.graphs.get(name)
    if graph is None:
        served = ", ".join(sorted(ctx.graphs)) or "none"
        what = f"run {run_id!r} is of graph {name!r}, which" if run_id else f"graph {name!r}"
        raise GraphNotServed(f"{what} is not served here (graphs served: {served}); restart "
                             f"`waypoint serve` with its MODULE_OR_FILE:GRAPH reference.", run_id=run_id)
    return graph


async def _run_graph(ctx: WebContext, run_id: str) -> tuple[RunInfo, Any]:
    info = await ctx.store.get_run(run_id)
    return info, graph_named(ctx, info.graph, run_id)


_WRITES = frozenset({"node_finished", "node_failed", "gate_waiting", "run_waiting", "run_finished",
                     "run_failed", "run_interrupted", "run_cancelled", "run_started", "run_resumed"})
# the run's row changed in a way that may start or stop a wait: the inbox's streams look again
_INBOX = frozenset({"run_waiting", "run_finished", "run_failed", "run_interrupted", "run_cancelled",
                    "run_started", "run_resumed"})


def _keep(ctx: WebContext, handle: RunHandle[Any]) -> None:
    """Execute `handle`'s run in the background of this server; forget it once it stops."""
    async def settle() -> None:
        try:
            async for event in handle.events():  # until the run stops: wake its event streams
                if event.kind in _WRITES:
                    ctx.changes.notify(handle.run_id, inbox=event.kind in _INBOX)
            await handle.result(raise_on_failure=False)
        except asyncio.CancelledError:
            await asyncio.shield(handle.interrupt())  # the server stops: resumable as it is
            raise
        finally:
            ctx.changes.notify(handle.run_id, inbox=True)

    task = asyncio.get_running_loop().create_task(settle())
    ctx.tasks.add(task)
    ctx.handles[handle.run_id] = handle

    def forget(done: asyncio.Task[None]) -> None:
        ctx.tasks.discard(done)
        if ctx.handles.get(handle.run_id) is handle:
            del ctx.handles[handle.run_id]

    task.add_done_callback(forget)


async def start(ctx: WebContext, graph: str, input: Any = None, *, run_id: str | None = None,
                if_exists: Literal["error", "resume"] = "error") -> tuple[RunInfo, bool]:
    """Start a run of the served graph named `graph` (or queue it, with `enqueue`): its row,
    and whether this call created it.

    With `run_id` and `if_exists="resume"` a retried start is idempotent: a run that
    exists is returned as it stands (created False) when there is nothing to do: one
    this server executes now, one waiting at gates whose deadlines have not passed, one
    done. Only a failed, interrupted or crashed run (or a wait come due) is resumed.
    """
    from waypoint.engine import start as start_run
    from waypoint.engine.queue import submit

    chosen = graph_named(ctx, graph)
    ref = ctx.refs.get(graph)
    existing = await _existing(ctx, run_id) if run_id is not None else None
    if existing is not None and if_exists == "error":
        raise RunStateError(f"run {run_id!r} already exists; start it again with "
                            "if_exists='resume' to get it as it stands.", run_id=run_id)
    if ctx.enqueue:
        info: RunInfo = await submit(chosen, input, store=ctx.store, run_id=run_id, graph_ref=ref)
        return info, existing is None
    if existing is not None and await _as_it_stands(ctx, chosen, existing):
        return await ctx.store.get_run(existing.run_id), False
    handle = await start_run(chosen, input, store=ctx.store, run_id=run_id, graph_ref=ref,
                             if_exists=if_exists, **ctx.run_options())
    _keep(ctx, handle)
    return await ctx.store.get_run(handle.run_id), existing is None


async def _as_it_stands(ctx: WebContext, graph: Any, info: RunInfo) -> bool:
    """Whether a retried start of `info` has nothing to do: the run executes in this server,
    waits at gates none of which is due, or is done. (A run of another graph, or another
    structure of it, goes to the engine, whose refusal says so.)"""
    from waypoint.engine.views import replay
    from waypoint.engine.waits import due_waits

    if info.graph != graph.name or info.graph_hash != graph.structure_hash:
        return False
    if info.run_id in ctx.handles or info.status == "done":
        return True
    if info.status != "waiting":
        return False
    _, frontier, _ = await replay(graph, info.run_id, store=ctx.store)
    return not due_waits(frontier)  # a due wait: resuming applies its timeout


async def _existing(ctx: WebContext, run_id: str) -> RunInfo | None:
    try:
        return await ctx.store.get_run(run_id)
    except RunNotFoundError:
        return None


async def answer(ctx: WebContext, run_id: str, value: Any, *, gate: str | None = None, by: str,
                 seen_seq: int | None = None) -> RunInfo:
    """Answer `gate` of a waiting run (the only one if None) as `by`; the run goes on here
    (or is queued for a worker, `ctx.enqueue`). With neither `value` nor `gate`, a failed
    or interrupted run is resumed as it is.

    The answer is validated first (`InvalidAnswer`, nothing written), then applied only
    to the wait it was checked against: `seen_seq` (the step the answerer saw) makes a
    stale answer a `StaleAnswerError` (409) too. Once this returns (and the client is
    told 202/303), the answer is durable: `resume` wrote it to the run's log, so a
    server killed right after loses nothing, and the next execution of the run takes it.
    """
    from waypoint.engine import resume
    from waypoint.engine.waits import find_gate

    info, graph = await _run_graph(ctx, run_id)
    name = gate
    if value is not None or gate is not None:  # neither: a failed or interrupted run goes on
        if name is None and info.status == "waiting":
            name = _only_gate(info)
        if name is not None:
            model = find_gate(graph, name).answer  # a GateError (400) when the graph has no such gate
            if info.status == "waiting" and name in info.waiting:
                check_answer(model, value, run_id, name)
    try:
        if ctx.enqueue:
            queued: RunInfo = await resume(graph, run_id, value, gate=name, by=by, store=ctx.store,
                                           seen_seq=seen_seq, enqueue=True)
            ctx.changes.notify(run_id, inbox=True)
            return queued
        handle = await resume(graph, run_id, value, gate=name, by=by, store=ctx.store, seen_seq=seen_seq,
                              **ctx.run_options())
    except GateError as exc:
        if isinstance(exc, StaleAnswerError) or (info.status == "waiting" and name in info.waiting):
            raise
        raise NotPending(str(exc), run_id=run_id, node=name) from None  # answered, or never asked
    _keep(ctx, handle)
    return await ctx.store.get_run(run_id)


def _only_gate(info: RunInfo) -> str:
    if len(info.waiting) == 1:
        return info.waiting[0]
    raise GateError(f"run {info.run_id!r} waits at {info.waiting or 'no gate'}; name the gate to "
                    "answer (\"gate\": NAME).", run_id=info.run_id)


def check_answer(model: Any, value: Any, run_id: str, gate: str) -> None:
    """`InvalidAnswer` (with each field's problem) unless `value` fits the gate's answer model."""
    from waypoint._messages import misfit

    error = None
    try:
        model.model_validate(value)
    except ValidationError as exc:
        error = exc
    extra = unknown_keys(value, model)
    if error is None and not extra:
        return
    fields: FieldErrors = [((key,), f"{key!r} is not a field of {model.__name__}") for key in extra]
    fields += located(error) if error is not None else []
    raise InvalidAnswer(f"run {run_id!r}, gate {gate!r}: {misfit('the answer', value, model, error)} "
                        "The run is still waiting; resume again with a corrected answer.",
                        fields, run_id=run_id, node=gate)


async def fork(ctx: WebContext, run_id: str, *, at: int | None = None, update: dict[str, Any] | None = None,
               by: str, new_id: str | None = None) -> RunInfo:
    """A new run from `run_id`'s state right after step `at` (its last by default), with
    fields changed by `update` (an `edit` step by `by`); it executes here."""
    from waypoint.engine import fork as fork_run

    info, graph = await _run_graph(ctx, run_id)
    seq = info.last_seq if at is None else at
    if seq < 0 or seq > info.last_seq:
        raise RunError(f"run {run_id!r} has steps 0 to {info.last_seq}; fork it at one of those "
                       f"(got {seq}).", run_id=run_id, seq=seq)
    handle = await fork_run(graph, run_id, at=seq, store=ctx.store, run_id=new_id, deps=ctx.deps,
                            update=update, by=by if update is not None else None)
    _keep(ctx, handle)
    return await ctx.store.get_run(handle.run_id)


async def cancel(ctx: WebContext, run_id: str, *, by: str, reason: str | None = None) -> RunInfo:
    """Cancel a run on purpose (it resumes only with force); a run this server executes is
    stopped here, one another process executes is a `LeaseError` (409)."""
    from waypoint.engine import cancel as cancel_run

    handle = ctx.handles.get(run_id)
    if handle is not None:
        await handle.cancel(reason=reason, by=by)
        return await ctx.store.get_run(run_id)
    info: RunInfo = await cancel_run(run_id, store=ctx.store, reason=reason, by=by)
    ctx.changes.notify(run_id, inbox=True)
    return info
