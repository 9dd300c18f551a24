"""An upper bound on node executions per run, from the loop guards' caps.

Each arrival on an edge activates its target once, so a node runs at most as
often as its predecessors deliver to it. Routers are assumed to take every
route (an upper bound); a loop guard entered `e` times from outside its loop
runs at most `e * (cap + 1)` times and sends at most `e * cap` activations down
its `continue` route. Nested loops therefore multiply. A map counts its declared
`max_items` item executions, a subgraph its own bound. None means no finite
bound can be stated (a map without `max_items`, or a subgraph without a bound).
"""

from __future__ import annotations

from typing import Any, Mapping

from waypoint.graphs.graph import END, START


def execution_bound(
    nodes: Mapping[str, Any],
    edges: Mapping[str, tuple[str, ...]],
    routes: Mapping[str, Mapping[str, tuple[str, ...]]],
    bodies: Mapping[str, frozenset[str]],
) -> int | None:
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_nodes_from([START, *nodes])
    deliveries: dict[tuple[str, str], str] = {}  # (source, target) -> route label or ""
    for source, targets in edges.items():
        for t in targets:
            deliveries[(source, t)] = ""
    for source, by_label in routes.items():
        for label, targets in by_label.items():
            for t in targets:
                deliveries.setdefault((source, t), label)
    for (source, target), label in deliveries.items():
        if target != END and not (target in bodies and source in bodies[target]):
            dag.add_edge(source, target, label=label)
    if not nx.is_directed_acyclic_graph(dag):
        return None
    runs: dict[str, int] = {START: 1}
    sent: dict[str, int] = {}
    for name in nx.topological_sort(dag):
        if name == START:
            continue
        entries = sum(_delivered(dag, p, name, runs, nodes) for p in dag.predecessors(name))
        node = nodes[name]
        runs[name] = entries * (node.max_iterations + 1) if node.kind == "guard" else entries
        sent[name] = entries
    total = 0
    for name, count in runs.items():
        if name == START:
            continue
        extra = _inner_work(nodes[name])
        if extra is None:
            return None
        total += count * (1 + extra)
    return total


def _delivered(dag: Any, source: str, target: str, runs: dict[str, int], nodes: Mapping[str, Any]) -> int:
    """How many activations `source` can send to `target` over their edge."""
    if source == START:
        return 1
    node = nodes[source]
    if node.kind != "guard":
        return runs[source]
    entries = runs[source] // (node.max_iterations + 1)
    label = dag.edges[source, target]["label"]
    return entries * node.max_iterations if label == "continue" else entries


def _inner_work(node: Any) -> int | None:
    if node.kind == "map":
        return node.max_items
    if node.kind == "subgraph":
        return node.graph.max_steps
    return 0
