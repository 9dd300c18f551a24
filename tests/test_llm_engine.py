"""LLM nodes inside runs: usage in the log, budgets, and no repeated calls on resume."""

from __future__ import annotations

from pydantic import BaseModel
import pytest

from waypoint import END, START, Budget, BudgetExceededError, GraphBuilder, llm, resume, start
from waypoint.testing import ScriptedModel

pytestmark = pytest.mark.asyncio


class Chat(BaseModel):
    question: str = "Why is the sea salty?"
    answer: str = ""
    summary: str = ""
    ok: bool = False


class Ok(BaseModel):
    approved: bool


def graph():
    g = GraphBuilder(Chat, name="qa")
    g.add(llm("answer", prompt="{question}", into="answer"))
    g.gate("check", Ok, on_answer=lambda s, a: {"ok": a.approved})
    g.add(llm("summarise", prompt="Summarise: {answer}", into="summary"))
    g.edge(START, "answer")
    g.edge("answer", "check")
    g.edge("check", "summarise")
    g.edge("summarise", END)
    return g.compile()


class Deps:
    def __init__(self, model):
        self.model = model


async def test_usage_is_recorded_and_a_completed_call_is_not_repeated_on_resume(store):
    g = graph()
    first = ScriptedModel(["Rivers carry minerals to it."])
    waiting = await (await start(g, store=store, deps=Deps(first))).result()
    assert waiting.status == "waiting" and waiting.state.answer == "Rivers carry minerals to it."
    [step] = [s for s in await store.history(waiting.run_id) if s.node == "answer"]
    assert step.extra["usage"]["calls"] == 1 and step.extra["usage"]["output_tokens"] > 0

    second = ScriptedModel(["Minerals."])  # one reply only: a repeated "answer" call would exhaust it
    done = await (await resume(g, waiting.run_id, {"approved": True}, store=store,
                               deps=Deps(second))).result()
    assert done.state.summary == "Minerals." and done.state.ok
    assert [r.messages[-1]["content"] for r in second.requests] == [
        "Summarise: Rivers carry minerals to it."]


async def test_a_budget_stops_the_run_and_a_larger_one_lets_it_go_on(store):
    g = graph()
    model = ScriptedModel(["one two three four five six", "short"])
    handle = await start(g, store=store, deps=Deps(model), budget=Budget(tokens=3))
    with pytest.raises(BudgetExceededError, match="budget 3.*node 'answer'"):
        await handle.result()
    run_id = handle.run_id
    assert (await store.get_run(run_id)).status == "failed"
    waiting = await (await resume(g, run_id, store=store, deps=Deps(model),
                                  budget=Budget(tokens=1000))).result()
    assert waiting.status == "waiting"
    assert len(model.requests) == 1  # the answer was kept: no second call for it
