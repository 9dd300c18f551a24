"""Engine edge cases: a gate waiting twice at once, and nodes that raise BaseException."""

from __future__ import annotations

import asyncio
from typing import Annotated

import pytest
from pydantic import BaseModel

import waypoint as wp

pytestmark = pytest.mark.asyncio


class Votes(BaseModel):
    asked: Annotated[list[str], wp.append] = []
    answers: Annotated[list[str], wp.append] = []


class Vote(BaseModel):
    choice: str


def two_branches_one_gate() -> wp.Graph:
    """START fans out to a and b; each leads to the same gate, so it waits twice at once."""
    g = wp.GraphBuilder(Votes, name="two_waits")

    @g.node
    def a(state: Votes) -> dict:
        return {"asked": ["a"]}

    @g.node
    def b(state: Votes) -> dict:
        return {"asked": ["b"]}

    g.gate("vote", Vote, on_answer=lambda s, v: {"answers": [v.choice]})
    g.edge(wp.START, ["a", "b"])
    g.edge("a", "vote")
    g.edge("b", "vote")
    g.edge("vote", wp.END)
    return g.compile()


async def test_a_gate_waiting_twice_takes_one_answer_per_resume(store):
    graph = two_branches_one_gate()
    first = await (await wp.start(graph, store=store, run_id="r")).result()
    assert first.status == "waiting" and first.waiting == ["vote"]
    assert len(await wp.pending_gates(graph, "r", store=store)) == 2

    second = await (await wp.resume(graph, "r", {"choice": "yes"}, store=store)).result()
    assert second.status == "waiting" and second.waiting == ["vote"]  # the other one still waits
    assert second.state.answers == ["yes"]
    assert len(await wp.pending_gates(graph, "r", store=store)) == 1

    third = await (await wp.resume(graph, "r", {"choice": "no"}, store=store)).result()
    assert third.status == "done" and third.state.answers == ["yes", "no"]
    replayed = await wp.state_at(graph, "r", store=store)
    assert replayed.answers == ["yes", "no"]


class Halt(BaseException):
    """Not an Exception: what a careless library or a generator's close can raise."""


class Count(BaseModel):
    n: int = 0


async def test_a_node_raising_a_base_exception_fails_the_run_instead_of_hanging(store):
    g = wp.GraphBuilder(Count, name="halting")

    @g.node
    def halt(state: Count) -> dict:
        raise Halt("stop right there")

    g.edge(wp.START, "halt")
    g.edge("halt", wp.END)
    handle = await wp.start(g.compile(), store=store, run_id="h")
    result = await asyncio.wait_for(handle.result(raise_on_failure=False), 10)
    assert result.status == "failed"
    assert "node 'halt'" in str(result.error) and "Halt" in str(result.error)
    assert (await store.get_run("h")).status == "failed"


class Doc(BaseModel):
    log: Annotated[list[str], wp.append] = []
    approved: bool = False


class Approval(BaseModel):
    approved: bool


def review_graph(written: list[str]) -> wp.Graph:
    g = wp.GraphBuilder(Doc, name="review")

    @g.node
    def write(state: Doc) -> dict:
        written.append("write")  # counts executions: a fork must not run it again
        return {"log": ["written"]}

    g.gate("approve", Approval, on_answer=lambda s, a: {"approved": a.approved})
    g.edge(wp.START, "write")
    g.edge("write", "approve")
    g.edge("approve", wp.END)
    return g.compile()


def outer_graph(written: list[str]) -> wp.Graph:
    g = wp.GraphBuilder(Doc, name="outer")
    g.subgraph("review", review_graph(written))
    g.node(lambda s: {"log": [f"after approved={s.approved}"]}, name="after")
    g.edge(wp.START, "review")
    g.edge("review", "after")
    g.edge("after", wp.END)
    return g.compile()


async def test_a_fork_of_a_run_waiting_inside_a_subgraph_keeps_the_childs_progress(store):
    written: list[str] = []
    graph = outer_graph(written)
    waiting = await (await wp.start(graph, store=store, run_id="orig")).result()
    assert waiting.waiting == ["review/approve"] and written == ["write"]

    info = await store.get_run("orig")
    forked = await (await wp.fork(graph, "orig", at=info.last_seq, store=store)).result()
    assert forked.status == "waiting" and forked.waiting == ["review/approve"]
    [request] = await wp.pending_gates(graph, forked.run_id, store=store)
    assert request.name == "review/approve"

    done = await (await wp.resume(graph, forked.run_id, {"approved": False}, store=store)).result()
    assert done.status == "done" and done.state.log == ["written", "after approved=False"]
    assert written == ["write"]  # the child's completed node did not run again in the fork

    # the original is untouched: still waiting, and answerable on its own
    assert (await store.get_run("orig")).status == "waiting"
    original = await (await wp.resume(graph, "orig", {"approved": True}, store=store)).result()
    assert original.state.log == ["written", "after approved=True"] and written == ["write"]


async def test_start_with_if_exists_resume_is_idempotent_by_run_id(store):
    calls: list[int] = []
    g = wp.GraphBuilder(Count, name="idempotent")

    @g.node
    def inc(state: Count) -> dict:
        calls.append(state.n)
        if len(calls) == 1:
            raise RuntimeError("flaky")
        return {"n": state.n + 1}

    g.edge(wp.START, "inc")
    g.edge("inc", wp.END)
    graph = g.compile()
    first = await (await wp.start(graph, {"n": 5}, store=store, run_id="order-42")).result(
        raise_on_failure=False)
    assert first.status == "failed"
    with pytest.raises(wp.RunStateError, match="already exists"):
        await wp.start(graph, {"n": 5}, store=store, run_id="order-42")  # the default: an error

    again = await (await wp.start(graph, {"n": 99}, store=store, run_id="order-42",
                                  if_exists="resume")).result()
    assert (again.status, again.state.n, calls) == ("done", 6, [5, 5])  # resumed, input ignored
    handle = await wp.start(graph, {"n": 99}, store=store, run_id="order-42", if_exists="resume")
    assert [e.kind async for e in handle.events()] == ["run_finished"]
    done = await handle.result()
    assert (done.status, done.state.n, calls) == ("done", 6, [5, 5])  # nothing ran again
    fresh = await (await wp.start(graph, {"n": 1}, store=store, run_id="new", if_exists="resume")).result()
    assert fresh.state.n == 2  # an id not seen before simply starts


async def test_start_with_if_exists_resume_leaves_a_waiting_run_waiting(store):
    graph = two_branches_one_gate()
    await (await wp.start(graph, store=store, run_id="w")).result()
    again = await (await wp.start(graph, store=store, run_id="w", if_exists="resume")).result()
    assert again.status == "waiting" and again.waiting == ["vote"]
    assert len(await wp.pending_gates(graph, "w", store=store)) == 2  # no second request recorded
