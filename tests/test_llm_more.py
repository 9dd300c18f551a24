"""LLM nodes: node options beside model settings, replies into reducer lists, per-node scripts."""

from __future__ import annotations

import asyncio
import operator
import re
from typing import Annotated, Any, Sequence

import pytest
from pydantic import BaseModel, create_model

from waypoint import (
    END, START, GraphBuilder, ModelRequest, NodeContext, agent_tool, append, handoff, llm, llm_router, reducer,
    run_sync,
)
from waypoint.errors import GraphError, NodeError, UpdateError
from waypoint.graphs.state import StateSchema
from waypoint.testing import ScriptedModel, ScriptExhausted, tool_call


# -- node options are not model settings ---------------------------------------------
class Parts(BaseModel):
    topic: str = "tides"
    a: str = ""
    b: str = ""
    out: str = ""


def fan_in(synthesize) -> GraphBuilder[Parts]:
    g = GraphBuilder(Parts)
    g.node(lambda s: {"a": "moon"}, name="left")
    g.node(lambda s: {"b": "sun"}, name="right")
    g.add(synthesize)
    g.edge(START, ["left", "right"])
    g.edge(["left", "right"], synthesize.name)
    g.edge(synthesize.name, END)
    return g


def test_an_llm_join_node_calls_the_model_once_after_every_branch() -> None:
    model = ScriptedModel(["Both pull on the sea."])  # one reply: a second activation would exhaust it
    node = llm("synthesize", prompt="{a} and {b}", into="out", model=model, join=True, temperature=0)
    assert node.join and node.settings == {"temperature": 0}
    result = run_sync(fan_in(node).compile(), {})
    assert result.state.out == "Both pull on the sea."
    assert [r.messages[-1]["content"] for r in model.requests] == ["moon and sun"]
    assert model.requests[0].settings == {"temperature": 0}


def test_llm_router_and_handoff_take_join_too() -> None:
    router = llm_router("pick", labels=["x", "y"], fallback="y", prompt="{a}", join=True, seed=1)
    agent = handoff("desk", targets={"x": "X"}, default="done", prompt="{a}", into="out", join=True)
    assert (router.join, router.settings) == (True, {"seed": 1})
    assert (agent.join, agent.settings) == (True, {})


@pytest.mark.parametrize(("factory", "kwargs", "option"), [
    (llm, {"prompt": "{a}", "into": "out"}, "writes"),
    (llm, {"prompt": "{a}", "into": "out"}, "labels"),
    (llm, {"prompt": "{a}", "into": "out"}, "settings"),
    (llm_router, {"labels": ["x"], "fallback": "y", "prompt": "{a}"}, "tools"),
    (llm_router, {"labels": ["x"], "fallback": "y", "prompt": "{a}"}, "max_turns"),
    (handoff, {"targets": {"x": "X"}, "default": "done", "prompt": "{a}", "into": "out"}, "output"),
])
def test_a_node_option_among_the_model_settings_is_refused(factory, kwargs, option) -> None:
    with pytest.raises(GraphError) as caught:
        factory("n", **kwargs, **{option: None})
    message = str(caught.value)
    kind = factory.__name__
    assert message.startswith(f"{kind}('n') got {option}=: node option(s) that {kind}() does not take")
    assert "would otherwise be sent to the model as settings" in message  # what went wrong
    assert f"Remove {option}=" in message and "join=" in message  # how to fix: what it does take


# -- a reply into a list field with a reducer is one more item ---------------------------
class Finding(BaseModel):
    claim: str


class Notes(BaseModel):
    topic: str = "tides"
    notes: Annotated[list[str], append] = []
    findings: Annotated[list[Finding], append] = []
    routes: Annotated[list[str], append] = []
    plain: list[str] = []
    text: Annotated[str, reducer(operator.add)] = ""


def chain(*nodes) -> GraphBuilder[Notes]:
    g = GraphBuilder(Notes)
    for node in nodes:
        g.add(node)
    names = [START, *(n.name for n in nodes), END]
    for source, target in zip(names, names[1:]):
        g.edge(source, target)
    return g


