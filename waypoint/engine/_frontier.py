"""The scheduler's durable memory: what is pending, and how a Step changes it.

`Frontier.apply(step)` is the one function that turns a committed Step into the
next (state, frontier). The live scheduler calls it right after building a step
and replay calls it for every step of the tail, so a resumed run reaches exactly
the state an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from waypoint.checkpoints.records import Step
from waypoint.graphs.graph import START, Graph
from waypoint.nodes.context import add_usage


@dataclass
class Activation:
    """One pending execution of a node: `id` is `"<seq>.<i>"` of the step that made it."""

    id: str
    node: str
    parent: str  # the node whose completion activated it (START for the first)


@dataclass
class Frontier:
    pending: dict[str, Activation] = field(default_factory=dict)
    arrivals: dict[str, int] = field(default_factory=dict)  # join -> arrivals not yet fired
    loop_counts: dict[str, int] = field(default_factory=dict)  # guard -> iterations
    writers: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # field -> seq, node, act
    items: dict[str, dict[int, Any]] = field(default_factory=dict)  # map act -> index -> plain
    waits: dict[str, dict[str, Any]] = field(default_factory=dict)  # gate act -> request
    usage: dict[str, int] = field(default_factory=dict)  # summed ctx.record["usage"]

    @classmethod
    def initial(cls, graph: Graph[Any]) -> Frontier:
        frontier = cls()
        for i, node in enumerate(graph.start):
            frontier.add(graph, f"0.{i}", node, START)
        return frontier

    def add(self, graph: Graph[Any], act_id: str, node: str, parent: str) -> None:
        self.pending[act_id] = Activation(act_id, node, parent)
        if graph.nodes[node].join:
            self.arrivals.pop(node, None)

    def ready_joins(self, graph: Graph[Any]) -> list[str]:
        """Joins with arrivals and no pending activation upstream of them."""
        if not self.arrivals:
            return []
        ready = []
        for join, count in self.arrivals.items():
            upstream = graph.join_upstream[join]
            if count and not any(a.node in upstream for a in self.pending.values()):
                ready.append(join)
        # A join below another ready join waits for it: firing both now would fire the lower
        # one twice (now, and again when the upper one arrives).
        first = [j for j in ready if not any(o != j and o in graph.join_upstream[j] for o in ready)]
        return sorted(first or ready[:1])

    def apply(self, graph: Graph[Any], state: BaseModel, step: Step, values: dict[str, Any]) -> BaseModel:
        """Advance past `step` (whose decoded delta is `values`); return the new state."""
        if step.kind == "edit":
            # A person's edit of the state (engine/edits.py): fields only, nothing activated.
            # Decoded here: a loader decodes the deltas of "done" steps only.
            return graph.schema.apply(state, values or graph.schema.decode(step.delta))
        new_state = graph.schema.apply(state, values, node=step.node) if step.kind == "done" else state
        self.advance(graph, step, values)  # after the state: a refused update changes nothing
        return new_state

    def advance(self, graph: Graph[Any], step: Step, values: dict[str, Any] | None = None) -> None:
        """`apply` without the state: what is pending, waiting, counted and arrived after `step`.

        Drawings (`marks.py`) follow a run's log with it, as deadlines (`due_gates`)
        follow it with `track`: what they show is what replay restores.
        """
        self.track(step)
        if step.kind != "done":
            return
        schema = graph.schema
        for name in values or ():
            if schema.fields[name].reducer is None:
                self.writers[name] = (step.seq, step.node, step.activation)
        self.pending.pop(step.activation, None)
        if "loop_count" in step.extra or graph.nodes[step.node].counts_loops:
            self.loop_counts[step.node] = step.extra.get("loop_count", 0)
        add_usage(self.usage, step.extra.get("usage"))
        for join in step.extra.get("arrived", ()):
            self.arrivals[join] = self.arrivals.get(join, 0) + 1
        for i, child in enumerate(step.children):
            self.add(graph, f"{step.seq}.{i}", child, step.node)

    def track(self, step: Step) -> None:
        """The part of `apply` that needs no graph: map items, waits, a failure's usage.

        `due_gates` follows a run's waits with it alone, so deadlines are read as
        replay reads them, without loading the run's graph.
        """
        if step.kind == "item":
            self.items.setdefault(step.activation, {})[step.extra["index"]] = step.extra["result"]
        elif step.kind == "wait":
            self.waits[step.activation] = step.extra
        elif step.kind == "fail":
            add_usage(self.usage, step.extra.get("usage"))  # what the failed activation spent counts
            request = self.waits.get(step.activation, {})
            if "child" in request or "items" in request:
                # A subgraph or map that failed after an answer reached its child: on resume it
                # runs again (its children say again where they wait), not waits as it was.
                del self.waits[step.activation]
        elif step.kind == "done":
            self.items.pop(step.activation, None)
            self.waits.pop(step.activation, None)

    # -- persistence as plain data -----------------------------------------
    def to_plain(self) -> dict[str, Any]:
        return {
            "pending": [[a.id, a.node, a.parent] for a in self.pending.values()],
            "arrivals": self.arrivals,
            "loop_counts": self.loop_counts,
            "writers": {k: list(v) for k, v in self.writers.items()},
            "items": {k: [[i, r] for i, r in v.items()] for k, v in self.items.items()},
            "waits": self.waits,
            "usage": self.usage,
        }

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Frontier:
        return cls(
            pending={a[0]: Activation(*a) for a in data.get("pending", [])},
            arrivals=dict(data.get("arrivals", {})),
            loop_counts=dict(data.get("loop_counts", {})),
            writers={k: (v[0], v[1], v[2]) for k, v in data.get("writers", {}).items()},
            items={k: {i: r for i, r in v} for k, v in data.get("items", {}).items()},
            waits=dict(data.get("waits", {})),
            usage=dict(data.get("usage", {})),
        )
