"""`waypoint submit`: queue a run for a worker and return at once.

    waypoint submit flows.py:graph --input '{"topic": "tides"}' --queue default [--priority 5]

The run is recorded with status "queued" (`waypoint.submit`); `waypoint worker`
(the next step of issue 14) claims and executes it.
"""

from __future__ import annotations

from typing import Any

from waypoint._cli.common import Db, command, opened
from waypoint._cli.output import Out


async def submit_run(graph: Any, ref: str, input_: Any, db: Db, queue: str, run_id: str | None,
                     priority: int, out: Out) -> None:
    from waypoint.engine.queue import submit

    async with opened(db) as store:
        info = await submit(graph, input_, store=store, queue=queue, run_id=run_id, priority=priority,
                            graph_ref=ref)
    out.line(f"run_id: {info.run_id}")
    out.line(f"status: {info.status} (queue {info.queue}, priority {info.priority})")
    out.line(f"show:   {command('show', info.run_id, db=db)}")
