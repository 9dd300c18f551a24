"""compile(): structural validation and analysis of a builder's graph (networkx).

Problems are collected, not raised one at a time, so that a user fixing a graph
sees every mistake at once; each line names the node or edge and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from waypoint.errors import GraphError
from waypoint.graphs._bound import execution_bound
from waypoint.graphs.graph import END, START, Graph, freeze
from waypoint.graphs.state import StateSchema
from waypoint.nodes.composite import MapNode, SubgraphNode
from waypoint.nodes.guard import LoopGuard

if TYPE_CHECKING:
    import networkx as nx

    from waypoint.graphs.builder import GraphBuilder


def build(builder: GraphBuilder[Any]) -> Graph:
    schema = StateSchema(builder.state)
    edges: dict[str, list[str]] = {}
    for source, target in builder.edges:
        edges.setdefault(source, []).append(target)
    problems: list[str] = []
    for name in dict.fromkeys(builder.duplicates):
        problems.append(f"node {name!r} is defined twice; give each node a unique name.")
    problems += _check_edges(builder, edges)
    problems += _check_fields(builder, schema)
    digraph = _digraph(builder, edges)
    if not problems:
        problems += _check_shape(builder, digraph)
        problems += _parallel_writes(builder, edges, digraph, schema)
    if problems:
        raise GraphError(
            f"graph {builder.name!r} has {len(problems)} problem(s):\n- " + "\n- ".join(problems)
        )
    bodies = {n: _loop_body(digraph, n, builder.routes[n]) for n, node in builder.nodes.items()
              if isinstance(node, LoopGuard)}
    frozen_edges = {k: tuple(v) for k, v in edges.items()}
    return Graph(
        name=builder.name,
        schema=schema,
        nodes=freeze(dict(builder.nodes)),
        edges=freeze(frozen_edges),
        routes=freeze({k: freeze(dict(v)) for k, v in builder.routes.items()}),
        loop_bodies=freeze(bodies),
        join_upstream=freeze(_join_upstream(builder, digraph)),
        max_steps=execution_bound(builder.nodes, frozen_edges, builder.routes, bodies),
    )


def _check_edges(builder: GraphBuilder[Any], edges: dict[str, list[str]]) -> list[str]:
    known = set(builder.nodes)
    problems = []
    if START not in edges:
        problems.append("nothing starts the graph; add g.edge(START, 'first_node').")
    for source, targets in edges.items():
        if source == END:
            problems.append("an edge leaves END; END has no successors, remove that edge.")
        elif source != START and source not in known:
            problems.append(f"edge {source!r} -> {targets[0]!r} starts at unknown node {source!r}; add the node or fix the name.")
        elif source in builder.routes and builder.nodes[source].kind != "gate":
            problems.append(f"node {source!r} routes by label; give its targets in routes= instead of g.edge().")
        for t in targets:
            problems += _check_target(f"edge {source!r} -> {t!r}", t, known)
    for node, routes in builder.routes.items():
        labels = builder.nodes[node].labels
        what = "loop guard" if builder.nodes[node].kind == "guard" else "router"
        for label in labels:
            if label not in routes:
                problems.append(f"{what} {node!r} can return {label!r} but has no route for it; add routes={{{label!r}: ...}}.")
        for label, targets in routes.items():
            if label not in labels:
                fix = ("pass until=... to the guard" if what == "loop guard"
                       else "add the label to its Literal return type")
                problems.append(f"{what} {node!r} has a route for {label!r}, which it cannot return (it returns {list(labels)}); remove the route or {fix}.")
            for t in targets:
                problems += _check_target(f"route {node!r} --{label}--> {t!r}", t, known)
    for name in known - set(edges) - set(builder.routes):
        problems.append(f"node {name!r} has no outgoing edge; add g.edge({name!r}, END) or an edge to the next node.")
    return problems


def _check_target(where: str, target: str, known: set[str]) -> list[str]:
    if target == START:
        return [f"{where} points at START; START only has outgoing edges."]
    if target != END and target not in known:
        close = [k for k in known if k.lower() == target.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"{where} points at unknown node {target!r}{hint}; add the node or fix the name."]
    return []


def _check_fields(builder: GraphBuilder[Any], schema: StateSchema) -> list[str]:
    fields = set(schema.fields)
    problems = []
    for name, node in builder.nodes.items():
        for field in sorted((node.writes or frozenset()) - fields):
            problems.append(f"node {name!r} writes unknown field {field!r}; the state has {sorted(fields)}.")
        if isinstance(node, MapNode) and node.over not in fields:
            problems.append(f"map {name!r} iterates over unknown field {node.over!r}; the state has {sorted(fields)}.")
        if isinstance(node, SubgraphNode) and not isinstance(node.graph, Graph):
            problems.append(f"subgraph {name!r} needs a compiled Graph (builder.compile()), got {type(node.graph).__name__}.")
        if isinstance(node, LoopGuard) and node.max_iterations < 0:
            problems.append(f"loop guard {name!r} has max_iterations={node.max_iterations}; use 0 or more.")
        if isinstance(node, LoopGuard) and "continue" not in builder.routes.get(name, {}):
            problems.append(f"loop guard {name!r} has no 'continue' route; add routes={{'continue': ..., 'done': ...}}.")
    return problems


def _digraph(builder: GraphBuilder[Any], edges: dict[str, list[str]]) -> nx.DiGraph:
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from([START, END, *builder.nodes])
    for source, targets in edges.items():
        g.add_edges_from((source, t) for t in targets)
    for source, routes in builder.routes.items():
        for label, targets in routes.items():
            for t in targets:
                g.add_edge(source, t)
    return g


def _check_shape(builder: GraphBuilder[Any], g: nx.DiGraph) -> list[str]:
    import networkx as nx

    problems = []
    reachable = nx.descendants(g, START)
    for name in builder.nodes:
        if name not in reachable:
            problems.append(f"node {name!r} is unreachable from START; add an edge into it or remove it.")
    ends = nx.ancestors(g, END)
    for name in builder.nodes:
        if name in reachable and name not in ends:
            problems.append(f"node {name!r} can never reach END (every path from it loops forever); add a route to END.")
    guards = {n for n, node in builder.nodes.items() if isinstance(node, LoopGuard)}
    unguarded = g.subgraph(n for n in g if n not in guards)
    try:
        cycle = nx.find_cycle(unguarded)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([*(e[0] for e in cycle), cycle[0][0]])
        problems.append(f"cycle {path} has no loop guard; route the back edge through g.loop_guard(...) to bound it.")
    for guard in guards:
        if not _loop_body(g, guard, builder.routes.get(guard, {})):
            problems.append(f"loop guard {guard!r} is on no cycle; its 'continue' route must lead back to it.")
    return problems


def _loop_body(g: nx.DiGraph, guard: str, routes: dict[str, tuple[str, ...]]) -> frozenset[str]:
    """Nodes on a cycle through `guard`'s continue route, not passing through the guard."""
    import networkx as nx

    without = g.copy()
    without.remove_node(guard)
    forward: set[str] = set()
    for t in routes.get("continue", ()):
        if t in without:
            forward |= {t} | nx.descendants(without, t)
    back = {n for n in forward if g.has_edge(n, guard)}
    body = set()
    for n in forward:
        if n in back or nx.descendants(without, n) & back:
            body.add(n)
    return frozenset(body)


