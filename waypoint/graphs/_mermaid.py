"""Mermaid `flowchart TD` text for a drawing made by `waypoint.graphs.render.diagram`.

    mermaid(diagram(graph))   # 'flowchart TD\\n    n_start(("start"))\\n ...'

Labels are always double-quoted, and the characters Mermaid would read as syntax
(quotes, `#`, `<`, `>`, `&`, backticks, `|`) become entity codes such as
`#quot;`, so any node name renders as written. Run status is drawn with one
`classDef` per status and `class` lines, the path with `linkStyle`.
"""

from __future__ import annotations

from waypoint.graphs.render import (
    GATE_COLOURS,
    OFF_PATH_COLOUR,
    PATH_COLOUR,
    STATUS_COLOURS,
    Box,
    Cluster,
    Diagram,
    Link,
    walk,
)

# a node's `drawing` (or start, end, join) -> (opening, closing) brackets; others are rectangles
SHAPES: dict[str, tuple[str, str]] = {
    "start": ("((", "))"),
    "end": ("(((", ")))"),
    "function": ("(", ")"),
    "join": ("[\\", "/]"),  # a funnel: many branches into one
    "router": ("{", "}"),
    "gate": ("{{", "}}"),
    "guard": (">", "]"),
    "map": ("[[", "]]"),
}
KIND_CLASSES = {
    "gate": f"fill:{GATE_COLOURS[0]},stroke:{GATE_COLOURS[1]},stroke-width:2px",
    "join": "fill:#37474f,stroke:#37474f,color:#ffffff",
}
ENTITIES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "|": "#124;"}


def mermaid(d: Diagram) -> str:
    """The whole flowchart: nodes and subgraphs, edges, then classes and link styles."""
    lines = ["flowchart TD"]
    lines += _body(d.root, "    ")
    lines += [f"    {_link(link)}" for link in d.links]
    lines += _classes(d.root)
    lines += _link_styles(d)
    return "\n".join(lines) + "\n"


def _body(cluster: Cluster, indent: str) -> list[str]:
    lines = []
    for item in cluster.items:
        if isinstance(item, Box):
            opening, closing = SHAPES.get(item.kind, ("[", "]"))
            lines.append(f"{indent}{item.id}{opening}{label(*item.lines)}{closing}")
            continue
        lines.append(f"{indent}subgraph {item.id} [{label(item.label)}]")
        lines += _body(item, indent + "    ")
        lines.append(f"{indent}end")
    return lines


def _link(link: Link) -> str:
    text = f"|{label(link.label)}| " if link.label else ""
    arrow = "-.->" if link.style == "dashed" else "-->"
    return f"{link.source} {arrow}{text if text else ' '}{link.target}"


def _classes(root: Cluster) -> list[str]:
    """classDef lines for the kinds and statuses present, then `class` lines."""
    members: dict[str, list[str]] = {}
    for item in walk(root):
        kind = item.kind if isinstance(item, Box) and item.kind in KIND_CLASSES else None
        name = item.status or kind
        if name:
            members.setdefault(name, []).append(item.id)
    order = [*KIND_CLASSES, *STATUS_COLOURS]
    used = [name for name in order if name in members]
    lines = [f"    classDef {name} {_class_style(name)}" for name in used]
    return lines + [f"    class {','.join(members[name])} {name}" for name in used]


def _class_style(name: str) -> str:
    if name in KIND_CLASSES:
        return KIND_CLASSES[name]
    fill, border = STATUS_COLOURS[name]
    width = "4px" if name == "waiting" else "2px"  # a waiting gate must stand out
    text = "#616161" if name == "not_reached" else "#000000"
    return f"fill:{fill},stroke:{border},stroke-width:{width},color:{text}"


def _link_styles(d: Diagram) -> list[str]:
    if not d.has_path:
        return []
    lines = [f"    linkStyle default stroke:{OFF_PATH_COLOUR}"]
    on_path = [str(i) for i, link in enumerate(d.links) if link.on_path]
    if on_path:
        lines.append(f"    linkStyle {','.join(on_path)} stroke:{PATH_COLOUR},stroke-width:3px")
    return lines


def label(*lines: str) -> str:
    """A quoted Mermaid label: syntax characters as entity codes, lines joined by <br>."""
    parts = "\n".join(lines).replace("\r\n", "\n").split("\n")
    return '"' + "<br>".join(_escape(part) for part in parts) + '"'


def _escape(text: str) -> str:
    text = text.replace("#", "#35;")
    return "".join(ENTITIES.get(ch, ch) for ch in text)
