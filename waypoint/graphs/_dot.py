"""DOT text for a drawing made by `waypoint.graphs.render.diagram`.

    dot(diagram(graph))      # 'digraph "essay" {\\n  graph [...]; ...'

Ids are generated (`n0`, `n3_n_start`), so only attribute values need quoting;
every value is quoted and escaped, which makes any node name safe.
"""

from __future__ import annotations

from collections.abc import Mapping

from waypoint.graphs.render import (
    GATE_COLOURS,
    OFF_PATH_COLOUR,
    PATH_COLOUR,
    STATUS_COLOURS,
    Box,
    Cluster,
    Diagram,
    Link,
)

FONT = "Helvetica,Arial,sans-serif"
# a node's `drawing` (or start, end, join) -> DOT attributes; others are drawn as plain boxes
SHAPES: dict[str, dict[str, str]] = {
    "start": {"shape": "circle", "fontsize": "10"},
    "end": {"shape": "doublecircle", "fontsize": "10"},
    "function": {"shape": "box", "style": "rounded,filled"},
    "join": {"shape": "box", "height": "0.25", "width": "1.6", "fillcolor": "#37474f",
             "fontcolor": "white"},
    "router": {"shape": "diamond"},
    "gate": {"shape": "octagon", "fillcolor": GATE_COLOURS[0], "color": GATE_COLOURS[1],
             "penwidth": "2"},
    "guard": {"shape": "Mdiamond"},
    "map": {"shape": "box3d"},
}
# a subgraph's own START/END: small unlabelled marks, so the cluster stays compact
INNER = {
    "start": {"shape": "circle", "label": "", "width": "0.2", "fillcolor": "#37474f"},
    "end": {"shape": "doublecircle", "label": "", "width": "0.15", "fillcolor": "#37474f"},
}


def dot(d: Diagram) -> str:
    """The whole `digraph`: defaults, nodes and clusters, then every edge."""
    lines = [
        f"digraph {quote(d.root.label)} {{",
        f"  graph {attrs({'label': d.root.label, 'labelloc': 't', 'fontname': FONT})};",
        f"  node {attrs({'fontname': FONT, 'style': 'filled', 'fillcolor': 'white'})};",
        f"  edge {attrs({'fontname': FONT, 'fontsize': '10'})};",
    ]
    lines += _body(d.root, "  ")
    lines += [f"  {link.source} -> {link.target}{_edge(link, d.has_path)};" for link in d.links]
    return "\n".join([*lines, "}", ""])


def _body(cluster: Cluster, indent: str) -> list[str]:
    lines = []
    for item in cluster.items:
        if isinstance(item, Box):
            lines.append(f"{indent}{item.id} {attrs(_node(item, inner=bool(cluster.id)))};")
            continue
        lines.append(f"{indent}subgraph cluster_{item.id} {{")
        lines.append(f"{indent}  graph {attrs(_cluster(item))};")
        lines += _body(item, indent + "  ")
        lines.append(f"{indent}}}")
    return lines


def _node(box: Box, inner: bool) -> dict[str, str]:
    base = (inner and INNER.get(box.kind)) or SHAPES.get(box.kind, {"shape": "box"})
    return {"label": "\n".join(box.lines), **base, **_status(box.status, base.get("style", ""))}


def _cluster(cluster: Cluster) -> dict[str, str]:
    plain = {"label": cluster.label, "style": "rounded,dashed", "color": "#607d8b"}
    return {**plain, **_status(cluster.status, "rounded")}


def _status(status: str | None, style: str) -> dict[str, str]:
    """Fill and border for a run status; a waiting node gets a bold, thick border."""
    if status is None:
        return {}
    fill, border = STATUS_COLOURS[status]
    waiting = status == "waiting"
    tokens = [t for t in style.split(",") if t == "rounded"] + ["filled"] + ["bold"] * waiting
    return {
        "style": ",".join(tokens), "fillcolor": fill, "color": border,
        "penwidth": "3" if waiting else "2",
        "fontcolor": "#616161" if status == "not_reached" else "black",
    }


def _edge(link: Link, has_path: bool) -> str:
    a = {"label": link.label} if link.label else {}
    if link.style:
        a["style"] = link.style
    if link.on_path:
        a.update(color=PATH_COLOUR, fontcolor=PATH_COLOUR, penwidth="3", style="bold")
    elif has_path:
        a.update(color=OFF_PATH_COLOUR, fontcolor=OFF_PATH_COLOUR)
    return f" {attrs(a)}" if a else ""


def attrs(values: Mapping[str, str]) -> str:
    return "[" + ", ".join(f"{k}={quote(v)}" for k, v in values.items()) + "]"


def quote(text: str) -> str:
    """A DOT double-quoted string; backslashes are literal, newlines break the line."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n") + '"'
