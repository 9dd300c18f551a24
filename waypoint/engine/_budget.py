"""Per-run budgets: stop a run that spends more than it may.

    await start(graph, input, store=store, budget=Budget(tokens=20_000, llm_calls=10))

Usage is what nodes record in `ctx.record["usage"]` (LLM nodes do this for every
model call); it is summed over the run's log, so it survives crashes and
resumes. The step that crosses a limit is kept, then the run fails with
`BudgetExceededError`; a run at or over its budget launches nothing, so resuming
it with the same budget fails again at once: resume with a larger budget to go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from waypoint.errors import BudgetExceededError
from waypoint.nodes.context import USAGE_KEYS, add_usage  # the one sum of usage


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None  # input + output tokens
    llm_calls: int | None = None
    tool_calls: int | None = None

    def check(self, usage: dict[str, int], *, run_id: str, node: str | None, seq: int,
              launching: bool = False) -> None:
        """Raise BudgetExceededError when `usage` is over a limit, or at one and `launching` more.

        A run at or over its budget launches nothing, whether it got there in this
        process or before a resume: that is what makes an exhausted budget final
        until the run is resumed with a larger one.
        """
        for name, used, limit in self._spent(usage):
            if limit is not None and (used > limit or (launching and used >= limit)):
                raise BudgetExceededError(self._message(run_id, node, seq, name, used, limit),
                                          run_id=run_id, node=node, seq=seq)

    def _spent(self, usage: dict[str, int]) -> list[tuple[str, int, int | None]]:
        return [("tokens", usage.get("input_tokens", 0) + usage.get("output_tokens", 0), self.tokens),
                ("llm_calls", usage.get("calls", 0), self.llm_calls),
                ("tool_calls", usage.get("tool_calls", 0), self.tool_calls)]

    @staticmethod
    def _message(run_id: str, node: str | None, seq: int, name: str, used: int, limit: int) -> str:
        where = (f"after node {node!r} at step {seq}" if node
                 else f"before step {seq + 1}, so nothing more ran")
        larger = max(used, limit, 1) * 2
        return (f"run {run_id!r} used {used} {name.replace('_', ' ')} (budget {limit}) {where}; "
                f"what was done is kept. Resume with a larger budget, e.g. "
                f"resume(graph, {run_id!r}, budget=Budget({name}={larger})), or without budget= "
                "to run unlimited.")


def usage_minus(total: Any, *spent: Any) -> dict[str, int]:
    """`total` less each of `spent` (usage dicts), per key and never below zero; zeros left out."""
    left = {}
    for key in USAGE_KEYS:
        value = total.get(key, 0) if isinstance(total, dict) else 0
        for part in spent:
            value -= part.get(key, 0) if isinstance(part, dict) else 0
        if isinstance(value, int) and value > 0:
            left[key] = value
    return left


def unkept(spent: Any, turns: dict[int, Any] | None, from_children: dict[str, int]) -> dict[str, int]:
    """What a failed attempt spent that no later step will count again.

    Not its committed tool turns (`turns`: a resumed LLM node restores the last
    one's usage), nor what child runs spent since that turn (kept in the child
    runs, counted again when the next attempt runs or reuses them).
    """
    kept = turns[max(turns)].get("usage", {}) if turns else {}
    return usage_minus(spent, kept, from_children)


def counting_children(run_child: Any, from_children: dict[str, int]) -> Any:
    """`ctx.run_child`, also summing what the child runs spent into `from_children`."""
    async def counted(graph: Any, child_input: Any, *, key: str | None = None,
                      usage: dict[str, int] | None = None) -> Any:
        if usage is None:
            return await run_child(graph, child_input, key=key)
        spent: dict[str, int] = {}
        try:
            return await run_child(graph, child_input, key=key, usage=spent)
        finally:
            add_usage(usage, spent)
            add_usage(from_children, spent)

    return counted
