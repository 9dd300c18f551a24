"""Guardrails for LLM nodes: checks on what goes into the model, what comes out, and each tool call.

    @input_guardrail
    def no_passwords(text: str) -> Verdict:
        if "password" in text.lower():
            return tripwire("asks for a password", info={"word": "password"})
        return passed()

    @tool_guardrail(tools=["refund"])
    def small_refunds(arguments: dict, ctx: GuardrailContext) -> Verdict:
        if arguments["amount"] > 100:
            return reject("Refunds over 100 need a human: offer to escalate instead.")
        return passed()

    on_topic = model_guardrail("on_topic", instructions="Trip when the question is not about billing.")

    g.add(llm("agent", prompt="{question}", into="answer", tools=[refund],
              guardrails=[no_passwords, on_topic, small_refunds]),
          routes={"tripped": "apologise"})    # without this route a trip fails the run
    g.edge("agent", END)

A guardrail is a function, sync or async, of what it checks and, if it takes a
second parameter, a `GuardrailContext`: an input guardrail gets the user's
latest message (text), an output guardrail the reply (the text, or the parsed
`output=` model), a tool guardrail the call's validated arguments (a dict). It
returns a `Verdict`: `passed()`, `tripwire(reason, info=...)`, or for a tool
call `reject(message)` (the model gets the message as the tool's result and
goes on). `model_guardrail` asks a model instead (the node's unless given one).

Input guardrails run, all of them, before the model is first called, so nothing
(no model call, no tool) happens before they passed; output guardrails run on
the reply; tool guardrails on each call before it runs. Every verdict of the
input and output stages and every trip is committed as a step of the node's
activation before the node goes on, so a resumed run does not ask again; see
`waypoint.nodes._guarding` for how the LLM node runs them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from pydantic import BaseModel, Field, ValidationError

from waypoint.errors import GraphError, NodeError
from waypoint.nodes._call import arity, call, is_async
from waypoint.nodes.model import Model, ModelRequest, ModelResponse

__all__ = [
    "TRIPPED", "Guardrail", "GuardrailContext", "Judgement", "Verdict", "input_guardrail", "model_guardrail",
    "output_guardrail", "passed", "reject", "tool_guardrail", "tripwire",
]

TRIPPED = "tripped"  # the route an LLM node takes when a guardrail trips, if the graph gives it one
Stage = Literal["input", "output", "tool"]
Action = Literal["pass", "trip", "reject"]
Ask = Callable[[ModelRequest, "Model | None"], Awaitable[ModelResponse]]


@dataclass(frozen=True)
class Verdict:
    """A guardrail's answer: `passed()`, `tripwire(reason)` or, for tool calls, `reject(message)`."""

    action: Action = "pass"
    reason: str = ""  # why it tripped; for a rejection, the message the model gets as the tool's result
    info: Any = None  # anything JSON-able to keep with the verdict (scores, matched words...)

    @property
    def tripped(self) -> bool:
        return self.action == "trip"


def passed(info: Any = None) -> Verdict:
    """The check passed."""
    return Verdict("pass", "", info)


def tripwire(reason: str, info: Any = None) -> Verdict:
    """The check failed: the node takes its "tripped" route, or the run fails with GuardrailTripped."""
    return Verdict("trip", reason, info)


def reject(message: str, info: Any = None) -> Verdict:
    """A tool guardrail's refusal: the call does not run and the model gets `message` as its result."""
    return Verdict("reject", message, info)


@dataclass
class GuardrailContext:
    """What a guardrail may want besides what it checks: where it runs and the conversation."""

    stage: Stage
    guardrail: str
    node: str
    run_id: str
    state: Any
    messages: list[dict[str, Any]]  # the conversation the model sees (input, tool) or saw (output)
    deps: Any = None
    tool: str | None = None  # the tool called (tool stage)
    ask: Ask | None = field(default=None, repr=False)  # a model call counted with the node's usage

    async def complete(self, request: ModelRequest, model: Model | None = None) -> ModelResponse:
        """Ask `model` (the node's model by default); the call counts in the node's usage and events."""
        if self.ask is None:
            raise NodeError(f"guardrail {self.guardrail!r} asks a model, but it runs outside an LLM node")
        return await self.ask(request, model)


