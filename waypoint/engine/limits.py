"""The slots behind `Limit`s: one pool per limit name, shared by every run of this process.

    OPENAI = Limit("openai", 4)
    g.add(llm("summarise", prompt="{text}", into="summary"), limit=OPENAI)
    slots_of(OPENAI).in_use, slots_of(OPENAI).waiting     # what it holds and queues now

A run's `max_concurrency=` and a node's `concurrency=` count the activations of
one run; a `Limit` counts those of every run executing in this process (in its
event loop: `asyncio.run` twice gives two sets of pools), whichever graph the
node is in. Waiters are served first come, first served.

`Limit(..., processes=True)` also holds a slot in the run's store for the node's
whole execution (`store_slot`): every process sharing the store shares the bound.
A claim that finds every slot held is tried again after a growing pause (10 ms to
0.5 s, jittered): waiters in other processes are polled, not woken, and are served
in no particular order. A held slot is renewed every `SLOT_TTL / 3` and expires
`SLOT_TTL` after its process died. If a renewal finds the slot gone (the process
was stalled past the TTL and another took it), the node goes on: for that while
the bound is exceeded by one, which an event (`limit_slot_lost`) reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable

from waypoint.checkpoints.protocol import Store
from waypoint.errors import RunError
from waypoint.nodes.limit import Limit

SLOT_TTL = 30.0  # seconds a store slot is held without renewal

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


@contextlib.asynccontextmanager
async def store_slot(limit: Limit, store: Store | None, holder: str,
                     lost: Callable[[], None] = lambda: None) -> AsyncIterator[int]:
    """Hold one of `limit`'s slots in `store` (polling until one is free) while the block runs;
    `lost()` is called if a renewal finds it taken by another holder meanwhile."""
    if store is None or not hasattr(store, "claim_slot"):
        raise RunError(f"Limit({limit.name!r}, {limit.size}, processes=True) needs a store with "
                       f"claim_slot/renew_slot/release_slot; {type(store).__name__} has none. Use "
                       "SQLiteStore or PostgresStore, or drop processes=True for a per-process limit.")
    slot, pause = await store.claim_slot(limit.name, limit.size, holder, SLOT_TTL), 0.01
    while slot is None:
        await asyncio.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, 0.5)
        slot = await store.claim_slot(limit.name, limit.size, holder, SLOT_TTL)
    renewing = asyncio.create_task(_renew(limit, store, slot, holder, lost))
    try:
        yield slot
    finally:
        renewing.cancel()
        await asyncio.shield(store.release_slot(limit.name, slot, holder))


async def _renew(limit: Limit, store: Store, slot: int, holder: str, lost: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(SLOT_TTL / 3)
        try:
            renewed = await store.renew_slot(limit.name, slot, holder, SLOT_TTL)
        except Exception:  # the store is failing: the node's own commit will say so
            renewed = False
        if not renewed:
            lost()
            return
