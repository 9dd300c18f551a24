"""A gate inside a map item's child run: the item waits as `<map>[<index>]/<gate>`, its siblings go on."""

from __future__ import annotations

import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from waypoint import (
    END, START, GateError, GraphBuilder, MemoryStore, NodeContext, fork, pending_gates, resume,
    run_marks, start, tick,
)
from waypoint.engine.gates import due_gates

pytestmark = pytest.mark.asyncio


class Ok(BaseModel):
    ok: bool


class Booking(BaseModel):  # the worker graph's state: one city
    city: str
    confirmed: bool = False
    escalated: bool = False


class Trips(BaseModel):
    cities: list[str] = ["Lisbon", "Porto", "Faro"]
    confirmed: list[bool] = []


def booking_graph(calls: dict[str, int], *, ask: set[str], deadline: float | None = None) -> Any:
    """Prices each city (counted in `calls`), then asks a person to confirm the ones in `ask`."""
    def price(state: Booking) -> dict:
        calls[state.city] = calls.get(state.city, 0) + 1
        return {}

    def needs_asking(state: Booking) -> Literal["ask", "auto"]:
        return "ask" if state.city in ask else "auto"

    w = GraphBuilder(Booking, name="booking")
    w.node(price, writes=[])
    w.router(needs_asking, routes={"ask": "confirm", "auto": "auto"})
    escalation = {"deadline": deadline, "escalate": "escalate"} if deadline else {}
    w.gate("confirm", Ok, prompt=lambda s: f"Book {s.city}?", payload=lambda s: {"city": s.city},
           on_answer=lambda s, answer: {"confirmed": answer.ok}, **escalation)
    w.node(lambda s: {"confirmed": True}, name="auto", writes=["confirmed"])
    w.edge(START, "price")
    w.edge("price", "needs_asking")
    w.edge("confirm", END)
    w.edge("auto", END)
    if deadline:
        w.node(lambda s: {"escalated": True}, name="escalate", writes=["escalated"])
        w.edge("escalate", END)
    return w.compile()


def trips_graph(worker: Any) -> Any:
    g = GraphBuilder(Trips, name="trips")
    if callable(worker) and not hasattr(worker, "nodes"):  # a function worker
        g.map("book", worker, over="cities", into="confirmed", max_items=5)
    else:
        g.map("book", worker, over="cities", into="confirmed", input=lambda city: {"city": city},
              output=lambda final: final.confirmed, max_items=5)
    g.edge(START, "book")
    g.edge("book", END)
    return g.compile()


async def two_waiting(store: Any, **options: Any) -> tuple[Any, dict[str, int], Any]:
    calls: dict[str, int] = {}
    graph = trips_graph(booking_graph(calls, ask={"Lisbon", "Faro"}, **options))
    result = await (await start(graph, {}, store=store)).result()
    return graph, calls, result


async def test_items_that_reach_a_gate_make_the_run_wait_while_the_others_finish(store):
    graph, calls, result = await two_waiting(store)
    assert result.status == "waiting"
    assert result.waiting == ["book[0]/confirm", "book[2]/confirm"]
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}
    assert (await store.get_run(result.run_id)).waiting == ["book[0]/confirm", "book[2]/confirm"]
    assert (await store.get_run(f"{result.run_id}/0.0/item1")).status == "done"  # Porto went on
    history = await store.history(result.run_id)
    assert [(s.kind, s.extra.get("index")) for s in history] == [("item", 1), ("wait", None)]


async def test_pending_gates_lists_each_waiting_item_with_its_prompt_and_payload(store):
    graph, _, result = await two_waiting(store)
    requests = await pending_gates(graph, result.run_id, store=store)
    assert [(r.name, r.prompt, r.payload) for r in requests] == [
        ("book[0]/confirm", "Book Lisbon?", {"city": "Lisbon"}),
        ("book[2]/confirm", "Book Faro?", {"city": "Faro"}),
    ]
    assert requests[0].schema["properties"] == {"ok": {"title": "Ok", "type": "boolean"}}


