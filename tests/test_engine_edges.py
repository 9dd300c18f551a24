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
    assert len(await wp.pending_gates(graph, store, "r")) == 2

    second = await (await wp.resume(graph, "r", {"choice": "yes"}, store=store)).result()
    assert second.status == "waiting" and second.waiting == ["vote"]  # the other one still waits
    assert second.state.answers == ["yes"]
    assert len(await wp.pending_gates(graph, store, "r")) == 1

    third = await (await wp.resume(graph, "r", {"choice": "no"}, store=store)).result()
    assert third.status == "done" and third.state.answers == ["yes", "no"]
    replayed = await wp.state_at(graph, store, "r")
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
