"""Creating a run's record: its row, its lease and its first snapshot, in one write.

    owner = await create_run_record(store, graph, new_run_id(), graph.schema.initial(input))

Used by `start` and `fork` (`runs.py`, `views.py`) and by child runs (`_child.py`).
It imports nothing that executes runs, so child runs reach it without an import circle.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, Snapshot
from waypoint.engine import _lease
from waypoint.engine._frontier import Frontier
from waypoint.graphs.graph import Graph

# A child run (subgraph, map item, agent tool) is executed by its parent's executor, never
# claimed on its own: it sits in no queue a worker serves, even once its lease lapses.
CHILD_QUEUE = ""


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:12]


async def create_run_record(
    store: Store, graph: Graph[Any], run_id: str, state: BaseModel, *, owner: str | None = None,
    graph_ref: str | None = None, parent_run_id: str | None = None, forked_from: str | None = None,
    frontier: Frontier | None = None, seq: int = 0, ttl: float = _lease.LEASE_TTL,
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
        parent_run_id=parent_run_id, forked_from=forked_from,
        queue=CHILD_QUEUE if parent_run_id is not None else "default"),
        owner=owner, ttl=ttl, snapshot=snapshot)
    return owner