async def test_answering_one_item_resumes_only_its_child_and_the_run_waits_at_the_other(store):
    graph, calls, result = await two_waiting(store)
    first = await (await resume(graph, result.run_id, {"ok": False}, gate="book[2]/confirm",
                                store=store)).result()
    assert (first.status, first.waiting) == ("waiting", ["book[0]/confirm"])
    assert (await store.get_run(f"{result.run_id}/0.0/item2")).status == "done"
    assert (await store.get_run(f"{result.run_id}/0.0/item0")).status == "waiting"
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}  # nothing ran again
    assert [r.name for r in await pending_gates(graph, result.run_id, store=store)] == ["book[0]/confirm"]

    done = await (await resume(graph, result.run_id, {"ok": True}, store=store)).result()  # the only gate
    assert done.status == "done"
    assert done.state.confirmed == [True, True, False]  # in item order
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}


async def test_both_items_answered_in_one_resume(store):
    graph, calls, result = await two_waiting(store)
    done = await (await resume(graph, result.run_id, answers={
        "book[0]/confirm": {"ok": True}, "book[2]/confirm": {"ok": True}}, store=store)).result()
    assert (done.status, done.state.confirmed) == ("done", [True, True, True])
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}


async def test_a_wrong_answer_or_address_is_a_gate_error_and_changes_nothing(store):
    graph, _, result = await two_waiting(store)
    before = await store.history(result.run_id)
    with pytest.raises(GateError, match="ok"):
        await resume(graph, result.run_id, {"ok": "not a bool"}, gate="book[0]/confirm", store=store)
    with pytest.raises(GateError, match=r"gate 'book\[1\]/confirm' is not waiting"):
        await resume(graph, result.run_id, {"ok": True}, gate="book[1]/confirm", store=store)
    with pytest.raises(GateError, match="name the gate to answer"):
        await resume(graph, result.run_id, {"ok": True}, store=store)
    assert await store.history(result.run_id) == before
    assert (await store.get_run(result.run_id)).status == "waiting"


async def test_a_resume_without_an_answer_keeps_waiting_and_touches_no_child(store):
    graph, calls, result = await two_waiting(store)
    child_steps = len(await store.history(f"{result.run_id}/0.0/item0"))
    again = await (await resume(graph, result.run_id, store=store)).result()
    assert (again.status, again.waiting) == ("waiting", ["book[0]/confirm", "book[2]/confirm"])
    assert len(await store.history(f"{result.run_id}/0.0/item0")) == child_steps
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}


async def test_a_fork_of_the_waiting_run_waits_at_the_same_items_and_answers_on_its_own(store):
    graph, calls, result = await two_waiting(store)
    last = (await store.get_run(result.run_id)).last_seq
    forked = await (await fork(graph, result.run_id, at=last, store=store)).result()
    assert (forked.status, forked.waiting) == ("waiting", ["book[0]/confirm", "book[2]/confirm"])
    assert (await store.get_run(f"{forked.run_id}/0.0/item0")).forked_from == f"{result.run_id}/0.0/item0@3"
    done = await (await resume(graph, forked.run_id, answers={
        "book[0]/confirm": {"ok": False}, "book[2]/confirm": {"ok": True}}, store=store)).result()
    assert (done.status, done.state.confirmed) == ("done", [False, True, True])
    assert calls == {"Lisbon": 1, "Porto": 1, "Faro": 1}
    assert (await store.get_run(result.run_id)).waiting == ["book[0]/confirm", "book[2]/confirm"]
    assert (await store.get_run(f"{result.run_id}/0.0/item0")).status == "waiting"  # the source's own


async def test_a_deadline_inside_an_item_comes_due_for_the_parent(store):
    graph, _, result = await two_waiting(store, deadline=3600)
    assert await due_gates(result.run_id, time.time(), store=store) == []
    assert await due_gates(result.run_id, time.time() + 7200, store=store) == ["0.0"]
    [swept] = await tick(graph_for=lambda info: graph, now=time.time() + 7200, store=store)
    assert swept.status == "done"
    assert swept.state.confirmed == [False, True, False]  # both asked items escalated


