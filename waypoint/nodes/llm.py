"""LLM nodes: a model call (with an optional tool loop) whose reply goes into the state.

    g.add(llm("summarise", prompt="Summarise:\\n{text}", into="summary"))
    g.add(llm("extract", prompt="{email}", output=Invoice, into="invoice"))
    g.add(llm("agent", prompt="{question}", tools=[search, fetch], into="answer",
              instructions="Answer from the documents only.", temperature=0))
    g.add(llm("chat", history="messages", stream=True))   # multi-turn, token events

Which model answers: the node's `model=` if it is a `Model`; else `deps.model` when the run's deps object (or dict) carries a
`Model` there, which is how a whole graph shares one configured model; else an
`OpenAIModel` configured from the environment (OPENAI_API_KEY, OPENAI_BASE_URL,
OPENAI_MODEL). `model="gpt-4o"` (a name) picks the model name for whichever of
those answers.

The prompt is a `str.format` template over the state's fields (`{name}`,
`{doc.title}`; write `{{` for a literal brace) or a function of the state. The
node records in `ctx.record`: "usage" (input/output tokens, model calls and tool
calls, summed), "llm_calls" (usage per call) and "trace" (each tool call with its
arguments and result); with `stream=True` it emits `("token", {"text": delta})`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

from pydantic import BaseModel, ValidationError

from waypoint.errors import GraphError, NodeError
from waypoint.nodes._tools import Tool, run_calls, tool
from waypoint.nodes.base import NO_RETRY, Node, Outcome, RetryPolicy
from waypoint.nodes.context import NodeContext
from waypoint.nodes.model import Model, ModelRequest, ModelResponse

__all__ = ["LLMNode", "llm"]

Template = str | Callable[[Any], str]


@dataclass(frozen=True)
class LLMNode(Node):
    """Calls a model, runs the tools it asks for, writes the (parsed) reply to `into`."""

    kind: ClassVar[str] = "llm"
    model: Model | None = None
    prompt: Template | None = None  # the new user message; None when `history` ends with it
    instructions: Template | None = None  # the system message
    history: str | None = None  # state field: list of chat messages, extended with this turn
    output: type[BaseModel] | None = None  # structured output: the reply is parsed into it
    into: str | None = None  # state field that receives the text or the parsed object
    tools: tuple[Tool, ...] = ()
    max_turns: int = 10  # most model calls, validation retries aside; tools asked on the last one fail
    max_validation_retries: int = 2
    stream: bool = False
    settings: dict[str, Any] = field(default_factory=dict, hash=False)  # model name, temperature...

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        model = self._model(ctx)
        fresh = [{"role": "user", "content": self._render(self.prompt, state, ctx)}] if self.prompt else []
        messages = self._preamble(state) + fresh
        reply, value = await _Loop(self, model, ctx).run(messages)
        update: dict[str, Any] = {}
        if self.into:
            update[self.into] = value
        if self.history:
            new = [*fresh, {"role": "assistant", "content": reply}]
            update[self.history] = new if _has_reducer(state, self.history) else [*self._past(state), *new]
        return Outcome(update=update or None)

    def _model(self, ctx: NodeContext) -> Model:
        if self.model is not None:
            return self.model
        deps = ctx.deps
        shared = deps.get("model") if isinstance(deps, dict) else getattr(deps, "model", None)
        if callable(getattr(shared, "complete", None)):
            return shared
        from waypoint.nodes.model import OpenAIModel

        return OpenAIModel()

    def _preamble(self, state: Any) -> list[dict[str, Any]]:
        system = self.instructions(state) if callable(self.instructions) else self.instructions
        return ([{"role": "system", "content": system}] if system else []) + self._past(state)

    def _past(self, state: Any) -> list[dict[str, Any]]:
        if not self.history:
            return []
        return [m.model_dump() if isinstance(m, BaseModel) else dict(m) for m in _field(state, self.history) or []]

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
        return NodeError(f"run {ctx.run_id!r}, LLM node {self.name!r}: {what}", run_id=ctx.run_id, node=self.name)


def _field(state: Any, name: str) -> Any:
    return state.get(name) if isinstance(state, dict) else getattr(state, name)


def _has_reducer(state: Any, name: str) -> bool:
    """Whether the state field merges updates (`Annotated[list, append]`) instead of replacing.

    Mirrors the state schema's test without importing `waypoint.graphs` (nodes sit below it).
    """
    info = getattr(type(state), "model_fields", {}).get(name)
    metadata = info.metadata if info is not None else []
    return any(
        inspect.isfunction(m) or inspect.isbuiltin(m) or (callable(m) and hasattr(m, "fn"))
        for m in metadata
    )


class _Loop:
    """One activation's conversation: model calls, tool turns, validation retries."""

    def __init__(self, node: LLMNode, model: Model, ctx: NodeContext) -> None:
        self.node, self.model, self.ctx = node, model, ctx
        self.tools = {t.name: t for t in node.tools}
        # Filled in as the calls happen, so a failed activation still shows what it spent.
        self.usage = ctx.record["usage"] = {"input_tokens": 0, "output_tokens": 0, "calls": 0, "tool_calls": 0}
        self.calls: list[dict[str, Any]] = ctx.record.setdefault("llm_calls", [])
        self.trace: list[dict[str, Any]] = ctx.record.setdefault("trace", [])
        self.calls.clear()
        self.trace.clear()

    async def run(self, messages: list[dict[str, Any]]) -> tuple[str, Any]:
        """Call the model until it answers without tools; returns (raw reply, value for `into`)."""
        turns = invalid = 0
        while True:
            response = await self.call(messages)
            if response.tool_calls:
                turns += 1
                self.check_turns(turns, response)
                await self.run_tools(messages, response)
                continue
            reply = response.text or ""
            if self.node.output is None:
                return reply, reply
            try:
                return reply, self.node.output.model_validate_json(reply)
            except ValidationError as exc:
                invalid += 1
                self.check_invalid(invalid, reply, exc)
                messages += [{"role": "assistant", "content": reply}, _fix_request(self.node.output, exc)]

    async def call(self, messages: list[dict[str, Any]]) -> ModelResponse:
        node = self.node
        request = ModelRequest(list(messages), [t.spec for t in node.tools], node.output, dict(node.settings))
        on_token = (lambda text: self.ctx.emit("token", {"text": text})) if node.stream else None
        try:
            response = await self.model.complete(request, on_token=on_token)
        except NodeError as exc:
            raise node.error(self.ctx, str(exc)) from exc
        self.record(response)
        return response

    def record(self, response: ModelResponse) -> None:
        tokens = {k: int(response.usage.get(k, 0)) for k in ("input_tokens", "output_tokens")}
        self.calls.append({**tokens, "finish_reason": response.finish_reason})
        self.usage["calls"] += 1
        for key, value in tokens.items():
            self.usage[key] += value

    async def run_tools(self, messages: list[dict[str, Any]], response: ModelResponse) -> None:
        messages.append(_assistant_calls(response))
        self.usage["tool_calls"] += len(response.tool_calls)
        for result in await run_calls(self.tools, response.tool_calls, self.ctx):
            messages.append(result.message)
            self.trace.append(result.trace)

    def check_turns(self, turns: int, response: ModelResponse) -> None:
        if turns >= self.node.max_turns:
            names = [c.name for c in response.tool_calls]
            raise self.node.error(
                self.ctx, f"the model still asked for tools {names} after max_turns={self.node.max_turns} "
                "model calls; raise max_turns, or make the tools' results or the instructions more "
                "conclusive. The tool calls so far are in the node's trace."
            )

    def check_invalid(self, invalid: int, reply: str, exc: ValidationError) -> None:
        limit = self.node.max_validation_retries
        if invalid > limit:
            assert self.node.output is not None
            err = self.node.error(
                self.ctx, f"the model's output does not fit {self.node.output.__name__} after "
                f"{limit} validation retries: {_errors(exc)}. Raw output: {_clip(reply)}. Raise "
                "max_validation_retries, simplify the output model, or use a stronger model."
            )
            err.raw_output = reply  # type: ignore[attr-defined]
            raise err


