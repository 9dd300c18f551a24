"""Graph analysis: compile() finds each kind of malformed graph, says where and how to fix it,
and states an execution bound that runs stay within; `check_graph` reports the same."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal, TypedDict

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, GraphError, MemoryStore, append, llm_router, run_sync
from waypoint.graphs.check import check_graph, format_report


class S(BaseModel):
    x: int = 0
    name: str = ""
    seen: Annotated[list[str], append] = []
    items: list[int] = []
    results: list[str] = []


class Approval(BaseModel):
    approved: bool


def noop(name: str, g: GraphBuilder[S]) -> None:
    g.node(lambda s: None, name=name, writes=[])


def builder(*names: str, join: str | None = None) -> GraphBuilder[S]:
    g = GraphBuilder(S, name="t")
    for n in names:
        noop(n, g)
    if join:
        g.join(join)
    return g


def problems(g: GraphBuilder[S]) -> str:
    with pytest.raises(GraphError) as info:
        g.compile()
    return str(info.value)


# -- joins ----------------------------------------------------------------------------
def test_join_fed_by_alternative_routes_is_rejected():
    g = builder("a", "b", join="merge")

    @g.router(routes={"left": "a", "right": "b"})
    def decide(state: S) -> Literal["left", "right"]:
        return "left"

    g.edge(START, "decide")
    g.edge("a", "merge")
    g.edge("b", "merge")
    g.edge("merge", END)
    msg = problems(g)
    assert "join 'merge' waits for 'a' and 'b', but no fork starts them together" in msg
    assert "make 'merge' a plain node" in msg


def test_join_with_a_single_incoming_edge_and_no_fork_is_rejected():
    g = builder("a", join="merge")
    g.edge(START, "a")
    g.edge("a", "merge")
    g.edge("merge", END)
    assert "join 'merge' has a single incoming edge (from 'a') and no fork upstream" in problems(g)


def test_join_with_a_single_edge_after_a_fork_compiles_with_a_warning():
    g = builder("a", "b", "both", join="merge")
    g.edge(START, ["a", "b"])
    g.edge("a", "both")
    g.edge("b", "both")
    g.edge("both", "merge")  # 'both' runs once per branch; the join waits for both runs
    g.edge("merge", END)
    g.compile()
    report = check_graph(g)
    assert report.ok and report.warnings == (
        "join 'merge' has a single incoming edge (from 'both'): it waits for every activation of "
        "'both' that fork START starts; if it should merge the branches of START, give it an edge "
        "from each branch.",)


def test_join_after_a_router_that_fans_out_compiles():
    g = builder("a", "b", join="merge")

    @g.router(routes={"left": "a", "right": "b"})
    def decide(state: S) -> list[Literal["left", "right"]]:
        return ["left", "right"]

    g.edge(START, "decide")
    g.edge("a", "merge")
    g.edge("b", "merge")
    g.edge("merge", END)
    assert g.compile().max_steps == 4  # the join runs once: when nothing upstream is pending


# -- loops --------------------------------------------------------------------------
def test_cycle_through_a_guards_exit_route_is_rejected():
    g = builder("work", "again")
    g.loop_guard("guard", max_iterations=2, until=lambda s: False,
                 routes={"continue": "work", "exhausted": "again", "done": END})
    g.edge(START, "guard")
    g.edge("work", "guard")
    g.edge("again", "guard")
    msg = problems(g)
    assert "leaves loop guard 'guard' by its 'exhausted' route and comes back to it" in msg
    assert "send the 'exhausted' route onward" in msg


def test_loop_body_whose_branches_both_return_to_the_guard_is_rejected():
    g = builder("a", "b", "c")
    g.loop_guard("again", max_iterations=1, routes={"continue": "a", "done": END})
    g.edge(START, "again")
    g.edge("a", ["b", "c"])
    g.edge("b", "again")
    g.edge("c", "again")
    msg = problems(g)
    assert "loop guard 'again' can be reached by 2 branches at once (from fork 'a', via 'b', via 'c')" in msg
    assert "merge the branches with a join before 'again'" in msg


def test_a_guard_entered_by_two_concurrent_branches_is_rejected():
    g = builder("a", "b", "work")
    g.loop_guard("again", max_iterations=2, routes={"continue": "work", "done": END})
    g.edge(START, ["a", "b"])
    g.edge("a", "again")
    g.edge("b", "again")
    g.edge("work", "again")
    assert "loop guard 'again' can be reached by 2 branches at once (from fork START, via 'a', via 'b')" in problems(g)


def test_joined_branches_in_a_loop_body_compile():
    g = builder("a", "b", "c", join="merge")
    g.loop_guard("again", max_iterations=2, routes={"continue": "a", "done": END})
    g.edge(START, "again")
    g.edge("a", ["b", "c"])
    g.edge("b", "merge")
    g.edge("c", "merge")
    g.edge("merge", "again")
    assert g.compile().max_steps == 3 + 2 * 3 + 2 * 2  # guard 3; a, b, c twice; merge per arrival


def test_loop_guard_on_no_cycle():
    g = builder("a")
    g.loop_guard("guard", max_iterations=2, routes={"continue": "a", "done": END})
    g.edge(START, "guard")
    g.edge("a", END)
    assert "loop guard 'guard' is on no cycle" in problems(g)


# -- writes and their types -----------------------------------------------------------
class Update(TypedDict):
    x: str


class BadKeys(TypedDict):
    y: int


class Partial(BaseModel):
    name: int


def test_typed_dict_return_annotation_must_fit_the_fields():
    g = GraphBuilder(S, name="t")

    def write(state: S) -> Update:
        return {"x": "oops"}

    g.node(write, writes=["x"])
    g.edge(START, "write")
    g.edge("write", END)
    assert ("node 'write' returns Update with str, which cannot fit field 'x' of type int; "
            "fix the annotation or the field's type.") in problems(g)


def test_typed_dict_return_annotation_with_an_unknown_key():
    g = GraphBuilder(S, name="t")

    def write(state: S) -> BadKeys:
        return {"y": 1}

    g.node(write, writes=[])
    g.edge(START, "write")
    g.edge("write", END)
    assert "node 'write' returns BadKeys, whose field 'y' is not a state field" in problems(g)


def test_model_return_annotation_must_fit_the_fields():
    g = GraphBuilder(S, name="t")

    async def rename(state: S) -> Partial | None:
        return Partial(name=1)

    g.node(rename, writes=["name"])
    g.edge(START, "rename")
    g.edge("rename", END)
    assert "node 'rename' returns Partial with int, which cannot fit field 'name' of type str" in problems(g)


def test_dict_value_annotation_must_fit_each_written_field():
    g = GraphBuilder(S, name="t")

    def count(state: S) -> dict[str, int]:
        return {"name": 3}

    g.node(count)
    g.edge(START, "count")
    g.edge("count", END)
    assert "node 'count' is annotated to return dict values of int, which cannot fit field 'name'" in problems(g)


def test_annotations_that_fit_compile():
    class Fits(TypedDict, total=False):
        x: int
        seen: list[str]

    g = GraphBuilder(S, name="t")

    def ok(state: S) -> Fits:
        return {"x": 1}

    def whole(state: S) -> S:
        return state

    g.node(ok, writes=["x", "seen"])
    g.node(whole, writes=None)
    g.edge(START, "ok")
    g.edge("ok", "whole")
    g.edge("whole", END)
    g.compile()


def test_gate_answer_must_be_a_pydantic_model():
    g = GraphBuilder(S, name="t")
    g.gate("approve", dict)  # type: ignore[arg-type]
    g.edge(START, "approve")
    g.edge("approve", END)
    msg = problems(g)
    assert "gate 'approve': its answer schema dict is not a pydantic model" in msg
    assert "class Answer(BaseModel)" in msg


def test_gate_into_field_must_hold_the_answer():
    g = GraphBuilder(S, name="t")
    g.gate("approve", Approval, into="x")
    g.edge(START, "approve")
    g.edge("approve", END)
    assert ("gate 'approve' writes its answer as Approval, which cannot fit field 'x' of type int; "
            "type the field Approval | None, or write another field.") in problems(g)


def test_map_fields_must_be_lists_and_fit_the_items():
    g = GraphBuilder(S, name="t")

    def shout(item: int) -> int:
        return item

    g.map("over_text", shout, over="name", into="results")
    g.map("into_int", shout, over="items", into="x")
    g.map("wrong_items", shout, over="items", into="results")
    g.edge(START, "over_text")
    g.edge("over_text", "into_int")
    g.edge("into_int", "wrong_items")
    g.edge("wrong_items", END)
    msg = problems(g)
    assert "map 'over_text' iterates over field 'name' of type str, which is not a list" in msg
    assert "map 'into_int' writes its list of results to field 'x' of type int, which is not a list" in msg
    assert "map 'wrong_items': its function returns int, which cannot fit the items of field 'results' (list[str])" in msg


def test_map_needs_a_function_and_sane_limits():
    g = GraphBuilder(S, name="t")
    g.map("each", None, over="items", into="results", max_concurrency=0)  # type: ignore[arg-type]
    g.edge(START, "each")
    g.edge("each", END)
    msg = problems(g)
    assert "map 'each' has no function to run per item" in msg
    assert "map 'each' has max_concurrency=0" in msg


class Inner(BaseModel):
    topic: str
    findings: list[str] = []


class Unrelated(BaseModel):
    other: int = 0


def inner_graph(state: type[BaseModel] = Inner) -> GraphBuilder[BaseModel]:
    g = GraphBuilder(state, name="inner")
    g.node(lambda s: None, name="work", writes=[])
    g.edge(START, "work")
    g.edge("work", END)
    return g


def test_subgraph_must_be_a_compiled_graph():
    g = GraphBuilder(S, name="t")
    g.subgraph("sub", inner_graph())  # type: ignore[arg-type]
    g.edge(START, "sub")
    g.edge("sub", END)
    assert "subgraph 'sub' needs a compiled Graph (builder.compile()), got GraphBuilder." in problems(g)


def test_subgraph_without_mappings_needs_shared_fields():
    g = GraphBuilder(S, name="t")
    g.subgraph("sub", inner_graph(Unrelated).compile())
    g.edge(START, "sub")
    g.edge("sub", END)
    msg = problems(g)
    assert "subgraph 'sub': Unrelated and S share no field name, so nothing flows in; pass input=" in msg
    assert "so nothing flows back; pass output=" in msg


def test_subgraph_input_must_fill_the_child_required_fields():
    class Parent(BaseModel):
        findings: list[str] = []

    g = GraphBuilder(Parent, name="t")
    g.subgraph("sub", inner_graph().compile())
    g.edge(START, "sub")
    g.edge("sub", END)
    assert ("subgraph 'sub': field 'topic' of Inner is required but Parent has no field of that "
            "name to fill it") in problems(g)


def test_subgraph_with_explicit_mappings_compiles():
    g = GraphBuilder(S, name="t")
    g.subgraph("sub", inner_graph(Unrelated).compile(), input=lambda s: {}, output=lambda sub: {})
    g.edge(START, "sub")
    g.edge("sub", END)
    g.compile()


def test_llm_router_into_field_must_hold_its_labels():
    g = GraphBuilder(S, name="t")
    g.add(llm_router("triage", labels=["billing", "tech"], fallback="human", prompt="{name}", into="x"),
          routes={"billing": END, "tech": END, "human": END})
    g.edge(START, "triage")
    assert "LLM node 'triage' writes its reply as Literal['billing', 'tech', 'human'], which cannot fit field 'x'" in problems(g)


def test_tool_node_result_must_fit_its_field():
    def lookup(name: str) -> list[str]:
        return [name]

    g = GraphBuilder(S, name="t")
    g.tool_node(lookup, into="x")
    g.edge(START, "lookup")
    g.edge("lookup", END)
    assert "tool node 'lookup' writes its result as list[str], which cannot fit field 'x' of type int" in problems(g)


def test_parallel_writes_through_a_subgraph_shared_field():
    class Both(BaseModel):
        topic: str = ""
        findings: list[str] = []

    g = GraphBuilder(Both, name="t")
    g.subgraph("sub", inner_graph().compile())
    g.node(lambda s: {"topic": "x"}, name="retitle")
    g.edge(START, ["sub", "retitle"])
    g.edge("sub", END)
    g.edge("retitle", END)
    assert "nodes 'retitle' and 'sub' can run at the same time and both write last-value field(s) ['topic']" in problems(g)


def test_parallel_writes_from_a_router_that_fans_out():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: {"x": 1}, name="a")
    g.node(lambda s: {"x": 2}, name="b")

    @g.router(routes={"left": "a", "right": "b"})
    def decide(state: S) -> list[Literal["left", "right"]]:
        return ["left", "right"]

    g.edge(START, "decide")
    g.edge("a", END)
    g.edge("b", END)
    assert "nodes 'a' and 'b' can run at the same time" in problems(g)


def test_a_node_two_branches_reach_cannot_write_a_last_value_field():
    g = builder("a", "b")
    g.node(lambda s: {"x": 1}, name="tally")
    g.edge(START, ["a", "b"])
    g.edge("a", "tally")
    g.edge("b", "tally")
    g.edge("tally", END)
    assert ("node 'tally' can run twice at the same time (fork START reaches it via 'a', via 'b') and "
            "writes last-value field(s) ['x']; give the field a reducer") in problems(g)
    g.nodes["tally"] = dataclasses.replace(g.nodes["tally"], join=True)  # merged: runs once
    g.compile()


def test_routes_that_exclude_each_other_may_write_the_same_field():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: {"x": 1}, name="a")
    g.node(lambda s: {"x": 2}, name="b")

    @g.router(routes={"left": "a", "right": "b"})
    def decide(state: S) -> Literal["left", "right"]:
        return "left"

    g.edge(START, "decide")
    g.edge("a", END)
    g.edge("b", END)
    g.compile()


# -- START and END --------------------------------------------------------------------
def test_edges_into_start_and_out_of_end():
    g = builder("a")
    g.edge(START, "a")
    g.edge("a", START)
    g.edge(END, "a")
    msg = problems(g)
    assert "edge 'a' -> '__start__' points at START; START only has outgoing edges." in msg
    assert "an edge leaves END; END has no successors, remove that edge." in msg


def test_router_route_to_start():
    g = builder("a")

    @g.router(routes={"again": START, "stop": END})
    def decide(state: S) -> Literal["again", "stop"]:
        return "stop"

    g.edge(START, "a")
    g.edge("a", "decide")
    assert "route 'decide' --again--> '__start__' points at START" in problems(g)


def test_nodes_named_like_start_or_end():
    g = builder("__end__", "__start__")
    g.edge(START, END)
    msg = problems(g)
    assert "node '__end__' uses the reserved name of END; rename it" in msg
    assert "node '__start__' uses the reserved name of START; rename it" in msg
    assert "edge START -> END skips every node; remove it" in msg


def test_an_edge_from_start_into_a_join():
    g = builder("a", join="merge")
    g.edge(START, ["a", "merge"])
    g.edge("a", "merge")
    g.edge("merge", END)
    assert ("edge START -> 'merge' starts join 'merge' at once, before anything can reach it; "
            "remove the edge") in problems(g)


def test_an_edge_given_twice():
    g = builder("a", "b")
    g.edge(START, "a")
    g.edge("a", ["b", "b"])
    g.edge("b", END)
    assert "edge 'a' -> 'b' is given 2 times, so 'b' would run 2 times per arrival; remove the duplicate" in problems(g)


def test_node_concurrency_must_be_positive():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: None, name="a", writes=[], concurrency=0)
    g.edge(START, "a")
    g.edge("a", END)
    assert "node 'a' has concurrency=0; use 1 or more" in problems(g)


def test_every_existing_check_still_reports_in_one_error():
    g = builder("a", "a", "b", "orphan", "stuck")
    g.loop_guard("idle", max_iterations=1, routes={"continue": END, "done": END})
    g.node(lambda s: {"nope": 1}, name="c")
    g.edge(START, ["a", "idle", "c", "stuck"])
    g.edge("a", "b")
    g.edge("b", "a")
    g.edge("c", END)
    g.edge("orphan", END)
    g.edge("stuck", "stuck")
    msg = problems(g)
    for expected in ("node 'a' is defined twice", "node 'c' writes unknown field 'nope'"):
        assert expected in msg
    g.duplicates.clear()
    g.nodes.pop("c")
    g.edges.remove((START, "c"))
    g.edges.remove(("c", END))
    msg = problems(g)
    for expected in ("node 'orphan' is unreachable from START", "node 'a' can never reach END",
                     "node 'stuck' can never reach END", "cycle ", "loop guard 'idle' is on no cycle"):
        assert expected in msg


# -- the execution bound ----------------------------------------------------------------
def loop(g: GraphBuilder[S], guard: str, body: str, cap: int, done: str = END) -> None:
    g.loop_guard(guard, max_iterations=cap, routes={"continue": body, "done": done})


def test_bound_of_three_nested_loops_multiplies():
    g = builder("step")
    loop(g, "outer", "middle", 2)
    loop(g, "middle", "inner", 3, done="outer")
    loop(g, "inner", "step", 4, done="middle")
    g.edge(START, "outer")
    g.edge("step", "inner")
    # outer 1*3; middle 2 entries *4 = 8; inner 2*3=6 entries *5 = 30; step 6*4 = 24
    assert g.compile().max_steps == 3 + 8 + 30 + 24


def test_bound_of_a_loop_entered_at_its_body_counts_the_entry():
    g = GraphBuilder(S, name="t")
    g.node(lambda s: {"seen": ["work"]}, name="work")
    loop(g, "again", "work", 3)
    g.edge(START, "work")
    g.edge("work", "again")
    graph = g.compile()
    assert graph.max_steps == 4 + 4  # work: 1 entry + 3 continues; the guard after each
    store = MemoryStore()
    result = run_sync(graph, store=store)
    assert result.state.seen == ["work"] * 4  # the bound is reached exactly


def test_bound_of_fan_outs_and_routers():
    g = builder("a", "b", "c", "d")

    @g.router(routes={"one": "c", "two": ["c", "d"]})
    def pick(state: S) -> Literal["one", "two"]:
        return "one"

    g.edge(START, ["a", "b"])
    g.edge("a", "pick")
    g.edge("b", "pick")
    g.edge("c", END)
    g.edge("d", END)
    # a, b; pick twice; each pick sends c once and d at most once
    assert g.compile().max_steps == 2 + 2 + 2 + 2


def test_bound_of_maps_counts_their_declared_items():
    g = GraphBuilder(S, name="t")
    g.map("each", str, over="items", into="results", max_items=5)
    loop(g, "again", "each", 2)
    g.edge(START, "again")
    g.edge("each", "again")
    assert g.compile().max_steps == 3 + 2 * (1 + 5)

    unbounded = GraphBuilder(S, name="t")
    unbounded.map("each", str, over="items", into="results")
    unbounded.edge(START, "each")
    unbounded.edge("each", END)
    assert unbounded.compile().max_steps is None
    report = check_graph(unbounded)
    assert report.ok and report.max_steps is None
    assert "map 'each' has no max_items; pass max_items=" in format_report(report)


def test_bound_of_subgraphs_adds_theirs():
    class Parent(BaseModel):
        topic: str = ""

    inner = inner_graph()
    loop(inner, "again", "work", 2)
    inner.edges.remove(("work", END))
    inner.edge("work", "again")
    child = inner.compile()
    assert child.max_steps == 3 + 3  # work entered once, continued twice; the guard 3 times
    g = GraphBuilder(Parent, name="t")
    g.subgraph("sub", child)
    g.edge(START, ["sub"])
    g.edge("sub", END)
    assert g.compile().max_steps == 1 + 6


# -- check_graph and format_report ---------------------------------------------------------
def test_check_graph_reports_the_problems_compile_raises():
    g = builder("a")
    g.edge(START, "a")
    g.edge("a", "b")
    with pytest.raises(GraphError) as info:
        g.compile()
    report = check_graph(g)
    assert not report.ok and list(report.problems) == info.value.problems  # type: ignore[attr-defined]
    text = format_report(report)
    assert text.splitlines()[0] == "graph 't': 1 problem (1 nodes, 2 edges)"
    assert "  error: edge 'a' -> 'b' points at unknown node 'b'" in text
    assert "bound: unknown until the problems are fixed" in text


def test_check_graph_of_a_compiled_graph_prints_its_bound():
    g = builder("work")
    loop(g, "again", "work", 3)
    g.edge(START, "again")
    g.edge("work", "again")
    report = check_graph(g.compile())
    assert report.ok and report.max_steps == 4 + 3 == check_graph(g).max_steps
    assert format_report(report) == (
        "graph 't': ok (2 nodes, 4 edges)\n"
        "  bound: at most 7 node executions per run (node executions, map items and subgraph "
        "steps, with every loop at its cap)")


def test_check_graph_of_something_else():
    report = check_graph(object())
    assert not report.ok and "is not a graph; point `waypoint check` at a GraphBuilder" in report.problems[0]
