"""LLM nodes that choose where the run goes: routers, handoffs, approved tool calls.

    g.add(llm_router("triage", prompt="{ticket}", fallback="human",
                     labels={"billing": "invoices, refunds", "tech": "bugs, outages"}),
          routes={"billing": "billing_agent", "tech": "tech_agent", "human": "inbox"})

    g.add(handoff("front_desk", prompt="{ticket}", history="messages", default="answered",
                  targets={"billing": "Questions about invoices and refunds",
                           "tech": "Bugs and outages"}),
          routes={"billing": "billing_agent", "tech": "tech_agent", "answered": END})

An LLM router asks the model for one label through structured output (a JSON
object whose `route` is an enum of the labels). An answer that is not one of
them is asked for again with the error, `max_validation_retries` times (1 by
default; 0 falls back at once), and then the router takes its `fallback`
label, which may be one the model is not offered (e.g. "human"). A transport
failure is not an invalid answer: it fails the node, and the run is resumable.
The step records `routing = {"label", "fallback_used"}` and the usage.

A handoff shows the model one tool per target, `transfer_to_<label>`, with the
target's description. When the model calls one, the node ends on that label
(the reason it gave goes to `reason_into`); with `history=` the conversation,
the transfer included, is in the state, so the target (typically an LLM node
with the same `history=`) carries on from it: a history that ends with a tool
result gets no new prompt, the model answers the conversation as it stands. When the model
answers with text instead, the node writes it to `into`/`history` and takes the
`default` label, which is required so that no route is taken by surprise.

`run_approved(name, agent)` completes the needs-approval pattern (see
`waypoint.nodes.llm_node`): after a gate wrote its decision, it runs the held call
or tells the model it was rejected, and clears `pending_call`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from waypoint._reducers import field_reducer
from waypoint.errors import GraphError, NodeError
from waypoint.nodes._llm_loop import Ending
from waypoint.nodes._tools import Tool, ToolResult, answered, check_call, execute, tool
from waypoint.nodes._toolsets import Toolset, split_tools
from waypoint.nodes.base import NO_RETRY, Node, Outcome, RetryPolicy, register
from waypoint.nodes.context import NodeContext
from waypoint.nodes.guardrails import TRIPPED, Guardrail, check_guardrails
from waypoint.nodes.llm_node import (
    APPROVAL,
    LLMNode,
    Template,
    _clip,
    _collects,
    check_llm_options,
    check_settings,
)
from waypoint.nodes.model import Model, ToolCall

__all__ = ["Handoff", "LLMRouter", "ToolApproval", "handoff", "llm_router", "run_approved"]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,48}$")  # providers' tool names, with room for the prefix


# -- LLM routers ---------------------------------------------------------------
@register
@dataclass(frozen=True)
class LLMRouter(LLMNode):
    """The model picks one of `labels` through a structured enum; `fallback` when it cannot."""

    kind: ClassVar[str] = "llm_router"
    structure_kind: ClassVar[str] = "router"  # its name before kinds had their own: graphs keep their hash
    noun: ClassVar[str] = "router"
    drawing: ClassVar[str] = "router"
    writes_label: ClassVar[bool] = True
    choices: tuple[tuple[str, str], ...] = ()  # (label, description) offered to the model
    fallback: str = ""

    def _system(self, state: Any) -> list[dict[str, Any]]:
        listed = "\n".join(f"- {label}: {text}" if text else f"- {label}" for label, text in self.choices)
        guide = f"Choose the one route that fits best. Routes:\n{listed}\nAnswer with the route's label."
        own = super()._system(state)
        return [{"role": "system", "content": f"{own[0]['content']}\n\n{guide}" if own else guide}]

    def _continues(self, past: list[dict[str, Any]]) -> bool:
        return False  # the prompt is the question to route on, whatever the history ends with

    def give_up(self, ctx: NodeContext, reply: str, exc: ValidationError) -> Any:
        ctx.record["invalid_output"] = _clip(reply, 500)
        return None  # the fallback

    @property
    def edges_beside_routes(self) -> bool:
        return False  # its labels are its routes; "tripped" is one of them when it has guardrails

    def judged(self, end: Ending) -> Any:
        """Its output guardrails check the label it chose (the fallback when the model gave none)."""
        return end.value.route if end.value is not None else self.fallback

    def _outcome(self, state: Any, ctx: NodeContext, fresh: list[dict[str, Any]], end: Ending) -> Outcome:
        label = self.judged(end)
        ctx.record["routing"] = {"label": label, "fallback_used": end.value is None}
        value = [label] if self.into and _collects(state, self.into) else label
        return Outcome(update={self.into: value} if self.into else None, labels=(label,))


def llm_router(
    name: str,
    *,
    labels: Sequence[str] | Mapping[str, str],
    fallback: str,
    prompt: Template | None = None,
    instructions: Template | None = None,
    history: str | None = None,
    into: str | None = None,
    model: Model | str | None = None,
    max_validation_retries: int = 1,
    guardrails: Sequence[Guardrail] = (),
    tripped_into: str | None = None,
    retry: RetryPolicy = NO_RETRY,
    timeout: float | None = None,
    concurrency: int | None = None,
    join: bool = False,
    **settings: Any,
) -> LLMRouter:
    """A router whose model picks one of `labels` (a list, or label -> description).

    `history=` is read (the conversation to route on), not extended; `into=`
    receives the chosen label. `guardrails` as for `llm`: input ones before the
    model is asked, output ones on the chosen label (a str); a trip takes the
    "tripped" route if the graph gives one, else fails the run with GuardrailTripped.
    Node options as for `llm` (retry, timeout, concurrency, join); extra keywords
    (temperature, ...) go to the model.
    """
    check_settings(llm_router, name, settings, LLMRouter)
    choices = tuple(labels.items()) if isinstance(labels, Mapping) else tuple((label, "") for label in labels)
    names = tuple(label for label, _ in choices)
    if not names or not all(isinstance(label, str) and label for label in names):
        raise GraphError(f"llm_router({name!r}) needs labels=, e.g. labels={{'billing': 'invoices'}}")
    if prompt is None and history is None:
        raise GraphError(f"llm_router({name!r}) has nothing to route on; give prompt= or history=")
    enum = Literal[names]  # type: ignore[valid-type]  # built at run time: one enum member per label
    output = create_model(f"{name}_route", route=(enum, Field(description="the chosen route")))
    if isinstance(model, str):
        settings["model"], model = model, None
    rails = _rails("llm_router", name, guardrails, tripped_into)
    return LLMRouter(
        name=name, writes=frozenset(f for f in (into, tripped_into) if f), retry=retry, timeout=timeout,
        concurrency=concurrency, join=join, labels=tuple(dict.fromkeys((*names, fallback, *rails[1]))),
        model=model, guardrails=rails[0], tripped_into=tripped_into,
        prompt=prompt, instructions=instructions, history=history, output=output, into=into,
        max_validation_retries=max_validation_retries, settings=settings, choices=choices,
        fallback=fallback,
    )


# -- handoffs --------------------------------------------------------------------
class _Transfer(BaseModel):
    reason: str = Field("", description="why the conversation goes there, for whoever takes it over")


def _never(**_: Any) -> None:  # a transfer is never called: the LLM node stops at it
    raise AssertionError("transfer tools are handled by the LLM node")


@register
@dataclass(frozen=True)
class Handoff(LLMNode):
    """An LLM node whose model transfers control to a target by calling `transfer_to_<label>`."""

    kind: ClassVar[str] = "handoff"
    structure_kind: ClassVar[str] = "router"  # its name before kinds had their own: graphs keep their hash
    noun: ClassVar[str] = "router"
    drawing: ClassVar[str] = "router"
    reason_into: str | None = None

    def judged(self, end: Ending) -> Any:
        """Its output guardrails check the target it transfers to, or its text answer."""
        return end.route if end.route is not None else end.value

    def _outcome(self, state: Any, ctx: NodeContext, fresh: list[dict[str, Any]], end: Ending) -> Outcome:
        outcome = super()._outcome(state, ctx, fresh, end)
        if end.route is None or end.route == APPROVAL:
            return outcome
        reason = end.arguments.get("reason", "")
        ctx.record["handoff"] = {"to": end.route, "reason": reason}
        if self.reason_into:
            return Outcome(update={**(outcome.update or {}), self.reason_into: reason}, labels=outcome.labels)
        return outcome


def handoff(
    name: str,
    *,
    targets: Mapping[str, str],
    default: str,
    prompt: Template | None = None,
    instructions: Template | None = None,
    history: str | None = None,
    into: str | None = None,
    reason_into: str | None = None,
    model: Model | str | None = None,
    tools: Sequence[Callable[..., Any] | Tool | Toolset] = (),
    max_turns: int = 10,
    stream: bool = False,
    pending: str = "pending_call",
    guardrails: Sequence[Guardrail] = (),
    tripped_into: str | None = None,
    retry: RetryPolicy = NO_RETRY,
    timeout: float | None = None,
    concurrency: int | None = None,
    join: bool = False,
    **settings: Any,
) -> Handoff:
    """An LLM node that hands the conversation to one of `targets` (label -> description).

    Routes: each target's label, and `default` when the model answers with text
    (a target's label or a label of its own, e.g. "answered"). Ordinary `tools`
    run in the loop before the model decides; one needing approval adds the
    "approval" route as for `llm(...)`. `guardrails` as for `llm`: input, tool
    calls, and output ones on its choice (the target label of a transfer, or its
    text answer); a trip takes "tripped" if routed, else fails with GuardrailTripped.
    Node options as for `llm` (retry, timeout,
    concurrency, join); extra keywords (temperature, ...) go to the model.
    """
    check_llm_options(name, into=into, history=history, max_turns=max_turns, max_validation_retries=0,
                      kind="handoff")
    check_settings(handoff, name, settings, Handoff)
    bad = [label for label in targets if not _TOOL_NAME.match(label)]
    if not targets or bad:
        raise GraphError(f"handoff({name!r}): target labels become tool names transfer_to_<label>, so they "
                         f"must be 1-48 letters, digits, _ or -; got {bad or 'no targets'}")
    transfers = tuple(Tool(name=f"transfer_to_{label}", description=text or f"Transfer to {label}.",
                           fn=_never, arguments=_Transfer, route=label) for label, text in targets.items())
    plain, toolsets = split_tools(name, tools)  # mcp_tools(...) apart from the tools
    specs = tuple(tool(t) for t in plain)
    held = [t.name for t in specs if t.needs_approval]
    if held and history is None:
        raise GraphError(f"handoff({name!r}): tools {held} need approval; give the node history=")
    if isinstance(model, str):
        settings["model"], model = model, None
    rails = _rails("handoff", name, guardrails, tripped_into)
    writes = frozenset(f for f in (into, history, reason_into, held and pending, tripped_into) if f)
    labels = (*targets, default, *((APPROVAL,) if held else ()), *rails[1])
    return Handoff(
        name=name, writes=writes, retry=retry, timeout=timeout, concurrency=concurrency, join=join,
        labels=tuple(dict.fromkeys(labels)), model=model, prompt=prompt, instructions=instructions,
        history=history, into=into, tools=(*transfers, *specs), toolsets=toolsets, max_turns=max_turns,
        stream=stream, settings=settings, done=default, pending=pending if held else None,
        reason_into=reason_into, guardrails=rails[0], tripped_into=tripped_into,
    )


def _rails(kind: str, name: str, guardrails: Sequence[Guardrail],
           tripped_into: str | None) -> tuple[tuple[Guardrail, ...], tuple[str, ...]]:
    """The checked guardrails, and the label they add ("tripped", which needs no route)."""
    rails = check_guardrails(name, guardrails)
    if tripped_into and not rails:
        raise GraphError(f"{kind}({name!r}): tripped_into= receives a guardrail's verdict, but the node has "
                         "no guardrails=; give it some or drop tripped_into=")
    return rails, (TRIPPED,) if rails else ()


# -- approved tool calls ------------------------------------------------------------
class ToolApproval(BaseModel):
    """A gate's answer about a held tool call: `g.gate("review", ToolApproval, into="approval")`."""

    approved: bool
    comment: str = ""


@register
@dataclass(frozen=True)
class ApprovedCall(Node):
    """Runs (or refuses) the call an LLM node held for approval; the result joins the history."""

    kind: ClassVar[str] = "approved_call"
    structure_kind: ClassVar[str] = "tool"  # its name before kinds had their own: graphs keep their hash
    noun: ClassVar[str] = "tool node"
    tools: tuple[Tool, ...] = ()
    pending: str = "pending_call"
    decision: str = "approval"
    history: str = "messages"

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        held = _get(state, self.pending)
        if held is None:
            return Outcome()  # nothing held: the gate was reached some other way
        call = ToolCall(_get(held, "id"), _get(held, "tool"), json.dumps(_get(held, "arguments") or {}))
        approved, comment = self._decision(state, ctx)
        ctx.record["approval"] = {"tool": call.name, "approved": approved, "comment": comment}
        if approved:
            result = await self._execute(call, ctx)
        else:
            why = f" ({comment})" if comment else ""
            result = answered(call, f"Not run: a human reviewer rejected this call{why}. Do not call it "
                              "again unless asked to.", rejected=comment or True)
        ctx.record["trace"] = [result.trace]
        past = [] if field_reducer(type(state), self.history) else list(_get(state, self.history) or [])
        return Outcome(update={self.history: [*past, result.message], self.pending: None})

    def child_graphs(self) -> tuple[Any, ...]:
        return tuple(t.graph for t in self.tools if getattr(t, "graph", None) is not None)

    async def _execute(self, call: ToolCall, ctx: NodeContext) -> ToolResult:
        checked = check_call({t.name: t for t in self.tools}, call)
        if isinstance(checked, ToolResult):
            return checked  # the tool is gone or the arguments no longer fit: the model hears why
        ctx.record["usage"] = {"tool_calls": 1}
        return await execute(*checked, call, ctx)

    def _decision(self, state: Any, ctx: NodeContext) -> tuple[bool, str]:
        decision = _get(state, self.decision)
        if isinstance(decision, bool):
            return decision, ""
        approved = _get(decision, "approved") if decision is not None else None
        if not isinstance(approved, bool):
            raise NodeError(
                f"run {ctx.run_id!r}, node {self.name!r}: state field {self.decision!r} holds "
                f"{decision!r}, not a decision; let the gate before this node write a ToolApproval "
                "(approved: bool, comment: str) there, "
                f"e.g. g.gate(..., ToolApproval, into={self.decision!r})",
                run_id=ctx.run_id, node=self.name)
        return approved, str(_get(decision, "comment") or "")


def run_approved(name: str, agent: LLMNode, *, decision: str = "approval", **options: Any) -> ApprovedCall:
    """The node that runs `agent`'s held call once the gate wrote its `decision`.

        g.add(llm("agent", prompt="{request}", history="messages", tools=[search, refund_tool]),
              routes={"approval": "review", "done": END})
        g.gate("review", ToolApproval, payload=lambda s: s.pending_call, into="approval")
        g.add(run_approved("run_call", agent))       # then back to "agent" through a loop guard
    """
    if agent.pending is None or agent.history is None:
        raise GraphError(f"run_approved({name!r}): LLM node {agent.name!r} has no tool that needs approval; "
                         "mark one with tool(fn, needs_approval=True)")
    return ApprovedCall(
        name=name, tools=agent.tools, pending=agent.pending, decision=decision, history=agent.history,
        writes=frozenset({agent.pending, agent.history}), **options,
    )


def _get(source: Any, name: str) -> Any:
    return source.get(name) if isinstance(source, dict) else getattr(source, name, None)
