"""What flows through a run's queue: one record per thing an activation reports.

    send(Done(act, Finished(outcome, record, started_seq)))   # completed: becomes a done step
    send(Failed(act, error, usage))                           # failed: the run fails
    send(Waiting(act, request))                               # paused: becomes a wait step
    send(ItemDone(act, index, result, future))                # a map item or an LLM turn

`NodeRunner` (`_nodes.py`) sends them, and only `RunLoop.commit_batch` (`_loop.py`)
reads them. Every message but `ItemDone` ends its activation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from waypoint.engine._frontier import Activation
from waypoint.errors import WaypointError
from waypoint.nodes.base import Outcome


@dataclass(slots=True)
class Finished:
    """A completed activation: its outcome, what it recorded, and the step it started after."""

    outcome: Outcome
    record: dict[str, Any]
    started_seq: int


@dataclass(slots=True)
class Done:
    act: Activation
    finished: Finished


@dataclass(slots=True)
class Failed:
    act: Activation
    error: WaypointError
    usage: dict[str, int]  # what its failed attempts spent: the fail step carries it


@dataclass(slots=True)
class Waiting:
    act: Activation
    request: dict[str, Any]  # a gate's question, or the gates its child runs stopped at


@dataclass(slots=True)
class ItemDone:
    act: Activation
    index: int
    result: Any  # plain data, as committed
    committed: asyncio.Future[None]  # set once the item's step is durable


Message = Done | Failed | Waiting | ItemDone
