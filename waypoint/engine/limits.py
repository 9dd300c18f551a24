"""The slots behind `Limit`s: one pool per limit name, shared by every run of this process.

    OPENAI = Limit("openai", 4)
    g.add(llm("summarise", prompt="{text}", into="summary"), limit=OPENAI)
    slots_of(OPENAI).in_use, slots_of(OPENAI).waiting     # what it holds and queues now

A run's `max_concurrency=` and a node's `concurrency=` count the activations of
one run; a `Limit` counts those of every run executing in this process (in its
event loop: `asyncio.run` twice gives two sets of pools), whichever graph the
node is in. Waiters are served first come, first served. The limit is per
process: processes sharing a store (a worker fleet) each have their own slots.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

from waypoint.errors import RunError
from waypoint.nodes.limit import Limit

_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Slots]] = weakref.WeakKeyDictionary()


class Slots:
    """`size` slots: `async with slots:` holds one; the others wait in order of arrival."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.in_use = 0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def acquire(self) -> None:
        if self.in_use < self.size and not self._queue:
            self.in_use += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            await turn  # `release` hands its slot over: in_use already counts us
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a slot as we were cancelled: pass it on
            elif turn in self._queue:
                self._queue.remove(turn)
            raise

    def release(self) -> None:
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes to the next waiter as it is
                return
        self.in_use -= 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def slots_of(limit: Limit) -> Slots:
    """The pool of `limit.name` in the running event loop, made on first use.

    A second size for one name is a `RunError`: two graphs would each believe
    their own bound.
    """
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    slots = pools.get(limit.name)
    if slots is None:
        slots = pools[limit.name] = Slots(limit.name, limit.size)
    elif slots.size != limit.size:
        raise RunError(f"Limit({limit.name!r}, {limit.size}) disagrees with Limit({limit.name!r}, "
                       f"{slots.size}) already in use in this process; give every node of one limit "
                       "the same Limit object (e.g. a module-level OPENAI = Limit('openai', 4)).")
    return slots