def _assistant_calls(response: ModelResponse) -> dict[str, Any]:
    calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
             for c in response.tool_calls]
    return {"role": "assistant", "content": response.text, "tool_calls": calls}


def _fix_request(output: type[BaseModel], exc: ValidationError) -> dict[str, Any]:
    return {"role": "user", "content": (
        f"Your reply does not fit the required JSON schema of {output.__name__}: {_errors(exc)}. "
        "Reply again with only a JSON object that fits the schema."
    )}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


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
    tools: Sequence[Callable[..., Any] | Tool] = (),
    max_turns: int = 10,
    max_validation_retries: int = 2,
    stream: bool = False,
    retry: RetryPolicy = NO_RETRY,
    timeout: float | None = None,
    concurrency: int | None = None,
    **settings: Any,
) -> LLMNode:
    """An LLM node for `g.add(...)`; extra keywords (temperature, ...) go to the model.

    `model` is a `Model`, or a model name for the model found at run time.
    """
    if into is None and history is None:
        raise GraphError(f"llm({name!r}) has neither into= nor history=, so its reply would be lost; "
                         "name the state field that receives it, e.g. into='answer'")
    if max_turns < 1 or max_validation_retries < 0:
        raise GraphError(f"llm({name!r}): max_turns must be >= 1 and max_validation_retries >= 0")
    if isinstance(model, str):
        settings["model"], model = model, None
    return LLMNode(
        name=name, writes=frozenset(f for f in (into, history) if f), retry=retry, timeout=timeout,
        concurrency=concurrency, model=model, prompt=prompt, instructions=instructions,
        history=history, output=output, into=into, tools=tuple(tool(t) for t in tools),
        max_turns=max_turns, max_validation_retries=max_validation_retries, stream=stream,
        settings=settings,
    )
