"""compile() rejects malformed graphs with a message that names the place and the fix."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, GraphError


class S(BaseModel):
    x: int = 0
    done: bool = False


def chain(*names: str) -> GraphBuilder[S]:
    g = GraphBuilder(S, name="t")
    for n in names:
        g.node(lambda s: None, name=n)
    prev = START
    for n in names:
        g.edge(prev, n)
        prev = n
    g.edge(prev, END)
    return g


def problems(g: GraphBuilder[S]) -> str:
    with pytest.raises(GraphError) as info:
        g.compile()
    return str(info.value)


def test_a_valid_chain_compiles():
    graph = chain("a", "b").compile()
    assert graph.start == ("a",)
    assert graph.successors("a", None) == ("b",)


def test_edge_to_unknown_node_is_named_with_a_suggestion():
    g = chain("Draft")
    g.edge("Draft", "draft")
    msg = problems(g)
    assert "edge 'Draft' -> 'draft' points at unknown node 'draft'" in msg
    assert "did you mean 'Draft'" in msg


def test_router_label_without_route_and_route_for_impossible_label():
    g = chain("a")

    @g.router(routes={"yes": END, "maybe": END})
    def decide(state: S) -> Literal["yes", "no"]:
        return "yes"

    g.edge("a", "decide")
    msg = problems(g)
    assert "router 'decide' can return 'no' but has no route for it" in msg
    assert "router 'decide' has a route for 'maybe', which it cannot return" in msg


def test_cycle_without_loop_guard_names_the_cycle():
    g = chain("a", "b")
    g.edge("b", "a")
    msg = problems(g)
    assert "cycle" in msg and "'a'" not in msg.split("cycle")[0]
    assert "a -> b -> a" in msg or "b -> a -> b" in msg
    assert "loop_guard" in msg


def test_unreachable_node():
    g = chain("a")
    g.node(lambda s: None, name="orphan")
    g.edge("orphan", END)
    assert "node 'orphan' is unreachable from START" in problems(g)


def test_write_to_unknown_field_is_found_from_the_returned_dict():
    g = GraphBuilder(S)

    @g.node
    def bad(state: S) -> dict:
        return {"y": 1}

    g.edge(START, "bad")
    g.edge("bad", END)
    assert "node 'bad' writes unknown field 'y'" in problems(g)


def test_declared_writes_are_checked_too():
    g = GraphBuilder(S)
    g.node(lambda s: {}, name="n", writes=["nope"])
    g.edge(START, "n")
    g.edge("n", END)
    assert "node 'n' writes unknown field 'nope'" in problems(g)


def test_guarded_cycle_compiles_and_knows_its_body():
    g = chain("a")
    g.node(lambda s: None, name="work")
    g.loop_guard("guard", max_iterations=3, routes={"continue": "work", "done": END})
    g.edges.remove(("a", END))
    g.edge("a", "guard")
    g.edge("work", "guard")
    graph = g.compile()
    assert graph.loop_bodies["guard"] == frozenset({"work"})


def test_missing_start_and_dead_end_are_reported_together():
    g = GraphBuilder(S)
    g.node(lambda s: None, name="a")
    msg = problems(g)
    assert "nothing starts the graph" in msg
    assert "node 'a' has no outgoing edge" in msg


def test_state_must_be_a_pydantic_model():
    with pytest.raises(GraphError, match="pydantic BaseModel subclass"):
        GraphBuilder(dict)  # type: ignore[arg-type]


def test_structure_hash_ignores_code_but_not_shape():
    one = chain("a", "b").compile()
    two = chain("a", "b").compile()
    three = chain("a", "c").compile()
    assert one.structure_hash == two.structure_hash != three.structure_hash


def test_execution_bound_multiplies_nested_loops_and_counts_fan_out():
    g = GraphBuilder(S)
    g.loop_guard("outer", max_iterations=2, routes={"continue": "inner", "done": END})
    g.loop_guard("inner", max_iterations=3, routes={"continue": "step", "done": "outer"})
    g.node(lambda s: None, name="step")
    g.edge(START, "outer")
    g.edge("step", "inner")
    # outer: 1 entry -> 3 runs; inner: 2 entries -> 2*4 runs; step: 2*3 runs
    assert g.compile().max_steps == 3 + 8 + 6

    fan = GraphBuilder(S)
    for name in ("a", "b", "c"):
        fan.node(lambda s: None, name=name)
    fan.edge(START, "a")
    fan.edge("a", ["b", "c"])
    fan.edge("b", END)
    fan.edge("c", END)
    assert fan.compile().max_steps == 3
