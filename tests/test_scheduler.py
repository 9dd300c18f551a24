"""Scheduling semantics: dataflow, joins, loop guards, reducers, conflicts, maps, subgraphs."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel

from waypoint import (
    END, START, ConflictError, GraphBuilder, GraphError, NodeError, append, reducer, start,
)
from waypoint.errors import UpdateError

pytestmark = pytest.mark.asyncio


class Log(BaseModel):
    seen: Annotated[list[str], append] = []
    total: Annotated[int, reducer(lambda a, b: a + b)] = 0
    value: int = 0
    items: list[int] = []
    results: list[str] = []


async def run(graph, store, input=None, **kw):
    handle = await start(graph, input, store=store, **kw)
    return await handle.result()


async def test_fast_branch_successor_does_not_wait_for_a_slow_sibling(store):
    release_slow = asyncio.Event()
    fast_after_done = asyncio.Event()
    g = GraphBuilder(Log)

    @g.node
    async def slow(state: Log) -> dict:
        await release_slow.wait()
        return {"seen": ["slow"]}

    @g.node
    async def fast(state: Log) -> dict:
        return {"seen": ["fast"]}

    @g.node
    async def after_fast(state: Log) -> dict:
        fast_after_done.set()
        return {"seen": ["after_fast"]}

    g.edge(START, ["slow", "fast"])
    g.edge("fast", "after_fast")
    g.edge("slow", END)
    g.edge("after_fast", END)
    handle = await start(g.compile(), store=store)
    await asyncio.wait_for(fast_after_done.wait(), 5)  # while slow is still held
    release_slow.set()
    result = await handle.result()
    assert result.status == "done"
    assert result.state.seen == ["fast", "after_fast", "slow"]


async def test_join_waits_for_started_branches_but_not_for_untaken_routes(store):
    g = GraphBuilder(Log)
    gate_b = asyncio.Event()

    @g.router(routes={"both": ["a", "b"], "only_a": "a", "skip": "skipped"})
    def fork(state: Log) -> list[Literal["both", "only_a", "skip"]]:
        return ["both"] if state.value == 2 else ["only_a"]

    @g.node
    async def a(state: Log) -> dict:
        return {"seen": ["a"]}

    @g.node
    async def b(state: Log) -> dict:
        await gate_b.wait()
        return {"seen": ["b"]}

    @g.node
    def skipped(state: Log) -> dict:
        return {"seen": ["skipped"]}

    g.join("merge", lambda s: {"seen": ["merge"]})
    g.edge(START, "fork")
    g.edge("a", "merge")
    g.edge("b", "merge")
    g.edge("skipped", "merge")
    g.edge("merge", END)
    graph = g.compile()

    one = await run(graph, store, {"value": 1})  # b never starts: the join must not wait for it
    assert one.state.seen == ["a", "merge"]

    handle = await start(graph, {"value": 2}, store=store)
    await asyncio.sleep(0.05)
    assert "merge" not in [e.node for e in handle._bus.history if e.kind == "node_finished"]
    gate_b.set()
    two = await handle.result()
    assert two.state.seen == ["a", "b", "merge"]


def loop_graph(max_iterations: int, until=None) -> GraphBuilder[Log]:
    g = GraphBuilder(Log)

    @g.node
    def work(state: Log) -> dict:
        return {"seen": ["work"], "total": 1}

    routes = {"continue": "work", "exhausted": "gave_up"}
    if until is not None:
        routes["done"] = "finish"
    g.loop_guard("guard", max_iterations=max_iterations, until=until, routes=routes)
    g.node(lambda s: {"seen": ["finish"]}, name="finish")
    g.node(lambda s: {"seen": ["gave_up"]}, name="gave_up")
    g.edge(START, "guard")
    g.edge("work", "guard")
    g.edge("finish", END)
    g.edge("gave_up", END)
    return g


async def test_loop_guard_routes_continue_then_exhausted_at_its_cap(store):
    result = await run(loop_graph(3, until=lambda s: False).compile(), store)
    assert result.state.seen == ["work"] * 3 + ["gave_up"]


async def test_loop_guard_routes_done_when_until_holds(store):
    result = await run(loop_graph(10, until=lambda s: s.total >= 2).compile(), store)
    assert result.state.seen == ["work", "work", "finish"]


async def test_nested_loop_guard_resets_when_entered_from_outside(store):
    g = GraphBuilder(Log)
    g.loop_guard("outer", max_iterations=2, routes={"continue": "inner", "done": END})
    g.loop_guard("inner", max_iterations=3, routes={"continue": "step", "done": "outer"})
    g.node(lambda s: {"total": 1}, name="step", writes=["total"])
    g.edge(START, "outer")
    g.edge("step", "inner")
    graph = g.compile()
    assert graph.loop_bodies["inner"] == {"step"}
    result = await run(graph, store)
    assert result.state.total == 2 * 3  # the inner loop gets its full 3 on each outer pass


async def test_reducers_merge_in_commit_order_and_last_value_is_replaced(store):
    g = GraphBuilder(Log)
    g.node(lambda s: {"seen": ["1"], "value": 1, "total": 5}, name="one")
    g.node(lambda s: {"seen": ["2"], "value": 2, "total": 7}, name="two")
    g.edge(START, "one")
    g.edge("one", "two")
    g.edge("two", END)
    result = await run(g.compile(), store)
    assert (result.state.seen, result.state.value, result.state.total) == (["1", "2"], 2, 12)


async def test_an_update_of_the_wrong_type_fails_the_node_naming_the_field(store):
    g = GraphBuilder(Log)
    g.node(lambda s: {"value": "not a number"}, name="bad")
    g.edge(START, "bad")
    g.edge("bad", END)
    with pytest.raises(UpdateError) as info:
        await run(g.compile(), store)
    assert "node 'bad'" in str(info.value) and "field 'value'" in str(info.value)
    assert info.value.node == "bad" and info.value.run_id


async def test_compile_rejects_parallel_writes_to_a_last_value_field():
    g = GraphBuilder(Log)
    g.node(lambda s: {"value": 1}, name="left")
    g.node(lambda s: {"value": 2}, name="right")
    g.edge(START, ["left", "right"])
    g.edge("left", END)
    g.edge("right", END)
    with pytest.raises(GraphError, match="'left' and 'right'.*'value'"):
        g.compile()


async def test_concurrent_writes_compile_cannot_see_fail_with_conflict_error(store):
    g = GraphBuilder(Log)
    left_done = asyncio.Event()

    async def left(state: Log) -> dict:
        left_done.set()
        return dict(value=1)

    async def right(state: Log) -> dict:
        await left_done.wait()
        await asyncio.sleep(0.01)
        return dict(value=2)

    g.node(left)  # dict(...) hides the writes from compile()
    g.node(right)
    g.edge(START, ["left", "right"])
    g.edge("left", END)
    g.edge("right", END)
    with pytest.raises(ConflictError) as info:
        await run(g.compile(), store)
    assert "'left' and 'right'" in str(info.value) and "'value'" in str(info.value)


async def test_map_runs_items_concurrently_up_to_its_limit_in_input_order(store):
    running = 0
    peak = 0

    async def shout(item: int) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (5 - item % 5))
        running -= 1
        return f"item-{item}"

    g = GraphBuilder(Log)
    g.map("each", shout, over="items", into="results", max_concurrency=3)
    g.edge(START, "each")
    g.edge("each", END)
    result = await run(g.compile(), store, {"items": list(range(10))})
    assert result.state.results == [f"item-{i}" for i in range(10)]
    assert peak == 3


class Inner(BaseModel):
    value: int = 0
    seen: Annotated[list[str], append] = []


async def test_subgraph_runs_as_a_node_with_fields_mapped_in_and_out(store):
    inner = GraphBuilder(Inner, name="inner")
    inner.node(lambda s: {"value": s.value * 10, "seen": ["inner"]}, name="times_ten")
    inner.edge(START, "times_ten")
    inner.edge("times_ten", END)
    outer = GraphBuilder(Log)
    outer.subgraph("sub", inner.compile(), input=lambda s: {"value": s.value},
                   output=lambda sub: {"value": sub.value, "seen": sub.seen})
    outer.edge(START, "sub")
    outer.edge("sub", END)
    result = await run(outer.compile(), store, {"value": 4})
    assert (result.state.value, result.state.seen) == (40, ["inner"])


async def test_a_node_that_raises_fails_the_run_with_a_resumable_error(store):
    g = GraphBuilder(Log)

    def boom(state: Log) -> dict:
        raise RuntimeError("disk on fire")

    g.node(boom)
    g.edge(START, "boom")
    g.edge("boom", END)
    with pytest.raises(NodeError, match="node 'boom'.*RuntimeError: disk on fire.*resume"):
        await run(g.compile(), store)


async def test_retry_policy_retries_and_records_the_attempt(store):
    from waypoint import RetryPolicy

    calls = []

    def flaky(state: Log) -> dict:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return {"value": len(calls)}

    g = GraphBuilder(Log)
    g.node(flaky, retry=RetryPolicy(attempts=3, backoff=0.001))
    g.edge(START, "flaky")
    g.edge("flaky", END)
    handle = await start(g.compile(), store=store)
    result = await handle.result()
    assert result.state.value == 3
    assert [e.data["attempt"] for e in handle._bus.history if e.kind == "node_retried"] == [1, 2]


async def test_each_result_is_committed_before_its_successor_starts(store):
    seen_in_store = []
    g = GraphBuilder(Log)
    g.node(lambda s: {"value": 1}, name="first")

    async def second(state: Log, ctx) -> dict:
        steps = await store.history(ctx.run_id)
        seen_in_store.append([s.node for s in steps if s.kind == "done"])
        return {"value": 2}

    g.node(second)
    g.edge(START, "first")
    g.edge("first", "second")
    g.edge("second", END)
    await run(g.compile(), store)
    assert seen_in_store == [["first"]]