Check = Callable[..., Any]


@dataclass(frozen=True)
class Guardrail:
    """A named check of one stage; made by input_guardrail, output_guardrail, tool_guardrail."""

    name: str
    stage: Stage
    fn: Check
    is_async: bool = False
    wants_ctx: bool = False
    tools: tuple[str, ...] | None = None  # tool stage: the tools it checks; None for every tool

    def applies_to(self, tool_name: str) -> bool:
        return self.tools is None or tool_name in self.tools

    async def judge(self, subject: Any, ctx: GuardrailContext) -> Verdict:
        """Run the check; its return value must be a Verdict (None passes)."""
        args = (subject, ctx) if self.wants_ctx else (subject,)
        try:
            result = await call(self.fn, args, run_async=self.is_async)
        except Exception as exc:
            exc.add_note(f"raised by {self.stage} guardrail {self.name!r} of LLM node {ctx.node!r}")
            raise
        return self._verdict(result, ctx)

    def _verdict(self, result: Any, ctx: GuardrailContext) -> Verdict:
        if result is None:
            return passed()
        where = f"run {ctx.run_id!r}, LLM node {ctx.node!r}: {self.stage} guardrail {self.name!r}"
        if not isinstance(result, Verdict):
            raise NodeError(f"{where} returned {result!r:.200}, not a Verdict; return passed(), "
                            "tripwire(reason) or, for a tool call, reject(message) "
                            "(from waypoint.nodes.guardrails)", run_id=ctx.run_id, node=ctx.node)
        if result.action == "reject" and self.stage != "tool":
            raise NodeError(f"{where} returned reject(...), which only a tool guardrail may (the model gets "
                            "the message as the tool's result); return tripwire(reason) to stop the node",
                            run_id=ctx.run_id, node=ctx.node)
        return result


def _make(fn: Check, stage: Stage, name: str | None, tools: Sequence[str] | None = None) -> Guardrail:
    if isinstance(fn, Guardrail) or not callable(fn):
        raise GraphError(f"{stage}_guardrail({fn!r}): give it a function of what it checks "
                         "(and optionally a GuardrailContext), returning a Verdict")
    label = name or str(getattr(fn, "__name__", type(fn).__name__))
    return Guardrail(name=label, stage=stage, fn=fn, is_async=is_async(fn), wants_ctx=arity(fn) == 2,
                     tools=tuple(tools) if tools is not None else None)


@overload
def input_guardrail(fn: Check, *, name: str | None = None) -> Guardrail: ...
@overload
def input_guardrail(fn: None = None, *, name: str | None = None) -> Callable[[Check], Guardrail]: ...
def input_guardrail(fn: Check | None = None, *, name: str | None = None) -> Any:
    """`@input_guardrail`: a check of the user's latest message, before the model is called."""
    return (lambda f: _make(f, "input", name)) if fn is None else _make(fn, "input", name)


@overload
def output_guardrail(fn: Check, *, name: str | None = None) -> Guardrail: ...
@overload
def output_guardrail(fn: None = None, *, name: str | None = None) -> Callable[[Check], Guardrail]: ...
def output_guardrail(fn: Check | None = None, *, name: str | None = None) -> Any:
    """`@output_guardrail`: a check of the model's reply (text, or the parsed `output=` model)."""
    return (lambda f: _make(f, "output", name)) if fn is None else _make(fn, "output", name)


@overload
def tool_guardrail(fn: Check, *, tools: Sequence[str] | None = None,
                   name: str | None = None) -> Guardrail: ...
@overload
def tool_guardrail(fn: None = None, *, tools: Sequence[str] | None = None,
                   name: str | None = None) -> Callable[[Check], Guardrail]: ...