def test_replies_into_an_append_list_are_collected_one_item_each() -> None:
    g = GraphBuilder(Notes)
    g.add(llm("first", prompt="{topic}", into="notes"))
    g.add(llm("second", prompt="{notes}", into="notes"))
    g.add(llm("find", prompt="{topic}", output=Finding, into="findings"))
    g.add(llm_router("route", labels=["deep", "done"], fallback="done", prompt="{notes}", into="routes"),
          routes={"deep": END, "done": END})
    for source, target in [(START, "first"), ("first", "second"), ("second", "find"), ("find", "route")]:
        g.edge(source, target)
    model = ScriptedModel(["Moon.", "Sun.", Finding(claim="gravity"), {"route": "deep"}])
    state = run_sync(g.compile(), {"notes": ["Earlier."]}, deps={"model": model}).state
    assert state.notes == ["Earlier.", "Moon.", "Sun."]
    assert state.findings == [Finding(claim="gravity")] and state.routes == ["deep"]
    assert model.requests[1].messages[-1]["content"] == "['Earlier.', 'Moon.']"


def test_parallel_llm_nodes_may_append_to_one_list() -> None:
    g = GraphBuilder(Notes)
    for name in ("a", "b", "c"):
        g.add(llm(name, prompt=name, into="notes"))
    g.edge(START, ["a", "b", "c"])
    g.edge(["a", "b", "c"], END)
    state = run_sync(g.compile(), {}, deps={"model": ScriptedModel(["x", "y", "z"])}).state
    assert sorted(state.notes) == ["x", "y", "z"]


def test_a_reducer_that_is_not_a_list_gets_the_reply_itself() -> None:
    state = run_sync(chain(llm("one", prompt="1", into="text"), llm("two", prompt="2", into="text")).compile(),
                     {}, deps={"model": ScriptedModel(["ab", "cd"])}).state
    assert state.text == "abcd"


@pytest.mark.parametrize(("node", "problem"), [
    (llm("n", prompt="{topic}", into="plain"),
     "LLM node 'n' writes its reply as str, which cannot fit field 'plain' of type list[str]"),
    (llm("n", prompt="{topic}", output=Finding, into="notes"),
     "LLM node 'n' writes its reply as list[Finding], which cannot fit field 'notes' of type list[str]"),
])
def test_compile_still_refuses_a_reply_that_cannot_fit(node, problem: str) -> None:
    with pytest.raises(GraphError, match=re.escape(problem)):
        chain(node).compile()


def _tuple_concat(current: tuple[str, ...], update: tuple[str, ...]) -> tuple[str, ...]:
    return (*current, *update)


@pytest.mark.asyncio
@pytest.mark.parametrize("annotation", [
    Annotated[list[str], append], Annotated[Sequence[str], append],
    Annotated[tuple[str, ...], reducer(_tuple_concat)], Annotated[str, reducer(operator.add)],
    list[str], str, Annotated[list[int], append], Annotated[int, reducer(operator.add)],
])
async def test_compile_and_run_agree_on_where_a_reply_fits(annotation: Any) -> None:
    """compile() accepts the reply's field exactly when the node's update validates at run time."""
    state = create_model("OneField", field=(annotation, None))
    g = GraphBuilder(state)
    node = g.add(llm("n", prompt="hi", into="field", model=ScriptedModel(["reply"])))
    g.edge(START, "n")
    g.edge("n", END)
    try:
        g.compile()
        accepted = True
    except GraphError:
        accepted = False
    outcome = await node.run(state(), NodeContext(run_id="r", node="n", activation="n:1"))
    try:
        StateSchema(state).check_update("n", outcome.update, run_id="r")
        fits = True
    except UpdateError:
        fits = False
    assert accepted == fits


# -- ScriptedModel with a script per node --------------------------------------------
class Incident(BaseModel):
    logs: str = ""
    metrics: str = ""
    synthesis: str = ""


