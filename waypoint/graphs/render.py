"""Drawing a compiled graph: DOT, Mermaid, SVG and PNG, optionally with a run on it.

    graph.render()                                   # DOT text, no binary needed
    graph.render("mermaid")                          # `flowchart TD` text for GitHub
    graph.render("svg")                              # needs the Graphviz `dot` binary
    render_to_file(graph, "essay.png")               # format from the suffix
    graph.render("svg", run=await waypoint.run_marks(graph, run_id, store=store))  # a run on it
    graph.render("svg", status={"draft": "done", "approve": "waiting"},
                 visits={"draft": 3}, path=[(START, "draft"), ("draft", "approve")])

Each node kind has its own shape: function a rounded box, router a diamond, gate
a yellow octagon, loop guard a marked diamond showing its cap, map a 3-D box
showing `over -> into` (and its worker graph, if it maps over one, as a dashed
cluster reached by a dashed "each item" edge), join a dark bar, subgraph a dashed cluster holding the
child graph's nodes. START is a circle and END a double circle. Router and guard
edges carry their labels.

Node names are never used as ids (they may hold spaces, quotes or anything):
nodes get `n0, n1, ...` in definition order, START/END get `n_start`/`n_end`,
and a subgraph's children are prefixed with its id (`n3_n0`). The same graph
always renders to the same text.

A run is shown with `status` (node -> one of `STATUSES`), `visits` (node -> how
many times it ran) and `path` (the (source, target) pairs traversed, START/END
included). A node inside subgraph `research` is named `research/search`, its
START `research/__start__`; a node of the worker graph of map `delegate` is
`delegate/research`, as its events are.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from waypoint.errors import WaypointError
from waypoint.graphs.graph import END, START, Graph
from waypoint.nodes.base import Node

__all__ = ["FORMATS", "STATUSES", "Status", "render", "render_to_file"]

Status = Literal[
    "done",  # ran to completion
    "running",  # executing now
    "waiting",  # a gate waiting for an answer: drawn bold so it stands out
    "failed",  # raised, timed out or returned bad data
    "not_reached",  # the run never got here
]
STATUSES: tuple[str, ...] = get_args(Status)
FORMATS: tuple[str, ...] = ("dot", "mermaid", "svg", "png")
SUFFIXES = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".svg": "svg", ".png": "png"}
MISSING_DOT = (
    "the Graphviz 'dot' binary is needed for svg/png: apt-get install graphviz "
    "(Debian/Ubuntu) or brew install graphviz (macOS); DOT and Mermaid text need nothing."
)
SEP = "/"  # between a subgraph's name and its child's name

# status -> (fill, border); shared by the DOT and Mermaid writers
STATUS_COLOURS = {
    "done": ("#c8e6c9", "#2e7d32"),
    "running": ("#bbdefb", "#1565c0"),
    "waiting": ("#ffe0b2", "#ef6c00"),
    "failed": ("#ffcdd2", "#c62828"),
    "not_reached": ("#eeeeee", "#9e9e9e"),
}
GATE_COLOURS = ("#fff3c4", "#b8860b")
PATH_COLOUR = "#6a1b9a"
OFF_PATH_COLOUR = "#9e9e9e"


# -- the drawing, independent of the output format --------------------------------
@dataclass
class Box:
    """One drawn node: `kind` is how it is drawn: a node's `drawing`, "join", "start" or "end"."""

    id: str
    name: str  # qualified node name, what status/visits are keyed by
    kind: str
    lines: list[str]  # label lines; the first is the name
    status: str | None = None


@dataclass
class Cluster:
    """A graph's nodes: the root graph, or a subgraph drawn as a cluster."""

    id: str
    name: str
    label: str
    items: list[Box | Cluster] = field(default_factory=list)  # in definition order
    status: str | None = None


@dataclass
class Link:
    source: str  # ids
    target: str
    ends: tuple[str, str]  # qualified node names, what `path` pairs are matched against
    label: str = ""
    on_path: bool = False
    style: str = ""  # "dashed": not a control-flow edge (a map to its worker graph)


@dataclass
class Diagram:
    root: Cluster
    links: list[Link]
    has_path: bool = False


def diagram(
    graph: Graph[Any],
    status: Mapping[str, Status] | None = None,
    visits: Mapping[str, int] | None = None,
    path: Iterable[tuple[str, str]] | None = None,
) -> Diagram:
    """The format-independent drawing of `graph`, with a run's marks applied."""
    links: list[Link] = []
    root = _cluster(graph, Cluster("", "", graph.name), "", links)
    result = Diagram(root, links)
    _mark_status(result, status or {}, visits or {})
    if path is not None:
        _mark_path(result, list(path))
    return result


def _cluster(graph: Graph[Any], cluster: Cluster, qual: str, links: list[Link]) -> Cluster:
    """Fill `cluster` with `graph`'s nodes; append its edges, then its subgraphs' edges."""
    idp = f"{cluster.id}_" if cluster.id else ""
    entry = {START: f"{idp}n_start", END: f"{idp}n_end"}
    exit_ = dict(entry)
    cluster.items.append(Box(entry[START], qual + START, "start", ["start"]))
    inner: list[Link] = []
    for i, (name, node) in enumerate(graph.nodes.items()):
        nid = f"{idp}n{i}"
        inner_graph = node.inner_graph if isinstance(node.inner_graph, Graph) else None
        if inner_graph is not None and node.item_field is None:  # a subgraph: drawn in its place
            child = Cluster(nid, qual + name, name)
            cluster.items.append(_cluster(inner_graph, child, f"{qual}{name}{SEP}", inner))
            entry[name], exit_[name] = f"{nid}_n_start", f"{nid}_n_end"
        else:
            cluster.items.append(Box(nid, qual + name, _kind(node), _lines(name, node)))
            entry[name] = exit_[name] = nid
        if inner_graph is not None and node.item_field is not None:  # a map's worker: beside it
            cluster.items.append(_worker(inner_graph, nid, f"{qual}{name}", inner))
    cluster.items.append(Box(entry[END], qual + END, "end", ["end"]))
    for source, target, label in _edges(graph):
        links.append(Link(exit_[source], entry[target], (qual + source, qual + target), label))
    links += inner
    return cluster


