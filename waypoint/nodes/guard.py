"""Loop guards: the only way to make a cycle, and what bounds it.

    builder.loop_guard("enough", max_iterations=3, until=lambda s: s.score >= 0.8,
                       routes={"continue": "revise", "done": "publish",
                               "exhausted": "escalate"})

Each arrival routes `done` when `until(state)` holds, `continue` while the loop
has run fewer than `max_iterations` times, and `exhausted` at the cap. The count
is persisted with the run and resets when the loop is entered from outside, so
an inner loop gets its full budget on every iteration of an outer one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from waypoint.nodes.base import Checks, Node, Outcome, register
from waypoint.nodes.context import NodeContext

GUARD_LABELS = ("continue", "done", "exhausted")


@register
@dataclass(frozen=True)
class LoopGuard(Node):
    kind: ClassVar[str] = "guard"
    noun: ClassVar[str] = "loop guard"
    drawing: ClassVar[str] = "guard"
    counts_loops: ClassVar[bool] = True
    max_iterations: int = 1
    until: Callable[[Any], bool] | None = None

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        count = ctx.loop_count
        if self.until is not None and self.until(state):
            return Outcome(labels=("done",))
        if count < self.max_iterations:
            ctx.record["loop_count"] = count + 1
            return Outcome(labels=("continue",))
        return Outcome(labels=("exhausted",))

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.guard(name, self)

    def caption(self) -> list[str]:
        n = self.max_iterations
        return [f"≤ {n} iteration{'' if n == 1 else 's'}"]

    def details(self) -> str:
        return f" max_iterations={self.max_iterations} until={self.until is not None}"
