"""LLM nodes: a model call (with an optional tool loop) whose reply goes into the state.

    g.add(llm("summarise", prompt="Summarise:\\n{text}", into="summary"))
    g.add(llm("extract", prompt="{email}", output=Invoice, into="invoice"))
    g.add(llm("agent", prompt="{question}", tools=[search, fetch], into="answer",
              instructions="Answer from the documents only.", temperature=0))
    g.add(llm("chat", history="messages", stream=True))   # multi-turn, token events

Which model answers: the node's `model=` if it is a `Model`; else `deps.model` when
the run's deps object (or dict) carries a `Model` there, which is how a whole graph
shares one configured model; else an `OpenAIModel` configured from the environment
(OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL). `model="gpt-4o"` (a name) picks the
model name for whichever of those answers.

The prompt is a `str.format` template over the state's fields (`{name}`,
`{doc.title}`; write `{{` for a literal brace) or a function of the state.
`into=` a list field with a reducer (`notes: Annotated[list[str], append]`)
collects the replies: each one is written as `[reply]`, one more item. The
node records in `ctx.record`: "usage" (input/output tokens, model calls and tool
calls, summed), "llm_calls" (usage per call) and "trace" (each tool call with its
arguments and result); with `stream=True` it emits `("token", {"text": delta})`.

A tool made with `tool(fn, needs_approval=True)` is not called by the node: the
node stops on its "approval" route with the call in `pending` (a state field,
"pending_call" by default) and the conversation so far in `history`; after a
gate, `run_approved(...)` runs or refuses the call and the node, activated
again, continues the conversation (a history that ends with a tool result gets
no new prompt). Such a node routes: `routes={"approval": ..., "done": ...}`.
Routers and handoffs built on this node are in `waypoint.nodes.routing`.

`guardrails=[...]` (`waypoint.nodes.guardrails`) checks the input before the
model is called, the reply, and each tool call; their verdicts are committed as
steps of the activation and listed in `ctx.record["guardrails"]`. A trip fails
the run with `GuardrailTripped`, unless the graph gives the node a "tripped"
route (`routes={"tripped": ...}` beside its edges): then it goes there, with the
verdict in `tripped_into` when that names a state field.
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ValidationError

from waypoint._messages import problems
from waypoint._reducers import field_reducer
from waypoint.errors import GraphError, GuardrailTripped, NodeError
from waypoint.nodes._llm_loop import APPROVAL, Ending, _Loop
from waypoint.nodes._tools import Tool, tool
from waypoint.nodes._toolsets import Toolset, offered, split_tools
from waypoint.nodes.base import NO_RETRY, Checks, Node, Outcome, RetryPolicy, register
from waypoint.nodes.context import NodeContext
from waypoint.nodes.guardrails import TRIPPED, Guardrail, check_guardrails
from waypoint.nodes.model import Model

__all__ = ["APPROVAL", "LLMNode", "llm"]

Template = str | Callable[[Any], str]
_SEQUENCES = (abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet, abc.Collection, abc.Iterable)


@register
@dataclass(frozen=True)
class LLMNode(Node):
    """Calls a model, runs the tools it asks for, writes the (parsed) reply to `into`."""

    kind: ClassVar[str] = "llm"
    noun: ClassVar[str] = "LLM node"
    decides: ClassVar[bool] = True  # its route is the model's: tests script it
    keeps_turns: ClassVar[bool] = True  # each finished tool turn is committed: never run twice
    model: Model | None = None
    prompt: Template | None = None  # the new user message; None when `history` ends with it
    instructions: Template | None = None  # the system message
    history: str | None = None  # state field: list of chat messages, extended with this turn
    output: type[BaseModel] | None = None  # structured output: the reply is parsed into it
    into: str | None = None  # state field that receives the text or the parsed object
    tools: tuple[Tool, ...] = ()
    toolsets: tuple[Toolset, ...] = ()  # tools listed at run time: MCP servers (nodes/mcp_tools.py)
    max_turns: int = 10  # most model calls, validation retries aside; tools asked on the last one fail
    max_validation_retries: int = 2
    stream: bool = False
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # model name, temperature...
    done: str | None = None  # route of a text answer when the node routes (None: static edges)
    pending: str | None = None  # state field receiving a call held for approval
    guardrails: tuple[Guardrail, ...] = ()  # checks of its input, reply and tool calls (nodes/guardrails.py)
    tripped_into: str | None = None  # state field receiving a trip's verdict on the "tripped" route

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        model = self._model(ctx)
        past = self._past(state)
        fresh = [] if self._continues(past) else self._fresh(state, ctx)
        async with offered(self, ctx) as (node, live):  # MCP servers' tools, for this activation
            end = await _Loop(node, model, live, state).run(self._system(state) + past + fresh)
        if end.tripped is not None:
            return self._tripped(ctx, end.tripped)
        return self._outcome(state, ctx, fresh, end)

    @property
    def edges_beside_routes(self) -> bool:
        """With guardrails and no routes of its own, a "tripped" route beside its edges."""
        return bool(self.guardrails) and self.done is None

    @property
    def optional_labels(self) -> tuple[str, ...]:
        """"tripped" needs no route: without one, a trip fails the run with GuardrailTripped."""
        return (TRIPPED,) if self.guardrails else ()

    def judged(self, end: Ending) -> Any:
        """What its output guardrails check: the reply (text or parsed); a router's, its choice."""
        return end.value

    def _tripped(self, ctx: NodeContext, verdict: dict[str, Any]) -> Outcome:
        """A guardrail tripped: the "tripped" route if the graph gives one, else GuardrailTripped."""
        if TRIPPED in ctx.routes:
            update = {self.tripped_into: verdict} if self.tripped_into else None
            return Outcome(update=update, labels=(TRIPPED,))
        stage, name, reason = verdict["stage"], verdict["guardrail"], verdict["reason"]
        on = f" on a call of tool {verdict['tool']!r}" if stage == "tool" else ""
        raise GuardrailTripped(
            f"run {ctx.run_id!r}, {self.noun} {self.name!r}: {stage} guardrail {name!r} tripped{on}: "
            f"{reason}. The verdict is kept, so resuming the run reports it again; to handle trips in the "
            "graph give the node a route, g.add(node, routes={'tripped': 'next_node'}), or fork the run "
            "before the node with a changed state.", run_id=ctx.run_id, node=self.name, guardrail=name,
            stage=stage, reason=reason, info=verdict.get("info"))

    def child_graphs(self) -> tuple[Any, ...]:
        """The graphs of its tools made with agent_tool, which run as child runs."""
        return tuple(t.graph for t in self.tools if getattr(t, "graph", None) is not None)

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.llm(name, self)

    def _outcome(self, state: Any, ctx: NodeContext, fresh: list[dict[str, Any]], end: Ending) -> Outcome:
        """The update and route for how the conversation ended."""
        update: dict[str, Any] = {}
        if end.route is None:
            if self.into:
                update[self.into] = [end.value] if _collects(state, self.into) else end.value
            new = [*fresh, {"role": "assistant", "content": end.reply}]
        else:  # stopped at a tool call: keep the whole turn so the conversation can go on
            new = [*fresh, *end.turn]
            if end.pending is not None and self.pending:
                update[self.pending] = end.pending
        if self.history:
            merges = field_reducer(type(state), self.history) is not None
            update[self.history] = new if merges else [*self._past(state), *new]
        route = end.route or self.done
        return Outcome(update=update or None, labels=(route,) if route else None)

    def _continues(self, past: list[dict[str, Any]]) -> bool:
        """A history ending in a tool result (an approved call, a transfer) goes on without a new prompt."""
        return bool(past) and past[-1].get("role") == "tool"

    def _fresh(self, state: Any, ctx: NodeContext) -> list[dict[str, Any]]:
        return [{"role": "user", "content": self._render(self.prompt, state, ctx)}] if self.prompt else []

    def give_up(self, ctx: NodeContext, reply: str, exc: ValidationError) -> Any:
        """Output still invalid after the validation retries: fail (routers take a fallback)."""
        assert self.output is not None
        err = self.error(
            ctx, f"the model's output does not fit {self.output.__name__} after "
            f"{self.max_validation_retries} validation retries: {problems(exc, whole='reply')}. Raw output: "
            f"{_clip(reply)}. Raise max_validation_retries, simplify the output model, or use a "
            "stronger model."
        )
        err.raw_output = reply  # type: ignore[attr-defined]
        raise err

    def _model(self, ctx: NodeContext) -> Model:
        if self.model is not None:
            return self.model
        deps = ctx.deps
        shared = deps.get("model") if isinstance(deps, dict) else getattr(deps, "model", None)
        if callable(getattr(shared, "complete", None)):  # any object with complete() will do
            return cast(Model, shared)
        from waypoint.nodes.model import OpenAIModel

        return OpenAIModel()

    def _system(self, state: Any) -> list[dict[str, Any]]:
        system = self.instructions(state) if callable(self.instructions) else self.instructions
        return [{"role": "system", "content": system}] if system else []

    def _past(self, state: Any) -> list[dict[str, Any]]:
        if not self.history:
            return []
        return [m.model_dump() if isinstance(m, BaseModel) else dict(m)
                for m in _field(state, self.history) or []]

    def _render(self, template: Template, state: Any, ctx: NodeContext) -> str:
        if callable(template):
            return str(template(state))
        fields = dict(state) if isinstance(state, (BaseModel, dict)) else vars(state)
        try:
            return template.format(**fields)
        except (KeyError, AttributeError, IndexError) as exc:
            raise self.error(
                ctx, f"its prompt template {template!r} cannot be filled from the state ({exc!r}); "
                f"state fields: {sorted(fields)}. Write {{{{ and }}}} for literal braces."
            ) from None

    def error(self, ctx: NodeContext, what: str) -> NodeError:
        return NodeError(f"run {ctx.run_id!r}, LLM node {self.name!r}: {what}",
                         run_id=ctx.run_id, node=self.name)


