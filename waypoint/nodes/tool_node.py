"""Tool nodes: a typed Python callable whose arguments come from the state.

    def charge(amount: float, customer: str, ctx: NodeContext) -> str:
        return payments.charge(amount, customer, idempotency_key=ctx.idempotency_key)

    g.tool_node(charge, into="receipt", retry=RetryPolicy(attempts=3),
                timeout=10, args={"customer": "customer_id"})

Each parameter is read from the state field of the same name (or the field
named in `args`, or `args(state)` returns them all) and validated against the
parameter's annotation before the call: a value that does not fit fails the
node without calling it. The result goes to `into` (or, without `into`, must be
a dict of field updates). The attempt number is stored with the completion; the
context's `idempotency_key` is the same for every attempt and across crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

from waypoint._messages import problems
from waypoint.errors import GraphError, NodeError
from waypoint.nodes._call import call
from waypoint.nodes._tools import Tool
from waypoint.nodes.base import Checks, Node, Outcome, register
from waypoint.nodes.context import NodeContext


@register
@dataclass(frozen=True)
class ToolNode(Node):
    kind: ClassVar[str] = "tool"
    noun: ClassVar[str] = "tool node"
    tool: Tool | None = None
    args: Mapping[str, str] | Callable[[Any], dict[str, Any]] | None = None
    into: str | None = None

    @property
    def callee(self) -> Tool:
        """The tool it calls (g.tool_node() always gives one)."""
        if self.tool is None:
            raise GraphError(f"tool node {self.name!r} has no tool; "
                             f"build it with g.tool_node(fn, name={self.name!r})")
        return self.tool

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        kwargs = self._arguments(state, ctx)
        if self.callee.ctx_param:
            kwargs[self.callee.ctx_param] = ctx
        ctx.record["attempt"] = ctx.attempt
        result = await call(lambda: self.callee.fn(**kwargs), (), run_async=self.callee.is_async)
        return Outcome(update={self.into: result} if self.into else result)

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.tool(name, self)

    def _arguments(self, state: Any, ctx: NodeContext) -> dict[str, Any]:
        fields = self.callee.arguments.model_fields
        if callable(self.args):
            raw = self.args(state)
        else:
            source = dict(self.args or {})
            raw = {p: getattr(state, source.get(p, p)) for p in fields
                   if hasattr(state, source.get(p, p))}
        try:
            parsed = self.callee.arguments.model_validate(raw)
        except ValidationError as exc:
            found = problems(exc, named="argument")
            raise NodeError(
                f"run {ctx.run_id!r}, tool node {self.name!r}: arguments taken from the state do "
                f"not fit {self.callee.name}(): {found}. The tool was not called; fix the state "
                "(or args=) and resume.", run_id=ctx.run_id, node=self.name) from None
        return {name: getattr(parsed, name) for name in fields}
