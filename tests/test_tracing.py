"""OpenTelemetry spans of a run (waypoint/engine/tracing.py), read back through the SDK's
in-memory exporter on a private provider: names, attributes, parents, links across a
resume, nothing for replayed steps, error status, content only when switched on."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

import waypoint as wp
from waypoint.testing import ScriptedModel, tool_call



class Approval(BaseModel):
    ok: bool


class Case(BaseModel):
    problem: str
    notes: str = ""
    answer: str = ""
    approval: Approval | None = None
    done: bool = False


def charge(amount: int) -> str:
    """Charge the card."""
    return f"charged {amount}"


def build(*, gate: bool = False, fail: bool = False) -> wp.Graph:
    g = wp.GraphBuilder(Case, name="support")

    @g.node
    def prepare(state: Case) -> dict:
        return {"notes": "checked"}

    g.add(wp.llm("react", prompt="{problem}", into="answer", tools=[charge]))

    @g.node
    def finish(state: Case) -> dict:
        if fail:
            raise ValueError("ledger closed")
        return {"done": True}

    g.edge(wp.START, "prepare")
    g.edge("prepare", "react")
    if gate:
        g.gate("review", Approval, into="approval")
        g.edge("react", "review")
        g.edge("review", "finish")
    else:
        g.edge("react", "finish")
    g.edge("finish", wp.END)
    return g.compile()


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def script() -> ScriptedModel:
    return ScriptedModel([tool_call("charge", {"amount": 5}), "refunded"])


def by_name(spans):
    out: dict[str, list] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


@pytest.mark.asyncio
async def test_spans_follow_the_genai_conventions_and_nest(store):
    tp, exporter = provider()
    result = await (await wp.start(build(), {"problem": "refund"}, store=store, run_id="t1",
                                   deps={"model": script()}, tracer_provider=tp)).result()
    assert result.status == "done"
    spans = by_name(exporter.get_finished_spans())
    assert sorted(spans) == ["chat ScriptedModel", "execute_tool charge", "invoke_agent react",
                             "invoke_workflow support", "waypoint.node finish", "waypoint.node prepare",
                             "waypoint.node react"]
    [run] = spans["invoke_workflow support"]
    [node] = spans["waypoint.node react"]
    [agent] = spans["invoke_agent react"]
    chats = spans["chat ScriptedModel"]
    [tool] = spans["execute_tool charge"]
    assert run.parent is None and node.parent.span_id == run.context.span_id
    assert agent.parent.span_id == node.context.span_id
    assert [c.parent.span_id for c in chats] == [agent.context.span_id] * 2
    assert tool.parent.span_id == agent.context.span_id
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == {run.context.trace_id}
    assert node.attributes["waypoint.run_id"] == "t1" and node.attributes["waypoint.node"] == "react"
    assert node.attributes["waypoint.activation"] and node.attributes["waypoint.attempt"] == 1
    assert node.attributes["waypoint.seq"] > spans["waypoint.node prepare"][0].attributes["waypoint.seq"]
    first = chats[0].attributes
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.provider.name"] == "scripted"
    assert first["gen_ai.request.model"] == "ScriptedModel"
    assert first["gen_ai.usage.input_tokens"] > 0 and "gen_ai.usage.output_tokens" in first
    assert chats[1].attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert tool.attributes["gen_ai.tool.name"] == "charge" and tool.attributes["gen_ai.tool.call.id"]
    every = [dict(s.attributes) for s in exporter.get_finished_spans()]
    assert not any(k in a for a in every for k in ("gen_ai.input.messages", "gen_ai.tool.call.result"))
    assert all(s.status.status_code != StatusCode.ERROR for s in exporter.get_finished_spans())


@pytest.mark.asyncio
async def test_content_is_recorded_only_when_switched_on(store):
    tp, exporter = provider()
    await (await wp.start(build(), {"problem": "refund"}, store=store, deps={"model": script()},
                          tracer_provider=tp, trace_content=True)).result()
    spans = by_name(exporter.get_finished_spans())
    assert "refund" in spans["chat ScriptedModel"][0].attributes["gen_ai.input.messages"]
    assert "refunded" in spans["chat ScriptedModel"][1].attributes["gen_ai.output.messages"]
    assert "charged 5" in spans["execute_tool charge"][0].attributes["gen_ai.tool.call.result"]


@pytest.mark.asyncio
async def test_a_resume_links_to_the_start_and_replays_nothing(store):
    graph = build(gate=True)
    tp, exporter = provider()
    first = await (await wp.start(graph, {"problem": "refund"}, store=store, run_id="t2",
                                  deps={"model": script()}, tracer_provider=tp)).result()
    assert first.status == "waiting"
    [started] = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow")]
    assert [e.name for e in started.events] == ["gate_waiting"]
    steps = await store.history("t2", after=0, upto=1)
    assert steps[0].kind == "event" and steps[0].extra["event"] == "traced"

    tp2, exporter2 = provider()  # another process, days later: another provider
    done = await (await wp.resume(graph, "t2", {"ok": True}, store=store, tracer_provider=tp2)).result()
    assert done.status == "done" and done.state.done
    spans = by_name(exporter2.get_finished_spans())
    assert sorted(spans) == ["invoke_workflow support", "waypoint.node finish", "waypoint.node review"]
    [run] = spans["invoke_workflow support"]
    assert run.attributes["waypoint.resumed"] is True
    [link] = run.links
    assert (link.context.trace_id, link.context.span_id) == (started.context.trace_id,
                                                             started.context.span_id)


@pytest.mark.asyncio
async def test_errors_set_span_status(store):
    tp, exporter = provider()
    result = await (await wp.start(build(fail=True), {"problem": "refund"}, store=store,
                                   deps={"model": script()}, tracer_provider=tp)).result(
        raise_on_failure=False)
    assert result.status == "failed"
    spans = by_name(exporter.get_finished_spans())
    [node] = spans["waypoint.node finish"]
    [run] = spans["invoke_workflow support"]
    assert node.status.status_code == StatusCode.ERROR and "ledger closed" in node.status.description
    assert run.status.status_code == StatusCode.ERROR
    assert spans["waypoint.node prepare"][0].status.status_code != StatusCode.ERROR


@pytest.mark.asyncio
async def test_no_tracer_provider_means_no_trace_step(store):
    await (await wp.start(build(), {"problem": "refund"}, store=store, run_id="t3",
                          deps={"model": script()})).result()
    assert all(s.extra.get("event") != "traced" for s in await store.history("t3"))


def test_without_opentelemetry_the_error_names_the_extra():
    code = textwrap.dedent("""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        import waypoint as wp
        from pydantic import BaseModel
        class S(BaseModel):
            x: int = 0
        g = wp.GraphBuilder(S, name="g")
        @g.node
        def a(state: S) -> dict:
            return {"x": 1}
        g.edge(wp.START, "a"); g.edge("a", wp.END)
        try:
            asyncio.run(wp.start(g.compile(), {}, tracer_provider=object()))
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'waypoint-workflows[otel]'" in out.stdout, out.stderr
    assert "tracer_provider=" in out.stdout
