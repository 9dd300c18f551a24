"""The remaining malformed graphs: each check of compile() that test_analysis.py and
test_compile.py do not reach, with the message it gives (place and fix)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, GraphError, llm
from waypoint.graphs.check import check_graph


class S(BaseModel):
    x: int = 0
    topic: int = 0
    items: list[int] = []
    results: list[int] = []
    messages: str = ""


class Inner(BaseModel):
    topic: str = ""


class Answer(BaseModel):
    ok: bool


def problems(g: GraphBuilder[Any]) -> list[str]:
    """compile()'s problems, which check_graph reports identically without raising."""
    with pytest.raises(GraphError) as info:
        g.compile()
    found: list[str] = info.value.problems  # type: ignore[attr-defined]
    assert list(check_graph(g).problems) == found
    return found


def chain(g: GraphBuilder[Any], *names: str) -> None:
    g.edge(START, names[0])
    for a, b in zip(names, names[1:]):
        g.edge(a, b)
    g.edge(names[-1], END)


def test_a_map_over_an_unknown_field():
    g = GraphBuilder(S, name="t")
    g.map("each", lambda item: item, over="itmes", into="results")
    chain(g, "each")
    assert problems(g) == [
        "map 'each' iterates over unknown field 'itmes'; the state has "
        "['items', 'messages', 'results', 'topic', 'x']."]


def test_a_map_into_an_unknown_field():
    g = GraphBuilder(S, name="t")
    g.map("each", lambda item: item, over="items", into="out")
    chain(g, "each")
    assert problems(g) == [
        "node 'each' writes unknown field 'out'; the state has ['items', 'messages', 'results', 'topic', 'x']."]


def test_an_edge_from_an_unknown_node():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: None, name="a", writes=[])
    chain(g, "a")
    g.edge("ghost", "a")
    assert problems(g) == ["edge 'ghost' -> 'a' starts at unknown node 'ghost'; add the node or fix the name."]


def test_a_router_given_static_edges_as_well_as_routes():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: None, name="a", writes=[])
    g.router(lambda s: "go", name="pick", routes={"go": "a"})
    g.edge(START, "pick")
    g.edge("pick", "a")
    g.edge("a", END)
    assert ("node 'pick' routes by label; give its targets in routes= instead of g.edge()."
            in problems(g))


def test_a_subgraph_whose_shared_field_has_another_type():
    inner = GraphBuilder(Inner, name="inner")
    inner.node(lambda s: None, name="work", writes=[])
    chain(inner, "work")
    g = GraphBuilder(S, name="t")
    g.subgraph("sub", inner.compile())
    chain(g, "sub")
    assert problems(g) == [
        "subgraph 'sub' passes field 'topic' (int) into Inner's 'topic' (str), which cannot hold it; "
        "align the types or pass input=...",
        "subgraph 'sub' hands back 'topic' as str, which cannot fit field 'topic' of type int; "
        "fix the annotation or the field's type.",
    ]


def test_an_llm_history_that_is_not_a_list():
    g = GraphBuilder(S, name="t")
    g.add(llm("chat", prompt="hi", history="messages"))
    chain(g, "chat")
    assert ("LLM node 'chat' keeps its conversation in field 'messages' of type str; type it "
            "list[dict] (a list of messages).") in problems(g)


def test_a_loop_guard_with_a_negative_cap_or_no_continue_route():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: None, name="work", writes=[])
    g.loop_guard("again", max_iterations=-1, routes={"continue": "work", "done": END})
    g.loop_guard("stop", max_iterations=2, routes={"done": END})
    g.edge(START, "again")
    g.edge("work", "stop")
    found = problems(g)
    assert "loop guard 'again' has max_iterations=-1; use 0 or more." in found
    assert ("loop guard 'stop' has no 'continue' route; add routes={'continue': ..., 'done': ...}."
            in found)


def test_what_the_builder_refuses_at_once():
    g = GraphBuilder(S, name="t")
    with pytest.raises(GraphError, match=r"a lambda node needs a name: g.node\(fn, name='...'\)"):
        g.node(lambda s: None)
    with pytest.raises(GraphError, match="deadline= and escalate= go together; give both"):
        g.gate("approve", Answer, deadline=60)
    with pytest.raises(GraphError, match="reply would be lost"):
        llm("silent", prompt="hi")
    assert g.nodes == {}  # nothing half-added


# -- one small malformed graph per kind (KINDS below) -----------------------------------
def _node(g: GraphBuilder[Any], *names: str) -> None:
    for n in names:
        g.node(lambda s: None, name=n, writes=[])


def _unknown_target(g: GraphBuilder[Any]) -> None:
    _node(g, "a")
    g.edge(START, "a")
    g.edge("a", "nowhere")


