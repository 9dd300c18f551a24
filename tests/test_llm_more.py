"""LLM nodes: node options beside model settings, replies into reducer lists, per-node scripts."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, handoff, llm, llm_router, run_sync
from waypoint.errors import GraphError
from waypoint.testing import ScriptedModel


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
