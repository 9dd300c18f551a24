"""OpenTelemetry spans for a run, after the GenAI semantic conventions.

    from opentelemetry.sdk.trace import TracerProvider
    handle = await start(graph, input, store=store, tracer_provider=TracerProvider())

One `invoke_workflow {graph}` span per execution (a start or a resume), a
`waypoint.node {name}` span per activation under it, and for an LLM node an
`invoke_agent {node}` span holding a `chat {model}` span per model call and an
`execute_tool {tool}` span per tool call. Names live in `_semconv.py`.

Spans are derived from the run's events, so they describe live work only: steps
replayed on resume publish nothing. A traced start stores its trace context as an
`event` step ("traced", a W3C traceparent) right after the run's first snapshot; a
resume, days later or in another process, links its span to that one. The global
provider is never read or set. Needs `pip install 'waypoint-workflows[otel]'`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TraceFlags

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import Step
from waypoint.engine import _semconv as sc
from waypoint.engine.events import TERMINAL, Event

Key = tuple[str | None, str | None]  # (node, activation): child runs' nodes come as "sub/node"


class RunTracer:
    """The listener that turns one execution's events into spans."""

    def __init__(self, provider: Any, graph: str, run_id: str, *, content: bool = False) -> None:
        self.tracer = provider.get_tracer("waypoint")
        self.graph, self.run_id, self.content = graph, run_id, content
        self.run: Span | None = None
        self.nodes: dict[Key, Span] = {}
        self.last_of: dict[str, Span] = {}  # node name -> its latest span: a child run's parent
        self.agents: dict[Key, Span] = {}
        self.chats: dict[Key, Span] = {}
        self.tools: dict[tuple[Key, str], Span] = {}

    async def begin(self, store: Store, owner: str, *, resumed: bool) -> None:
        """Open the execution's span: linked to the stored one on resume, stored on start."""
        link = await stored_context(store, self.run_id) if resumed else None
        self.run = self.tracer.start_span(
            f"{sc.INVOKE_WORKFLOW} {self.graph}", links=[Link(link)] if link else None,
            attributes={sc.OPERATION_NAME: sc.INVOKE_WORKFLOW, sc.RUN_ID: self.run_id,
                        sc.GRAPH: self.graph, sc.RESUMED: resumed, sc.CONVERSATION_ID: self.run_id})
        if not resumed:
            info = await store.get_run(self.run_id)
            extra = {"event": sc.TRACED_EVENT, "traceparent": _traceparent(self.run.get_span_context())}
            await store.append(self.run_id, owner, [Step(seq=info.last_seq + 1, kind="event", node="",
                                                         activation="", at=time.time(), extra=extra)])

    def __call__(self, event: Event) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None and self.run is not None:
            handler(self, event)

    # -- runs and nodes -------------------------------------------------------
    def node_started(self, event: Event) -> None:
        parent = self.run
        if event.node and "/" in event.node:  # a child run's node: under its parent node's span
            parent = self.last_of.get(event.node.rsplit("/", 1)[0], parent)
        span = self._child(f"{sc.NODE} {event.node}", parent, {
            sc.RUN_ID: event.run_id, sc.NODE_NAME: event.node or "", sc.ACTIVATION: event.activation or "",
            sc.ATTEMPT: 1, sc.STARTED_SEQ: event.seq or 0})
        self.nodes[_key(event)] = self.last_of[event.node or ""] = span

    def node_retried(self, event: Event) -> None:
        span = self.nodes.get(_key(event))
        if span is not None:
            attempt = event.data.get("attempt", 1)
            span.add_event("retry", {"error": str(event.data.get("error")), sc.ATTEMPT: attempt})
            span.set_attribute(sc.ATTEMPT, int(event.data.get("attempt", 1)) + 1)

    def node_ended(self, event: Event) -> None:
        key = _key(event)
        error = event.data.get("error") if event.kind == "node_failed" else None
        for call in [k for k in self.tools if k[0] == key]:  # what a failure left open
            _end(self.tools.pop(call), error or "the node ended first")
        _end(self.chats.pop(key, None), error or "the node ended first")
        _end(self.agents.pop(key, None), error)
        span = self.nodes.pop(key, None)
        if span is not None:
            span.set_attribute(sc.SEQ, event.seq or 0)
            span.set_attribute(sc.ATTEMPT, int(event.data.get("attempt", 1)))
            _end(span, error, event.data.get("type"))

    def gate_waiting(self, event: Event) -> None:
        assert self.run is not None
        self.run.add_event("gate_waiting", {sc.NODE_NAME: event.node or "", sc.SEQ: event.seq or 0})

    def run_ended(self, event: Event) -> None:
        ok = event.kind in ("run_finished", "run_waiting")
        reason = event.data.get("error") or (None if ok else event.kind)
        for spans in (self.tools, self.chats, self.agents, self.nodes):
            for span in spans.values():
                _end(span, reason or "the run stopped first")
            spans.clear()
        assert self.run is not None
        self.run.set_attribute("waypoint.status", event.kind.removeprefix("run_"))
        _end(self.run, reason if event.kind != "run_waiting" else None)
        self.run = None

    # -- LLM calls and tools ----------------------------------------------------
    def llm_started(self, event: Event) -> None:
        key = _key(event)
        agent = self.agents.get(key)
        if agent is None:
            agent = self.agents[key] = self._child(f"{sc.INVOKE_AGENT} {event.node}", self.nodes.get(key), {
                sc.OPERATION_NAME: sc.INVOKE_AGENT, sc.AGENT_NAME: event.node or "",
                sc.PROVIDER_NAME: event.data["provider"], sc.REQUEST_MODEL: event.data["model"]})
        attributes = {sc.OPERATION_NAME: sc.CHAT, sc.PROVIDER_NAME: event.data["provider"],
                      sc.REQUEST_MODEL: event.data["model"]}
        if self.content:
            attributes[sc.INPUT_MESSAGES] = _json(event.data.get("messages"))
        self.chats[key] = self._child(f"{sc.CHAT} {event.data['model']}", agent, attributes)

    def llm_finished(self, event: Event) -> None:
        span = self.chats.pop(_key(event), None)
        if span is None:
            return
        span.set_attribute(sc.USAGE_INPUT_TOKENS, int(event.data.get("input_tokens", 0)))
        span.set_attribute(sc.USAGE_OUTPUT_TOKENS, int(event.data.get("output_tokens", 0)))
        if event.data.get("finish_reason"):
            span.set_attribute(sc.FINISH_REASONS, [str(event.data["finish_reason"])])
        if self.content and event.data.get("text") is not None:
            reply = [{"role": "assistant", "content": event.data["text"]}]
            span.set_attribute(sc.OUTPUT_MESSAGES, _json(reply))
        _end(span, event.data.get("error"), event.data.get("type"))

    def tool_started(self, event: Event) -> None:
        key = _key(event)
        attributes = {sc.OPERATION_NAME: sc.EXECUTE_TOOL, sc.TOOL_NAME: event.data["tool"],
                      sc.TOOL_CALL_ID: event.data["call_id"]}
        parent = self.agents.get(key) or self.nodes.get(key)
        name = f"{sc.EXECUTE_TOOL} {event.data['tool']}"
        self.tools[(key, event.data["call_id"])] = self._child(name, parent, attributes)

    def tool_finished(self, event: Event) -> None:
        span = self.tools.pop((_key(event), event.data["call_id"]), None)
        if span is not None:
            if self.content and "result" in event.data:
                span.set_attribute(sc.TOOL_CALL_ARGUMENTS, _json(event.data.get("arguments")))
                span.set_attribute(sc.TOOL_CALL_RESULT, _json(event.data["result"]))
            _end(span, event.data.get("error"), event.data.get("type"))

    def guardrail(self, event: Event) -> None:
        """A guardrail's verdict: a span event on the LLM node's agent span (or its node span)."""
        key = _key(event)
        span = self.agents.get(key) or self.nodes.get(key)
        if span is not None:
            data = event.data
            attributes = {"waypoint.guardrail.name": str(data.get("guardrail")),
                          "waypoint.guardrail.stage": str(data.get("stage")),
                          "waypoint.guardrail.verdict": str(data.get("verdict"))}
            if data.get("reason"):
                attributes["waypoint.guardrail.reason"] = str(data["reason"])
            if data.get("tool"):
                attributes[sc.TOOL_NAME] = str(data["tool"])
            span.add_event("guardrail", attributes)

    def _child(self, name: str, parent: Span | None, attributes: dict[str, Any]) -> Span:
        context = trace.set_span_in_context(parent or self.run)  # type: ignore[arg-type]
        span: Span = self.tracer.start_span(name, context=context, attributes=attributes)
        return span