def incident(delayed: str) -> GraphBuilder[Incident]:
    """Two parallel LLM branches; `delayed` starts late, so the other one asks the model first."""
    g = GraphBuilder(Incident)
    for branch in ("logs", "metrics"):
        async def wait(state: Incident, seconds: float = 0.05 if branch == delayed else 0) -> None:
            await asyncio.sleep(seconds)
        g.node(wait, name=f"{branch}_wait", writes=[])
        g.add(llm(branch, prompt=f"Inspect the {branch}", into=branch))
        g.edge(f"{branch}_wait", branch)
    g.add(llm("commander", prompt="{logs} / {metrics}", into="synthesis", join=True))
    g.edge(START, ["logs_wait", "metrics_wait"])
    g.edge(["logs", "metrics"], "commander")
    g.edge("commander", END)
    return g


@pytest.mark.parametrize("delayed", ["logs", "metrics"])
def test_each_node_consumes_its_own_script_whatever_order_they_run_in(delayed: str) -> None:
    model = ScriptedModel({"logs": ["500s since 00:12"], "metrics": ["DB saturated"],
                           "commander": ["Roll back."]})
    state = run_sync(incident(delayed).compile(), {}, deps={"model": model}).state
    assert (state.logs, state.metrics, state.synthesis) == ("500s since 00:12", "DB saturated", "Roll back.")
    first = {"logs": "metrics", "metrics": "logs"}[delayed]
    assert [r.node for r in model.requests] == [first, delayed, "commander"]  # the order did change
    assert model.requests_for("commander")[0].messages[-1]["content"] == "500s since 00:12 / DB saturated"
    assert model.remaining == 0


def test_a_node_without_a_script_or_with_none_left_is_named() -> None:
    g = incident("logs")
    missing = ScriptedModel({"logs": ["a"], "commander": ["c"]})
    with pytest.raises(NodeError) as caught:
        run_sync(g.compile(), {}, deps={"model": missing})
    assert caught.value.node == "metrics"
    assert "ScriptedModel has no script for node 'metrics' (it scripts ['commander', 'logs'])" in str(caught.value)
    assert "ScriptedModel({'metrics': [...], ...}) or .add(..., node='metrics')" in str(caught.value)

    used_up = ScriptedModel({"logs": ["a"], "metrics": ["b"], "commander": []})
    with pytest.raises(NodeError) as caught:
        run_sync(g.compile(), {}, deps={"model": used_up})
    assert "ran out of replies for node 'commander': its call 1 has nothing scripted" in str(caught.value)
    assert ".add(..., node='commander')" in str(caught.value)


@pytest.mark.asyncio
async def test_per_node_scripts_grow_with_add_and_refuse_what_they_cannot_tell_apart() -> None:
    model = ScriptedModel({"a": ["one"]})
    model.add("two", node="a")
    model.add("three", node="b")
    assert model.remaining == 3
    replies = [await model.complete(ModelRequest([], node=n)) for n in ("b", "a", "a")]
    assert [r.text for r in replies] == ["three", "one", "two"]
    with pytest.raises(ScriptExhausted, match="this request names no node"):
        await model.complete(ModelRequest([]))
    with pytest.raises(ValueError, match=r"name the node, e.g. .add\('Hi', node='agent'\)"):
        model.add("four")
    with pytest.raises(ValueError, match=r"replies in call order .* drop node=, or build ScriptedModel\(\{'a'"):
        ScriptedModel(["x"]).add("y", node="a")
    with pytest.raises(TypeError, match="maps a node's name to a list of its replies"):
        ScriptedModel({"a": "one"})
    with pytest.raises(TypeError, match="maps a node's name to a list of its replies"):
        ScriptedModel({"a": tool_call("search")})


def test_a_request_names_the_llm_node_asking_also_inside_an_agent_tool() -> None:
    class Query(BaseModel):
        topic: str = "tides"
        report: str = ""

    g = GraphBuilder(Query)
    macro = llm("macro", prompt="Outlook for {region}", into="outlook")
    g.add(llm("manager", prompt="{topic}", into="report",
              tools=[agent_tool(macro, name="outlook", description="Macro outlook")]))
    g.edge(START, "manager")
    g.edge("manager", END)
    model = ScriptedModel({"manager": [tool_call("outlook", {"region": "EU"}), "Calm."], "macro": ["Mild."]})
    assert run_sync(g.compile(), {}, deps={"model": model}).state.report == "Calm."
    assert [r.node for r in model.requests] == ["manager", "macro", "manager"]
