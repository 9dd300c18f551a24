"""Lifecycle hooks (waypoint/engine/hooks.py): fired from the run's events, for live work
only; a hook that raises is reported and the run goes on, unless it is strict."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import waypoint as wp
from waypoint.testing import ScriptedModel, tool_call

pytestmark = pytest.mark.asyncio


class Approval(BaseModel):
    ok: bool


class Case(BaseModel):
    problem: str
    answer: str = ""
    approval: Approval | None = None
    done: bool = False


def charge(amount: int) -> str:
    """Charge the card."""
    return f"charged {amount}"


def build() -> wp.Graph:
    g = wp.GraphBuilder(Case, name="support")
    g.add(wp.llm("react", prompt="{problem}", into="answer", tools=[charge]))
    g.gate("review", Approval, into="approval")

    @g.node
    def finish(state: Case) -> dict:
        return {"done": True}

    g.edge(wp.START, "react")
    g.edge("react", "review")
    g.edge("review", "finish")
    g.edge("finish", wp.END)
    return g.compile()


class Record(wp.RunHooks):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattribute__(self, name: str):
        if name.startswith("on_"):
            return lambda event: self.seen.append(f"{name[3:]}:{event.node or '-'}")
        return super().__getattribute__(name)


def script() -> ScriptedModel:
    return ScriptedModel([tool_call("charge", {"amount": 5}), "refunded"])


async def test_every_hook_fires_in_order_and_a_resume_fires_only_live_work(store):
    graph, hooks = build(), Record()
    first = await (await wp.start(graph, {"problem": "refund"}, store=store, run_id="h1",
                                  deps={"model": script()}, hooks=hooks)).result()
    assert first.status == "waiting"
    assert hooks.seen == ["run_start:-", "node_start:react", "llm_start:react", "llm_end:react",
                          "tool_start:react", "tool_end:react", "llm_start:react", "llm_end:react",
                          "node_end:react", "gate_waiting:review", "run_end:-"]
    again = Record()
    done = await (await wp.resume(graph, "h1", {"ok": True}, store=store, hooks=again)).result()
    assert done.status == "done"
    assert again.seen == ["run_start:-", "node_start:review", "node_end:review", "gate_answered:review",
                          "node_start:finish", "node_end:finish", "run_end:-"]


async def test_hook_events_carry_what_happened(store):
    got: dict[str, dict] = {}

    class Keep(wp.RunHooks):
        def on_llm_end(self, event: wp.Event) -> None:
            got.setdefault("llm", event.data)

        def on_tool_end(self, event: wp.Event) -> None:
            got["tool"] = event.data

        def on_gate_answered(self, event: wp.Event) -> None:
            got["gate"] = event.data

    graph = build()
    await (await wp.start(graph, {"problem": "refund"}, store=store, run_id="h2",
                          deps={"model": script()}, hooks=Keep())).result()
    await (await wp.resume(graph, "h2", {"ok": True}, store=store, by="ann", hooks=Keep())).result()
    assert got["llm"]["finish_reason"] == "tool_calls" and got["llm"]["input_tokens"] > 0
    assert got["tool"]["tool"] == "charge" and got["tool"]["result"] == "charged 5"
    assert got["gate"]["answer"] == {"ok": True} and got["gate"]["by"] == "ann"


class Broken(wp.RunHooks):
    def on_node_end(self, event: wp.Event) -> None:
        raise RuntimeError("metrics backend down")


async def test_a_hook_that_raises_is_reported_and_the_run_goes_on(store):
    handle = await wp.start(build(), {"problem": "refund"}, store=store, deps={"model": script()},
                            hooks=Broken())
    result = await handle.result()
    assert result.status == "waiting"
    failed = [e for e in handle._bus.history if e.kind == "hook_failed"]
    assert [e.node for e in failed] == ["react"]
    assert failed[0].data["hook"] == "hook Broken.on_node_end"
    assert "metrics backend down" in failed[0].data["error"]


async def test_a_strict_hook_that_raises_fails_the_run(store):
    class Strict(Broken):
        strict = True

    result = await (await wp.start(build(), {"problem": "refund"}, store=store, run_id="h4",
                                   deps={"model": script()}, hooks=[Record(), Strict()])).result(
        raise_on_failure=False)
    assert result.status == "failed" and isinstance(result.error, wp.RunError)
    assert "strict hook Strict.on_node_end" in str(result.error) and "resume" in str(result.error)
    assert (await store.get_run("h4")).status == "failed"


async def test_a_strict_run_start_hook_fails_the_run_before_any_node(store):
    class StrictStart(wp.RunHooks):
        strict = True

        def on_run_start(self, event: wp.Event) -> None:
            raise RuntimeError("no quota")

    model = script()
    result = await (await wp.start(build(), {"problem": "refund"}, store=store, deps={"model": model},
                                   hooks=StrictStart())).result(raise_on_failure=False)
    assert result.status == "failed" and "on_run_start" in str(result.error)
    assert model.requests == []


async def test_hooks_must_be_run_hooks():
    with pytest.raises(TypeError, match=r"subclass waypoint\.RunHooks"):
        await wp.start(build(), {"problem": "x"}, hooks=[print])