def _field(state: Any, name: str) -> Any:
    return state.get(name) if isinstance(state, dict) else getattr(state, name)


def _collects(state: Any, name: str) -> bool:
    """Whether `into` is a list field with a reducer, which takes each reply as one more item.

    `waypoint.graphs._checks_fit.one_item` makes the same decision at compile time.
    """
    info = getattr(type(state), "model_fields", {}).get(name)
    if info is None or field_reducer(type(state), name) is None:
        return False
    annotation = info.annotation
    while hasattr(annotation, "__supertype__") or type(annotation).__name__ == "TypeAliasType":
        annotation = getattr(annotation, "__supertype__", None) or annotation.__value__  # NewType, `type X =`
    cls = typing.get_origin(annotation) or annotation
    return cls in _SEQUENCES or (isinstance(cls, type) and issubclass(cls, (list, tuple, set, frozenset)))


def _clip(text: str, limit: int = 2000) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def llm(
    name: str,
    *,
    prompt: Template | None = None,
    into: str | None = None,
    model: Model | str | None = None,
    instructions: Template | None = None,
    history: str | None = None,
    output: type[BaseModel] | None = None,
    tools: Sequence[Callable[..., Any] | Tool | Toolset] = (),
    max_turns: int = 10,
    max_validation_retries: int = 2,
    stream: bool = False,
    pending: str = "pending_call",
    guardrails: Sequence[Guardrail] = (),
    tripped_into: str | None = None,
    retry: RetryPolicy = NO_RETRY,
    timeout: float | None = None,
    concurrency: int | None = None,
    join: bool = False,
    **settings: Any,
) -> LLMNode:
    """An LLM node for `g.add(...)`; extra keywords (temperature, ...) go to the model.

    `model` is a `Model`, or a model name for the model found at run time. With a
    tool that needs approval, the node routes ("approval" or "done"), needs
    `history=` and writes the held call to the `pending` field. Node options as
    for `g.node`: `retry`, `timeout`, `concurrency`, and `join=True` to run once
    every branch started towards the node has arrived (a fan-in that calls the model).
    `guardrails` check its input, reply and tool calls; a trip takes the node's
    "tripped" route when the graph gives one (writing the verdict to `tripped_into`),
    else fails the run with `GuardrailTripped`.
    """
    check_llm_options(name, into=into, history=history, max_turns=max_turns,
                      max_validation_retries=max_validation_retries)
    check_settings(llm, name, settings, LLMNode)
    plain, toolsets = split_tools(name, tools)  # mcp_tools(...) apart from the tools
    specs = tuple(tool(t) for t in plain)
    held = [t.name for t in specs if t.needs_approval]
    if held and history is None:
        raise GraphError(f"llm({name!r}): tools {held} need approval, so the conversation must survive "
                         "the gate; give the node history='messages' (a list field of the state)")
    if isinstance(model, str):
        settings["model"], model = model, None
    rails = check_guardrails(name, guardrails)
    if tripped_into and not rails:
        raise GraphError(f"llm({name!r}): tripped_into= receives a guardrail's verdict, but the node has no "
                         "guardrails=; give it some or drop tripped_into=")
    labels = (APPROVAL, "done") if held else ()
    return LLMNode(
        name=name, writes=frozenset(f for f in (into, history, held and pending, tripped_into) if f),
        retry=retry,
        timeout=timeout, concurrency=concurrency, join=join, model=model, prompt=prompt,
        instructions=instructions,
        history=history, output=output, into=into, tools=specs, toolsets=toolsets, max_turns=max_turns,
        max_validation_retries=max_validation_retries, stream=stream, settings=settings,
        labels=(*labels, TRIPPED) if rails else labels, done="done" if held else None,
        pending=pending if held else None, guardrails=rails, tripped_into=tripped_into,
    )


