"""What a node receives besides the state: `NodeContext`.

    def charge(state: Order, ctx: NodeContext) -> dict:
        payments.charge(state.amount, idempotency_key=ctx.idempotency_key)
        return {"charged": True}

A node never sees the scheduler, only this small object. `idempotency_key` is
stable for one activation across crashes and retries, so side effects keyed by
it happen once even though a node in flight at a crash runs again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from waypoint.nodes.resources import Resources, current

EmitFn = Callable[[str, dict[str, Any]], None]
USAGE_KEYS = ("input_tokens", "output_tokens", "calls", "tool_calls")  # what ctx.record["usage"] counts


def add_usage(total: dict[str, int], usage: Any) -> None:
    """Add a usage record (`{"input_tokens": 9, ...}`, or None) into `total`, key by key.

    The one sum of usage: a node's own record, its children's, a run's total and
    its budget all add up this way; keys other than USAGE_KEYS are not usage.
    """
    if isinstance(usage, dict):
        for key in USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value


def _no_emit(kind: str, data: dict[str, Any]) -> None:
    return None


@dataclass
class NodeContext:
    """Per-activation facts and hooks handed to a node."""

    run_id: str
    node: str
    activation: str
    deps: Any = None
    attempt: int = 1
    loop_count: int = 0  # for loop guards: iterations so far in the current entry
    emit: EmitFn = _no_emit  # emit("token", {"text": ...}): a custom event on the run's stream
    record: dict[str, Any] = field(default_factory=dict)  # extra facts stored with the completion
    # Engine hooks for composite nodes (map, subgraph); None outside the engine.
    commit_item: Callable[[int, Any], Awaitable[Any]] | None = None
    done_items: dict[int, Any] = field(default_factory=dict)
    run_child: Callable[..., Awaitable[Any]] | None = None
    routes: Collection[str] = ()  # the labels this node has routes for in its graph (an LLM node's "tripped")

    @property
    def resources(self) -> Resources | None:
        """The run's execution's resources (`nodes/resources.py`), shared by its activations; None outside."""
        return current()

    @property
    def idempotency_key(self) -> str:
        """Stable across crashes and retries of this activation: `run_id:activation`."""
        return f"{self.run_id}:{self.activation}"
