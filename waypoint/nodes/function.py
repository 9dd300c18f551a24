"""Function nodes, routers and explicit joins: plain Python callables.

    def draft(state: Essay) -> dict:                 # sync: runs in a worker thread
        return {"text": "..."}

    async def judge(state: Essay) -> Literal["good", "bad"]:   # a router
        return "good" if state.score > 0.8 else "bad"

A function takes `(state)` or `(state, ctx)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from waypoint.nodes._call import call
from waypoint.nodes.base import Node, Outcome
from waypoint.nodes.context import NodeContext


@dataclass(frozen=True)
class FunctionNode(Node):
    """Runs `fn(state[, ctx])` and returns its result as the update."""

    kind: ClassVar[str] = "function"
    fn: Callable[..., Any] | None = None
    wants_ctx: bool = False
    is_async: bool = False

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        if self.fn is None:  # a bare join or pass-through node
            return Outcome()
        args = (state, ctx) if self.wants_ctx else (state,)
        return Outcome(update=await call(self.fn, args, run_async=self.is_async))


@dataclass(frozen=True)
class RouterNode(FunctionNode):
    """Runs `fn(state[, ctx])`, which returns a label (or a list of labels to fan out)."""

    kind: ClassVar[str] = "router"

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        args = (state, ctx) if self.wants_ctx else (state,)
        result = await call(self.fn, args, run_async=self.is_async)
        labels = tuple(result) if isinstance(result, (list, tuple, set, frozenset)) else (result,)
        for label in labels:
            if label not in self.labels:
                raise ValueError(
                    f"router {self.name!r} returned {label!r}, which is not one of its "
                    f"routes {list(self.labels)}; return one of those or add a route for it"
                )
        return Outcome(labels=labels)
