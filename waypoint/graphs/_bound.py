"""An upper bound on node executions per run, from the loop guards' caps.

Each arrival on an edge activates its target once, so a node runs at most as
often as its predecessors deliver to it. Routers are assumed to take every
route they can in one go (all of them for a router that may return several
labels, the most generous one otherwise). A loop is entered from outside, at
its guard or at a node of its body; each entry is one "thread" through the
loop, which the guard lets go round at most `cap` times: the guard runs at most
`entries * (cap + 1)` times, sends `entries * cap` activations down `continue`
and `entries` down its exits. Nested loops therefore multiply. A join on no cycle
fires once: only when nothing upstream of it is pending (a join below another
ready join waits for it), and only something upstream could make it another
arrival; START, which runs its targets at once, joins included, adds its own.
A join inside a loop is counted once per arrival. A map counts its declared
`max_items` item executions (it refuses more), each with its worker graph's own
bound when it maps over a graph, and a subgraph counts its own bound.

The bound holds because `compile()` rejects what would break it: a cycle that
does not pass through a guard's `continue` route, and a guard that two branches
of one fork reach at once (they would share its count). A router without a
return annotation is assumed to fan out, here and by that check alike
(`_checks_forks.check_forks`), so a graph the bound holds for is what compiles.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from waypoint.graphs._checks import fans_out
from waypoint.graphs.graph import END, START


def execution_bound(
    nodes: Mapping[str, Any],
    edges: Mapping[str, tuple[str, ...]],
    routes: Mapping[str, Mapping[str, tuple[str, ...]]],
    bodies: Mapping[str, frozenset[str]],
) -> int | None:
    """The bound, or None when no finite one can be stated (see `explain_bound`)."""
    return explain_bound(nodes, edges, routes, bodies)[0]


def explain_bound(
    nodes: Mapping[str, Any],
    edges: Mapping[str, tuple[str, ...]],
    routes: Mapping[str, Mapping[str, tuple[str, ...]]],
    bodies: Mapping[str, frozenset[str]],
) -> tuple[int | None, str]:
    """(bound, why): the number and a sentence on what it counts or why there is none."""
    flow = _Flow(nodes, edges, routes, bodies)
    order = flow.order()
    if order is None:
        return None, ("a loop is entered from a route that leaves it, so its entries "
                      "cannot be counted; enter each loop from before it.")
    runs = flow.runs(order)
    total = 0
    for name, count in runs.items():
        extra, why = nodes[name].inner_work(name)  # map items, a child run's steps
        if extra is None:
            return None, why
        total += count * (1 + extra)
    return total, "node executions, map items and subgraph steps, with every loop at its cap"


class _Flow:
    def __init__(self, nodes: Mapping[str, Any], edges: Mapping[str, tuple[str, ...]],
                 routes: Mapping[str, Mapping[str, tuple[str, ...]]],
                 bodies: Mapping[str, frozenset[str]]) -> None:
        self.nodes, self.edges, self.routes, self.bodies = nodes, edges, routes, bodies
        # Edge multiplicities counted once, so a 6,000-way fan-out is not 6,000 scans of 6,000 edges.
        self.static = {s: Counter(ts) for s, ts in edges.items()}
        self.by_label = {s: {label: Counter(ts) for label, ts in by.items()} for s, by in routes.items()}
        self.any_route: dict[str, Counter[str]] = {}  # source -> target -> arrivals over all its labels
        self.best_route: dict[str, dict[str, int]] = {}  # source -> target -> most arrivals by one label
        for source, by in self.by_label.items():
            total, best = self.any_route.setdefault(source, Counter()), self.best_route.setdefault(source, {})
            for counts in by.values():
                total.update(counts)
                for target, n in counts.items():
                    best[target] = max(best.get(target, 0), n)
        pairs = {(s, t) for s, ts in edges.items() for t in ts}
        pairs |= {(s, t) for s, by in routes.items() for ts in by.values() for t in ts}
        self.fires_once = _fires_once(pairs, nodes)
        self.preds: dict[str, set[str]] = {}
        for source, target in pairs:
            if target != END and not (target in bodies and source in bodies[target]):
                self.preds.setdefault(target, set()).add(source)  # back edges into a guard left out

    def order(self) -> list[str] | None:
        """Nodes so that whatever delivers to a node, or enters a guard's loop, comes first."""
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from([START, *self.nodes])
        for target, sources in self.preds.items():
            dag.add_edges_from((s, target) for s in sources)
        for guard, body in self.bodies.items():
            dag.add_edges_from((p, guard) for p in self._entries(guard, body))
        if not nx.is_directed_acyclic_graph(dag):
            return None
        return [n for n in nx.topological_sort(dag) if n != START]

    def _entries(self, guard: str, body: frozenset[str]) -> set[str]:
        """Nodes outside the loop that deliver into its body (not to the guard itself)."""
        return {p for x in body for p in self.preds.get(x, ()) if p not in body and p != guard}

    def runs(self, order: list[str]) -> dict[str, int]:
        self.count: dict[str, int] = {START: 1}
        self.entered: dict[str, int] = {}
        for name in order:
            arriving = sum(self.delivered(p, name) for p in self.preds.get(name, ()))
            node = self.nodes[name]
            if node.counts_loops:
                body = self.bodies.get(name, frozenset())
                arriving += sum(self.delivered(p, x) for x in body for p in self.preds.get(x, ())
                                if p not in body and p != name)
                self.entered[name] = arriving
                arriving *= node.max_iterations + 1
            elif name in self.fires_once:
                started = self.static.get(START, Counter())[name]  # START runs a join at once
                arriving = started + min(arriving - started, 1)
            self.count[name] = arriving
        del self.count[START]
        return self.count

    def delivered(self, source: str, target: str) -> int:
        """How many activations of `target` all runs of `source` can make."""
        static = self.static.get(source, Counter())[target]
        node = self.nodes.get(source)
        if node is not None and node.counts_loops:
            by_label = self.by_label.get(source, {})

            def arrivals(label: str) -> int:
                return by_label[label][target] if label in by_label else 0

            exits = max(arrivals("done"), arrivals("exhausted"))
            cap: int = node.max_iterations  # a loop guard: counts_loops
            return self.entered[source] * (cap * arrivals("continue") + exits + static)
        if node is not None and fans_out(node) is not False:
            per_run = static + self.any_route.get(source, Counter())[target]  # several labels at once
        else:
            per_run = max(static, self.best_route.get(source, {}).get(target, 0))  # one route, or the edges
        return self.count[source] * per_run


def _fires_once(pairs: set[tuple[str, str]], nodes: Mapping[str, Any]) -> set[str]:
    """Joins on no cycle (see the module's docstring)."""
    import networkx as nx

    g = nx.DiGraph(list(pairs))
    joins = {n for n, node in nodes.items() if node.join and n in g}
    cyclic = {n for c in nx.strongly_connected_components(g) for n in c if len(c) > 1 or g.has_edge(n, n)}
    return joins - cyclic

