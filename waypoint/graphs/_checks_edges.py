"""Names, edges and routes: does every edge lead somewhere, is START and END used right."""

from __future__ import annotations

from collections import Counter
from typing import Any

from waypoint.graphs._checks import Spec
from waypoint.graphs.graph import END, START
from waypoint.nodes.address import split_head
from waypoint.nodes.failure import ERROR


def check_names(spec: Spec) -> list[str]:
    problems = [f"node {name!r} is defined twice; give each node a unique name."
                for name in dict.fromkeys(spec.duplicates)]
    for name in spec.nodes:
        if name in (START, END):
            which = "START" if name == START else "END"
            problems.append(f"node {name!r} uses the reserved name of {which}; rename it "
                            f"(an edge to {name!r} means {which}, not this node).")
        elif "/" in name:
            problems.append(f"node {name!r} has '/' in its name, which addresses nodes inside "
                            f"subgraphs (gate 'review/approve' is gate 'approve' of subgraph "
                            f"'review'); rename it, e.g. {name.replace('/', '_')!r}.")
        elif _is_map_item(spec, name):
            base, index = split_head(name)
            problems.append(f"node {name!r} has the address of item {index} of map {base!r} "
                            f"(gates inside map items are named '{name}/<gate>'); rename it, e.g. "
                            f"{f'{base}_{index}'!r}.")
    return problems


def _is_map_item(spec: Spec, name: str) -> bool:
    """`book[1]` beside a map `book`: the name its item 1's gates are addressed by."""
    base, index = split_head(name)
    node = spec.nodes.get(base)
    return index is not None and node is not None and node.item_field is not None


def check_edges(spec: Spec) -> list[str]:
    known = set(spec.nodes) - {START, END}
    problems = []
    if START not in spec.edges:
        problems.append("nothing starts the graph; add g.edge(START, 'first_node').")
    for source, targets in spec.edges.items():
        if source == END:
            problems.append("an edge leaves END; END has no successors, remove that edge.")
        elif source != START and source not in known:
            problems.append(f"edge {source!r} -> {targets[0]!r} starts at unknown node {source!r}; "
                            "add the node or fix the name.")
        elif source in _routing(spec) and not spec.nodes[source].edges_beside_routes:
            problems.append(f"node {source!r} routes by label; "
                            "give its targets in routes= instead of g.edge().")
        if source == START and END in targets:
            problems.append("edge START -> END skips every node; remove it (a run would end before it began "
                            "on that branch).")
        if source == START:
            problems += [f"edge START -> {t!r} starts join {t!r} at once, before anything can reach it; "
                         "remove the edge (a join waits for its other inputs) or start a node before it."
                         for t in dict.fromkeys(targets) if t in spec.nodes and spec.nodes[t].join]
        for t in targets:
            problems += check_target(f"edge {source!r} -> {t!r}", t, known)
        problems += _repeated(f"edge {source!r} -> ", targets)
    problems += _check_routes(spec, known)
    for name in known - set(spec.edges) - _routing(spec):
        problems.append(f"node {name!r} has no outgoing edge; "
                        f"add g.edge({name!r}, END) or an edge to the next node.")
    return problems


def _routing(spec: Spec) -> set[str]:
    """Nodes that route by label; an error route alone (`on_error=`) leaves a node on its edges."""
    return {name for name, routes in spec.routes.items() if set(routes) - {ERROR}}


def _check_routes(spec: Spec, known: set[str]) -> list[str]:
    problems = []
    for node, routes in spec.routes.items():
        labels, what, fix = spec.nodes[node].labels, spec.nodes[node].noun, _label_fix(spec.nodes[node])
        if spec.nodes[node].on_error is not None:
            # the route its failure takes; with no other route, it follows its edges as before
            labels = (*(labels if set(routes) - {ERROR} else ()), ERROR)
        for label in labels:
            if label not in routes and label not in spec.nodes[node].optional_labels:
                problems.append(f"{what} {node!r} can return {label!r} but has no route for it; "
                                f"add routes={{{label!r}: ...}}.")
        for label, targets in routes.items():
            if label not in labels:
                problems.append(f"{what} {node!r} has a route for {label!r}, which it cannot return "
                                f"(it returns {list(labels)}); remove the route or {fix}.")
            for t in targets:
                problems += check_target(f"route {node!r} --{label}--> {t!r}", t, known)
            problems += _repeated(f"route {node!r} --{label}--> ", list(targets))
    return problems


def _label_fix(node: Any) -> str:
    """How a route for a label the node cannot return gets one."""
    if node.counts_loops:
        return "pass until=... to the guard"
    if node.pauses:
        return "add the label to the Literal return type of its route="
    return "add the label to its Literal return type"


def check_target(where: str, target: str, known: set[str]) -> list[str]:
    if target == START:
        return [f"{where} points at START; START only has outgoing edges."]
    if target != END and target not in known:
        close = [k for k in known if k.lower() == target.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"{where} points at unknown node {target!r}{hint}; add the node or fix the name."]
    return []


def _repeated(where: str, targets: list[str]) -> list[str]:
    """An edge given twice activates its target twice per arrival: almost always a slip.

    `where` names the edge up to its target: `_repeated("edge 'a' -> ", ["b", "b"])`.
    """
    return [
        f"{where}{t!r} is given {n} times, so {t!r} would run {n} times per arrival; "
        "remove the duplicate (fan out to distinct nodes instead)."
        for t, n in Counter(targets).items() if n > 1 and t != END
    ]
