"""Queued runs: record a run for a worker to execute, and return at once.

    info = await submit(graph, {"topic": "tides"}, queue="default", store=store)
    info = await submit(graph, input, run_id="order-42", priority=5, store=store)  # idempotent

A queued run is a run row with status "queued" and its first snapshot (the
initial state, the frontier at START), leased to nobody: `Store.claim_next`
hands it to one worker, which executes it as a resume would (`waypoint worker`).
"""

from __future__ import annotations

import time
from typing import Any

from waypoint.checkpoints.protocol import Store, signals_of
from waypoint.checkpoints.records import RunInfo, Snapshot
from waypoint.engine._create import new_run_id
from waypoint.engine._frontier import Frontier
from waypoint.engine._ids import check_user_run_id
from waypoint.errors import RunNotFoundError, RunStateError
from waypoint.graphs.graph import Graph

__all__ = ["submit"]


async def submit(graph: Graph[Any], input: Any = None, *, store: Store, queue: str = "default",
                 run_id: str | None = None, priority: int = 0, graph_ref: str | None = None) -> RunInfo:
    """Record a queued run of `graph` from `input` and return its row; nothing executes here.

    Idempotent by `run_id`: when that run exists (submitted before, by anyone), its
    row is returned as it stands and `input` is ignored, so a retried submit never
    queues a run twice. `graph_ref` ("module:attr") is stored for the CLI, as `start`'s.
    """
    from waypoint.engine.runs import _initial_state  # runs imports the engine: load it on use

    if not queue:
        raise ValueError("submit(queue=''): name a queue, e.g. queue='default'; the empty name "
                         "holds child runs, which no worker claims")
    await store.open()
    run_id = new_run_id() if run_id is None else check_user_run_id(run_id)
    existing = await _existing(store, run_id)
    if existing is not None:
        return existing
    state = _initial_state(graph, input, run_id)
    now = time.time()
    info = RunInfo(run_id=run_id, graph=graph.name, graph_hash=graph.structure_hash, status="queued",
                   created_at=now, updated_at=now, graph_ref=graph_ref, queue=queue, priority=priority)
    snapshot = Snapshot(seq=0, state=graph.schema.encode_state(state),
                        frontier=Frontier.initial(graph).to_plain())
    try:
        await store.create_run(info, snapshot=snapshot)
    except RunStateError:  # submitted meanwhile by another caller with this id: theirs stands
        return await store.get_run(run_id)
    if (signals := signals_of(store)) is not None:  # wakes the workers of the queue
        await signals.notify(queue)
    return await store.get_run(run_id)


async def _existing(store: Store, run_id: str) -> RunInfo | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None