def tool_guardrail(fn: Check | None = None, *, tools: Sequence[str] | None = None,
                   name: str | None = None) -> Any:
    """`@tool_guardrail(tools=["refund"])`: a check of each call's arguments before the tool runs.

    Returns passed() (the call runs), reject(message) (it does not; the model gets
    the message and goes on) or tripwire(reason) (the node stops as for any trip).
    """
    if isinstance(tools, str):
        raise GraphError(f"tool_guardrail(tools={tools!r}): give a list of tool names, "
                         f"e.g. tools=[{tools!r}]")
    return (lambda f: _make(f, "tool", name, tools)) if fn is None else _make(fn, "tool", name, tools)


class Judgement(BaseModel):
    """What a model guardrail asks the model for (structured output)."""

    tripped: bool = Field(description="true when the text breaks the rule, false when it is fine")
    reason: str = Field("", description="why, in one sentence")


_GUIDE = ("You check text against a rule for an application. Reply with a JSON object: "
          '"tripped" true when the text breaks the rule, else false, and "reason" in one sentence.')


def model_guardrail(name: str, *, instructions: str, stage: Stage = "input", model: Model | None = None,
                    tools: Sequence[str] | None = None, **settings: Any) -> Guardrail:
    """A guardrail that asks a model whether the text breaks the rule in `instructions`.

    The model (the node's, unless `model=` is given) answers a `Judgement`; its
    call counts in the node's usage and budget and shows as an LLM call in events,
    hooks and traces. Its request names the node `"<node>:<name>"`, so a per-node
    `ScriptedModel({"agent:on_topic": [...]})` scripts it apart from the node.
    """
    async def ask(subject: Any, ctx: GuardrailContext) -> Verdict:
        text = subject if isinstance(subject, str) else _text(subject)
        request = ModelRequest(
            [{"role": "system", "content": f"{_GUIDE}\n\nThe rule: {instructions}"},
             {"role": "user", "content": text}],
            response_format=Judgement, settings=dict(settings), node=f"{ctx.node}:{name}")
        response = await ctx.complete(request, model)
        try:
            judged = Judgement.model_validate_json(response.text or "")
        except ValidationError:
            raise NodeError(
                f"run {ctx.run_id!r}, LLM node {ctx.node!r}: model guardrail {name!r} got "
                f"{(response.text or '')[:300]!r}, not a Judgement JSON object "
                '({"tripped": bool, "reason": str}); use a model that supports structured output',
                run_id=ctx.run_id, node=ctx.node) from None
        if judged.tripped:
            reason = judged.reason or f"model guardrail {name!r} tripped"
            return tripwire(reason, info={"model": judged.reason})
        return passed({"model": judged.reason} if judged.reason else None)

    return Guardrail(name=name, stage=stage, fn=ask, is_async=True, wants_ctx=True,
                     tools=tuple(tools) if tools is not None else None)


def _text(subject: Any) -> str:
    if isinstance(subject, BaseModel):
        return subject.model_dump_json()
    return json.dumps(subject, default=repr)


def check_guardrails(node: str, rails: Sequence[Any]) -> tuple[Guardrail, ...]:
    """`llm(guardrails=...)` checked: Guardrails with distinct names, or a GraphError saying how."""
    bad = [r for r in rails if not isinstance(r, Guardrail)]
    if bad:
        fn = bad[0]
        what = getattr(fn, "__name__", repr(fn))
        raise GraphError(f"llm({node!r}, guardrails=...): {what} is not a guardrail; wrap it as "
                         f"input_guardrail({what}), output_guardrail({what}) or tool_guardrail({what}) "
                         "(from waypoint.nodes.guardrails), which says when it runs")
    names = [r.name for r in rails]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GraphError(f"llm({node!r}, guardrails=...): {twice} named twice; verdicts are kept by name, "
                         "give each its own with name=")
    return tuple(rails)
