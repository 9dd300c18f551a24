"""LLM routers, handoffs, agents as tools and approved tool calls: offline and through the openai client."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, MemoryStore, resume, start
from waypoint.errors import GraphError, NodeError
from waypoint.nodes._tools import tool
from waypoint.nodes.agents import agent_tool
from waypoint.nodes.context import NodeContext
from waypoint.nodes.llm_node import llm
from waypoint.nodes.model import OpenAIModel
from waypoint.nodes.routing import ToolApproval, handoff, llm_router, run_approved
from waypoint.testing.scripted import ScriptedModel, tool_call

try:  # pytest puts tests/ on sys.path (rootdir-relative import mode) unless tests is a package
    from openai_server import OpenAIServer, json_content, text, tool_calls
except ImportError:  # pragma: no cover
    from tests.openai_server import OpenAIServer, json_content, text, tool_calls

class Ticket(BaseModel):
    ticket: str = "I was charged twice"
    route: str = ""
    answer: str = ""
    reason: str = ""
    messages: list[dict[str, Any]] = []
    pending_call: dict[str, Any] | None = None
    approval: ToolApproval | None = None
    handled_by: str = ""


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


def model_for(server: OpenAIServer) -> OpenAIModel:
    return OpenAIModel("test-model", base_url=server.url, api_key="test", max_retries=0, timeout=5.0)


def context(**options: Any) -> NodeContext:
    return NodeContext(run_id="r1", node="n", activation="1.0", **options)


async def run_graph(graph, model, state=None, store=None):
    store = store or MemoryStore()
    result = await (await start(graph, state or {}, store=store, deps={"model": model})).result()
    return result, store


async def steps_of(store, run_id, node):
    return [s for s in await store.history(run_id) if s.node == node and s.kind == "done"]


# -- LLM routers -----------------------------------------------------------------
TRIAGE = {"billing": "invoices, charges, refunds", "tech": "bugs and outages"}


def triage_graph(router):
    g = GraphBuilder(Ticket, name="triage")
    g.add(router, routes={"billing": "billing", "tech": "tech", "human": "human"})
    for name in ("billing", "tech", "human"):
        g.node(lambda s, name=name: {"handled_by": name}, name=name, writes=["handled_by"])
        g.edge(name, END)
    g.edge(START, router.name)
    return g.compile()


@pytest.mark.asyncio
async def test_router_picks_a_label_and_the_run_follows_it():
    router = llm_router("triage", prompt="{ticket}", labels=TRIAGE, fallback="human", into="route")
    model = ScriptedModel([{"route": "billing"}])
    result, store = await run_graph(triage_graph(router), model)
    assert result.status == "done" and result.state.handled_by == "billing" and result.state.route == "billing"
    [step] = await steps_of(store, result.run_id, "triage")
    assert step.extra["route"] == ["billing"]
    assert step.extra["routing"] == {"label": "billing", "fallback_used": False}
    assert step.extra["usage"]["calls"] == 1
    request = model.requests[0]
    assert request.response_format.model_json_schema()["properties"]["route"]["enum"] == ["billing", "tech"]
    assert "- billing: invoices, charges, refunds" in request.messages[0]["content"]
    assert router.kind == "llm_router" and router.labels == ("billing", "tech", "human")


@pytest.mark.asyncio
async def test_router_asks_again_then_takes_the_fallback():
    router = llm_router("triage", prompt="{ticket}", labels=["billing", "tech"], fallback="human")
    model = ScriptedModel([{"route": "sales"}, "no idea"])
    outcome = await router.run(Ticket(), ctx := context(deps={"model": model}))
    assert outcome.labels == ("human",) and outcome.update is None
    assert ctx.record["routing"] == {"label": "human", "fallback_used": True}
    assert ctx.record["usage"]["calls"] == 2 and ctx.record["invalid_output"] == "'no idea'"
    assert "does not fit" in model.requests[1].messages[-1]["content"]


@pytest.mark.asyncio
async def test_router_without_retries_falls_back_at_once_and_a_retry_can_recover():
    eager = llm_router("t", prompt="{ticket}", labels=["billing"], fallback="human", max_validation_retries=0)
    outcome = await eager.run(Ticket(), context(deps={"model": ScriptedModel([{"route": "x"}])}))
    assert outcome.labels == ("human",)
    patient = llm_router("t", prompt="{ticket}", labels=["billing"], fallback="human")
    outcome = await patient.run(Ticket(), context(deps={"model": ScriptedModel(["{", {"route": "billing"}])}))
    assert outcome.labels == ("billing",)


@pytest.mark.asyncio
async def test_router_reads_a_history_and_always_asks_its_question():
    router = llm_router("r", prompt="Who takes it?", history="messages", labels=["billing"], fallback="human")
    model = ScriptedModel([{"route": "billing"}])
    past = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c", "content": "x"}]
    outcome = await router.run(Ticket(messages=past), context(deps={"model": model}))
    assert outcome.labels == ("billing",) and outcome.update is None  # the history is read, not extended
    assert model.requests[0].messages[1:] == [*past, {"role": "user", "content": "Who takes it?"}]


@pytest.mark.asyncio
async def test_router_through_the_openai_client(server):
    server.push(json_content({"route": "tech"}), json_content({"route": "nope"}), text("nope"))
    router = llm_router("triage", prompt="{ticket}", labels=TRIAGE, fallback="human", model=model_for(server))
    result, _ = await run_graph(triage_graph(router), None)
    assert result.state.handled_by == "tech"
    fmt = server.bodies[0]["response_format"]["json_schema"]
    assert fmt["schema"]["properties"]["route"]["enum"] == ["billing", "tech"] and fmt["strict"] is True
    result, _ = await run_graph(triage_graph(router), None)
    assert result.state.handled_by == "human" and len(server.requests) == 3


def test_router_definition_errors():
    with pytest.raises(GraphError, match="nothing to route on"):
        llm_router("r", labels=["a"], fallback="b")
    with pytest.raises(GraphError, match="needs labels="):
        llm_router("r", prompt="x", labels=[], fallback="b")
    g = GraphBuilder(Ticket)
    g.add(llm_router("r", prompt="x", labels=["a"], fallback="b"), routes={"a": END})
    g.edge(START, "r")
    with pytest.raises(GraphError, match="can return 'b' but has no route"):
        g.compile()


# -- handoffs ----------------------------------------------------------------------
def desk_graph(front, model=None):
    g = GraphBuilder(Ticket, name="desk")
    g.add(front, routes={"billing": "billing", "tech": "tech", "answered": END})
    g.add(llm("billing", history="messages", into="answer", model=model,
              instructions="You handle billing."))
    g.node(lambda s: {"handled_by": "tech"}, name="tech", writes=["handled_by"])
    g.edge(START, front.name)
    g.edge("billing", END)
    g.edge("tech", END)
    return g.compile()


def front_desk(**options: Any):
    return handoff("front", prompt="{ticket}", history="messages", reason_into="reason", default="answered",
                   targets={"billing": "Invoices and refunds", "tech": "Bugs"}, **options)


@pytest.mark.asyncio
async def test_handoff_transfers_to_the_target_which_carries_the_conversation_on():
    model = ScriptedModel([tool_call("transfer_to_billing", {"reason": "double charge"}), "Refund issued."])
    result, store = await run_graph(desk_graph(front_desk()), model)
    assert result.status == "done" and result.state.answer == "Refund issued."
    assert result.state.reason == "double charge"
    first = model.requests[0]
    assert [t["name"] for t in first.tools] == ["transfer_to_billing", "transfer_to_tech"]
    assert first.tools[0]["description"] == "Invoices and refunds"
    # the target saw the whole conversation, the transfer answered, and no new prompt
    seen = model.requests[1].messages
    assert [m["role"] for m in seen] == ["system", "user", "assistant", "tool"]
    assert seen[3]["content"] == "Transferred to billing."
    assert [m["role"] for m in result.state.messages] == ["user", "assistant", "tool", "assistant"]
    [step] = await steps_of(store, result.run_id, "front")
    assert step.extra["route"] == ["billing"]
    assert step.extra["handoff"] == {"to": "billing", "reason": "double charge"}
    assert step.extra["usage"]["tool_calls"] == 0  # a transfer runs nothing


@pytest.mark.asyncio
async def test_handoff_text_answer_takes_the_default_route():
    model = ScriptedModel(["Our opening hours are 9 to 5."])
    result, store = await run_graph(desk_graph(front_desk()), model)
    assert result.status == "done" and result.state.handled_by == "" and result.state.reason == ""
    assert result.state.messages[-1] == {"role": "assistant", "content": "Our opening hours are 9 to 5."}
    [step] = await steps_of(store, result.run_id, "front")
    assert step.extra["route"] == ["answered"]


@pytest.mark.asyncio
async def test_handoff_runs_ordinary_tools_first_and_skips_the_rest_of_a_transfer_turn():
    looked_up: list[str] = []

    def lookup(customer: str) -> str:
        """Look a customer up."""
        looked_up.append(customer)
        return "premium"

    model = ScriptedModel([
        tool_call("lookup", {"customer": "ada"}),
        [tool_call("transfer_to_tech"), tool_call("lookup", {"customer": "bob"})],
    ])
    node = front_desk(tools=[lookup])
    outcome = await node.run(Ticket(), ctx := context(deps={"model": model}))
    assert outcome.labels == ("tech",) and looked_up == ["ada"]
    assert [t.get("route") or t.get("skipped") or t.get("result") for t in ctx.record["trace"]] == [
        "premium", "tech", True]
    assert outcome.update["messages"][-1]["content"].startswith("Not run: control was transferred")


@pytest.mark.asyncio
async def test_handoff_through_the_openai_client(server):
    server.push(tool_calls(("transfer_to_billing", {"reason": "refund"})), text("Done, refunded."))
    model = model_for(server)
    result, _ = await run_graph(desk_graph(front_desk(model=model), model=model), None)
    assert result.state.answer == "Done, refunded." and result.state.reason == "refund"
    tools = server.bodies[0]["tools"]
    assert tools[1]["function"]["name"] == "transfer_to_tech"
    assert tools[1]["function"]["parameters"]["properties"]["reason"]["type"] == "string"
    sent = server.bodies[1]["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "transfer_to_billing"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_0", "content": "Transferred to billing."}


def test_handoff_definition_errors():
    with pytest.raises(GraphError, match="must be 1-48 letters"):
        handoff("h", prompt="x", into="answer", default="done", targets={"bad label": "no"})
    with pytest.raises(GraphError, match="neither into= nor history="):
        handoff("h", prompt="x", default="done", targets={"a": "b"})
    with pytest.raises(TypeError, match="default"):
        handoff("h", prompt="x", into="answer", targets={"a": "b"})  # type: ignore[call-arg]


# -- agents as tools -------------------------------------------------------------------
class Topic(BaseModel):
    topic: str = ""
    notes: str = ""
    summary: str = ""


@pytest.mark.asyncio
async def test_an_llm_node_as_a_tool_runs_with_its_arguments_and_its_usage_counts():
    researcher = llm("researcher", prompt="Find facts on {topic}", into="notes")
    research = agent_tool(researcher, name="research", description="Research a topic")
    assert research.spec["parameters"]["required"] == ["topic"]
    model = ScriptedModel([tool_call("research", {"topic": "tides"}), "The moon pulls.", "Tides: the moon."])
    writer = llm("writer", prompt="Write about {topic}", into="summary", tools=[research])
    outcome = await writer.run(Topic(topic="the sea"), ctx := context(deps={"model": model}))
    assert outcome.update == {"summary": "Tides: the moon."}
    assert model.requests[1].messages == [{"role": "user", "content": "Find facts on tides"}]
    assert model.requests[2].messages[-1]["content"] == "The moon pulls."
    [entry] = ctx.record["trace"]
    assert entry["tool"] == "research" and entry["result"] == "The moon pulls."
    assert entry["agent"]["node"] == "researcher" and entry["agent"]["usage"]["calls"] == 1
    assert ctx.record["usage"]["calls"] == 3 and ctx.record["usage"]["tool_calls"] == 1


@pytest.mark.asyncio
async def test_an_llm_node_as_a_tool_through_the_openai_client(server):
    class Question(BaseModel):
        question: str

    model = model_for(server)
    expert = llm("expert", prompt=lambda s: f"Q: {s.question}", into="answer", model=model)
    ask = agent_tool(expert, name="ask_expert", description="Ask the expert", input=Question,
                     output=lambda answer: {"expert_says": answer})
    server.push(tool_calls(("ask_expert", {"question": "why salt?"})), text("Rivers.", usage=(7, 3)),
                text("Because of rivers."))
    boss = llm("boss", prompt="{topic}", into="summary", tools=[ask], model=model)
    outcome = await boss.run(Topic(topic="salt"), ctx := context())
    assert outcome.update == {"summary": "Because of rivers."}
    assert server.bodies[1]["messages"] == [{"role": "user", "content": "Q: why salt?"}]
    assert server.bodies[2]["messages"][-1]["content"] == '{"expert_says":"Rivers."}'
    assert ctx.record["usage"] == {"input_tokens": 27, "output_tokens": 13, "calls": 3, "tool_calls": 1}


def research_graph(model):
    g = GraphBuilder(Topic, name="research")
    g.add(llm("look", prompt="Look up {topic}", into="notes", model=model))
    g.node(lambda s: {"summary": s.notes.upper()}, name="shout", writes=["summary"])
    g.edge(START, "look")
    g.edge("look", "shout")
    g.edge("shout", END)
    return g.compile()


def child_runner(deps: Any = None):
    """What the engine's ctx.run_child does, for a node run on its own: an in-memory nested run."""
    runs: list[tuple[str | None, Any]] = []

    async def run_child(graph, child_input, *, key=None, usage=None):
        store = MemoryStore()
        result = await (await start(graph, child_input, store=store, deps=deps)).result()
        for step in await store.history(result.run_id):
            for name, value in (step.extra.get("usage") or {}).items():
                usage[name] = usage.get(name, 0) + value
        runs.append((key, child_input))
        return result.state

    run_child.runs = runs
    return run_child


