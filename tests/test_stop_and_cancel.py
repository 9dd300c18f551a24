"""Stopping runs: interrupted (resumable as it is) apart from cancelled (on purpose),
at any moment, even right after `start()`; run ids a user may choose; runs kept in memory."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import waypoint as wp


class S(BaseModel):
    trail: list[str] = []
    approved: bool = False


class Ok(BaseModel):
    approved: bool


def chain() -> wp.Graph:
    g = wp.GraphBuilder(S, name="stoppable")
    g.node(lambda s: {"trail": [*s.trail, "a"]}, name="a", writes=["trail"])
    g.gate("ask", Ok, on_answer=lambda s, a: {"approved": a.approved})
    g.node(lambda s: {"trail": [*s.trail, "b"]}, name="b", writes=["trail"])
    g.edge(wp.START, "a")
    g.edge("a", "ask")
    g.edge("ask", "b")
    g.edge("b", wp.END)
    return g.compile()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["interrupt", "cancel"])
async def test_stopping_right_after_start_releases_the_lease_at_once(store, how):
    graph = chain()
    handle = await wp.start(graph, store=store, run_id="r")
    stopped = await (handle.interrupt() if how == "interrupt" else handle.cancel(reason="oops", by="ann"))
    status = "interrupted" if how == "interrupt" else "cancelled"
    assert stopped.status == status
    run = await store.get_run("r")
    assert (run.status, run.lease_owner) == (status, None), "the lease outlived the stop"
    assert (await handle.result()).status == status  # settled once, the same for every caller
    if how == "cancel":
        assert run.error == "cancelled by ann: oops"
        with pytest.raises(wp.RunStateError, match="cancelled on purpose.*force=True"):
            await wp.resume(graph, "r", store=store)
    resumed = await (await wp.resume(graph, "r", store=store, force=how == "cancel")).result()
    assert resumed.status == "waiting" and resumed.state.trail == ["a"]


def slow_graph(entered: asyncio.Event, go_on: asyncio.Event) -> wp.Graph[S]:
    """One node that sets `entered`, then waits for `go_on`: a run caught mid-node."""
    g = wp.GraphBuilder(S, name="slow")

    @g.node(writes=["trail"])
    async def slow(state: S) -> dict:
        entered.set()
        await go_on.wait()
        return {"trail": ["slow"]}

    g.edge(wp.START, "slow")
    g.edge("slow", wp.END)
    return g.compile()


@pytest.mark.asyncio
async def test_interrupting_a_running_node_leaves_the_run_resumable(store):
    entered, never = asyncio.Event(), asyncio.Event()
    graph = slow_graph(entered, never)
    handle = await wp.start(graph, store=store, run_id="r")
    await entered.wait()
    assert (await handle.interrupt()).status == "interrupted"
    never.set()
    done = await (await wp.resume(graph, "r", store=store)).result()
    assert done.status == "done" and done.state.trail == ["slow"]


@pytest.mark.asyncio
async def test_cancel_a_waiting_run_by_id_records_who_and_why(store):
    graph = chain()
    await (await wp.start(graph, store=store, run_id="r")).result()
    info = await wp.cancel("r", store=store, reason="customer withdrew", by="ann")
    assert (info.status, info.error, info.lease_owner) == ("cancelled", "cancelled by ann: customer withdrew", None)
    last = (await store.history("r"))[-1]
    assert (last.kind, last.extra) == ("event", {"event": "cancelled", "reason": "customer withdrew", "by": "ann"})
    with pytest.raises(wp.RunStateError, match="cancelled on purpose"):
        await wp.resume(graph, "r", {"approved": True}, store=store)
    done = await (await wp.resume(graph, "r", {"approved": True}, store=store, force=True)).result()
    assert done.status == "done" and done.state.trail == ["a", "b"]
    with pytest.raises(wp.RunStateError, match="already finished"):
        await wp.cancel("r", store=store)


@pytest.mark.asyncio
async def test_cancel_refuses_a_run_another_process_executes(store):
    graph = chain()
    await (await wp.start(graph, store=store, run_id="r")).result()
    await store.claim("r", "otherhost:1:x", 60)
    before = await store.get_run("r")
    with pytest.raises(wp.LeaseError, match="otherhost:1:x"):
        await wp.cancel("r", store=store)
    assert await store.get_run("r") == before


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
async def test_an_empty_or_blank_run_id_is_refused_and_creates_nothing(store, bad):
    graph = chain()
    for if_exists in ("error", "resume", "resume"):
        with pytest.raises(wp.RunError, match="cannot be empty or blank"):
            await wp.start(graph, store=store, run_id=bad, if_exists=if_exists)
    assert await store.list_runs() == []


def test_run_sync_without_a_store_says_the_run_is_gone_with_the_call():
    waiting = wp.run_sync(chain())
    assert waiting.status == "waiting"
    assert "kept in memory" in waiting.note and "store=SQLiteStore('runs.db')" in waiting.note

    g = wp.GraphBuilder(S, name="boom")
    g.node(lambda s: 1 / 0, name="boom", writes=[])
    g.edge(wp.START, "boom")
    g.edge("boom", wp.END)
    with pytest.raises(wp.NodeError) as err:
        wp.run_sync(g.compile())
    assert "ZeroDivisionError" in str(err.value) and "kept in memory" in str(err.value)
    assert err.value.node == "boom" and isinstance(err.value.__cause__, ZeroDivisionError)


def test_run_sync_with_a_store_has_no_note(tmp_path):
    result = wp.run_sync(chain(), store=wp.SQLiteStore(tmp_path / "runs.db"))
    assert result.status == "waiting" and result.note is None


@pytest.mark.asyncio
async def test_a_waiting_run_is_edited_before_its_answer_as_a_recorded_step(store):
    graph = chain()
    await (await wp.start(graph, store=store, run_id="r")).result()
    before = await store.history("r")
    with pytest.raises(wp.UpdateError, match="unknown field.*'trial'"):
        await wp.resume(graph, "r", {"approved": True}, store=store, update={"trial": ["x"]})
    with pytest.raises(wp.UpdateError, match="field 'trail'"):
        await wp.resume(graph, "r", {"approved": True}, store=store, update={"trail": 3})
    assert await store.history("r") == before and (await store.get_run("r")).status == "waiting"
    done = await (await wp.resume(graph, "r", {"approved": True}, by="ann", store=store,
                                  update={"trail": ["edited"]})).result()
    assert done.state.trail == ["edited", "b"]
    edit = (await store.history("r"))[len(before)]
    assert (edit.kind, edit.extra["by"]) == ("edit", "ann")
    assert (await wp.state_at(graph, "r", edit.seq, store=store)).trail == ["edited"]


class Item(BaseModel):
    name: str
    report: str = ""


class Batch(BaseModel):
    items: list[Item] = []
    reports: list[Item] = []


@pytest.mark.asyncio
async def test_when_a_map_item_fails_its_cancelled_siblings_child_runs_are_not_left_running(store):
    entered, never = [], asyncio.Event()
    both_in = asyncio.Event()

    w = wp.GraphBuilder(Item, name="worker")

    @w.node(writes=["report"])
    async def work(state: Item) -> dict:
        if state.name == "bad":
            await both_in.wait()  # fail only once the siblings are inside their child runs
            raise RuntimeError("bad item")
        entered.append(state.name)
        if len(entered) == 2:
            both_in.set()
        await never.wait()
        return {"report": state.name}

    w.edge(wp.START, "work")
    w.edge("work", wp.END)
    g = wp.GraphBuilder(Batch, name="batch")
    g.map("each", w.compile(), over="items", into="reports", max_items=5)
    g.edge(wp.START, "each")
    g.edge("each", wp.END)
    graph = g.compile()
    items = [{"name": n} for n in ("a", "bad", "b")]
    failed = await (await wp.start(graph, {"items": items}, store=store, run_id="m")).result(
        raise_on_failure=False)
    assert failed.status == "failed" and "bad item" in str(failed.error)
    children = [r for r in await store.list_runs() if r.parent_run_id == "m"]
    assert len(children) == 3
    assert all(r.lease_owner is None for r in children), [(r.run_id, r.status, r.lease_owner) for r in children]
    assert sorted(r.status for r in children) == ["failed", "interrupted", "interrupted"]


@pytest.mark.asyncio
async def test_an_input_that_does_not_fit_names_each_field_and_the_shape(store):
    graph = chain()
    with pytest.raises(wp.RunError) as err:
        await wp.start(graph, {"trial": ["x"], "approved": "maybe"}, store=store)
    message = str(err.value)
    assert "'trial' is not a field of S (did you mean 'trail'?)" in message
    assert "field 'approved'" in message and "Expected shape: {" in message
    assert "Nothing was written" in message and await store.list_runs() == []


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["interrupt", "cancel"])
async def test_an_event_stream_ends_when_the_run_is_stopped(store, how):
    entered, never = asyncio.Event(), asyncio.Event()
    handle = await wp.start(slow_graph(entered, never), store=store)

    async def kinds() -> list[str]:
        return [event.kind async for event in handle.events()]

    seen = asyncio.create_task(kinds())
    await entered.wait()
    await (handle.interrupt() if how == "interrupt" else handle.cancel())
    stream = await asyncio.wait_for(seen, 30)  # a guard only: a stream that never ends fails here
    assert stream[-1] == ("run_interrupted" if how == "interrupt" else "run_cancelled")
