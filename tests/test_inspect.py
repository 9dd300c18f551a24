"""Inspecting runs: history with deltas, state as of any step, forking from a step."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, append, fork, get_run, history, start, state_at

pytestmark = pytest.mark.asyncio


class Count(BaseModel):
    n: int = 0
    trail: Annotated[list[str], append] = []


def counting_graph():
    g = GraphBuilder(Count)
    for name in ("one", "two", "three"):
        g.node(lambda s, name=name: {"n": s.n + 1, "trail": [name]}, name=name, writes=["n", "trail"])
    g.edge(START, "one")
    g.edge("one", "two")
    g.edge("two", "three")
    g.edge("three", END)
    return g.compile()


async def test_history_holds_ordered_completions_with_their_deltas(store):
    graph = counting_graph()
    result = await (await start(graph, store=store)).result()
    steps = await history(result.run_id, store=store)
    assert [(s.seq, s.node, s.delta) for s in steps] == [
        (1, "one", {"n": 1, "trail": ["one"]}),
        (2, "two", {"n": 2, "trail": ["two"]}),
        (3, "three", {"n": 3, "trail": ["three"]}),
    ]
    info = await get_run(result.run_id, store=store)
    assert (info.status, info.last_seq) == ("done", 3)


async def test_state_as_of_any_step(store):
    graph = counting_graph()
    run_id = (await (await start(graph, store=store)).result()).run_id
    assert (await state_at(graph, run_id, 0, store=store)).n == 0
    assert (await state_at(graph, run_id, 2, store=store)).trail == ["one", "two"]
    assert (await state_at(graph, run_id, store=store)).n == 3


async def test_fork_from_a_step_runs_the_rest_as_a_new_run(store):
    graph = counting_graph()
    source = (await (await start(graph, store=store)).result()).run_id
    forked = await (await fork(graph, source, at=1, store=store)).result()
    assert forked.run_id != source
    assert forked.state.trail == ["one", "two", "three"]
    assert [s.node for s in await history(forked.run_id, store=store)] == ["two", "three"]
    assert (await get_run(forked.run_id, store=store)).forked_from == f"{source}@1"
    assert (await get_run(source, store=store)).last_seq == 3  # the original is untouched


async def test_history_lines_say_where_a_waiting_subgraph_or_map_asks():
    from waypoint import Step
    from waypoint._cli.inspect import step_detail

    asks = Step(seq=3, node="approve", activation="2.0", kind="wait", at=0.0,
                extra={"prompt": "Publish?"})
    child = Step(seq=4, node="review", activation="3.0", kind="wait", at=0.0,
                 extra={"child": "r/3.0", "gates": ["review/approve"]})
    items = Step(seq=5, node="book", activation="4.0", kind="wait", at=0.0,
                 extra={"items": [], "gates": ["book[0]/confirm", "book[2]/confirm"]})
    assert step_detail(asks) == "asks: Publish?"
    assert step_detail(child) == "waits in child run r/3.0 at review/approve"
    assert step_detail(items) == "items wait in their child runs at book[0]/confirm, book[2]/confirm"


async def test_history_line_of_an_llm_tool_turn_names_its_calls():
    from waypoint import Step
    from waypoint._cli.inspect import step_detail

    turn = Step(seq=2, node="react", activation="0.0", kind="item", at=0.0, extra={
        "index": 0, "result": {"messages": [], "calls": [], "usage": {},
                               "trace": [{"tool": "charge", "arguments": {"amount": 5}, "result": "ok"}]}})
    assert step_detail(turn) == 'tool turn 1: charge({"amount": 5})'