class Topic2(BaseModel):
    topic: str


@pytest.mark.asyncio
async def test_a_compiled_graph_as_a_tool_runs_as_a_child_run():
    inner = ScriptedModel(["tides come from the moon"])
    tool_ = agent_tool(research_graph(inner), name="research", description="Research", input=Topic2,
                       output="summary")
    twice = [tool_call("research", {"topic": "tides"}), tool_call("research", {"topic": "tides"})]
    outer = ScriptedModel([twice, "Done."])
    inner.add("again")
    node = llm("writer", prompt="{topic}", into="summary", tools=[tool_], model=outer)
    run_child = child_runner()
    outcome = await node.run(Topic(topic="sea"), ctx := context(run_child=run_child))
    assert outcome.update == {"summary": "Done."}
    assert outer.requests[1].messages[-2]["content"] == "TIDES COME FROM THE MOON"
    keys = [key for key, _ in run_child.runs]
    assert [i for _, i in run_child.runs] == [{"topic": "tides"}] * 2
    assert keys[0].startswith("research.1.") and keys[1].startswith("research.2.") and len(set(keys)) == 2
    assert ctx.record["trace"][0]["agent"]["graph"] == "research"
    assert ctx.record["usage"]["calls"] == 4  # two outer calls, one inner call per child run


