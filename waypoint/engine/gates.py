"""Gates across runs: the approval log and the deadline sweep (`waypoint tick`).

    for entry in await approval_log(store=store):      # who answered what, when
        print(entry.run_id, entry.gate, entry.by, entry.answer)

    swept = await tick(lambda info: my_graphs[info.graph], store=store)
    for result in swept: ...                            # RunResults of the runs resumed
    for skipped in swept.skipped: ...                   # run_id, reason: left for a human
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo
from waypoint.engine._frontier import Frontier
from waypoint.engine.handles import RunResult
from waypoint.engine.runs import resume
from waypoint.engine.waits import due_waits
from waypoint.errors import WaypointError
from waypoint.graphs.graph import Graph

_ALL = 1_000_000  # list_runs limit meaning "every run": the sweep and a run's family need all


@dataclass(frozen=True)
class ApprovalEntry:
    """One answer given at a gate: which run and gate, who, when, and what."""

    run_id: str
    gate: str
    seq: int
    by: str | None
    at: float
    answer: dict[str, Any]


async def approval_log(run_id: str | None = None, *, store: Store, limit: int = 1000) -> list[ApprovalEntry]:
    """Answers given at gates, oldest first: of one run and its child runs (subgraphs, map
    items, agent tools, recursively), or of all runs (the `limit` newest)."""
    await store.open()
    runs = await _family(store, run_id) if run_id else await store.list_runs(limit=limit)
    entries = []
    for info in runs:
        for step in await store.history(info.run_id):
            if step.kind == "done" and "answer" in step.extra:
                entries.append(ApprovalEntry(info.run_id, step.node, step.seq, step.extra.get("by"),
                                             step.extra.get("answered_at", step.at), step.extra["answer"]))
    return sorted(entries, key=lambda e: e.at)


async def _family(store: Store, run_id: str) -> list[RunInfo]:
    """`run_id` and its descendants by `parent_run_id`: never a run that merely shares a prefix."""
    children: dict[str, list[RunInfo]] = {}
    for info in await store.list_runs(limit=_ALL):
        if info.parent_run_id is not None:
            children.setdefault(info.parent_run_id, []).append(info)
    family = [await store.get_run(run_id)]
    for info in family:  # grows as it goes: breadth first down the tree
        family.extend(children.get(info.run_id, ()))
    return family


async def due_gates(run_id: str, now: float | None = None, *, store: Store) -> list[str]:
    """Activations of gates in `run_id` whose deadline has passed without an answer.

    Its waits are followed by `Frontier.track`, the part of `Frontier.apply` that
    needs no graph, so it agrees with replay (a failed subgraph's wait is gone)
    without loading the run's graph: `tick` asks for a graph only for due runs.
    """
    snapshot, tail = await store.load(run_id)
    frontier = Frontier.from_plain(snapshot.frontier) if snapshot else Frontier()
    for step in tail:
        frontier.track(step)
    return due_waits(frontier, now)


@dataclass(frozen=True)
class SkippedRun:
    """A waiting run `tick()` could not handle, and why (the error's message)."""

    run_id: str
    reason: str
    error: WaypointError


class TickResults(list[RunResult[Any]]):
    """What `tick()` did: the RunResults of the runs it resumed (it is a list of them),
    and in `skipped` the runs it could not tick, each with the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedRun] = []
        self.queued: list[RunInfo] = []  # with enqueue=True: the due runs handed to their queue


async def tick(graph_for: Callable[[RunInfo], Graph[Any] | None], *, store: Store,
               now: float | None = None, enqueue: bool = False, **options: Any) -> TickResults:
    """Resume every waiting run with an expired gate, so it takes its escalation route.

    `graph_for(info)` gives the graph of a due run, or None to leave that run for
    later (say, a graph this process cannot load). Run it from cron, or call it
    from your scheduler; gates inside subgraphs come due for their parent run.
    Each run is handled on its own: one that cannot be ticked (its graph changed
    shape, another process holds it...) is listed in `.skipped` and the sweep goes on.
    With `enqueue=True` a due run is not resumed here but left "queued" for a worker
    (`resume(..., enqueue=True)`; listed in `.queued`): what `waypoint worker` does.
    """
    await store.open()
    results = TickResults()
    for info in await store.list_runs(status="waiting", limit=_ALL):
        if info.parent_run_id is not None:
            continue  # a child's gates come due through its parent's wait
        try:
            if enqueue:
                queued = await _enqueue_due(store, info, graph_for, now)
                results.queued.extend([queued] if queued is not None else [])
                continue
            result = await _tick_one(store, info, graph_for, now, options)
        except WaypointError as exc:
            results.skipped.append(SkippedRun(info.run_id, str(exc), exc))
            continue
        if result is not None:
            results.append(result)
    return results


async def _enqueue_due(store: Store, info: RunInfo, graph_for: Callable[[RunInfo], Graph[Any] | None],
                       now: float | None) -> RunInfo | None:
    """Re-queue one waiting run if a gate of it is due; None if none is (or no graph is given)."""
    graph = graph_for(info)
    if graph is None or not await due_gates(info.run_id, now or time.time(), store=store):
        return None
    return await resume(graph, info.run_id, store=store, enqueue=True, seen_status=info.status)


async def _tick_one(store: Store, info: RunInfo, graph_for: Callable[[RunInfo], Graph[Any] | None],
                    now: float | None, options: dict[str, Any]) -> RunResult[Any] | None:
    """Resume one waiting run if a gate of it is due; None if none is (or no graph is given)."""
    if not await due_gates(info.run_id, now or time.time(), store=store):
        return None
    graph = graph_for(info)
    if graph is None:
        return None
    handle = await resume(graph, info.run_id, store=store, now=now, **options)
    return await handle.result(raise_on_failure=False)