def _join_upstream(builder: GraphBuilder[Any], g: nx.DiGraph) -> dict[str, frozenset[str]]:
    import networkx as nx

    return {
        name: frozenset(nx.ancestors(g, name) - {START, name})
        for name, node in builder.nodes.items()
        if node.join
    }


def _forks(builder: GraphBuilder[Any], edges: dict[str, list[str]]) -> list[list[str]]:
    """Target lists that start at the same moment: static fan-outs and multi-target routes."""
    forks = [targets for targets in edges.values() if len(targets) > 1]
    for routes in builder.routes.values():
        forks += [list(t) for t in routes.values() if len(t) > 1]
    return forks


def _parallel_writes(
    builder: GraphBuilder[Any], edges: dict[str, list[str]], g: nx.DiGraph, schema: StateSchema
) -> list[str]:
    """Two nodes on sibling branches of a fork, neither after the other, writing one last-value field."""
    import networkx as nx

    last_value = {f for f, spec in schema.fields.items() if spec.reducer is None}
    writes = {n: (node.writes or frozenset()) & last_value for n, node in builder.nodes.items()}
    below = {n: nx.descendants(g, n) for n in builder.nodes}
    found: dict[tuple[str, str], set[str]] = {}
    for targets in _forks(builder, edges):
        branches = [({t} | below.get(t, set())) - {END} for t in targets]
        for i, left in enumerate(branches):
            for right in branches[i + 1:]:
                for a in left - right:
                    for b in right - left:
                        shared = writes[a] & writes[b]
                        if shared and a not in below[b] and b not in below[a]:
                            found.setdefault(tuple(sorted((a, b))), set()).update(shared)
    return [
        f"nodes {a!r} and {b!r} can run at the same time and both write last-value field(s) "
        f"{sorted(fields)}; give the field a reducer (Annotated[..., append]) or let one node write it."
        for (a, b), fields in sorted(found.items())
    ]
