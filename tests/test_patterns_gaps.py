"""Gaps found while writing docs/patterns.md: each test is what a pattern needs, pinned as a strict xfail.

When one starts passing, the gap is fixed: drop its xfail mark and, where the
cookbook works around it, simplify the snippet in docs/patterns.md.
"""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel

from waypoint import (
    END, START, GraphBuilder, MemoryStore, NodeContext, agent_tool, llm, pending_gates, resume, run_sync, start,
    tick,
)
from waypoint.testing import ScriptedModel, tool_call


class Ok(BaseModel):
    ok: bool


class Booking(BaseModel):
    city: str
    confirmed: bool = False


def booking_graph():
    """A graph that asks a person before it books: used as a map worker and as an agent tool."""
    b = GraphBuilder(Booking, name="booking")
    b.gate("confirm", Ok, on_answer=lambda s, answer: {"confirmed": answer.ok})
    b.edge(START, "confirm")
    b.edge("confirm", END)
    return b.compile()


# -- parallel (3), guardrails (18): fan-in --------------------------------------------------
class Parts(BaseModel):
    a: str = ""
    b: str = ""
    out: str = ""


def test_an_edge_from_a_list_of_sources_fans_in():
    g = GraphBuilder(Parts)
    g.node(lambda s: {"a": "A"}, name="left")
    g.node(lambda s: {"b": "B"}, name="right")
    g.join("both")
    g.node(lambda s: {"out": s.a + s.b}, name="merge")
    g.edge(START, ["left", "right"])
    g.edge(["left", "right"], "both")
    g.edge("both", "merge")
    g.edge("merge", END)
    assert run_sync(g.compile(), {}).state.out == "AB"


def test_join_is_a_node_option_of_an_llm_node_not_a_model_setting():
    node = llm("synthesize", prompt="{a} {b}", into="out", join=True)
    assert node.join is True and "join" not in node.settings


# -- hierarchical decomposition (8): a worker graph per item of a map ----------------------
class Trips(BaseModel):
    cities: list[str] = ["Lisbon", "Porto"]
    confirmed: list[bool] = []


@pytest.mark.asyncio
@pytest.mark.xfail(reason=(
    "a gate inside a child run that a map's function worker starts (ctx.run_child) fails the run "
    "(with a clear error: 'a map item cannot pause the run this way', and to pass the worker graph "
    "to g.map instead, where it makes the item wait at '<map>[<index>]/<gate>'): waypoint cannot "
    "see which graph a function runs, so it could not check an answer to that gate"))
async def test_a_gate_inside_a_child_run_of_a_map_item_makes_the_run_wait():
    worker = booking_graph()

    async def book(city: str, ctx: NodeContext) -> bool:
        final = await ctx.run_child(worker, {"city": city}, key=ctx.activation)
        return final.confirmed

    g = GraphBuilder(Trips)
    g.map("book", book, over="cities", into="confirmed", max_items=5)
    g.edge(START, "book")
    g.edge("book", END)
    result = await (await start(g.compile(), {}, store=MemoryStore())).result(raise_on_failure=False)
    # Until a map item can pause the run, the failure at least says what and how to fix it:
    assert "a map item cannot pause the run" in str(result.error), result.error
    assert result.status == "waiting", result.error


# -- agents as tools (17): a graph offered as a tool, with a gate inside -------------------
class Trip(BaseModel):
    goal: str
    answer: str = ""


def planner_graph():
    g = GraphBuilder(Trip)
    g.add(llm("planner", prompt="{goal}", into="answer",
              tools=[agent_tool(booking_graph(), name="book", description="Book a city", output="confirmed")]))
    g.edge(START, "planner")
    g.edge("planner", END)
    return g.compile()


async def waiting_in_a_tool():
    graph, store = planner_graph(), MemoryStore()
    model = ScriptedModel([tool_call("book", {"city": "Lisbon"})])
    result = await (await start(graph, {"goal": "a trip"}, store=store, deps={"model": model})).result()
    assert result.status == "waiting" and result.waiting == ["planner/confirm"]
    return graph, store, model, result


@pytest.mark.asyncio
async def test_pending_gates_lists_a_gate_waiting_inside_an_agent_tool_graph():
    graph, store, _, result = await waiting_in_a_tool()
    [request] = await pending_gates(graph, result.run_id, store=store)
    assert request.name == "planner/confirm"


@pytest.mark.asyncio
async def test_a_gate_inside_an_agent_tool_graph_can_be_answered():
    graph, store, model, result = await waiting_in_a_tool()
    model.add(tool_call("book", {"city": "Lisbon"}), "Booked Lisbon.")
    done = await (await resume(graph, result.run_id, {"ok": True}, store=store, deps={"model": model})).result()
    assert done.status == "done" and done.state.answer == "Booked Lisbon."


# -- human in the loop (11), event-driven (15): deadlines tested without waiting -----------
class Escalation(BaseModel):
    outcome: str = ""


@pytest.mark.asyncio
async def test_tick_with_a_future_now_escalates_the_gates_it_finds_due():
    g = GraphBuilder(Escalation)
    g.gate("review", Ok, on_answer=lambda s, answer: {"outcome": "answered"}, deadline=3600,
           escalate="escalate")
    g.node(lambda s: {"outcome": "escalated"}, name="escalate", writes=["outcome"])
    g.edge(START, "review")
    g.edge("review", END)
    g.edge("escalate", END)
    graph, store = g.compile(), MemoryStore()
    assert (await (await start(graph, {}, store=store)).result()).status == "waiting"
    [result] = await tick(graph_for=lambda info: graph, now=time.time() + 7200, store=store)
    assert (result.status, result.state.outcome) == ("done", "escalated")
