"""Rendering: every format is checked by parsing what it produced, never by snapshot.

DOT is read back with a small statement parser, SVG comes from the real `dot`
binary and is read with ElementTree, Mermaid is checked line by line for the
statements it may contain and for edges whose endpoints are all declared.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Literal

import pytest
from pydantic import BaseModel

from waypoint.errors import WaypointError
from waypoint.graphs import END, START, Graph, GraphBuilder
from waypoint.graphs.render import PATH_COLOUR, STATUS_COLOURS, render, render_to_file

needs_dot = pytest.mark.needs_dot  # tests/conftest.py: skipped, with the install command, without `dot`
AWKWARD = 'say "hi" & <go> #1 | `x` \\ [a]{b};'


class S(BaseModel):
    text: str = ""
    score: float = 0.0
    docs: list[str] = []
    summaries: list[str] = []
    approval: Approval | None = None


class Approval(BaseModel):
    approved: bool


S.model_rebuild()


# -- graphs -----------------------------------------------------------------------
def nop(state: S) -> None:
    return None


def chain(*names: str, name: str = "chain") -> Graph:
    g = GraphBuilder(S, name=name)
    for n in names:
        g.node(nop, name=n)
    for source, target in zip((START, *names), (*names, END)):
        g.edge(source, target)
    return g.compile()


def router_graph() -> Graph:
    g = GraphBuilder(S, name="routed")

    @g.router(routes={"good": "publish", "bad": "revise"})
    def judge(state: S) -> Literal["good", "bad"]:
        return "good"

    g.node(nop, name="publish")
    g.node(nop, name="revise")
    g.edge(START, "judge")
    g.edge("publish", END)
    g.edge("revise", END)
    return g.compile()


def loop_graph() -> Graph:
    g = GraphBuilder(S, name="loop")
    g.node(nop, name="draft")
    g.loop_guard("enough", max_iterations=3, until=lambda s: s.score > 0.8,
                 routes={"continue": "draft", "done": "publish", "exhausted": END})
    g.node(nop, name="publish")
    g.edge(START, "draft")
    g.edge("draft", "enough")
    g.edge("publish", END)
    return g.compile()


def gate_graph() -> Graph:
    g = GraphBuilder(S, name="gated")
    g.node(nop, name="draft")
    g.gate("approve", Approval, prompt="Publish?", into="approval")
    g.edge(START, "draft")
    g.edge("draft", "approve")
    g.edge("approve", END)
    return g.compile()


def map_graph() -> Graph:
    g = GraphBuilder(S, name="mapped")
    g.map("summarise", lambda doc: doc[:10], over="docs", into="summaries", max_concurrency=4)
    g.edge(START, "summarise")
    g.edge("summarise", END)
    return g.compile()


def fan_graph() -> Graph:
    g = GraphBuilder(S, name="fan")
    for n in ("split", "left", "right"):
        g.node(nop, name=n)
    g.join("merge")
    g.edge(START, "split")
    g.edge("split", ["left", "right"])
    g.edge("left", "merge")
    g.edge("right", "merge")
    g.edge("merge", END)
    return g.compile()


def nested_graph() -> Graph:
    """outer: prepare -> research[ search -> deep[ dig ] ] -> write."""
    g = GraphBuilder(S, name="outer")
    inner = GraphBuilder(S, name="research")
    inner.node(nop, name="search")
    inner.subgraph("deep", chain("dig", name="deep"))
    inner.edge(START, "search")
    inner.edge("search", "deep")
    inner.edge("deep", END)
    g.node(nop, name="prepare")
    g.subgraph("research", inner.compile())
    g.node(nop, name="write")
    for source, target in [(START, "prepare"), ("prepare", "research"), ("research", "write"),
                           ("write", END)]:
        g.edge(source, target)
    return g.compile()


ALL = [chain("a", "b", "c"), router_graph(), loop_graph(), gate_graph(), map_graph(),
       fan_graph(), nested_graph(), chain(AWKWARD, "plain")]


# -- DOT parsing --------------------------------------------------------------------
ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
NODE = re.compile(r"^\s*(\w+) \[(.*)\];$")
EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?;$")
CLUSTER = re.compile(r"^\s*subgraph (cluster_\w+) \{$")


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def attrs(text: str | None) -> dict[str, str]:
    return {k: unescape(v) for k, v in ATTR.findall(text or "")}


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, dict[str, str]]], dict[str, list[str]]]:
    """(nodes id -> attrs, edges (source, target, attrs), clusters name -> member ids)."""
    nodes, edges, clusters, open_clusters = {}, [], {}, []
    for line in text.splitlines()[1:-1]:
        if m := CLUSTER.match(line):
            open_clusters.append(m.group(1))
            clusters[m.group(1)] = []
        elif line.strip() == "}":
            open_clusters.pop()
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2), attrs(m.group(3))))
        elif m := NODE.match(line):
            if m.group(1) not in ("graph", "node", "edge"):
                nodes[m.group(1)] = attrs(m.group(2))
                for c in open_clusters:
                    clusters[c].append(m.group(1))
        else:
            pytest.fail(f"unparsed DOT line: {line!r}")
    assert not open_clusters
    return nodes, edges, clusters


def by_label(nodes: dict[str, dict[str, str]]) -> dict[str, str]:
    """First label line (without a visit count) -> id, for names drawn once."""
    return {a["label"].split("\n")[0].split(" ×")[0]: i for i, a in nodes.items()
            if not i.endswith(("n_start", "n_end"))}


def named_edges(text: str) -> set[tuple[str, str, str]]:
    nodes, edges, _ = parse_dot(text)
    name = {i: a["label"].split("\n")[0] for i, a in nodes.items()}
    return {(name[s], name[t], a.get("label", "")) for s, t, a in edges}


# -- SVG parsing ------------------------------------------------------------------------
SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(svg: str) -> dict[str, dict[str, dict[str, list[str]]]]:
    """class ("node", "edge", "cluster") -> title -> {"text", "fill", "stroke", "stroke-width"}."""
    found: dict[str, dict[str, dict[str, list[str]]]] = {"node": {}, "edge": {}, "cluster": {}}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") in found:
            title = g.find(f"{SVG}title").text
            info: dict[str, list[str]] = {"text": [t.text or "" for t in g.iter(f"{SVG}text")]}
            for key in ("fill", "stroke", "stroke-width"):
                info[key] = [e.get(key) for e in g.iter() if e.get(key) and e.tag != f"{SVG}text"]
            found[g.get("class")][title] = info
    return found


# -- Mermaid parsing --------------------------------------------------------------------
M_NODE = re.compile(r'^(\w+)(\(\(\(|\(\(|\[\[|\[\\|\{\{|\(|\{|>)"([^"]*)"(\)\)\)|\)\)|\]\]|/\]|\}\}|\)|\}|\])$')
M_EDGE = re.compile(r'^(\w+) -->(?:\|"([^"]*)"\|)? (\w+)$')
M_OTHER = re.compile(r'^(subgraph \w+ \["[^"]*"\]|end|classDef \w+ [\w:#,.-]+|class [\w,]+ \w+|'
                     r'linkStyle (default|[\d,]+) [\w:#,.-]+)$')


def parse_mermaid(text: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str]], list[str]]:
    """(nodes id -> (opening bracket, label), edges (source, label, target), other lines)."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes, edges, other, depth = {}, [], [], 0
    for raw in lines[1:]:
        line = raw.strip()
        if m := M_NODE.match(line):
            nodes[m.group(1)] = (m.group(2), m.group(3))
        elif m := M_EDGE.match(line):
            edges.append((m.group(1), m.group(2) or "", m.group(3)))
        elif M_OTHER.match(line):
            depth += line.startswith("subgraph ") - (line == "end")
            other.append(line)
        else:
            pytest.fail(f"unexpected Mermaid line: {raw!r}")
    assert depth == 0, "every subgraph is closed"
    subgraphs = {line.split()[1] for line in other if line.startswith("subgraph ")}
    for source, _, target in edges:
        assert {source, target} <= set(nodes) | subgraphs, f"undeclared endpoint in {source}->{target}"
    return nodes, edges, other


