"""Gates across runs: the approval log and the deadline sweep (`waypoint tick`).

    for entry in await approval_log(store):            # who answered what, when
        print(entry.run_id, entry.gate, entry.by, entry.answer)

    resumed = await tick(store, graph_for=lambda info: my_graphs[info.graph])
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo
from waypoint.engine.runs import RunResult, resume
from waypoint.graphs.graph import Graph
from waypoint.nodes.gate import GateNode


@dataclass(frozen=True)
class ApprovalEntry:
    """One answer given at a gate: which run and gate, who, when, and what."""

    run_id: str
    gate: str
    seq: int
    by: str | None
    at: float
    answer: dict[str, Any]


async def approval_log(store: Store, run_id: str | None = None, *, limit: int = 1000) -> list[ApprovalEntry]:
    """Answers given at gates, oldest first, for one run (and its subgraph runs) or all runs."""
    await store.open()
    runs = [await store.get_run(run_id)] if run_id else await store.list_runs(limit=limit)
    if run_id:
        runs += [r for r in await store.list_runs(limit=limit)
                 if r.parent_run_id and r.run_id.startswith(run_id + "/")]
    entries = []
    for info in runs:
        for step in await store.history(info.run_id):
            if step.kind == "done" and "answer" in step.extra:
                entries.append(ApprovalEntry(info.run_id, step.node, step.seq, step.extra.get("by"),
                                             step.extra.get("answered_at", step.at), step.extra["answer"]))
    return sorted(entries, key=lambda e: e.at)


async def due_gates(store: Store, run_id: str, now: float | None = None) -> list[str]:
    """Activations of gates in `run_id` whose deadline has passed without an answer."""
    snapshot, tail = await store.load(run_id)
    waits = dict(snapshot.frontier.get("waits", {})) if snapshot else {}
    for step in tail:
        if step.kind == "wait":
            waits[step.activation] = step.extra
        elif step.kind == "done":
            waits.pop(step.activation, None)
    return [act for act, request in waits.items() if GateNode.expired(request, now)]


async def tick(store: Store, graph_for: Callable[[RunInfo], Graph | None], *,
               now: float | None = None, **options: Any) -> list[RunResult]:
    """Resume every waiting run with an expired gate, so it takes its escalation route.

    `graph_for(info)` gives the graph of a due run, or None to leave that run for
    later (say, a graph this process cannot load). Run it from cron, or call it
    from your scheduler; gates inside subgraphs come due for their parent run.
    """
    await store.open()
    results = []
    for info in await store.list_runs(status="waiting", limit=100_000):
        if info.parent_run_id is None and await due_gates(store, info.run_id, now or time.time()):
            graph = graph_for(info)
            if graph is None:
                continue
            handle = await resume(graph, info.run_id, store=store, now=now, **options)
            results.append(await handle.result(raise_on_failure=False))
    return results
