"""Guardrails on LLM routers and handoffs: input before the model is asked, output on the choice (a
router's label, a handoff's target); a trip fails the run with GuardrailTripped or takes 'tripped'."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import waypoint as wp
from waypoint.nodes.guardrails import Verdict, input_guardrail, output_guardrail, passed, tripwire
from waypoint.nodes.routing import Handoff, LLMRouter
from waypoint.testing import ScriptedModel, tool_call

pytestmark = pytest.mark.asyncio


class Ticket(BaseModel):
    ticket: str
    route: str = ""
    verdict: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = []
    handled: str = ""


@input_guardrail
def no_passwords(text: str) -> Verdict:
    return tripwire("asks for a password") if "password" in text.lower() else passed()


def router_graph(*rails: Any, tripped: bool) -> wp.Graph:
    g = wp.GraphBuilder(Ticket)
    g.add(wp.llm_router("triage", labels=["billing", "tech"], fallback="human", prompt="{ticket}", into="route",
                        guardrails=list(rails), tripped_into="verdict" if tripped else None),
          routes={"billing": wp.END, "tech": wp.END, "human": wp.END,
                  **({"tripped": "refuse"} if tripped else {})})
    g.edge(wp.START, "triage")
    if tripped:
        g.node(lambda s: {"handled": f"refused: {s.verdict['reason']}"}, name="refuse")
        g.edge("refuse", wp.END)
    return g.compile()


async def run(graph: wp.Graph, model: ScriptedModel, store: Any, ticket: str, run_id: str = "r") -> Any:
    handle = await wp.start(graph, {"ticket": ticket}, store=store, run_id=run_id, deps={"model": model})
    return await handle.result(raise_on_failure=False)


async def test_a_router_input_trip_fails_the_run_before_the_model_is_asked(store):
    model = ScriptedModel(['{"route": "billing"}'])
    result = await run(router_graph(no_passwords, tripped=False), model, store, "my password please")
    assert isinstance(result.error, wp.GuardrailTripped)
    assert result.error.guardrail == "no_passwords" and result.error.stage == "input"
    assert "router 'triage'" in str(result.error) and model.requests == []


async def test_a_router_input_trip_takes_the_declared_tripped_route(store):
    model = ScriptedModel(['{"route": "billing"}'])
    result = await run(router_graph(no_passwords, tripped=True), model, store, "my password please")
    assert result.status == "done" and result.state.handled == "refused: asks for a password"
    assert result.state.route == "" and model.requests == []


async def test_a_router_output_guardrail_checks_its_label_and_is_not_asked_again_on_resume(store):
    seen: list[Any] = []

    @output_guardrail
    def no_billing(label: str) -> Verdict:
        seen.append(label)
        return tripwire("billing is closed") if label == "billing" else passed()

    graph = router_graph(no_billing, tripped=False)
    passed_run = await run(graph, ScriptedModel(['{"route": "tech"}']), store, "it crashes", run_id="ok")
    assert passed_run.state.route == "tech" and seen == ["tech"]
    model = ScriptedModel(['{"route": "billing"}'])
    tripped = await run(graph, model, store, "an invoice")
    assert isinstance(tripped.error, wp.GuardrailTripped) and tripped.error.reason == "billing is closed"
    again = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result(raise_on_failure=False)
    assert isinstance(again.error, wp.GuardrailTripped) and seen == ["tech", "billing"]
    assert len(model.requests) == 1


async def test_a_router_fallback_is_its_choice_and_a_rerun_keeps_it(store, monkeypatch):
    seen: list[Any] = []

    @output_guardrail
    def note(label: str) -> Verdict:
        seen.append(label)
        return passed()

    class Boom(Exception):
        pass

    graph = router_graph(note, tripped=False)
    model = ScriptedModel(["not json", "still not"])
    original = LLMRouter._outcome
    monkeypatch.setattr(LLMRouter, "_outcome", lambda *a: (_ for _ in ()).throw(Boom("after the verdict")))
    first = await run(graph, model, store, "?")
    assert first.status == "failed" and seen == ["human"]
    monkeypatch.setattr(LLMRouter, "_outcome", original)
    done = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result()
    assert done.state.route == "human" and seen == ["human"] and len(model.requests) == 2


def handoff_graph(*rails: Any, tripped: bool) -> wp.Graph:
    g = wp.GraphBuilder(Ticket)
    g.add(wp.handoff("desk", prompt="{ticket}", history="messages", default="answered",
                     targets={"billing": "Invoices", "tech": "Bugs"}, guardrails=list(rails),
                     tripped_into="verdict" if tripped else None),
          routes={"billing": "billing_agent", "tech": wp.END, "answered": wp.END,
                  **({"tripped": "refuse"} if tripped else {})})
    g.edge(wp.START, "desk")
    g.node(lambda s: {"handled": "billing"}, name="billing_agent")
    g.edge("billing_agent", wp.END)
    if tripped:
        g.node(lambda s: {"handled": f"refused: {s.verdict['reason']}"}, name="refuse")
        g.edge("refuse", wp.END)
    return g.compile()


async def test_a_handoff_input_trip_fails_the_run_or_takes_tripped(store):
    model = ScriptedModel([tool_call("transfer_to_billing", {"reason": "x"})])
    failed = await run(handoff_graph(no_passwords, tripped=False), model, store, "password?", run_id="a")
    assert isinstance(failed.error, wp.GuardrailTripped) and model.requests == []
    routed = await run(handoff_graph(no_passwords, tripped=True), model, store, "password?", run_id="b")
    assert routed.state.handled == "refused: asks for a password" and model.requests == []


async def test_a_handoff_output_guardrail_checks_the_transfer_target_and_a_rerun_keeps_it(store, monkeypatch):
    seen: list[Any] = []

    @output_guardrail
    def no_tech(target: str) -> Verdict:
        seen.append(target)
        return tripwire("tech is closed") if target == "tech" else passed()

    graph = handoff_graph(no_tech, tripped=True)
    model = ScriptedModel([tool_call("transfer_to_tech", {"reason": "bug"})])
    routed = await run(graph, model, store, "it crashes", run_id="t")
    assert routed.state.handled == "refused: tech is closed" and seen == ["tech"]

    class Boom(Exception):
        pass

    model = ScriptedModel([tool_call("transfer_to_billing", {"reason": "invoice"})])
    original = Handoff._outcome
    monkeypatch.setattr(Handoff, "_outcome", lambda *a: (_ for _ in ()).throw(Boom("after the verdict")))
    first = await run(graph, model, store, "an invoice")
    assert first.status == "failed" and seen == ["tech", "billing"]
    monkeypatch.setattr(Handoff, "_outcome", original)
    done = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result()
    assert done.state.handled == "billing" and seen == ["tech", "billing"] and len(model.requests) == 1
    assert done.state.messages[-1]["content"] == "Transferred to billing."


async def test_a_handoff_text_answer_goes_through_its_output_guardrail(store):
    @output_guardrail
    def polite(reply: str) -> Verdict:
        return tripwire("rude") if "go away" in reply.lower() else passed()

    result = await run(handoff_graph(polite, tripped=False), ScriptedModel(["Go away."]), store, "hi")
    assert isinstance(result.error, wp.GuardrailTripped) and result.error.reason == "rude"


async def test_compile_takes_a_tripped_route_only_from_a_guarded_router():
    g = wp.GraphBuilder(Ticket)
    g.add(wp.llm_router("triage", labels=["billing"], fallback="human", prompt="{ticket}"),
          routes={"billing": wp.END, "human": wp.END, "tripped": wp.END})
    g.edge(wp.START, "triage")
    with pytest.raises(wp.GraphError, match="route for 'tripped', which it cannot return"):
        g.compile()
    with pytest.raises(wp.GraphError, match="tripped_into= receives"):
        wp.handoff("d", targets={"a": "A"}, default="x", prompt="{ticket}", into="route", tripped_into="verdict")


async def test_termination_checks_drive_guarded_routers_and_handoffs_with_and_without_tripped():
    from waypoint.testing import assert_terminates

    for tripped in (False, True):
        assert_terminates(router_graph(no_passwords, tripped=tripped), input={"ticket": "t"}, runs=20)
        assert_terminates(handoff_graph(no_passwords, tripped=tripped), input={"ticket": "t"}, runs=20)
