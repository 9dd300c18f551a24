"""How an LLM node runs its guardrails (`waypoint.nodes.guardrails`): each stage once, committed.

    guards = Guards(loop)                          # in _Loop.__init__: reads what was committed
    end = await guards.before(messages)            # a committed trip or reply, or the input stage
    checked, trip = await guards.tools(calls, checked, messages)   # before a turn's calls run
    end = await guards.after(end, messages)        # the output stage, on the final reply

The verdicts of a stage are one item of the activation, committed through
`ctx.commit_item` before the node goes on, at an index of their own below the
tool turns' (input -1, output -2, a tool call's trip -3): tool turns keep 0, 1,
2... The output item carries the reply it judged, so a resumed activation neither
asks the model again nor re-runs a guardrail. Tool calls' verdicts ride in their
turn's trace (a rejected call's entry names the guardrail); only a trip is an
item of its own. Verdict items carry no "usage": what a guardrail's model calls
spent counts with the node's usage like its other calls, so the last turn's
usage stays what a failed attempt is measured against (`engine._budget.unkept`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pydantic_core

from waypoint.nodes._tools import ToolResult, answered
from waypoint.nodes.guardrails import Guardrail, GuardrailContext, Stage, Verdict
from waypoint.nodes.model import Model, ModelRequest, ModelResponse, ToolCall

if TYPE_CHECKING:
    from waypoint.nodes._llm_loop import Ending, _Loop

INDEX: dict[Stage, int] = {"input": -1, "output": -2, "tool": -3}  # item index of each stage's record


class Guards:
    """One activation's guardrails: runs each stage at most once and keeps its verdicts."""

    def __init__(self, loop: _Loop) -> None:
        self.loop, self.ctx = loop, loop.ctx
        self.rails: tuple[Guardrail, ...] = getattr(loop.node, "guardrails", ())
        done = self.ctx.done_items
        self.kept = {stage: done[i] for stage, i in INDEX.items() if i in done}
        self.verdicts: list[dict[str, Any]] = [v for k in self.kept.values() for v in k["verdicts"]]
        if self.rails:
            self.ctx.record["guardrails"] = self.verdicts

    def of(self, stage: Stage) -> list[Guardrail]:
        return [r for r in self.rails if r.stage == stage]

    async def before(self, messages: list[dict[str, Any]]) -> Ending | None:
        """How the activation ends before any model call: a committed trip or reply, or an input trip."""
        from waypoint.nodes._llm_loop import Ending

        trip = next((v for v in self.verdicts if v["verdict"] == "trip"), None)
        if trip is not None:
            return Ending(None, tripped=trip)
        if "output" in self.kept:  # judged and passed before a crash: the reply (or transfer) is known
            return _ending(self.kept["output"], self.loop.node.output)
        rails = self.of("input")
        if not rails or "input" in self.kept:
            return None
        verdicts = await self.judge([(r, _latest_user(messages), None) for r in rails], "input", messages)
        trip = await self.commit("input", verdicts)
        return None if trip is None else Ending(None, tripped=trip)

    async def after(self, end: Ending, messages: list[dict[str, Any]], gave_up: bool = False) -> Ending:
        """The output stage on the final reply or transfer; a trip is set on the returned Ending.

        What is checked is the node's choice (`LLMNode.judged`): the reply, a router's label,
        a handoff's target. The item keeps what the stage judged (the reply; a transfer's
        route, arguments and turn; whether a router fell back) so a rerun rebuilds the Ending.
        """
        rails = self.of("output")
        if not rails:
            return end
        seen = messages if end.reply is None else [*messages, {"role": "assistant", "content": end.reply}]
        subject = self.loop.node.judged(end)
        verdicts = await self.judge([(r, subject, None) for r in rails], "output", seen)
        kept: dict[str, Any] = {"reply": end.reply}
        if end.route is not None:
            kept.update(route=end.route, arguments=end.arguments, turn=end.turn)
        if gave_up:
            kept["gave_up"] = True
        end.tripped = await self.commit("output", verdicts, **kept)
        return end

    async def tools(self, calls: list[ToolCall], checked: list[Any],
                    messages: list[dict[str, Any]]) -> tuple[list[Any], dict[str, Any] | None]:
        """Each accepted call through its tool guardrails: it runs, is answered with a rejection, or trips."""
        rails = self.of("tool")
        jobs = [(r, c[1], call) for call, c in zip(calls, checked, strict=True) if isinstance(c, tuple)
                for r in rails if r.applies_to(c[0].name)]
        if not jobs:
            return checked, None
        verdicts = await self.judge(jobs, "tool", messages)
        if any(v["verdict"] == "trip" for v in verdicts):
            return checked, await self.commit("tool", verdicts)
        self.verdicts.extend(verdicts)
        return [_rejected(call, c, verdicts) for call, c in zip(calls, checked, strict=True)], None

    async def judge(self, jobs: Sequence[tuple[Guardrail, Any, ToolCall | None]], stage: Stage,
                    messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run the checks at once (each with its subject, and a tool check its call); verdicts in order."""
        tasks = [asyncio.ensure_future(r.judge(subject, self.context(r, stage, messages, call)))
                 for r, subject, call in jobs]
        try:
            found = await asyncio.gather(*tasks)
        except BaseException:  # one raised (or we are cancelled): the others stop too, as a turn's tools do
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        verdicts = [self.verdict(r, stage, v, call) for (r, _, call), v in zip(jobs, found, strict=True)]
        for v in verdicts:  # guardrail_verdict events: what tracing and hooks show of them
            self.ctx.emit("guardrail_verdict", dict(v))
        return verdicts

    def context(self, rail: Guardrail, stage: Stage, messages: list[dict[str, Any]],
                call: ToolCall | None) -> GuardrailContext:
        return GuardrailContext(stage=stage, guardrail=rail.name, node=self.ctx.node, run_id=self.ctx.run_id,
                                state=self.loop.state, messages=list(messages), deps=self.ctx.deps,
                                tool=call.name if call else None, ask=self.ask)

    @staticmethod
    def verdict(rail: Guardrail, stage: Stage, verdict: Verdict, call: ToolCall | None) -> dict[str, Any]:
        entry = {"guardrail": rail.name, "stage": stage, "verdict": verdict.action, "reason": verdict.reason,
                 "info": pydantic_core.to_jsonable_python(verdict.info, fallback=repr)}
        return {**entry, "tool": call.name, "call_id": call.id} if call is not None else entry

    async def commit(self, stage: Stage, verdicts: list[dict[str, Any]],
                     **extra: Any) -> dict[str, Any] | None:
        """Keep a stage's verdicts (an item of the activation) before the node goes on; the first trip."""
        self.verdicts.extend(verdicts)
        record = {"guardrails": stage, "verdicts": verdicts, **extra}
        if self.ctx.commit_item is not None:  # outside the engine, or inside an agent tool: nothing to keep
            await self.ctx.commit_item(INDEX[stage], record)
        self.kept[stage] = record
        return next((v for v in verdicts if v["verdict"] == "trip"), None)

    async def ask(self, request: ModelRequest, model: Model | None) -> ModelResponse:
        """A guardrail's model call: the node's model unless given, counted as one of the node's calls."""
        return await self.loop.ask(request, model)


def _ending(kept: dict[str, Any], output: Any) -> Ending:
    """The Ending an output item judged and passed: its transfer, its fallback, or its reply."""
    from waypoint.nodes._llm_loop import Ending

    reply = kept["reply"]
    if kept.get("route") is not None:
        return Ending(reply, route=kept["route"], arguments=kept["arguments"], turn=kept["turn"])
    if kept.get("gave_up") or output is None:
        return Ending(reply, None if kept.get("gave_up") else reply)
    return Ending(reply, output.model_validate_json(reply))


def _latest_user(messages: list[dict[str, Any]]) -> str:
    """What an input guardrail checks: the text of the last user message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else pydantic_core.to_json(content).decode()
    return ""


def _rejected(call: ToolCall, checked: Any, verdicts: list[dict[str, Any]]) -> Any:
    """`checked`, or the answer the model gets instead when a guardrail rejected the call."""
    no = next((v for v in verdicts if v.get("call_id") == call.id and v["verdict"] == "reject"), None)
    if no is None or isinstance(checked, ToolResult):
        return checked
    return answered(call, f"Not run: {no['reason']}", rejected=no["reason"], guardrail=no["guardrail"])
