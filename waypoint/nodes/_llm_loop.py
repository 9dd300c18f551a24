"""One LLM node activation's conversation: model calls, tool turns, validation retries.

    end = await _Loop(node, model, ctx).run(messages)   # LLMNode.run, and nothing else

Each finished tool turn is committed through `ctx.commit_item` and replayed on
resume (see docs/design.md, "LLM routing, handoffs, agents as tools"); a
transfer or a call needing approval ends the node with an `Ending` that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from waypoint._messages import problems
from waypoint.errors import NodeError
from waypoint.nodes._guarding import Guards
from waypoint.nodes._tools import Tool, ToolResult, answered, check_call, parsed, run_calls
from waypoint.nodes.context import NodeContext
from waypoint.nodes.model import Model, ModelRequest, ModelResponse, ToolCall

if TYPE_CHECKING:
    from waypoint.nodes.llm_node import LLMNode

APPROVAL = "approval"  # the route of an LLM node that holds a call for a human's approval


@dataclass
class Ending:
    """How an activation's conversation ended: a reply, or a tool call that stops the node."""

    reply: str | None
    value: Any = None  # for `into`: the text or the parsed output
    route: str | None = None  # set when a tool call ended it (a transfer, a held call)
    turn: list[dict[str, Any]] = field(default_factory=list)  # the messages after the prompt
    pending: dict[str, Any] | None = None  # the call held for approval
    arguments: dict[str, Any] = field(default_factory=dict)  # of the call that ended it
    tripped: dict[str, Any] | None = None  # the verdict of the guardrail that stopped it (_guarding.py)