_HANDLERS = {
    "node_started": RunTracer.node_started, "node_retried": RunTracer.node_retried,
    "node_finished": RunTracer.node_ended, "node_failed": RunTracer.node_ended,
    "gate_waiting": RunTracer.gate_waiting, **dict.fromkeys(TERMINAL, RunTracer.run_ended),
    "llm_call_started": RunTracer.llm_started, "llm_call_finished": RunTracer.llm_finished,
    "tool_started": RunTracer.tool_started, "tool_finished": RunTracer.tool_finished,
    "guardrail_verdict": RunTracer.guardrail,
}


def _key(event: Event) -> Key:
    return (event.node, event.activation)


def _end(span: Span | None, error: str | None, kind: str | None = None) -> None:
    if span is None:
        return
    if error:
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
        span.set_attribute(sc.ERROR_TYPE, kind or "error")
    span.end()


def _json(value: Any) -> str:
    return json.dumps(value, default=repr)


def _traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


async def stored_context(store: Store, run_id: str) -> SpanContext | None:
    """The trace context a traced start stored (its first step), or None."""
    for step in await store.history(run_id, after=0, upto=1):
        parent = step.extra.get("traceparent") if step.extra.get("event") == sc.TRACED_EVENT else None
        if isinstance(parent, str) and parent.count("-") == 3:
            _, trace_id, span_id, flags = parent.split("-")
            return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                               trace_flags=TraceFlags(int(flags, 16)))
    return None
