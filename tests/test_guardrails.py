"""Guardrails on LLM nodes: input before the model, output on the reply, per tool call; trips fail the
run with GuardrailTripped or take the node's "tripped" route; verdicts are committed, never asked twice."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest
from pydantic import BaseModel

import waypoint as wp
from waypoint.nodes.guardrails import (
    GuardrailContext,
    Judgement,
    Verdict,
    input_guardrail,
    model_guardrail,
    output_guardrail,
    passed,
    reject,
    tool_guardrail,
    tripwire,
)
from waypoint.testing import ScriptedModel, tool_call

pytestmark = pytest.mark.asyncio


class Case(BaseModel):
    question: str
    answer: str = ""
    verdict: dict[str, Any] | None = None
    apology: str = ""


def build(*rails: Any, tools: list[Any] = (), tripped: bool = False, **options: Any) -> wp.Graph:
    g = wp.GraphBuilder(Case, name="guarded")
    g.add(wp.llm("agent", prompt="{question}", into="answer", tools=tools, guardrails=list(rails), **options),
          routes={"tripped": "apologise"} if tripped else None)
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    if tripped:
        @g.node
        def apologise(state: Case) -> dict:
            return {"apology": f"Sorry, I cannot help: {state.verdict['reason'] if state.verdict else '?'}"}
        g.edge("apologise", wp.END)
    return g.compile()


def no_passwords_counting(seen: list[str]):
    @input_guardrail
    def no_passwords(text: str) -> Verdict:
        seen.append(text)
        if "password" in text.lower():
            return tripwire("asks for a password", info={"word": "password"})
        return passed()
    return no_passwords


async def run(graph: wp.Graph, model: ScriptedModel, store: Any, question: str, run_id: str = "r") -> Any:
    handle = await wp.start(graph, {"question": question}, store=store, run_id=run_id, deps={"model": model})
    return await handle.result(raise_on_failure=False)


# -- input -------------------------------------------------------------------------------------
async def test_an_input_trip_fails_the_run_before_the_model_or_any_tool(store):
    seen: list[str] = []
    ran: list[str] = []

    def lookup(user: str) -> str:
        """Look a user up."""
        ran.append(user)
        return "found"

    model = ScriptedModel([tool_call("lookup", {"user": "bob"}), "done"])
    result = await run(build(no_passwords_counting(seen), tools=[lookup]), model, store,
                       "What is bob's password?")
    assert result.status == "failed"
    err = result.error
    assert isinstance(err, wp.GuardrailTripped) and isinstance(err, wp.NodeError)
    assert (err.guardrail, err.stage, err.reason, err.info) == ("no_passwords", "input", "asks for a password",
                                                                 {"word": "password"})
    assert (err.run_id, err.node) == ("r", "agent")
    assert "run 'r', LLM node 'agent': input guardrail 'no_passwords' tripped: asks for a password" in str(err)
    assert "routes={'tripped'" in str(err)  # how to handle it instead
    assert model.requests == [] and ran == []  # blocking: nothing ran before the verdict
    assert seen == ["What is bob's password?"]
    steps = [s for s in await store.history("r") if s.node == "agent"]
    assert [s.kind for s in steps] == ["item", "fail"]
    assert steps[0].extra["index"] == -1 and steps[0].extra["result"]["verdicts"][0]["verdict"] == "trip"
    assert steps[1].extra["type"] == "GuardrailTripped"


async def test_a_passing_input_guardrail_is_recorded_on_the_done_step(store):
    seen: list[str] = []
    model = ScriptedModel(["Paris."])
    result = await run(build(no_passwords_counting(seen)), model, store, "Capital of France?")
    assert result.status == "done" and result.state.answer == "Paris."
    done = [s for s in await store.history("r") if s.node == "agent" and s.kind == "done"][0]
    assert done.extra["guardrails"] == [{"guardrail": "no_passwords", "stage": "input", "verdict": "pass",
                                         "reason": "", "info": None}]


async def test_input_guardrails_run_together_and_all_must_pass(store):
    started: list[str] = []
    both = asyncio.Event()

    @input_guardrail
    async def first(text: str) -> Verdict:
        started.append("first")
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)  # returns only once the other one started too
        return passed()

    @input_guardrail(name="second")
    async def other(text: str, ctx: GuardrailContext) -> Verdict:
        started.append("second")
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)
        return tripwire(f"{ctx.node} refuses on {ctx.stage}")

    model = ScriptedModel(["never"])
    result = await run(build(first, other), model, store, "hi")
    assert isinstance(result.error, wp.GuardrailTripped) and result.error.guardrail == "second"
    assert result.error.reason == "agent refuses on input" and model.requests == []


# -- output ------------------------------------------------------------------------------------
async def test_an_output_trip_keeps_the_reply_out_of_the_state(store):
    @output_guardrail
    def no_digits(reply: str) -> Verdict:
        return tripwire("the reply has digits") if any(c.isdigit() for c in reply) else passed()

    result = await run(build(no_digits), ScriptedModel(["Call 555-1234."]), store, "Number?")
    assert isinstance(result.error, wp.GuardrailTripped)
    assert (result.error.stage, result.error.reason) == ("output", "the reply has digits")
    item = [s for s in await store.history("r") if s.kind == "item"][0]
    assert item.extra["index"] == -2 and item.extra["result"]["reply"] == "Call 555-1234."
    assert (await store.get_run("r")).status == "failed"
    assert result.state.answer == ""  # the tripped reply never reached the state


async def test_an_output_guardrail_gets_the_parsed_output(store):
    class Invoice(BaseModel):
        total: float

    class Books(BaseModel):
        question: str
        invoice: Invoice | None = None

    got: list[Any] = []

    @output_guardrail
    def positive(invoice: Invoice, ctx: GuardrailContext) -> Verdict:
        got.append((invoice, ctx.messages[-1]["role"], ctx.state.question))
        return passed() if invoice.total > 0 else tripwire("negative total", info={"total": invoice.total})

    g = wp.GraphBuilder(Books)
    g.add(wp.llm("agent", prompt="{question}", output=Invoice, into="invoice", guardrails=[positive]))
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    handle = await wp.start(g.compile(), {"question": "bill"}, store=store,
                            deps={"model": ScriptedModel(["not json", Invoice(total=-3)])})
    result = await handle.result(raise_on_failure=False)
    assert isinstance(result.error, wp.GuardrailTripped) and result.error.info == {"total": -3.0}
    assert got == [(Invoice(total=-3), "assistant", "bill")]  # once, on the valid reply only


# -- the tripped route ---------------------------------------------------------------------------
async def test_a_tripped_route_takes_the_trip_with_the_verdict_in_the_state(store):
    seen: list[str] = []
    graph = build(no_passwords_counting(seen), tripped=True, tripped_into="verdict")
    result = await run(graph, ScriptedModel([]), store, "my password?")
    assert result.status == "done"
    assert result.state.apology == "Sorry, I cannot help: asks for a password"
    assert result.state.verdict == {"guardrail": "no_passwords", "stage": "input", "verdict": "trip",
                                    "reason": "asks for a password", "info": {"word": "password"}}
    assert result.state.answer == ""
    done = [s for s in await store.history("r") if s.node == "agent" and s.kind == "done"][0]
    assert done.extra["route"] == ["tripped"] and done.extra["guardrails"][0]["verdict"] == "trip"

    passing = await run(graph, ScriptedModel(["Hello."]), store, "hello", run_id="r2")
    assert passing.state.answer == "Hello." and passing.state.apology == ""  # the edge, not the route


async def test_compile_checks_the_tripped_route():
    @input_guardrail
    def ok(text: str) -> None:
        return None

    g = wp.GraphBuilder(Case)
    g.add(wp.llm("agent", prompt="{question}", into="answer"), routes={"tripped": wp.END})
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    with pytest.raises(wp.GraphError, match="route for 'tripped', which it cannot return"):
        g.compile()
    with pytest.raises(wp.GraphError, match=r"input_guardrail\(ok_fn\), output_guardrail"):
        def ok_fn(text: str) -> None: ...
        wp.llm("agent", prompt="{question}", into="answer", guardrails=[ok_fn])
    with pytest.raises(wp.GraphError, match="named twice"):
        wp.llm("agent", prompt="{question}", into="answer", guardrails=[ok, ok])
    with pytest.raises(wp.GraphError, match="no guardrails="):
        wp.llm("agent", prompt="{question}", into="answer", tripped_into="verdict")


async def test_a_guardrail_returning_something_else_fails_the_node_saying_what_to_return(store):
    @input_guardrail
    def sloppy(text: str) -> Any:
        return False

    result = await run(build(sloppy), ScriptedModel([]), store, "hi")
    assert type(result.error) is wp.NodeError
    assert "input guardrail 'sloppy' returned False, not a Verdict; return passed(), tripwire" in str(result.error)


# -- tools ---------------------------------------------------------------------------------------
def refund_tools(ran: list[Any]) -> list[Any]:
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        ran.append(("refund", amount))
        return f"refunded {amount}"

    def lookup(order: str) -> str:
        """Look an order up."""
        ran.append(("lookup", order))
        return "paid"

    return [refund, lookup]


@tool_guardrail(tools=["refund"])
def small_refunds(arguments: dict[str, Any], ctx: GuardrailContext) -> Verdict:
    if arguments["amount"] > 1000:
        return tripwire("a refund over 1000 is fraud", info={"tool": ctx.tool})
    if arguments["amount"] > 100:
        return reject("refunds over 100 need a human; offer to escalate")
    return passed()


async def test_a_rejected_tool_call_goes_back_to_the_model_which_goes_on(store):
    ran: list[Any] = []
    model = ScriptedModel([[tool_call("refund", {"order": "A1", "amount": 500}), tool_call("lookup", {"order": "A1"})],
                           tool_call("refund", {"order": "A1", "amount": 50}), "Refunded 50."])
    result = await run(build(small_refunds, tools=refund_tools(ran)), model, store, "refund A1")
    assert result.status == "done" and result.state.answer == "Refunded 50."
    assert ran == [("lookup", "A1"), ("refund", 50)]  # the rejected call never ran; lookup is not guarded
    told = model.requests[1].messages[-2]
    assert told["role"] == "tool" and told["content"] == "Not run: refunds over 100 need a human; offer to escalate"
    done = [s for s in await store.history("r") if s.kind == "done"][0]
    rejected = done.extra["trace"][0]
    assert rejected["rejected"].startswith("refunds over 100") and rejected["guardrail"] == "small_refunds"
    assert done.extra["usage"]["tool_calls"] == 2
    verdicts = [(v["tool"], v["verdict"]) for v in done.extra["guardrails"]]
    assert verdicts == [("refund", "reject"), ("refund", "pass")]


async def test_a_tool_trip_fails_the_run_and_no_call_of_the_turn_runs(store):
    ran: list[Any] = []
    model = ScriptedModel([[tool_call("lookup", {"order": "A1"}),
                            tool_call("refund", {"order": "A1", "amount": 5000})]])
    result = await run(build(small_refunds, tools=refund_tools(ran)), model, store, "refund A1")
    err = result.error
    assert isinstance(err, wp.GuardrailTripped) and (err.stage, err.info) == ("tool", {"tool": "refund"})
    assert "tool guardrail 'small_refunds' tripped on a call of tool 'refund': a refund over 1000" in str(err)
    assert ran == []
    item = [s for s in await store.history("r") if s.kind == "item"][0]
    assert item.extra["index"] == -3


# -- durability ----------------------------------------------------------------------------------
async def test_a_resumed_node_does_not_ask_its_input_guardrail_again(store):
    seen: list[str] = []
    calls: list[str] = []

    def flaky(order: str) -> str:
        """Look an order up."""
        calls.append(order)
        if len(calls) == 1:
            raise ConnectionError("db down")
        return "paid"

    graph = build(no_passwords_counting(seen), tools=[flaky])
    model = ScriptedModel([tool_call("flaky", {"order": "A1"})])
    first = await run(graph, model, store, "Is A1 paid?")
    assert first.status == "failed" and seen == ["Is A1 paid?"]
    model.add(tool_call("flaky", {"order": "A1"}), "Yes.")
    done = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result()
    assert done.state.answer == "Yes."
    assert seen == ["Is A1 paid?"]  # the committed pass was not asked again
    step = [s for s in await store.history("r") if s.kind == "done"][0]
    assert [v["guardrail"] for v in step.extra["guardrails"]] == ["no_passwords"]


async def test_resuming_a_tripped_run_reports_the_same_trip_without_asking_again(store):
    asked: list[str] = []

    @output_guardrail
    def judge(reply: str) -> Verdict:
        asked.append(reply)
        return tripwire("rude")

    graph = build(judge)
    model = ScriptedModel(["Go away."])
    first = await run(graph, model, store, "hi")
    assert isinstance(first.error, wp.GuardrailTripped)
    again = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result(raise_on_failure=False)
    assert isinstance(again.error, wp.GuardrailTripped) and again.error.reason == "rude"
    assert asked == ["Go away."] and len(model.requests) == 1  # neither the model nor the guardrail again


async def test_a_crash_after_the_output_verdict_keeps_the_judged_reply(store, monkeypatch):
    """The output item holds the reply: a rerun of the activation neither calls the model nor the check."""
    asked: list[str] = []

    @output_guardrail
    def fine(reply: str) -> Verdict:
        asked.append(reply)
        return passed()

    class Boom(Exception):
        pass

    graph = build(fine)
    model = ScriptedModel(["First reply."])
    handle = await wp.start(graph, {"question": "hi"}, store=store, run_id="r", deps={"model": model})
    # stop the run right after the output item was committed: the node's done step never lands
    original = wp.LLMNode._outcome

    def crash(self, *args):
        raise Boom("killed between the verdict and the done step")

    monkeypatch.setattr(wp.LLMNode, "_outcome", crash)
    first = await handle.result(raise_on_failure=False)
    assert first.status == "failed" and asked == ["First reply."]
    monkeypatch.setattr(wp.LLMNode, "_outcome", original)
    done = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result()
    assert done.state.answer == "First reply." and asked == ["First reply."] and len(model.requests) == 1


# -- model-backed guardrails ----------------------------------------------------------------------
async def test_a_model_guardrail_asks_a_model_and_its_call_counts(store):
    on_topic = model_guardrail("on_topic", instructions="Trip when the question is not about billing.")
    model = ScriptedModel({"agent:on_topic": [Judgement(tripped=True, reason="about the weather")],
                           "agent": []})
    result = await run(build(on_topic), model, store, "Will it rain?")
    err = result.error
    assert isinstance(err, wp.GuardrailTripped) and (err.guardrail, err.reason) == ("on_topic", "about the weather")
    asked = model.requests_for("agent:on_topic")[0]
    assert asked.response_format is Judgement and asked.messages[-1] == {"role": "user", "content": "Will it rain?"}
    assert "not about billing" in asked.messages[0]["content"]
    fail = [s for s in await store.history("r") if s.kind == "fail"][0]
    assert fail.extra["usage"]["calls"] == 1  # the guardrail's call counts against budgets

    model.add(Judgement(tripped=False), node="agent:on_topic")
    model.add("Your invoice is paid.", node="agent")
    ok = await run(build(on_topic), model, store, "Is my invoice paid?", run_id="r2")
    assert ok.state.answer == "Your invoice is paid."
    done = [s for s in await store.history("r2") if s.kind == "done"][0]
    assert done.extra["usage"]["calls"] == 2


async def test_a_model_guardrail_can_ask_its_own_model(store):
    judge = ScriptedModel([{"tripped": False, "reason": "fine"}])
    polite = model_guardrail("polite", instructions="Trip on rude replies.", stage="output", model=judge)
    result = await run(build(polite), ScriptedModel(["Hello!"]), store, "hi")
    assert result.state.answer == "Hello!"
    assert judge.requests[0].messages[-1]["content"] == "Hello!"


# -- events ----------------------------------------------------------------------------------------
async def test_each_verdict_is_an_event(store):
    seen: list[str] = []
    handle = await wp.start(build(no_passwords_counting(seen)), {"question": "hi"}, store=store,
                            deps={"model": ScriptedModel(["Hello."])})
    events = [e async for e in handle.events()]
    verdicts = [e for e in events if e.kind == "guardrail_verdict"]
    assert [(e.node, e.data["guardrail"], e.data["verdict"]) for e in verdicts] == [("agent", "no_passwords", "pass")]


async def test_guardrail_tripped_pickles_with_its_verdict():
    err = wp.GuardrailTripped("msg", run_id="r", node="n", guardrail="g", stage="tool", reason="why", info={"a": 1})
    back = pickle.loads(pickle.dumps(err))
    assert (back.run_id, back.node, back.guardrail, back.stage, back.reason, back.info, str(back)) == (
        "r", "n", "g", "tool", "why", {"a": 1}, "msg")


async def test_verdicts_fire_on_guardrail_hooks_and_span_events(store):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Seen(wp.RunHooks):
        def __init__(self) -> None:
            self.log: list[tuple[str, str, str]] = []

        def on_guardrail(self, event: wp.Event) -> None:
            self.log.append((event.data["guardrail"], event.data["stage"], event.data["verdict"]))

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ran: list[Any] = []
    hooks = Seen()
    model = ScriptedModel([tool_call("refund", {"order": "A1", "amount": 500}), "No refund."])
    handle = await wp.start(build(small_refunds, no_passwords_counting([]), tools=refund_tools(ran)),
                            {"question": "refund A1"}, store=store, deps={"model": model}, hooks=hooks,
                            tracer_provider=provider)
    await handle.result()
    assert hooks.log == [("no_passwords", "input", "pass"), ("small_refunds", "tool", "reject")]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    on_node = [e.attributes["waypoint.guardrail.name"] for e in spans["waypoint.node agent"].events]
    on_agent = [dict(e.attributes) for e in spans["invoke_agent agent"].events]
    assert on_node == ["no_passwords"]  # before the first model call: no agent span yet
    assert on_agent == [{"waypoint.guardrail.name": "small_refunds", "waypoint.guardrail.stage": "tool",
                         "waypoint.guardrail.verdict": "reject", "gen_ai.tool.name": "refund",
                         "waypoint.guardrail.reason": "refunds over 100 need a human; offer to escalate"}]


async def test_run_sync_without_a_store_keeps_the_verdict_on_the_error():
    @input_guardrail
    def never(text: str) -> Verdict:
        return tripwire("closed today", info={"open": "tomorrow"})

    graph = build(never)

    def go() -> None:
        wp.run_sync(graph, {"question": "hi"}, deps={"model": ScriptedModel([])})

    with pytest.raises(wp.GuardrailTripped) as caught:
        await asyncio.to_thread(go)
    trip = caught.value
    assert (trip.guardrail, trip.stage, trip.reason, trip.info) == ("never", "input", "closed today",
                                                                    {"open": "tomorrow"})
    assert "was kept in memory" in str(trip) and "closed today" in str(trip)


async def test_termination_checks_drive_both_the_edges_and_the_tripped_route():
    from waypoint.testing import Choices, assert_terminates, check_terminates

    @input_guardrail
    def ok(text: str) -> None:
        return None

    graph = build(ok, tripped=True)
    edge = check_terminates(graph, Choices(outputs={"agent": "hi"}), input={"question": "q"})
    assert edge.state.answer == "hi" and edge.state.apology == ""  # by default a guarded node passes
    routed = check_terminates(graph, Choices(routes={"agent": ("tripped",)}), input={"question": "q"})
    assert routed.state.apology.startswith("Sorry") and routed.trace == ["LLM node 'agent' -> 'tripped'"]
    assert_terminates(graph, runs=20, input={"question": "q"})


async def test_the_history_shows_verdict_items_and_the_done_steps_verdicts(store):
    from waypoint._cli.inspect import step_detail

    ran: list[Any] = []
    model = ScriptedModel([tool_call("refund", {"order": "A1", "amount": 500}), "No."])
    graph = build(small_refunds, no_passwords_counting([]), tools=refund_tools(ran))
    await run(graph, model, store, "refund A1")
    lines = [step_detail(s, graph) for s in await store.history("r") if s.node == "agent"]
    assert lines[0] == "input guardrails: no_passwords=pass"
    assert lines[1].startswith("tool turn 1: refund(")
    assert lines[2].endswith("guardrails: no_passwords=pass, small_refunds=reject (refunds over 100 need a "
                             "human; offer to escalate)")


class Chat(BaseModel):
    question: str
    answer: str = ""
    messages: list[dict[str, Any]] = []
    pending_call: dict[str, Any] | None = None


async def test_a_node_that_routes_already_routes_tripped_too_and_rejected_calls_are_not_held(store):
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        raise AssertionError("held calls run only after a gate")

    def approval_graph(routes: dict[str, Any]) -> wp.GraphBuilder:
        g = wp.GraphBuilder(Chat)
        g.add(wp.llm("agent", prompt="{question}", into="answer", history="messages",
                     tools=[wp.tool(refund, needs_approval=True)], guardrails=[small_refunds]), routes=routes)
        g.edge(wp.START, "agent")
        return g

    # "tripped" needs no route: without one a trip fails the run
    unrouted = approval_graph({"approval": wp.END, "done": wp.END}).compile()
    model = ScriptedModel([tool_call("refund", {"order": "A1", "amount": 5000})])
    handle = await wp.start(unrouted, {"question": "refund"}, store=store, run_id="u", deps={"model": model})
    failed = await handle.result(raise_on_failure=False)
    assert isinstance(failed.error, wp.GuardrailTripped) and failed.error.stage == "tool"
    graph = approval_graph({"approval": wp.END, "done": wp.END, "tripped": wp.END}).compile()
    model = ScriptedModel([tool_call("refund", {"order": "A1", "amount": 500}), "I can't refund that."])
    handle = await wp.start(graph, {"question": "refund"}, store=store, run_id="a", deps={"model": model})
    result = await handle.result()
    assert result.state.pending_call is None and result.state.answer == "I can't refund that."
    done = [s for s in await store.history("a") if s.kind == "done"][0]
    assert done.extra["route"] == ["done"]

    model = ScriptedModel([tool_call("refund", {"order": "A1", "amount": 5000})])
    handle = await wp.start(graph, {"question": "refund"}, store=store, run_id="b", deps={"model": model})
    tripped = await handle.result()
    assert tripped.status == "done" and tripped.state.pending_call is None
    done = [s for s in await store.history("b") if s.kind == "done"][0]
    assert done.extra["route"] == ["tripped"]


async def test_a_guardrail_that_raises_fails_the_node_like_its_own_code_and_is_retried(store):
    tries: list[int] = []

    @input_guardrail
    def shaky(text: str) -> Verdict:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("moderation API down")
        return passed()

    graph = build(shaky, retry=wp.RetryPolicy(attempts=2, backoff=0, jitter=False))
    result = await run(graph, ScriptedModel(["fine"]), store, "hi")
    assert result.state.answer == "fine" and len(tries) == 2

    @input_guardrail
    def broken(text: str) -> Verdict:
        raise ValueError("bug in the check")

    failed = await run(build(broken), ScriptedModel([]), store, "hi", run_id="r2")
    assert type(failed.error) is wp.NodeError and "ValueError: bug in the check" in str(failed.error)
    assert "raised by input guardrail 'broken' of LLM node 'agent'" in failed.error.__cause__.__notes__[0]
    assert not [s for s in await store.history("r2") if s.kind == "item"]  # no verdict was kept


async def test_when_one_guardrail_raises_the_others_of_its_stage_are_cancelled(store):
    stopped: list[str] = []
    waiting = asyncio.Event()

    @input_guardrail
    async def slow(text: str) -> Verdict:
        waiting.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends it
        except asyncio.CancelledError:
            stopped.append("slow")
            raise
        return passed()

    @input_guardrail
    async def failing(text: str) -> Verdict:
        await waiting.wait()
        raise RuntimeError("check crashed")

    result = await run(build(slow, failing), ScriptedModel([]), store, "hi")
    assert "RuntimeError: check crashed" in str(result.error) and stopped == ["slow"]