class _Loop:
    """One activation's conversation: model calls, tool turns, validation retries."""

    def __init__(self, node: LLMNode, model: Model, ctx: NodeContext, state: Any = None) -> None:
        self.node, self.model, self.ctx, self.state = node, model, ctx, state
        self.tools = {t.name: t for t in node.tools}
        # Filled in as the calls happen, so a failed activation still shows what it spent.
        self.usage = ctx.record["usage"] = {
            "input_tokens": 0, "output_tokens": 0, "calls": 0, "tool_calls": 0}
        self.calls: list[dict[str, Any]] = ctx.record.setdefault("llm_calls", [])
        self.trace: list[dict[str, Any]] = ctx.record.setdefault("trace", [])
        self.calls.clear()
        self.trace.clear()
        self.kept = (0, 0, 0)  # messages, trace entries and calls already committed as turns
        self.guards = Guards(self)  # the node's guardrails, and their verdicts committed before

    async def run(self, messages: list[dict[str, Any]]) -> Ending:
        """Call the model until it answers without tools or a tool call stops the node."""
        start, invalid = len(messages), 0
        turns = self.restore(messages)
        stopped = await self.guards.before(messages)  # a committed trip or reply; the input guardrails
        if stopped is not None:
            return stopped
        while True:
            response = await self.call(messages)
            if response.tool_calls:
                turns += 1
                end = await self.run_tools(messages, response, turns)
                if end is not None:
                    end.turn = messages[start:]
                    held = end.route in (None, APPROVAL)  # a tool trip or a held call: no choice made
                    return end if held else await self.guards.after(end, messages)  # a transfer
                await self.keep(turns - 1, messages)
                continue
            reply = response.text or ""
            if self.node.output is None:
                return await self.guards.after(Ending(reply, reply), messages)
            try:
                value = self.node.output.model_validate_json(reply)
            except ValidationError as exc:
                invalid += 1
                if invalid > self.node.max_validation_retries:
                    end = Ending(reply, self.node.give_up(self.ctx, reply, exc))  # a router's fallback
                    return await self.guards.after(end, messages, gave_up=True)
                messages += [{"role": "assistant", "content": reply}, _fix_request(self.node.output, exc)]
                continue
            return await self.guards.after(Ending(reply, value), messages)

    def restore(self, messages: list[dict[str, Any]]) -> int:
        """Replay the tool turns this activation committed before a crash or failure.

        Their model calls and tool calls are not made again: the conversation
        goes on from the last committed turn. Returns how many turns that is.
        """
        done = self.ctx.done_items
        turns = 0
        while turns in done:
            kept = done[turns]
            messages.extend(kept["messages"])
            self.trace.extend(kept["trace"])
            self.calls.extend(kept["calls"])
            self.usage.update(kept["usage"])
            turns += 1
        self.kept = (len(messages), len(self.trace), len(self.calls))
        return turns

    async def keep(self, index: int, messages: list[dict[str, Any]]) -> None:
        """Commit tool turn `index` (its messages, trace, calls, usage so far) before going on."""
        if self.ctx.commit_item is None:
            return  # outside the engine, or inside an agent tool: nothing to keep
        m, t, c = self.kept
        await self.ctx.commit_item(index, {"messages": messages[m:], "trace": self.trace[t:],
                                           "calls": self.calls[c:], "usage": dict(self.usage)})
        self.kept = (len(messages), len(self.trace), len(self.calls))

    async def call(self, messages: list[dict[str, Any]]) -> ModelResponse:
        node = self.node
        request = ModelRequest(list(messages), [t.spec for t in node.tools], node.output, dict(node.settings),
                               node=node.name)
        return await self.ask(request, stream=node.stream)

    async def ask(self, request: ModelRequest, model: Model | None = None, *,
                  stream: bool = False) -> ModelResponse:
        """One model call (the node's model unless given), with its events and usage recorded."""
        node, model = self.node, model or self.model
        on_token = (lambda text: self.ctx.emit("token", {"text": text})) if stream else None
        # llm_call_* events: what tracing's chat spans and on_llm_* hooks are made of (live calls only)
        said = {"model": _model_name(model, request), "provider": _provider(model)}
        self.ctx.emit("llm_call_started", {**said, "messages": request.messages})
        try:
            response = await model.complete(request, on_token=on_token)
        except Exception as exc:
            self.ctx.emit("llm_call_finished", {**said, "error": str(exc), "type": type(exc).__name__})
            if isinstance(exc, NodeError):
                raise node.error(self.ctx, str(exc)) from exc
            raise
        self.record(response)
        self.ctx.emit("llm_call_finished", {**said, **self.calls[-1], "text": response.text})
        return response

    def record(self, response: ModelResponse) -> None:
        tokens = {k: int(response.usage.get(k, 0)) for k in ("input_tokens", "output_tokens")}
        self.calls.append({**tokens, "finish_reason": response.finish_reason})
        self.usage["calls"] += 1
        for key, value in tokens.items():
            self.usage[key] += value

    async def run_tools(
        self, messages: list[dict[str, Any]], response: ModelResponse, turns: int
    ) -> Ending | None:
        """Run one turn's calls; a transfer or a call needing approval ends the node instead."""
        calls = response.tool_calls
        checked = [check_call(self.tools, c) for c in calls]
        checked, tripped = await self.guards.tools(calls, checked, messages)
        if tripped is not None:  # a tool guardrail stopped the node: none of the turn's calls runs
            return Ending(None, tripped=tripped)
        stopper = _first(checked, lambda t: t.route is not None)
        stopper = _first(checked, lambda t: t.needs_approval) if stopper is None else stopper
        if stopper is None:
            self.check_turns(turns, response)
        messages.append(_assistant_calls(response))
        results = await self.results(calls, checked, stopper)
        self.usage["tool_calls"] += sum(1 for r in results if "result" in r.trace or "error" in r.trace)
        for result in results:
            messages.append(result.message)
            self.trace.append(result.trace)
        if stopper is None:
            return None
        accepted = checked[stopper]  # a stopper is a call check_call accepted: (tool, arguments)
        assert not isinstance(accepted, ToolResult)
        chosen, kwargs = accepted
        return self.stop(calls[stopper], chosen, kwargs)

    async def results(self, calls: list[ToolCall], checked: list[Any],
                      stopper: int | None) -> list[ToolResult]:
        if stopper is None:
            return await self.run_calls(calls, checked)
        if checked[stopper][0].route is not None:
            return _transferred(calls, checked[stopper][0].route, stopper)
        return await self.hold(calls, checked, stopper)

    async def hold(self, calls: list[ToolCall], checked: list[Any], held: int) -> list[ToolResult]:
        """Run the turn's other calls; the held one waits for approval, others needing it are refused."""
        run = [i for i, c in enumerate(checked)
               if i != held and not (isinstance(c, tuple) and c[0].needs_approval)]
        ran = await self.run_calls([calls[i] for i in run], [checked[i] for i in run])
        done = dict(zip(run, ran, strict=True))
        skipped = ("Not run: only one call that needs approval is taken per turn; "
                   "ask again once it is decided.")
        return [done.get(i) or answered(c, skipped, skipped=True) for i, c in enumerate(calls) if i != held]

    async def run_calls(self, calls: list[ToolCall], checked: list[Any]) -> list[ToolResult]:
        """`run_calls`, with a tool_started/tool_finished event around each call that runs."""
        ran = [(c.name, c.id) for c, ok in zip(calls, checked, strict=True) if isinstance(ok, tuple)]
        for name, call_id in ran:
            self.ctx.emit("tool_started", {"tool": name, "call_id": call_id})
        try:
            results = await run_calls(self.tools, calls, self.ctx, checked)
        except BaseException as exc:
            for name, call_id in ran:
                self.ctx.emit("tool_finished", {"tool": name, "call_id": call_id, "error": repr(exc),
                                                "type": type(exc).__name__})
            raise
        by_id = {c.id: r for c, r in zip(calls, results, strict=True)}
        for name, call_id in ran:
            trace = by_id[call_id].trace
            self.ctx.emit("tool_finished", {"tool": name, "call_id": call_id, "arguments":
                                            trace.get("arguments"), "result": trace.get("result")})
        return results

    def stop(self, call: ToolCall, chosen: Tool, kwargs: dict[str, Any]) -> Ending:
        if chosen.route is not None:
            return Ending(None, route=chosen.route, arguments=kwargs)
        arguments = parsed(call.arguments)
        self.trace.append({"tool": call.name, "arguments": arguments, "held": APPROVAL})
        pending = {"id": call.id, "tool": call.name, "arguments": arguments}
        return Ending(None, route=APPROVAL, arguments=kwargs, pending=pending)

    def check_turns(self, turns: int, response: ModelResponse) -> None:
        if turns >= self.node.max_turns:
            names = [c.name for c in response.tool_calls]
            raise self.node.error(
                self.ctx, f"the model still asked for tools {names} after max_turns={self.node.max_turns} "
                "model calls; raise max_turns, or make the tools' results or the instructions more "
                "conclusive. The tool calls so far are in the node's trace."
            )