def mermaid_label(text: str) -> str:
    """What a reader sees: entity codes decoded, <br> as a line break."""
    text = text.replace("<br>", "\n").replace("#quot;", '"').replace("#lt;", "<")
    text = text.replace("#gt;", ">").replace("#amp;", "&")
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


# -- structure ---------------------------------------------------------------------------
def test_chain_draws_start_end_and_every_edge():
    nodes, edges, _ = parse_dot(render(chain("a", "b", "c")))
    assert nodes["n_start"]["shape"] == "circle"
    assert nodes["n_end"]["shape"] == "doublecircle"
    assert {nodes[i]["label"] for i in ("n0", "n1", "n2")} == {"a", "b", "c"}
    assert all(nodes[i]["shape"] == "box" for i in ("n0", "n1", "n2"))
    assert [(s, t) for s, t, _ in edges] == [
        ("n_start", "n0"), ("n0", "n1"), ("n1", "n2"), ("n2", "n_end")]


def test_router_is_a_diamond_and_its_edges_carry_the_literal_labels():
    text = render(router_graph())
    nodes, _, _ = parse_dot(text)
    assert nodes[by_label(nodes)["judge"]]["shape"] == "diamond"
    assert {("judge", "publish", "good"), ("judge", "revise", "bad")} <= named_edges(text)


