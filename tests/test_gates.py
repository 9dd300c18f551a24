"""Human gates: wait, validate answers, resume by id, several gates, gates inside subgraphs."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from waypoint import END, START, GateError, GraphBuilder, append, pending_gates, resume, start
from waypoint.errors import GraphChangedError, RunNotFoundError, RunStateError

pytestmark = pytest.mark.asyncio


class Approval(BaseModel):
    approved: bool
    comment: str = ""


class Doc(BaseModel):
    text: str = "draft"
    log: Annotated[list[str], append] = []
    approval: Approval | None = None
    budget: Approval | None = None


def approval_graph():
    g = GraphBuilder(Doc, name="approval")
    g.node(lambda s: {"log": ["written"]}, name="write")
    g.gate("approve", Approval, prompt="Publish?", payload=lambda s: {"text": s.text}, into="approval")
    g.node(lambda s: {"log": [f"published={s.approval.approved}"]}, name="publish")
    g.edge(START, "write")
    g.edge("write", "approve")
    g.edge("approve", "publish")
    g.edge("publish", END)
    return g.compile()


async def test_a_gate_waits_then_resume_with_an_answer_finishes(store):
    graph = approval_graph()
    waiting = await (await start(graph, store=store)).result()
    assert waiting.status == "waiting" and waiting.waiting == ["approve"]
    [request] = await pending_gates(graph, waiting.run_id, store=store)
    assert request.prompt == "Publish?" and request.payload == {"text": "draft"}
    assert request.schema["properties"]["approved"]["type"] == "boolean"

    done = await (await resume(graph, waiting.run_id, {"approved": True, "comment": "ok"},
                               by="ana", store=store)).result()
    assert done.status == "done"
    assert done.state.log == ["written", "published=True"]
    answer_step = [s for s in await store.history(done.run_id) if s.node == "approve" and s.kind == "done"]
    assert answer_step[0].extra["by"] == "ana"
    assert answer_step[0].extra["answer"] == {"approved": True, "comment": "ok"}


async def test_an_invalid_answer_is_an_error_naming_gate_and_field_and_loses_nothing(store):
    graph = approval_graph()
    run_id = (await (await start(graph, store=store)).result()).run_id
    before = await store.history(run_id)
    with pytest.raises(GateError) as info:
        await resume(graph, run_id, {"approved": "perhaps"}, store=store)
    assert "gate 'approve'" in str(info.value) and "'approved'" in str(info.value)
    assert (await store.get_run(run_id)).status == "waiting"
    assert await store.history(run_id) == before
    done = await (await resume(graph, run_id, {"approved": False}, store=store)).result()
    assert done.state.log[-1] == "published=False"


async def test_several_pending_gates_are_answered_by_name(store):
    g = GraphBuilder(Doc)
    g.gate("approve", Approval, into="approval")
    g.gate("budget_ok", Approval, into="budget")
    g.join("both")
    g.edge(START, ["approve", "budget_ok"])
    g.edge("approve", "both")
    g.edge("budget_ok", "both")
    g.edge("both", END)
    graph = g.compile()
    result = await (await start(graph, store=store)).result()
    assert result.waiting == ["approve", "budget_ok"]
    with pytest.raises(GateError, match="name the gate"):
        await resume(graph, result.run_id, {"approved": True}, store=store)
    partial = await (await resume(graph, result.run_id, {"approved": True}, gate="budget_ok",
                                  store=store)).result()
    assert partial.status == "waiting" and partial.waiting == ["approve"]
    done = await (await resume(graph, result.run_id, answers={"approve": {"approved": False}},
                               store=store)).result()
    assert done.status == "done"
    assert (done.state.approval.approved, done.state.budget.approved) == (False, True)


async def test_gate_inside_a_subgraph_pauses_the_parent_and_resumes_inside(store):
    outer = GraphBuilder(Doc, name="outer")
    outer.subgraph("review", approval_graph())
    outer.node(lambda s: {"log": ["after"]}, name="after")
    outer.edge(START, "review")
    outer.edge("review", "after")
    outer.edge("after", END)
    graph = outer.compile()
    waiting = await (await start(graph, store=store)).result()
    assert waiting.waiting == ["review/approve"]
    [request] = await pending_gates(graph, waiting.run_id, store=store)
    assert request.name == "review/approve" and request.prompt == "Publish?"
    done = await (await resume(graph, waiting.run_id, {"approved": True}, store=store)).result()
    assert done.status == "done"
    assert done.state.log == ["written", "published=True", "after"]


async def test_resume_errors_are_clear(store):
    graph = approval_graph()
    with pytest.raises(RunNotFoundError):
        await resume(graph, "no-such-run", store=store)
    run_id = (await (await start(graph, store=store)).result()).run_id
    with pytest.raises(GateError, match="gate 'nope' is not waiting"):
        await resume(graph, run_id, {"approved": True}, gate="nope", store=store)
    await (await resume(graph, run_id, {"approved": True}, store=store)).result()
    with pytest.raises(RunStateError, match="already finished"):
        await resume(graph, run_id, store=store)


async def test_resuming_with_a_changed_graph_is_refused(store):
    graph = approval_graph()
    run_id = (await (await start(graph, store=store)).result()).run_id
    g = GraphBuilder(Doc, name="approval")
    g.node(lambda s: {"log": ["written"]}, name="write")
    g.gate("approve", Approval, into="approval")
    g.edge(START, "write")
    g.edge("write", "approve")
    g.edge("approve", END)
    with pytest.raises(GraphChangedError, match="different structure"):
        await resume(g.compile(), run_id, {"approved": True}, store=store)


def deadline_graph(deadline: float):
    g = GraphBuilder(Doc, name="deadline")
    g.gate("approve", Approval, into="approval", deadline=deadline, escalate="manager")
    g.gate("manager", Approval, into="budget")
    g.node(lambda s: {"log": ["published"]}, name="publish")
    g.edge(START, "approve")
    g.edge("approve", "publish")
    g.edge("manager", "publish")
    g.edge("publish", END)
    return g.compile()


async def test_an_expired_gate_escalates_at_resume_and_by_the_sweep(store):
    from waypoint import approval_log, tick

    graph = deadline_graph(0.0)
    run_id = (await (await start(graph, store=store)).result()).run_id
    [result] = await tick(graph_for=lambda info: graph, store=store)
    assert result.status == "waiting" and result.waiting == ["manager"]
    [expired] = [s for s in await store.history(run_id) if s.node == "approve" and s.kind == "done"]
    assert expired.extra["route"] == ["expired"] and expired.extra["expired_at"] >= expired.extra["deadline_at"]
    assert await tick(graph_for=lambda info: graph, store=store) == []  # nothing else is due

    done = await (await resume(graph, run_id, {"approved": True}, by="boss", store=store)).result()
    assert done.state.budget.approved and done.state.approval is None
    [entry] = await approval_log(run_id, store=store)
    assert (entry.gate, entry.by, entry.answer) == ("manager", "boss", {"approved": True, "comment": ""})


async def test_a_gate_answered_before_its_deadline_follows_its_edges(store):
    graph = deadline_graph(3600.0)
    run_id = (await (await start(graph, store=store)).result()).run_id
    from waypoint.engine.gates import due_gates

    assert await due_gates(run_id, store=store) == []
    done = await (await resume(graph, run_id, {"approved": True}, store=store)).result()
    assert done.state.approval.approved and done.state.log == ["published"]


async def test_answering_while_another_resume_executes_the_run_is_a_lease_error(tmp_path):
    import asyncio

    from waypoint import LeaseError, SQLiteStore

    release = asyncio.Event()

    async def slow(state: Doc) -> dict:
        await release.wait()
        return {"log": ["slow"]}

    g = GraphBuilder(Doc)
    g.gate("approve", Approval, into="approval")
    g.gate("budget_ok", Approval, into="budget")
    g.node(slow)
    g.join("both")
    g.edge(START, ["approve", "budget_ok"])
    g.edge("approve", "slow")
    g.edge("slow", "both")
    g.edge("budget_ok", "both")
    g.edge("both", END)
    graph = g.compile()
    store, other = SQLiteStore(tmp_path / "r.db"), SQLiteStore(tmp_path / "r.db")
    run_id = (await (await start(graph, store=store)).result()).run_id
    running = await resume(graph, run_id, {"approved": True}, gate="approve", store=store)
    await asyncio.sleep(0.05)
    with pytest.raises(LeaseError, match="is being executed by"):
        await resume(graph, run_id, {"approved": True}, gate="budget_ok", store=other)
    release.set()
    assert (await running.result()).waiting == ["budget_ok"]
    done = await (await resume(graph, run_id, {"approved": True}, gate="budget_ok", store=other)).result()
    assert done.status == "done"
    await store.close()
    await other.close()


async def test_a_deadline_inside_a_subgraph_comes_due_for_the_parent(store):
    from waypoint import tick
    from waypoint.engine.gates import due_gates

    outer = GraphBuilder(Doc, name="outer_deadline")
    outer.subgraph("review", deadline_graph(0.0))
    outer.node(lambda s: {"log": ["after"]}, name="after")
    outer.edge(START, "review")
    outer.edge("review", "after")
    outer.edge("after", END)
    graph = outer.compile()
    run_id = (await (await start(graph, store=store)).result()).run_id
    assert len(await due_gates(run_id, store=store)) == 1  # the parent's wait carries the inner deadline

    [result] = await tick(graph_for=lambda info: graph, store=store)  # escalates inside the child
    assert result.status == "waiting" and result.waiting == ["review/manager"]
    assert await due_gates(run_id, store=store) == []  # the manager gate has no deadline
    done = await (await resume(graph, run_id, {"approved": True}, store=store)).result()
    assert done.status == "done" and done.state.log == ["published", "after"]
    assert done.state.budget.approved and done.state.approval is None