def _worker(graph: Graph[Any], nid: str, qual: str, links: list[Link]) -> Cluster:
    """A map's worker graph: a cluster beside the map, reached by a dashed 'each item' link."""
    worker = Cluster(f"{nid}_w", qual + SEP, f"each item: {graph.name}")
    links.append(Link(nid, f"{nid}_w_n_start", (qual, qual + SEP + START), "each item", style="dashed"))
    return _cluster(graph, worker, qual + SEP, links)


def _kind(node: Node) -> str:
    return "join" if node.join else node.drawing


def _lines(name: str, node: Node) -> list[str]:
    return [name, *node.caption()]


def _edges(graph: Graph[Any]) -> list[tuple[str, str, str]]:
    """(source, target, label) in definition order; labels to one target are merged."""
    merged: dict[tuple[str, str], list[str]] = {}
    for source in (START, *graph.nodes):
        for target in graph.edges.get(source, ()):
            merged.setdefault((source, target), [])
        for label, targets in graph.routes.get(source, {}).items():
            for target in targets:
                merged.setdefault((source, target), []).append(label)
    return [(s, t, ", ".join(labels)) for (s, t), labels in merged.items()]


# -- run marks ------------------------------------------------------------------------
def walk(cluster: Cluster) -> Iterable[Box | Cluster]:
    """Every box and cluster inside `cluster`, depth first in definition order."""
    for item in cluster.items:
        yield item
        if isinstance(item, Cluster):
            yield from walk(item)


def _mark_status(d: Diagram, status: Mapping[str, Status], visits: Mapping[str, int]) -> None:
    items = {item.name: item for item in walk(d.root)}
    for name in (*status, *visits):
        if name not in items:
            raise ValueError(
                f"render(): no node {name!r} in graph {d.root.label!r}; the nodes are "
                f"{sorted(items)} (a node inside subgraph 'sub' is 'sub{SEP}node')."
            )
    for name, value in status.items():
        if value not in STATUSES:
            raise ValueError(f"render(): status {value!r} of node {name!r} is not one of {list(STATUSES)}.")
        items[name].status = value
    for name, count in visits.items():
        item = items[name]
        if count <= 0:
            continue
        if isinstance(item, Box):
            item.lines[0] += f" ×{count}"
        else:
            item.label += f" ×{count}"


def _mark_path(d: Diagram, path: list[tuple[str, str]]) -> None:
    d.has_path = True
    by_ends: dict[tuple[str, str], list[Link]] = {}
    for link in d.links:
        by_ends.setdefault(link.ends, []).append(link)
    for source, target in path:
        if (source, target) not in by_ends:
            raise ValueError(
                f"render(): path step {(source, target)!r} is not an edge of graph "
                f"{d.root.label!r}; give (source, target) node names, with "
                "'__start__'/'__end__' for START/END."
            )
        for link in by_ends[source, target]:
            link.on_path = True


# -- entry points -----------------------------------------------------------------------
def render(
    graph: Graph[Any],
    format: str = "dot",
    *,
    status: Mapping[str, Status] | None = None,
    visits: Mapping[str, int] | None = None,
    path: Iterable[tuple[str, str]] | None = None,
    run: Any = None,
) -> str | bytes:
    """`render(graph, "svg", run=marks)`: str, or bytes for "png".

    `run` is what `await waypoint.run_marks(graph, run_id, store=store)` returns; `status`,
    `visits` and `path` given as well override its parts.
    """
    if format not in FORMATS:
        raise ValueError(f"render(): unknown format {format!r}; use one of {list(FORMATS)}.")
    if run is not None:
        status = run.status if status is None else status
        visits = run.visits if visits is None else visits
        path = run.path if path is None else path
    drawing = diagram(graph, status, visits, path)
    if format == "mermaid":
        from waypoint.graphs._mermaid import mermaid

        return mermaid(drawing)
    from waypoint.graphs._dot import dot

    text = dot(drawing)
    if format == "dot":
        return text
    output = run_dot(text, format)
    return output.decode("utf-8") if format == "svg" else output


def render_to_file(graph: Graph[Any], path: str | Path, /, **options: Any) -> Path:
    """`render_to_file(graph, "flow.svg", status=..., path=[...])`: the suffix picks the format.

    The file path is positional, so `path=` stays free for the run's path.
    """
    file = Path(path)
    format = SUFFIXES.get(file.suffix.lower())
    if format is None:
        raise ValueError(
            f"render_to_file(): cannot tell the format of {str(file)!r}; "
            f"use one of the suffixes {sorted(SUFFIXES)}."
        )
    output = render(graph, format, **options)
    if isinstance(output, bytes):
        file.write_bytes(output)
    else:
        file.write_text(output, encoding="utf-8")
    return file


def run_dot(text: str, format: str) -> bytes:
    """Lay out DOT `text` with the Graphviz binary; `format` is a `dot -T` format."""
    exe = shutil.which("dot")
    if exe is None:
        raise WaypointError(MISSING_DOT)
    done = subprocess.run(
        [exe, f"-T{format}"], input=text.encode("utf-8"), capture_output=True, timeout=120
    )
    if done.returncode != 0:
        raise WaypointError(
            f"Graphviz 'dot -T{format}' failed (exit {done.returncode}): "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return done.stdout