def test_loop_guard_shows_its_cap_and_closes_the_cycle():
    text = render(loop_graph())
    nodes, _, _ = parse_dot(text)
    guard = nodes[by_label(nodes)["enough"]]
    assert guard["label"] == "enough\n≤ 3 iterations"
    assert guard["shape"] == "Mdiamond"
    assert {("draft", "enough", ""), ("enough", "draft", "continue"),
            ("enough", "publish", "done"), ("enough", "end", "exhausted")} <= named_edges(text)


def test_gate_is_a_coloured_octagon_naming_its_answer():
    nodes, _, _ = parse_dot(render(gate_graph()))
    gate = nodes[by_label(nodes)["approve"]]
    assert gate["shape"] == "octagon"
    assert gate["fillcolor"] not in ("", "white")
    assert "Approval" in gate["label"]


def test_map_is_a_stacked_box_showing_over_and_into():
    nodes, _, _ = parse_dot(render(map_graph()))
    node = nodes[by_label(nodes)["summarise"]]
    assert node["shape"] == "box3d"
    assert "over docs → summaries" in node["label"].split("\n")
    assert "≤ 4 at once" in node["label"].split("\n")


def test_join_after_a_fan_out_is_a_dark_bar():
    text = render(fan_graph())
    nodes, _, _ = parse_dot(text)
    join = nodes[by_label(nodes)["merge"]]
    assert join["shape"] == "box" and float(join["height"]) < 0.5
    assert join["fillcolor"] != "white"
    assert {("split", "left", ""), ("split", "right", ""), ("left", "merge", ""),
            ("right", "merge", "")} <= named_edges(text)


def test_subgraphs_are_nested_clusters_with_prefixed_ids():
    nodes, edges, clusters = parse_dot(render(nested_graph()))
    assert set(clusters) == {"cluster_n1", "cluster_n1_n1"}  # research, research/deep
    deep = clusters["cluster_n1_n1"]
    assert set(deep) == {"n1_n1_n_start", "n1_n1_n0", "n1_n1_n_end"}
    assert set(deep) < set(clusters["cluster_n1"])
    assert nodes["n1_n1_n0"]["label"] == "dig"
    pairs = {(s, t) for s, t, _ in edges}
    # into a subgraph at its START, out of it from its END
    assert {("n0", "n1_n_start"), ("n1_n_end", "n2"), ("n1_n0", "n1_n1_n_start"),
            ("n1_n1_n_end", "n1_n_end")} <= pairs
    assert len(nodes) == len(set(nodes))


def test_awkward_names_get_generated_ids_and_escaped_labels():
    graph = chain(AWKWARD, "plain")
    nodes, _, _ = parse_dot(render(graph))
    assert nodes["n0"]["label"] == AWKWARD
    m_nodes, _, _ = parse_mermaid(render(graph, "mermaid"))
    assert mermaid_label(m_nodes["n0"][1]) == AWKWARD


@needs_dot
def test_awkward_names_survive_the_dot_binary():
    assert "n0" in parse_svg(render_svg(chain(AWKWARD, "plain")))["node"]


def test_rendering_is_deterministic():
    for format in ("dot", "mermaid"):
        assert render(nested_graph(), format) == render(nested_graph(), format)
        assert render(loop_graph(), format) == render(loop_graph(), format)