async def test_a_function_worker_whose_child_waits_fails_saying_to_map_the_graph(store):
    worker = booking_graph({}, ask={"Porto"})

    async def book(city: str, ctx: NodeContext) -> bool:
        return (await ctx.run_child(worker, {"city": city}, key=ctx.activation)).confirmed

    result = await (await start(trips_graph(book), {}, store=store)).result(raise_on_failure=False)
    assert result.status == "failed"
    message = str(result.error)
    assert "a map item cannot pause the run this way" in message
    assert "g.map('book', worker_graph, over=..., into=..., output=...)" in message


async def test_a_function_worker_whose_children_do_not_wait_still_works(store):
    worker = booking_graph({}, ask=set())

    async def book(city: str, ctx: NodeContext) -> bool:
        return (await ctx.run_child(worker, {"city": city}, key=ctx.activation)).confirmed

    result = await (await start(trips_graph(book), {}, store=store)).result()
    assert (result.status, result.state.confirmed) == ("done", [True, True, True])


async def test_run_marks_show_the_worker_nodes_of_waiting_and_finished_items(store):
    graph, _, result = await two_waiting(store)
    marks = await run_marks(graph, result.run_id, store=store)
    assert marks.status["book"] == "waiting"
    assert (marks.status["book/confirm"], marks.visits["book/confirm"]) == ("waiting", 2)
    assert (marks.status["book/auto"], marks.visits["book/auto"]) == ("done", 1)
    assert marks.visits["book/price"] == 3
    assert ("book/needs_asking", "book/confirm") in marks.path


async def test_an_item_that_fails_after_its_answer_runs_again_on_resume_and_the_rest_still_wait(store):
    broken = {"on": True}

    def send(state: Booking) -> dict:
        if broken["on"]:
            raise RuntimeError("booking service down")
        return {}

    w = GraphBuilder(Booking, name="booking")
    w.gate("confirm", Ok, on_answer=lambda s, answer: {"confirmed": answer.ok})
    w.node(send, writes=[])
    w.edge(START, "confirm")
    w.edge("confirm", "send")
    w.edge("send", END)
    graph = trips_graph(w.compile())
    result = await (await start(graph, {"cities": ["Lisbon", "Porto"]}, store=store)).result()
    failed = await (await resume(graph, result.run_id, {"ok": True}, gate="book[0]/confirm",
                                 store=store)).result(raise_on_failure=False)
    assert failed.status == "failed" and "booking service down" in str(failed.error)
    broken["on"] = False  # fixed: a resume without an answer retries item 0's child
    again = await (await resume(graph, result.run_id, store=store)).result()
    assert (again.status, again.waiting) == ("waiting", ["book[1]/confirm"])
    assert (await store.get_run(f"{result.run_id}/0.0/item0")).status == "done"
    done = await (await resume(graph, result.run_id, {"ok": False}, store=store)).result()
    assert done.state.confirmed == [True, False]


class Leg(BaseModel):  # a worker whose gate sits one subgraph further down
    city: str
    confirmed: bool = False


async def test_a_gate_in_a_subgraph_of_the_worker_is_addressed_through_the_item():
    inner = booking_graph({}, ask={"Faro"})
    w = GraphBuilder(Leg, name="leg")
    w.subgraph("sub", inner)
    w.edge(START, "sub")
    w.edge("sub", END)
    graph, store = trips_graph(w.compile()), MemoryStore()
    result = await (await start(graph, {}, store=store)).result()
    assert result.waiting == ["book[2]/sub/confirm"]
    assert [r.name for r in await pending_gates(graph, result.run_id, store=store)] == ["book[2]/sub/confirm"]
    with pytest.raises(GateError):
        await resume(graph, result.run_id, {"ok": 3}, store=store)
    done = await (await resume(graph, result.run_id, {"ok": False}, store=store)).result()
    assert done.state.confirmed == [True, True, False]


async def test_a_map_inside_a_subgraph_waits_as_subgraph_slash_item():
    outer = GraphBuilder(Trips, name="outer")
    outer.subgraph("trip", trips_graph(booking_graph({}, ask={"Porto"})))
    outer.edge(START, "trip")
    outer.edge("trip", END)
    graph, store = outer.compile(), MemoryStore()
    result = await (await start(graph, {}, store=store)).result()
    assert result.waiting == ["trip/book[1]/confirm"]
    done = await (await resume(graph, result.run_id, {"ok": True}, store=store)).result()
    assert done.state.confirmed == [True, True, True]
