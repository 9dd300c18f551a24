"""A run's events, as an async stream you can iterate while it runs.

    handle = await start(graph, input, store=store)
    async for event in handle.events():
        print(event.kind, event.node)

Kinds: run_started, run_resumed, node_started, node_finished, node_failed,
node_retried, gate_waiting, run_waiting, run_finished, run_failed,
run_interrupted, run_cancelled, cache_hit (a `cache=` node's result read from
the store; its node_finished follows), cache_waiting (it waits for another run
of this process computing the same key), limit_slot_lost (a `Limit(processes=True)`
slot taken by another process while held), plus any
custom kind a node emits through `ctx.emit(kind, data)` (e.g. "token").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"run_waiting", "run_finished", "run_failed", "run_interrupted", "run_cancelled"})


@dataclass(frozen=True, init=False)
class Event:
    kind: str
    run_id: str
    node: str | None = None
    activation: str | None = None
    seq: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def __init__(self, kind: str, run_id: str, node: str | None = None, activation: str | None = None,
                 seq: int | None = None, data: dict[str, Any] | None = None, at: float | None = None) -> None:
        # Two events per node: one dict update instead of a frozen dataclass's seven
        # object.__setattr__ calls (1.55 -> 0.93 us each). `data` defaults to {}, `at` to now.
        self.__dict__.update(kind=kind, run_id=run_id, node=node, activation=activation, seq=seq,
                             data={} if data is None else data, at=time.time() if at is None else at)


class EventBus:
    """Fan-out of events to any number of subscribers; each gets every event after it joined."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Event]] = []
        self.history: list[Event] = []
        self.closed = False

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for queue in self._queues:
            queue.put_nowait(event)

    async def subscribe(self, *, replay: bool = True) -> AsyncIterator[Event]:
        """Events until the run stops (finishes, fails, waits, is interrupted or cancelled)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        backlog = list(self.history) if replay else []
        self._queues.append(queue)
        try:
            for event in backlog:
                yield event
                if event.kind in TERMINAL:
                    return
            if self.closed and backlog:
                return
            while True:
                event = await queue.get()
                yield event
                if event.kind in TERMINAL:
                    return
        finally:
            self._queues.remove(queue)