@pytest.mark.parametrize("graph", ALL, ids=lambda g: g.name)
def test_mermaid_is_well_formed_and_matches_dot(graph):
    nodes, edges, other = parse_mermaid(render(graph, "mermaid"))
    d_nodes, d_edges, d_clusters = parse_dot(render(graph))
    assert set(nodes) == set(d_nodes)
    assert [(s, t) for s, _, t in edges] == [(s, t) for s, t, _ in d_edges]
    assert [mermaid_label(label) for _, label, _ in edges] == [a.get("label", "") for *_, a in d_edges]
    assert {f"cluster_{line.split()[1]}" for line in other if line.startswith("subgraph")} == set(d_clusters)


def test_mermaid_shapes_per_kind():
    nodes, _, _ = parse_mermaid(render(loop_graph(), "mermaid"))
    assert nodes["n_start"][0] == "((" and nodes["n_end"][0] == "((("
    assert nodes["n1"] == (">", "enough<br>≤ 3 iterations")
    nodes, _, other = parse_mermaid(render(gate_graph(), "mermaid"))
    assert nodes["n1"][0] == "{{"
    assert "class n1 gate" in other


# -- run status ----------------------------------------------------------------------
RUN = dict(
    status={"draft": "done", "enough": "done", "publish": "running"},
    visits={"draft": 3, "enough": 3},
    path=[(START, "draft"), ("draft", "enough"), ("enough", "draft"), ("enough", "publish")],
)


def test_status_keeps_the_structure_and_marks_nodes_and_path():
    plain, marked = parse_dot(render(loop_graph())), parse_dot(render(loop_graph(), **RUN))
    assert set(plain[0]) == set(marked[0])
    assert [e[:2] for e in plain[1]] == [e[:2] for e in marked[1]]
    nodes, edges, _ = marked
    ids = by_label(nodes)
    assert nodes[ids["draft"]]["label"] == "draft ×3"
    assert nodes[ids["draft"]]["fillcolor"] == STATUS_COLOURS["done"][0]
    assert nodes[ids["publish"]]["fillcolor"] == STATUS_COLOURS["running"][0]
    bold = {(s, t) for s, t, a in edges if a.get("color") == PATH_COLOUR}
    assert bold == {("n_start", ids["draft"]), (ids["draft"], ids["enough"]),
                    (ids["enough"], ids["draft"]), (ids["enough"], ids["publish"])}


def test_mermaid_status_classes_and_path_link_styles():
    nodes, edges, other = parse_mermaid(render(loop_graph(), "mermaid", **RUN))
    assert nodes["n0"][1] == "draft ×3"
    assert "class n0,n1 done" in other and "class n2 running" in other
    assert any(line.startswith("classDef done fill:" + STATUS_COLOURS["done"][0]) for line in other)
    styled = next(line for line in other if line.startswith("linkStyle ") and "default" not in line)
    indices = [int(i) for i in styled.split()[1].split(",")]
    assert {(edges[i][0], edges[i][2]) for i in indices} == {
        ("n_start", "n0"), ("n0", "n1"), ("n1", "n0"), ("n1", "n2")}


def test_statuses_inside_subgraphs_use_qualified_names():
    status = {"research": "running", "research/search": "done", "research/deep/dig": "failed"}
    nodes, edges, _ = parse_dot(render(nested_graph(), status=status,
                                       path=[("prepare", "research")]))
    assert nodes["n1_n0"]["fillcolor"] == STATUS_COLOURS["done"][0]
    assert nodes["n1_n1_n0"]["fillcolor"] == STATUS_COLOURS["failed"][0]
    assert [(s, t) for s, t, a in edges if a.get("color") == PATH_COLOUR] == [("n0", "n1_n_start")]


