"""A run's history as marks on its diagram: status per node, visit counts, path taken.

    marks = await run_marks(graph, run_id, store=store)
    svg = graph.render("svg", run=marks)     # the same as `waypoint render --run RUN_ID`

Every activation id is `"S.I"`: the I-th activation created by step S, so the
node of step S is its parent (`"0.I"` comes from START). A join is reached from
every branch that arrived at it (`extra["arrived"]`), and a completion whose
routes (or static edges) include END draws an edge to END. A subgraph node's
child runs (`<run>/<activation>`) mark the nodes inside it as `sub/node`, and a map
over a graph marks its worker's nodes as `map/node` from the child runs of the items
it finished or waits on (`<run>/<activation>/item<index>`), all items together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from waypoint.graphs.graph import END, START

RANK = {"not_reached": 0, "done": 1, "running": 2, "waiting": 3, "failed": 4}
TERMINAL = {"done": "done", "wait": "waiting", "fail": "failed"}


@dataclass
class RunMarks:
    status: dict[str, str] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)
    path: list[tuple[str, str]] = field(default_factory=list)

    def visit(self, node: str, status: str) -> None:
        self.visits[node] = self.visits.get(node, 0) + 1
        if RANK[status] > RANK[self.status.get(node, "not_reached")]:
            self.status[node] = status

    def edge(self, source: str, target: str) -> None:
        if (source, target) not in self.path:
            self.path.append((source, target))


async def run_marks(graph: Any, run_id: str, *, store: Any) -> RunMarks:
    """What run `run_id` did on `graph` (subgraphs' child runs included), to draw it."""
    await store.open()
    marks = RunMarks()
    await _collect(graph, store, run_id, "", marks)
    _not_reached(graph, "", marks)
    return marks


async def _collect(graph: Any, store: Any, run_id: str, prefix: str, marks: RunMarks) -> None:
    info = await store.get_run(run_id)
    steps = await store.history(run_id)
    nodes = {f"0.{i}": name for i, name in enumerate(graph.start)}  # activation -> node
    last: dict[str, str] = {}  # activation -> kind of its latest done/wait/fail step
    items: dict[str, set[int]] = {}  # map activation -> items finished or waiting
    for name in graph.start:
        marks.edge(prefix + START, prefix + name)
    for step in steps:
        if step.node not in graph.nodes:
            continue  # a run-level failure recorded under "-"
        nodes.setdefault(step.activation, step.node)
        if step.kind in TERMINAL:
            last[step.activation] = step.kind
        _items_of(step, items.setdefault(step.activation, set()))
        if step.kind == "done":
            _edges_of(graph, step, prefix, nodes, marks)
    for act, node in nodes.items():
        status = _status(last.get(act), info.status)
        if status is not None:
            marks.visit(prefix + node, status)
        inner = graph.nodes[node].inner_graph  # drawn inside: a subgraph's, a map's worker
        if status is None or inner is None:
            continue
        if graph.nodes[node].item_field is None:
            await _child(inner, store, f"{run_id}/{act}", f"{prefix}{node}/", marks)
        else:
            for index in sorted(items.get(act, ())):
                await _child(inner, store, f"{run_id}/{act}/item{index}", f"{prefix}{node}/", marks)


def _items_of(step: Any, items: set[int]) -> None:
    """The map items a step shows a child run for: one it committed, or those it waits on."""
    if step.kind == "item":
        items.add(step.extra["index"])
    elif step.kind == "wait":
        items.update(item["index"] for item in step.extra.get("items", ()))


def _edges_of(graph: Any, step: Any, prefix: str, nodes: dict[str, str], marks: RunMarks) -> None:
    for i, child in enumerate(step.children):
        nodes[f"{step.seq}.{i}"] = child
        marks.edge(prefix + step.node, prefix + child)
    for join in step.extra.get("arrived", ()):
        marks.edge(prefix + step.node, prefix + join)
    route = step.extra.get("route")
    if END in graph.successors(step.node, tuple(route) if route is not None else None):
        marks.edge(prefix + step.node, prefix + END)


def _status(kind: str | None, run_status: str) -> str | None:
    """An activation's status; None for one that never started (e.g. cut off by a failure)."""
    if kind == "fail" and run_status != "failed":
        kind = None  # failed once, resumed since: pending again
    if kind is not None:
        return TERMINAL[kind]
    return "running" if run_status == "running" else None


async def _child(graph: Any, store: Any, child_id: str, prefix: str, marks: RunMarks) -> None:
    from waypoint.errors import RunNotFoundError

    try:
        await _collect(graph, store, child_id, prefix, marks)
    except RunNotFoundError:
        pass  # the subgraph had not created its child run yet


def _not_reached(graph: Any, prefix: str, marks: RunMarks) -> None:
    for name, node in graph.nodes.items():
        marks.status.setdefault(prefix + name, "not_reached")
        if node.inner_graph is not None:
            _not_reached(node.inner_graph, f"{prefix}{name}/", marks)
