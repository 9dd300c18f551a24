"""Hypothesis strategies for testing graphs: arbitrary router choices, and random graphs.

    from hypothesis import given
    from waypoint.testing.strategies import router_choices
    from waypoint.testing.termination import check_terminates

    @given(router_choices(graph))
    def test_every_path_ends(choices):
        check_terminates(graph, choices)          # or simply assert_terminates(graph)

`Choices` says what every decision-making node answers, activation after
activation: routers (function routers, LLM routers, handoffs) and LLM nodes
that route pick labels, loop guards with `until=` say whether it holds, LLM
nodes write an output, gates get an answer. When a list runs out its last
answer repeats, so a short list already describes an arbitrarily long run and
shrinks to a readable counterexample. Nodes inside a subgraph are named
`subgraph/node`, as gates are.

`random_graphs()` builds `GraphBuilder`s of random DAGs with back edges through
loop guards, routers (some fanning out), fan-outs, joins, maps and gates; some
are malformed on purpose, and `compile()` must reject those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - the test extra is not installed
    raise ImportError("waypoint.testing.strategies needs Hypothesis: pip install hypothesis "
                      "(or pip install -e '.[test]' in a clone of waypoint-workflows)") from exc
from pydantic import BaseModel, TypeAdapter

from waypoint.graphs.check import fans_out
from waypoint.graphs.graph import Graph

__all__ = ["Choices", "Trail", "decision_nodes", "describe", "random_graphs", "router_choices"]


@dataclass(frozen=True)
class Choices:
    """Answers per decision node path, in activation order; the last one repeats."""

    routes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # label, or tuple of labels
    until: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)  # loop guards with until=
    outputs: Mapping[str, Any] = field(default_factory=dict)  # LLM node -> value for its `into`
    answers: Mapping[str, Any] = field(default_factory=dict)  # gate -> answer model instance


def decision_nodes(graph: Graph[Any], prefix: str = "") -> Iterator[tuple[str, Any, Graph[Any]]]:
    """(path, node, graph it belongs to) for every node of `graph`, its subgraphs and map workers."""
    for name, node in graph.nodes.items():
        yield prefix + name, node, graph
        if isinstance(node.inner_graph, Graph):
            yield from decision_nodes(node.inner_graph, f"{prefix}{name}/")


def router_choices(graph: Graph[Any], *, max_answers: int = 6) -> st.SearchStrategy[Choices]:
    """Arbitrary answers for every router, LLM node, guard condition and gate of `graph`."""
    routes, until, outputs, answers = {}, {}, {}, {}
    for path, node, owner in decision_nodes(graph):
        if node.name in owner.routes and node.decides and node.labels:
            routes[path] = st.lists(_labels(node, owner.routes[node.name]), max_size=max_answers).map(tuple)
        if node.counts_loops and getattr(node, "until", None) is not None:
            until[path] = st.lists(st.booleans(), max_size=max_answers).map(tuple)
        if node.decides and getattr(node, "into", None):
            outputs[path] = _value(_output_type(node, owner))
        if node.pauses:
            answers[path] = _value(node.answer)
    return st.builds(Choices, routes=st.fixed_dictionaries(routes), until=st.fixed_dictionaries(until),
                     outputs=st.fixed_dictionaries(outputs), answers=st.fixed_dictionaries(answers))


def _labels(node: Any, routes: Any) -> st.SearchStrategy[Any]:
    # an optional label without a route (a router's "tripped") fails the run instead of routing: not drawn
    labels = tuple(lb for lb in node.labels if lb in routes or lb not in node.optional_labels)
    if node.edges_beside_routes:  # None: its edges (an LLM node with guardrails when none trips)
        return st.sampled_from((None, *labels))
    one = st.sampled_from(labels)
    if fans_out(node) is not False and getattr(node, "fn", None) is not None:
        return st.lists(one, min_size=1, max_size=len(labels), unique=True).map(tuple) | one
    return one


def _output_type(node: Any, owner: Graph[Any]) -> Any:
    if node.writes_label:
        return None  # an LLM router writes the label it chose
    output = getattr(node, "output", None)
    return output or owner.schema.fields[node.into].annotation


def _value(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of `annotation` that validate, or None (write nothing) when none can be drawn."""
    if annotation is None:
        return st.none()
    try:
        adapter = TypeAdapter(annotation)
        strategy = st.from_type(annotation)
        strategy.validate()  # resolves it now: a type Hypothesis cannot build fails here, not mid-test
    except Exception:
        return st.none()

    def valid(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except Exception:
            return None

    return strategy.map(valid) | st.none()


# -- random graphs ---------------------------------------------------------------------
class Approval(BaseModel):
    approved: bool = True


def _append(left: list[Any], right: list[Any]) -> list[Any]:
    return left + right


class Trail(BaseModel):
    """The state of random graphs: who ran (in order), a last-value field, a list to map."""

    seen: Annotated[list[str], _append] = []
    value: int = 0
    items: list[int] = [1, 2, 3]
    mapped: Annotated[list[int], _append] = []
    approval: Approval | None = None


def _step(name: str, last_value: bool, yields: int = 0) -> Any:
    async def step(state: Trail) -> dict[str, Any]:
        for _ in range(yields):  # lets other branches overtake: varies the interleaving
            await asyncio.sleep(0)
        update: dict[str, Any] = {"seen": [name]}
        if last_value:
            update["value"] = len(state.seen)
        return update

    step.__name__ = name
    return step


def _router(name: str, many: bool) -> Any:
    async def route(state: Trail) -> Any:
        return None  # always driven by Choices in the property tests

    route.__name__ = name
    route.__annotations__ = {"state": Trail, "return": list[str] if many else str}
    return route


async def _double(item: int) -> int:
    return item * 2


@st.composite
def random_graphs(draw: Any, *, max_nodes: int = 6, max_loops: int = 2) -> Any:
    """A `GraphBuilder[Trail]` of a random DAG plus back edges through loop guards.

    Kinds: plain nodes (some writing a last-value field), routers (some returning
    several labels), joins, maps (with or without max_items) and gates. Back edges
    go through loop guards with caps 0-3; now and then one does not (a bare cycle).
    """
    from waypoint.graphs.builder import GraphBuilder
    from waypoint.graphs.graph import END, START

    n = draw(st.integers(2, max_nodes))
    names = [f"n{i}" for i in range(n)]
    recipes = [draw(st.sampled_from(["node", "node", "node", "router", "join", "map", "gate"]))
               for _ in names]
    succ: dict[str, list[str]] = {START: []}
    for i, name in enumerate(names):
        preds = draw(st.lists(st.sampled_from([START, *names[:i]]), min_size=1, max_size=2, unique=True))
        for p in preds:
            succ.setdefault(p, []).append(name)
    for name in names:
        if not succ.get(name):
            succ[name] = [END]
    loops = _draw_loops(draw, names, succ, max_loops)
    g = GraphBuilder(Trail, name="random")
    for name, recipe in zip(names, recipes, strict=True):
        _add(draw, g, name, recipe, succ[name])
    g.edge(START, succ[START])
    for guard, (body, exit_to, cap) in loops.items():
        until = (lambda s: False) if draw(st.booleans()) else None
        routes = {"continue": body, "done": exit_to}
        g.loop_guard(guard, max_iterations=cap, until=until, routes=routes)
    return g


def _draw_loops(draw: Any, names: list[str], succ: dict[str, list[str]], max_loops: int) -> dict[str, Any]:
    """Back edges n_i -> guard -> n_j (j <= i, n_i reachable from n_j); rarely a bare one."""
    from waypoint.graphs.graph import END

    loops = {}
    for k in range(draw(st.integers(0, max_loops))):
        j = draw(st.integers(0, len(names) - 1))
        below = _below(names[j], succ)
        i_name = draw(st.sampled_from(sorted(below)))
        if draw(st.integers(0, 9)) == 0:
            succ[i_name].append(names[j])  # a cycle without a guard: must be rejected
            continue
        guard = f"guard{k}"
        exits = [n for n in names if names.index(n) > names.index(i_name)] + [END]
        loops[guard] = (names[j], draw(st.sampled_from(exits)), draw(st.integers(0, 3)))
        succ[i_name].append(guard)
    return loops


def _below(start: str, succ: dict[str, list[str]]) -> set[str]:
    seen, stack = {start}, [start]
    while stack:
        for t in succ.get(stack.pop(), []):
            if t.startswith("n") and t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def _add(draw: Any, g: Any, name: str, recipe: str, targets: list[str]) -> None:
    if recipe == "router":  # a router's targets are its routes, not edges
        labels: dict[str, list[str]] = {}
        for t in targets:
            labels.setdefault(f"to_{draw(st.integers(0, 1))}", []).append(t)
        g.router(_router(name, draw(st.booleans())), name=name, routes=labels)
        return
    _RECIPES[recipe](draw, g, name)
    g.edge(name, targets)


def _add_step(draw: Any, g: Any, name: str) -> None:
    last_value = draw(st.integers(0, 7)) == 0
    g.node(_step(name, last_value, draw(st.integers(0, 3))), name=name,
           writes=["seen", "value"] if last_value else ["seen"])


# what random_graphs draws for one node (a router aside), by recipe name: (draw, builder, name)
_RECIPES: dict[str, Callable[[Any, Any, str], object]] = {
    "node": _add_step,
    "join": lambda draw, g, name: g.join(name, _step(name, False), writes=["seen"]),
    "map": lambda draw, g, name: g.map(name, _double, over="items", into="mapped",
                                       max_items=draw(st.sampled_from([3, 5, None]))),
    "gate": lambda draw, g, name: g.gate(name, Approval, into="approval" if draw(st.booleans()) else None),
}


def describe(builder: Any) -> str:
    """A builder's nodes, edges and routes as short lines, for failure reports (`hypothesis.note`)."""
    lines = []
    for name, node in builder.nodes.items():
        extra = f" fans_out={fans_out(node)}" if node.may_fan_out else node.details()
        join = " join" if node.join else ""
        lines.append(f"{node.kind}{join} {name!r}{extra} writes={sorted(node.writes or ())}"
                     f" routes={builder.routes.get(name, {})}")
    edges: dict[str, list[str]] = {}
    for source, target in builder.edges:
        edges.setdefault(source, []).append(target)
    lines += [f"edge {source!r} -> {targets}" for source, targets in edges.items()]
    return "\n".join(lines)