@pytest.mark.parametrize("options, words", [
    ({"status": {"nope": "done"}}, "no node 'nope'"),
    ({"status": {"draft": "finished"}}, "status 'finished' of node 'draft'"),
    ({"visits": {"dig": 1}}, "no node 'dig'"),
    ({"path": [("draft", "publish")]}, "path step ('draft', 'publish') is not an edge"),
])
def test_run_marks_that_do_not_fit_the_graph_are_refused(options, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        render(loop_graph(), **options)


# -- through the dot binary -------------------------------------------------------------
def render_svg(graph: Graph, **options) -> str:
    return render(graph, "svg", **options)


@needs_dot
def test_svg_has_every_node_edge_and_label():
    svg = parse_svg(render_svg(router_graph()))
    texts = {title: " ".join(info["text"]) for title, info in svg["node"].items()}
    assert texts == {"n_start": "start", "n0": "judge", "n1": "publish", "n2": "revise",
                     "n_end": "end"}
    assert set(svg["edge"]) == {"n_start->n0", "n0->n1", "n0->n2", "n1->n_end", "n2->n_end"}
    assert svg["edge"]["n0->n1"]["text"] == ["good"]


@needs_dot
def test_svg_shows_status_fills_and_a_thick_waiting_gate():
    svg = parse_svg(render_svg(gate_graph(), status={"draft": "done", "approve": "waiting"},
                               path=[(START, "draft"), ("draft", "approve")]))
    assert STATUS_COLOURS["done"][0] in svg["node"]["n0"]["fill"]
    assert STATUS_COLOURS["waiting"][0] in svg["node"]["n1"]["fill"]
    assert "3" in svg["node"]["n1"]["stroke-width"] and "3" not in svg["node"]["n0"]["stroke-width"]
    assert PATH_COLOUR in svg["edge"]["n0->n1"]["stroke"]
    assert PATH_COLOUR not in svg["edge"]["n1->n_end"]["stroke"]


@needs_dot
def test_svg_draws_subgraphs_as_clusters():
    svg = parse_svg(render_svg(nested_graph(), status={"research": "running"}))
    assert set(svg["cluster"]) == {"cluster_n1", "cluster_n1_n1"}
    assert svg["cluster"]["cluster_n1"]["text"] == ["research"]
    assert STATUS_COLOURS["running"][0] in svg["cluster"]["cluster_n1"]["fill"]


@needs_dot
def test_png_is_a_png():
    assert render(fan_graph(), "png")[:8] == b"\x89PNG\r\n\x1a\n"


@needs_dot
def test_render_to_file_picks_the_format_from_the_suffix(tmp_path):
    graph = map_graph()
    assert render_to_file(graph, tmp_path / "g.dot").read_text() == render(graph)
    assert render_to_file(graph, tmp_path / "g.mmd").read_text().startswith("flowchart TD\n")
    assert ET.parse(render_to_file(graph, tmp_path / "g.svg")).getroot().tag == f"{SVG}svg"
    assert render_to_file(graph, tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"cannot tell the format of .*g\.jpg"):
        render_to_file(graph, tmp_path / "g.jpg")


def test_render_to_file_takes_the_run_path_as_a_keyword(tmp_path):
    steps = [(START, "summarise"), ("summarise", END)]
    written = render_to_file(map_graph(), tmp_path / "run.dot", status={"summarise": "done"},
                             path=steps)
    _, edges, _ = parse_dot(written.read_text(encoding="utf-8"))
    assert all(a.get("color") == PATH_COLOUR for *_, a in edges)


def test_without_the_dot_binary_svg_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for format in ("svg", "png"):
        with pytest.raises(WaypointError, match="apt-get install graphviz.*brew install graphviz"):
            render(chain("a"), format)
    assert render(chain("a")).startswith("digraph")  # DOT text needs no binary


def test_unknown_format_is_refused_and_graph_render_delegates():
    with pytest.raises(ValueError, match="unknown format 'jpeg'"):
        render(chain("a"), "jpeg")
    assert chain("a").render("mermaid") == render(chain("a"), "mermaid")


def test_render_takes_a_run_from_run_marks():
    import asyncio

    import waypoint

    graph = gate_graph()

    async def waiting_run():
        store = waypoint.MemoryStore()
        result = await (await waypoint.start(graph, store=store, run_id="r")).result()
        assert result.waiting == ["approve"]
        return await waypoint.run_marks(graph, "r", store=store)

    marks = asyncio.run(waiting_run())
    assert marks.status == {"draft": "done", "approve": "waiting"}
    assert marks.path == [(START, "draft"), ("draft", "approve")]
    assert render(graph, run=marks) == render(graph, status=marks.status, visits=marks.visits,
                                              path=marks.path)
    nodes, _, _ = parse_dot(graph.render(run=marks))
    assert nodes["n1"]["fillcolor"] == STATUS_COLOURS["waiting"][0]
    overridden, _, _ = parse_dot(render(graph, run=marks, status={"approve": "failed"}))
    assert overridden["n1"]["fillcolor"] == STATUS_COLOURS["failed"][0]
