"""Function nodes, routers and explicit joins: plain Python callables.

    def draft(state: Essay) -> dict:                 # sync: runs in a worker thread
        return {"text": "..."}

    async def judge(state: Essay) -> Literal["good", "bad"]:   # a router
        return "good" if state.score > 0.8 else "bad"

A function takes `(state)` or `(state, ctx)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from waypoint.nodes._call import call
from waypoint.nodes.base import Checks, Node, Outcome, register
from waypoint.nodes.context import NodeContext


@register
@dataclass(frozen=True)
class FunctionNode(Node):
    """Runs `fn(state[, ctx])` and returns its result as the update."""

    kind: ClassVar[str] = "function"
    drawing: ClassVar[str] = "function"
    fn: Callable[..., Any] | None = None
    wants_ctx: bool = False
    is_async: bool = False

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        if self.fn is None:  # a bare join or pass-through node
            return Outcome()
        args = (state, ctx) if self.wants_ctx else (state,)
        return Outcome(update=await call(self.fn, args, run_async=self.is_async))

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.function(name, self)


@register
@dataclass(frozen=True)
class RouterNode(FunctionNode):
    """Runs `fn(state[, ctx])`, which returns a label (or a list of labels to fan out).

    A label that is not one of its routes is a NodeError naming them, not retried.
    """

    kind: ClassVar[str] = "router"
    noun: ClassVar[str] = "router"
    drawing: ClassVar[str] = "router"
    may_fan_out: ClassVar[bool] = True
    decides: ClassVar[bool] = True

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        args = (state, ctx) if self.wants_ctx else (state,)
        assert self.fn is not None  # a router always has its function
        result = await call(self.fn, args, run_async=self.is_async)
        return Outcome(labels=self.chosen(result, ctx.run_id))

    def check(self, checks: Checks, name: str) -> list[str]:
        return []  # its labels against its routes: graphs/_checks_edges.py, for every router