def _model_name(model: Model, request: ModelRequest) -> str:
    return str(request.settings.get("model") or getattr(model, "model", None) or type(model).__name__)


def _provider(model: Model) -> str:
    """`gen_ai.provider.name`: the model's `provider`, else from its class (OpenAIModel: openai)."""
    return str(getattr(model, "provider", None) or type(model).__name__.removesuffix("Model").lower())


def _first(checked: list[Any], test: Callable[[Tool], bool]) -> int | None:
    return next((i for i, c in enumerate(checked) if isinstance(c, tuple) and test(c[0])), None)


def _transferred(calls: list[ToolCall], route: str, chosen: int) -> list[ToolResult]:
    """Every call of the turn answered (a valid conversation for whoever takes over), none run."""
    return [
        answered(c, f"Transferred to {route}.", route=route) if i == chosen
        else answered(c, f"Not run: control was transferred to {route}.", skipped=True)
        for i, c in enumerate(calls)
    ]


def _assistant_calls(response: ModelResponse) -> dict[str, Any]:
    calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
             for c in response.tool_calls]
    return {"role": "assistant", "content": response.text, "tool_calls": calls}


def _fix_request(output: type[BaseModel], exc: ValidationError) -> dict[str, Any]:
    return {"role": "user", "content": (
        f"Your reply does not fit the required JSON schema of {output.__name__}: "
        f"{problems(exc, whole='reply')}. "
        "Reply again with only a JSON object that fits the schema."
    )}
