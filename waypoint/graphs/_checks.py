"""What the checks look at: a `Spec` of nodes, edges and routes, from a builder or a Graph.

    spec = Spec.from_builder(builder)      # before compile(): may be malformed
    spec = Spec.from_graph(graph)          # after: for `waypoint check` and the bound
    spec.digraph                           # networkx view: START, END, every node

The `_checks_*` modules each take a Spec and return the problems they find,
one line each, naming the place and the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waypoint.graphs._checks_fit import kind, return_annotation
from waypoint.graphs.graph import END, START
from waypoint.graphs.state import StateSchema
from waypoint.nodes.base import Node

if TYPE_CHECKING:
    import networkx as nx

    from waypoint.graphs.builder import GraphBuilder
    from waypoint.graphs.graph import Graph


@dataclass
class Spec:
    name: str
    schema: StateSchema
    nodes: dict[str, Node]
    edges: dict[str, list[str]]  # static successors, in the order given, duplicates kept
    routes: dict[str, dict[str, tuple[str, ...]]]
    duplicates: list[str] = field(default_factory=list)

    @classmethod
    def from_builder(cls, builder: GraphBuilder[Any]) -> Spec:
        edges: dict[str, list[str]] = {}
        for source, target in builder.edges:
            edges.setdefault(source, []).append(target)
        return cls(builder.name, StateSchema(builder.state), dict(builder.nodes), edges,
                   {k: dict(v) for k, v in builder.routes.items()}, list(builder.duplicates))

    @classmethod
    def from_graph(cls, graph: Graph[Any]) -> Spec:
        return cls(graph.name, graph.schema, dict(graph.nodes),
                   {k: list(v) for k, v in graph.edges.items()},
                   {k: dict(v) for k, v in graph.routes.items()})

    @property
    def fields(self) -> dict[str, Any]:
        return {name: spec.annotation for name, spec in self.schema.fields.items()}

    def labelled(self) -> Iterator[tuple[str, str, str | None]]:
        """Every (source, target, route label or None for a static edge)."""
        for source, targets in self.edges.items():
            for t in targets:
                yield source, t, None
        for source, routes in self.routes.items():
            for label, routed in routes.items():
                for t in routed:
                    yield source, t, label

    def successors(self, name: str) -> set[str]:
        return self._adjacency.get(name, set())

    @functools.cached_property
    def _adjacency(self) -> dict[str, set[str]]:
        adjacency: dict[str, set[str]] = {}
        for source, target, _ in self.labelled():
            adjacency.setdefault(source, set()).add(target)
        return adjacency

    @functools.cached_property
    def digraph(self) -> nx.DiGraph:
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from([START, END, *self.nodes])
        g.add_edges_from((s, t) for s, t, _ in self.labelled())
        return g

    def groups(self, name: str, *, assume_fan_out: bool) -> list[list[str]]:
        """Lists of targets that one completion of `name` can activate together.

        A router that may return several labels activates the targets of all of
        them at once; any other node takes its static edges or one route.
        `assume_fan_out` decides for routers whose annotation does not say.
        """
        node = self.nodes.get(name)
        routes = self.routes.get(name, {})
        many = fans_out(node) if node is not None else False
        if many or (many is None and assume_fan_out):
            return [list(self.edges.get(name, [])) + [t for ts in routes.values() for t in ts]]
        return [list(self.edges.get(name, []))] + [list(ts) for ts in routes.values()]


def fans_out(node: Node) -> bool | None:
    """Whether a router may return several labels: True/False by its annotation, None if unsaid."""
    fn = getattr(node, "fn", None)
    if not node.may_fan_out or fn is None:
        return False
    annotation = return_annotation(fn)
    if annotation is None or annotation is Any or annotation is object:
        return None
    return kind(annotation) == "seq"