@pytest.mark.asyncio
async def test_a_graph_tool_defaults_to_the_state_fields_and_needs_run_child(server):
    tool_ = agent_tool(research_graph(model_for(server)), name="research", description="Research")
    assert set(tool_.spec["parameters"]["properties"]) == {"topic", "notes", "summary"}
    server.push(tool_calls(("research", {"topic": "salt"})), text("rivers"), text("ok"))
    node = llm("writer", prompt="{topic}", into="summary", tools=[tool_], model=model_for(server))
    outcome = await node.run(Topic(topic="sea"), ctx := context(run_child=child_runner()))
    assert outcome.update == {"summary": "ok"}
    result = ctx.record["trace"][0]["result"]
    assert result == {"topic": "salt", "notes": "rivers", "summary": "RIVERS"}
    server.push(tool_calls(("research", {"topic": "salt"})))
    with pytest.raises(NodeError, match="needs the engine's ctx.run_child"):
        await node.run(Topic(topic="sea"), context())


def test_agent_tool_definition_errors():
    with pytest.raises(GraphError, match="pass input="):
        agent_tool(llm("x", prompt=lambda s: "hi", into="answer"), name="x", description="")
    with pytest.raises(GraphError, match="takes an LLM node"):
        agent_tool(print, name="x", description="")


