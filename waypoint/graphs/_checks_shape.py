"""The shape of the graph (networkx): reachability, cycles and what bounds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from waypoint.graphs._checks import Spec
from waypoint.graphs.graph import END, START

if TYPE_CHECKING:
    import networkx as nx


def check_shape(spec: Spec) -> list[str]:
    import networkx as nx

    g = spec.digraph
    problems = []
    reachable = nx.descendants(g, START)
    for name in spec.nodes:
        if name not in reachable:
            problems.append(f"node {name!r} is unreachable from START; add an edge into it or remove it.")
    ends = nx.ancestors(g, END)
    for name in spec.nodes:
        if name in reachable and name not in ends:
            problems.append(f"node {name!r} can never reach END (every path from it loops forever); "
                            "add a route to END.")
    problems += _check_cycles(spec)
    for guard in guards(spec):
        if not loop_body(g, guard, spec.routes.get(guard, {})):
            problems.append(f"loop guard {guard!r} is on no cycle; "
                            "its 'continue' route must lead back to it.")
    return problems


def guards(spec: Spec) -> list[str]:
    return [name for name, node in spec.nodes.items() if node.counts_loops]


def _check_cycles(spec: Spec) -> list[str]:
    """Every cycle must pass through a guard's `continue` route: nothing else bounds it."""
    import networkx as nx

    h = _without_continue_edges(spec)
    problems = []
    for component in nx.strongly_connected_components(h):
        first = next(iter(component))
        if len(component) == 1 and not h.has_edge(first, first):
            continue
        cycle = [e[0] for e in nx.find_cycle(h.subgraph(component))]
        problems.append(_cycle_problem(spec, cycle))
    return sorted(problems)


def _without_continue_edges(spec: Spec) -> nx.DiGraph:
    h = spec.digraph.copy()
    for guard in guards(spec):
        routes = spec.routes.get(guard, {})
        onward = {t for label, ts in routes.items() if label != "continue" for t in ts}
        onward |= set(spec.edges.get(guard, ()))
        for t in set(routes.get("continue", ())) - onward:
            if h.has_edge(guard, t):
                h.remove_edge(guard, t)
    return h


def _cycle_problem(spec: Spec, cycle: list[str]) -> str:
    path = " -> ".join([*cycle, cycle[0]])
    on_cycle = [n for n in cycle if spec.nodes[n].counts_loops]
    if not on_cycle:
        return f"cycle {path} has no loop guard; route the back edge through g.loop_guard(...) to bound it."
    guard = on_cycle[0]
    after = cycle[(cycle.index(guard) + 1) % len(cycle)]
    labels = [label for label, ts in spec.routes.get(guard, {}).items()
              if after in ts and label != "continue"]
    how = f"its {labels[0]!r} route" if labels else "a static edge"
    what = f"the {labels[0]!r} route" if labels else "that edge"
    return (f"cycle {path} leaves loop guard {guard!r} by {how} and comes back to it, which restarts "
            f"its count, so nothing bounds the cycle; only the 'continue' route may lead back to "
            f"{guard!r}: send {what} onward (e.g. to END), or put another loop guard on the outer cycle.")


def loop_body(g: nx.DiGraph, guard: str, routes: dict[str, tuple[str, ...]]) -> frozenset[str]:
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


def loop_bodies(spec: Spec) -> dict[str, frozenset[str]]:
    return {n: loop_body(spec.digraph, n, spec.routes.get(n, {})) for n in guards(spec)}


def join_upstream(spec: Spec) -> dict[str, frozenset[str]]:
    import networkx as nx

    return {
        name: frozenset(nx.ancestors(spec.digraph, name) - {START, name})
        for name, node in spec.nodes.items()
        if node.join
    }
