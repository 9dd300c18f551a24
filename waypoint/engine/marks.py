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

from waypoint.engine._frontier import Frontier
from waypoint.graphs.graph import END, START

RANK = {"not_reached": 0, "done": 1, "running": 2, "waiting": 3, "failed": 4}


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
    """Follow the run's log with `Frontier.advance`, the transition replay uses, and mark
    each activation as the frontier has it: waiting, done (no longer pending) or failed."""
    info = await store.get_run(run_id)
    frontier = Frontier.initial(graph)
    nodes = {act.id: act.node for act in frontier.pending.values()}  # every activation made
    failed: set[str] = set()  # activations whose latest end was a fail step
    items: dict[str, set[int]] = {}  # map activation -> items finished or waiting
    for name in graph.start:
        marks.edge(prefix + START, prefix + name)
    for step in await store.history(run_id):
        if step.node not in graph.nodes or step.kind == "event":
            continue  # a run-level failure recorded under "-", a person's edit; an answer given
        nodes.setdefault(step.activation, step.node)  # '-' too: a failure after its node ended
        _items_of(frontier, step.activation, items)  # before a done step forgets them
        frontier.advance(graph, step)
        if step.kind in ("done", "wait", "fail"):
            (failed.add if step.kind == "fail" else failed.discard)(step.activation)
        if step.kind == "done":
            for i in range(len(step.children)):
                made = frontier.pending[f"{step.seq}.{i}"]
                nodes[made.id] = made.node
            _edges_of(graph, step, prefix, marks)
    for act, node in nodes.items():
        _items_of(frontier, act, items)
        status = _status(act, frontier, failed, info.status)
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


def _items_of(frontier: Frontier, act: str, items: dict[str, set[int]]) -> None:
    """The map items of `act` the frontier shows a child run for: committed, or waiting."""
    seen = items.setdefault(act, set())
    seen.update(frontier.items.get(act, ()))
    seen.update(item["index"] for item in frontier.waits.get(act, {}).get("items", ()))


def _edges_of(graph: Any, step: Any, prefix: str, marks: RunMarks) -> None:
    for child in step.children:
        marks.edge(prefix + step.node, prefix + child)
    for join in step.extra.get("arrived", ()):
        marks.edge(prefix + step.node, prefix + join)
    route = step.extra.get("route")
    if END in graph.successors(step.node, tuple(route) if route is not None else None):
        marks.edge(prefix + step.node, prefix + END)


def _status(act: str, frontier: Frontier, failed: set[str], run_status: str) -> str | None:
    """An activation's status; None for one that never started (e.g. cut off by a failure)."""
    if act in failed:  # failed once; if the run was resumed since, it is pending again
        return "failed" if run_status == "failed" else "running" if run_status == "running" else None
    if act in frontier.waits:
        return "waiting"
    if act not in frontier.pending:
        return "done"
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