# -- approving a tool call before it runs ------------------------------------------------
def approval_graph(refunds: list[tuple[str, float]]):
    def refund(customer: str, amount: float) -> str:
        """Refund a customer."""
        refunds.append((customer, amount))
        return f"refunded {amount}"

    def balance(customer: str) -> float:
        """A customer's balance."""
        return 42.0

    agent = llm("agent", prompt="{ticket}", history="messages", into="answer",
                tools=[balance, tool(refund, needs_approval=True)])
    g = GraphBuilder(Ticket, name="refunds")
    g.add(agent, routes={"approval": "review", "done": END})
    g.gate("review", ToolApproval, prompt="Run this call?", payload=lambda s: s.pending_call, into="approval")
    g.add(run_approved("run_call", agent))
    g.loop_guard("again", max_iterations=3, routes={"continue": "agent", "done": END})
    g.edge(START, "agent")
    g.edge("review", "run_call")
    g.edge("run_call", "again")
    return g.compile()


@pytest.mark.asyncio
async def test_a_call_needing_approval_waits_at_the_gate_runs_once_when_approved_and_the_llm_continues():
    refunds: list[tuple[str, float]] = []
    graph = approval_graph(refunds)
    model = ScriptedModel([
        [tool_call("balance", {"customer": "ada"}), tool_call("refund", {"customer": "ada", "amount": 10})],
    ])
    waiting, store = await run_graph(graph, model)
    assert waiting.status == "waiting" and waiting.waiting == ["review"] and refunds == []
    assert waiting.state.pending_call == {"id": "call_2", "tool": "refund",
                                          "arguments": {"customer": "ada", "amount": 10}}
    assert [m["role"] for m in waiting.state.messages] == ["user", "assistant", "tool"]  # balance ran
    [step] = await steps_of(store, waiting.run_id, "agent")
    assert step.extra["route"] == ["approval"] and step.extra["usage"]["tool_calls"] == 1

    model.add("Refunded 10 to ada.")
    done = await (await resume(graph, waiting.run_id, {"approved": True}, store=store,
                               deps={"model": model})).result()
    assert done.status == "done" and done.state.answer == "Refunded 10 to ada."
    assert refunds == [("ada", 10.0)] and done.state.pending_call is None
    continued = model.requests[-1].messages
    assert [m["role"] for m in continued] == ["user", "assistant", "tool", "tool"]  # no new prompt
    assert continued[-1] == {"role": "tool", "tool_call_id": "call_2", "content": "refunded 10.0"}
    [ran] = await steps_of(store, done.run_id, "run_call")
    assert ran.extra["approval"] == {"tool": "refund", "approved": True, "comment": ""}
    assert ran.extra["usage"] == {"tool_calls": 1}


