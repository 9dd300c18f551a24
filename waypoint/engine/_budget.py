"""Per-run budgets: stop a run that spends more than it may.

    await start(graph, input, store=store, budget=Budget(tokens=20_000, llm_calls=10))

Usage is what nodes record in `ctx.record["usage"]` (LLM nodes do this for every
model call); it is summed over the run's log, so it survives crashes and
resumes. The step that crosses a limit is kept, then the run fails with
`BudgetExceededError`; resume with a larger budget to go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from waypoint.errors import BudgetExceededError

USAGE_KEYS = ("input_tokens", "output_tokens", "calls", "tool_calls")


@dataclass(frozen=True)
class Budget:
    tokens: int | None = None  # input + output tokens
    llm_calls: int | None = None
    tool_calls: int | None = None

    def check(self, usage: dict[str, int], *, run_id: str, node: str, seq: int) -> None:
        spent = {
            "tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
            "llm_calls": usage.get("calls", 0),
            "tool_calls": usage.get("tool_calls", 0),
        }
        for name, used in spent.items():
            limit = getattr(self, name)
            if limit is not None and used > limit:
                raise BudgetExceededError(
                    f"run {run_id!r} used {used} {name.replace('_', ' ')} (budget {limit}) "
                    f"after node {node!r} at step {seq}; what was done is kept. Resume with a "
                    f"larger budget, e.g. budget=Budget({name}={used * 2}).",
                    run_id=run_id, node=node, seq=seq)


def add_usage(total: dict[str, int], record: Any) -> None:
    if isinstance(record, dict):
        for key in USAGE_KEYS:
            value = record.get(key)
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
