"""The compiled, immutable `Graph`: what the engine runs and the renderer draws.

    graph = builder.compile()
    graph.successors("judge", ("good",))    # -> ("publish",)
    graph.render("dot")                      # see waypoint.graphs.render

Everything that can be checked before a run is checked by `compile()`; a
`Graph` is never mutated afterwards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from waypoint.graphs.state import StateSchema
from waypoint.nodes.base import Node

S = TypeVar("S")  # the state model: Graph[Essay]

START = "__start__"
END = "__end__"


@dataclass(frozen=True, eq=False)
class Graph(Generic[S]):
    """A validated workflow graph over the pydantic state `state_type` (`Graph[Essay]`)."""

    name: str
    schema: StateSchema
    nodes: Mapping[str, Node]
    edges: Mapping[str, tuple[str, ...]]  # static successors; START included, END as target
    routes: Mapping[str, Mapping[str, tuple[str, ...]]]  # router/guard: label -> targets
    loop_bodies: Mapping[str, frozenset[str]] = field(default_factory=dict)  # guard -> body
    join_upstream: Mapping[str, frozenset[str]] = field(default_factory=dict)  # join -> ancestors
    max_steps: int | None = None  # upper bound on node executions per run, when finite

    @property
    def state_type(self) -> type[S]:
        return cast("type[S]", self.schema.model)

    @property
    def start(self) -> tuple[str, ...]:
        return self.edges.get(START, ())

    def successors(self, node: str, labels: tuple[str, ...] | None) -> tuple[str, ...]:
        """Where an activation of `node` goes: its static edges, or the routes of `labels`."""
        if labels is None:
            return self.edges.get(node, ())
        routes = self.routes[node]  # gates with a deadline have static edges *and* routes
        return tuple(t for label in labels for t in routes.get(label, ()))

    def structure(self) -> dict[str, Any]:
        """The shape that must not change under a waiting or crashed run."""
        return {
            "state": {k: repr(f.annotation) for k, f in self.schema.fields.items()},
            "nodes": {n: [node.structure_kind or node.kind, node.join, sorted(node.labels)]
                      for n, node in self.nodes.items()},
            "edges": {k: list(v) for k, v in self.edges.items()},
            "routes": {k: {label: list(t) for label, t in v.items()} for k, v in self.routes.items()},
        }

    @property
    def structure_hash(self) -> str:
        cached = self.__dict__.get("_hash")
        if cached is None:
            text = json.dumps(self.structure(), sort_keys=True)
            cached = hashlib.sha256(text.encode()).hexdigest()[:16]
            object.__setattr__(self, "_hash", cached)
        return cached

    def render(self, format: str = "dot", **options: Any) -> str | bytes:
        """Draw the graph: "dot", "mermaid", "svg" or "png"; see `waypoint.graphs.render`."""
        from waypoint.graphs.render import render

        return render(self, format, **options)


def freeze(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)