@pytest.mark.asyncio
async def test_a_rejected_call_is_not_run_and_the_model_hears_why(server):
    refunds: list[tuple[str, float]] = []
    graph = approval_graph(refunds)
    server.push(tool_calls(("refund", {"customer": "bob", "amount": 99})), text("Sorry, refused."))
    model = model_for(server)
    waiting, store = await run_graph(graph, model)
    assert waiting.state.pending_call["tool"] == "refund"
    done = await (await resume(graph, waiting.run_id, {"approved": False, "comment": "too much"},
                               store=store, deps={"model": model})).result()
    assert done.status == "done" and refunds == [] and done.state.answer == "Sorry, refused."
    last = server.bodies[-1]["messages"][-1]
    assert last["role"] == "tool" and "rejected this call (too much)" in last["content"]


@pytest.mark.asyncio
async def test_one_held_call_per_turn_and_invalid_arguments_are_not_held():
    def refund(amount: float) -> str:
        """Refund."""
        raise AssertionError("never run without approval")

    node = llm("a", prompt="x", history="messages", tools=[tool(refund, needs_approval=True)])
    model = ScriptedModel([
        tool_call("refund", {"amount": "lots"}),  # invalid: back to the model, nothing held
        [tool_call("refund", {"amount": 1}), tool_call("refund", {"amount": 2})],
    ])
    outcome = await node.run(Ticket(), ctx := context(deps={"model": model}))
    assert outcome.labels == ("approval",)
    assert outcome.update["pending_call"] == {"id": "call_2", "tool": "refund", "arguments": {"amount": 1}}
    messages = outcome.update["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert messages[-1]["tool_call_id"] == "call_3" and messages[-1]["content"].startswith("Not run: only one")
    assert [("error" in t, t.get("skipped"), t.get("held")) for t in ctx.record["trace"]] == [
        (True, None, None), (False, True, None), (False, None, "approval")]
    assert ctx.record["usage"]["tool_calls"] == 1  # the refused call; nothing ran


def test_approval_needs_a_history_and_an_approval_tool():
    def refund(amount: float) -> str:
        return "ok"

    with pytest.raises(GraphError, match="need approval.*history="):
        llm("a", prompt="x", into="answer", tools=[tool(refund, needs_approval=True)])
    with pytest.raises(GraphError, match="no tool that needs approval"):
        run_approved("r", llm("a", prompt="x", into="answer", tools=[refund]))
    node = llm("a", prompt="x", history="messages", tools=[tool(refund, needs_approval=True)])
    assert node.labels == ("approval", "done") and node.writes == frozenset({"messages", "pending_call"})


# -- the examples run ---------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("name, argv, expected", [
    ("triage", [], "transferred to refunds: charged twice"),
    ("refund_approval", [], "refunds made: [('ada', 42.0)]"),
    ("refund_approval", ["--reject"], "refunds made: []"),
])
async def test_examples_run_offline(name, argv, expected, capsys, monkeypatch):
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # pydantic resolves the annotations there
    spec.loader.exec_module(module)
    await module.main(argv)
    assert expected in capsys.readouterr().out