def check_llm_options(name: str, *, into: str | None, history: str | None, max_turns: int,
                      max_validation_retries: int, kind: str = "llm") -> None:
    if into is None and history is None:
        raise GraphError(f"{kind}({name!r}) has neither into= nor history=, so its reply would be lost; "
                         "name the state field that receives it, e.g. into='answer'")
    if max_turns < 1 or max_validation_retries < 0:
        raise GraphError(f"{kind}({name!r}): max_turns must be >= 1 and max_validation_retries >= 0")


_SETTING_HINTS = {
    "writes": "an LLM node writes the fields its into=, history= (and pending=) name",
    "settings": "give model settings as keywords, e.g. temperature=0",
    "labels": "give the node's routes in g.add(node, routes=...)",
}


def check_settings(factory: Callable[..., Any], name: str, settings: dict[str, Any], cls: type) -> None:
    """Refuse node options that would otherwise slip into the model's `**settings`.

    Every keyword a factory does not take goes to the model, so a node option it
    does not take (writes=, or tools= given to a router) would reach the provider.
    """
    bad = sorted(set(settings) & {f.name for f in fields(cls)})
    if not bad:
        return
    kind, given = factory.__name__, ", ".join(f"{b}=" for b in bad)
    taken = ", ".join(f"{p}=" for p in inspect.signature(factory).parameters if p not in ("name", "settings"))
    hints = "".join(f" ({_SETTING_HINTS[b]})" for b in bad if b in _SETTING_HINTS)
    raise GraphError(
        f"{kind}({name!r}) got {given}: node option(s) that {kind}() does not take, which would otherwise be "
        f"sent to the model as settings (keywords that are not {kind}()'s own go to the model). Remove "
        f"{given}{hints}; {kind}() takes {taken} and model settings such as temperature=0."
    )