def _duplicate(g: GraphBuilder[Any]) -> None:
    _node(g, "a", "a")
    chain(g, "a")


def _unreachable(g: GraphBuilder[Any]) -> None:
    _node(g, "a", "lost")
    chain(g, "a")
    g.edge("lost", END)


def _no_end(g: GraphBuilder[Any]) -> None:
    _node(g, "spin")
    g.loop_guard("again", max_iterations=2, routes={"continue": "spin", "done": "spin"})
    g.edge(START, "spin")
    g.edge("spin", "again")


def _router(g: GraphBuilder[Any], routes: dict[str, str], labels: tuple[str, ...]) -> None:
    def pick(state: S) -> str:
        return labels[0]

    pick.__annotations__["return"] = Literal[labels]  # the labels it can return
    _node(g, "a")
    g.router(pick, routes=routes)
    g.edge(START, "pick")
    g.edge("a", END)


def _label_without_route(g: GraphBuilder[Any]) -> None:
    _router(g, {"a": "a"}, ("a", "b"))


def _route_for_no_label(g: GraphBuilder[Any]) -> None:
    _router(g, {"a": "a", "c": "a"}, ("a",))


def _unguarded_cycle(g: GraphBuilder[Any]) -> None:
    _node(g, "a", "b")
    g.edge(START, "a")
    g.edge("a", "b")
    g.edge("b", ["a", END])


def _guard_on_no_cycle(g: GraphBuilder[Any]) -> None:
    _node(g, "a")
    g.loop_guard("again", max_iterations=2, routes={"continue": END, "done": END})
    g.edge(START, "a")
    g.edge("a", "again")


def _join_without_fork(g: GraphBuilder[Any]) -> None:
    _router(g, {"a": "a", "b": "b"}, ("a", "b"))
    g.edges.remove(("a", END))
    _node(g, "b")
    g.join("j")
    g.edge("a", "j")
    g.edge("b", "j")
    g.edge("j", END)


def _unknown_field(g: GraphBuilder[Any]) -> None:
    g.node(lambda s: {"nope": 1}, name="a")
    chain(g, "a")


def _type_mismatch(g: GraphBuilder[Any]) -> None:
    g.gate("approve", Answer, into="x")
    chain(g, "approve")


def _parallel_writes(g: GraphBuilder[Any]) -> None:
    g.node(lambda s: {"x": 1}, name="a")
    g.node(lambda s: {"x": 2}, name="b")
    g.edge(START, ["a", "b"])
    g.edge("a", END)
    g.edge("b", END)


def _answer_not_model(g: GraphBuilder[Any]) -> None:
    g.gate("approve", dict)  # type: ignore[arg-type]
    chain(g, "approve")


def _map_target(g: GraphBuilder[Any]) -> None:
    g.map("each", lambda item: item, over="x", into="results")
    chain(g, "each")


def _into_start(g: GraphBuilder[Any]) -> None:
    _node(g, "a")
    g.edge(START, "a")
    g.edge("a", [START, END])


# -- the fifteen kinds of mistake the issue lists ------------------------------------------
KINDS = {  # one malformed graph per kind of mistake the issue names
    "unknown node": ("edge 'a' -> 'nowhere' points at unknown node 'nowhere'", _unknown_target),
    "duplicate name": ("node 'a' is defined twice", _duplicate),
    "unreachable": ("node 'lost' is unreachable from START", _unreachable),
    "no way to END": ("node 'spin' can never reach END", _no_end),
    "label without route": ("router 'pick' can return 'b' but has no route for it", _label_without_route),
    "route for no label": ("router 'pick' has a route for 'c', which it cannot return", _route_for_no_label),
    "cycle without guard": ("has no loop guard", _unguarded_cycle),
    "guard on no cycle": ("loop guard 'again' is on no cycle", _guard_on_no_cycle),
    "join without fork": ("join 'j' waits for 'a' and 'b', but no fork starts them together", _join_without_fork),
    "unknown field": ("node 'a' writes unknown field 'nope'", _unknown_field),
    "type mismatch": ("gate 'approve' writes its answer as Answer, which cannot fit field 'x'", _type_mismatch),
    "parallel writes": ("nodes 'a' and 'b' can run at the same time", _parallel_writes),
    "answer not a model": ("gate 'approve': its answer schema dict is not a pydantic model", _answer_not_model),
    "map target": ("map 'each' iterates over field 'x' of type int, which is not a list", _map_target),
    "START/END misuse": ("edge 'a' -> '__start__' points at START", _into_start),
}


def test_the_issue_lists_fifteen_kinds():
    assert len(KINDS) == 15


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_the_issue_lists_has_a_message_naming_its_place(kind):
    expected, make = KINDS[kind]
    g = GraphBuilder(S, name="t")
    make(g)
    assert any(expected in p for p in problems(g)), problems(g)
