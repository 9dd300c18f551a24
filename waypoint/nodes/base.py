"""The node kinds' common shape: `Node`, `Outcome` and `RetryPolicy`.

A node is an immutable description plus `run(state, ctx) -> Outcome`. The
engine decides when to run it and what to do with the outcome; the node only
computes its update and, for routers and guards, the labels it routes to.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from waypoint.nodes.context import NodeContext


@dataclass(frozen=True)
class Outcome:
    """What one activation produced."""

    update: Any = None  # dict, pydantic model or None: the partial state update
    labels: tuple[str, ...] | None = None  # routes taken; None = follow the static edges


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing node is retried: `RetryPolicy(attempts=3, backoff=0.5)`.

    The delay before attempt n+1 is `backoff * 2**(n-1)`, capped at `max_backoff`,
    with full jitter when `jitter` is set. Only exceptions in `retry_on` retry.
    """

    attempts: int = 1
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0, base) if self.jitter else base

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.attempts and isinstance(exc, self.retry_on)


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Node:
    """Base of all node kinds. `writes` is None when the builder could not tell."""

    kind: ClassVar[str] = "node"
    keeps_turns: ClassVar[bool] = False  # commits progress inside an activation (ctx.commit_item)
    name: str
    writes: frozenset[str] | None = None
    join: bool = False
    timeout: float | None = None
    retry: RetryPolicy = NO_RETRY
    concurrency: int | None = None  # at most this many activations of this node at once
    labels: tuple[str, ...] = field(default=())  # routes this node can take (routers, guards)

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        raise NotImplementedError

    async def run_with_timeout(self, state: Any, ctx: NodeContext) -> Outcome:
        if self.timeout is None:
            return await self.run(state, ctx)
        async with asyncio.timeout(self.timeout):
            return await self.run(state, ctx)
