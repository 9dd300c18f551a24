"""Agents as tools: an LLM node or a compiled graph offered to another LLM node as a tool.

    researcher = llm("researcher", prompt="Find sources on {topic}", into="notes", tools=[search])
    g.add(llm("writer", prompt="Write about {subject}", into="essay",
              tools=[agent_tool(researcher, name="research", description="Research a topic")]))

    g.add(llm("planner", prompt="{goal}", into="plan",
              tools=[agent_tool(booking_graph, name="book", description="Book a trip",
                                input=Trip, output="confirmation")]))

The tool's arguments are `input` (a pydantic model) or, by default, the fields
of the LLM node's prompt template (strings), or the fields of the graph's state.
An LLM node runs in the tool call with a fresh state made of the arguments; its
`into` value (or, without `into`, its route or last reply) is the tool's result.
A graph runs as a child run through `ctx.run_child(graph, input, key=..., usage=...)`,
which the engine provides (nodes never import the engine); its final state, or
`output` (a field name or a function of the final state), is the result.

What the inner calls spend is added to the outer node's usage, so per-run
budgets count it, and the outer trace entry of the call carries an "agent" part
with the inner usage (and, for an LLM node, its own trace). An inner failure
fails the outer node. A gate inside the graph pauses the run; on resume the
outer LLM node runs again from its start (its conversation is not persisted
mid-node), while a child run that had already finished is reused, not rerun.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from waypoint.errors import GraphError, NodeError
from waypoint.nodes._tools import Tool, ToolOutput
from waypoint.nodes.context import NodeContext, add_usage
from waypoint.nodes.llm_node import LLMNode

__all__ = ["agent_tool"]

Output = str | Callable[[Any], Any] | None
_CTX = "_ctx"  # the context parameter: a leading underscore can never be an argument's name


def agent_tool(
    agent: Any, *, name: str, description: str, input: type[BaseModel] | None = None, output: Output = None,
) -> Tool:
    """A `Tool` that runs `agent` (an `LLMNode` or a compiled `Graph`) for each call."""
    if isinstance(agent, LLMNode):
        arguments = input or _prompt_arguments(agent, name)
        fn = _node_runner(agent, name, arguments, output)
    elif hasattr(agent, "state_type") and hasattr(agent, "nodes"):
        arguments = input or _state_arguments(agent.state_type, name)
        fn = _graph_runner(agent, name, output)
    else:
        raise GraphError(f"agent_tool({name!r}) takes an LLM node (llm(...)) or a compiled Graph "
                         f"(builder.compile()), got {type(agent).__name__}")
    graph = None if isinstance(agent, LLMNode) else agent
    return Tool(name=name, description=description, fn=fn, arguments=arguments, ctx_param=_CTX,
                is_async=True, graph=graph)


def _prompt_arguments(node: LLMNode, name: str) -> type[BaseModel]:
    held = [t.name for t in node.tools if t.needs_approval]
    if held:
        raise GraphError(f"agent_tool({name!r}): LLM node {node.name!r} has tools {held} that need approval, "
                         "which cannot pause inside a tool call; use it as a node of the graph instead")
    if not isinstance(node.prompt, str):
        raise GraphError(f"agent_tool({name!r}): the arguments of LLM node {node.name!r} cannot be read from "
                         "its prompt (it is a function or absent); pass input=<a pydantic model>")
    fields = [f for _, f, _, _ in string.Formatter().parse(node.prompt) if f]
    names = dict.fromkeys(f.split(".")[0].split("[")[0] for f in fields)
    if not all(n.isidentifier() and not n.startswith("_") for n in names):
        raise GraphError(f"agent_tool({name!r}): prompt fields {list(names)} are not all argument names; "
                         "pass input=<a pydantic model>")
    arguments: dict[str, Any] = {n: (str, ...) for n in names}
    return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **arguments)


def _state_arguments(state_type: type[BaseModel], name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in state_type.model_fields.items()}
    return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)


def _node_runner(node: LLMNode, name: str, arguments: type[BaseModel],
                 output: Output) -> Callable[..., Awaitable[ToolOutput]]:
    async def run_agent(_ctx: NodeContext, **kwargs: Any) -> ToolOutput:
        number = _next_call(_ctx, name)
        inner = replace(_ctx, node=f"{_ctx.node}/{name}", activation=f"{_ctx.activation}/{name}.{number}",
                        record={}, commit_item=None, done_items={})  # its turns live in the caller's
        outcome = await node.run(arguments.model_validate(kwargs), inner)
        update = outcome.update or {}
        if node.into:
            value = update.get(node.into)
        elif outcome.labels:
            value = outcome.labels[0]
        else:
            value = (update.get(node.history) or [{}])[-1].get("content")
        add_usage(_ctx.record.setdefault("usage", {}), inner.record.get("usage"))
        return ToolOutput(_shape(value, output), {"agent": {
            "node": node.name, "usage": inner.record.get("usage"), "trace": inner.record.get("trace", [])}})

    return run_agent


def _graph_runner(graph: Any, name: str, output: Output) -> Callable[..., Awaitable[ToolOutput]]:
    async def run_agent(_ctx: NodeContext, **kwargs: Any) -> ToolOutput:
        if _ctx.run_child is None:
            raise NodeError(
                f"run {_ctx.run_id!r}, node {_ctx.node!r}: agent tool {name!r} runs graph "
                f"{getattr(graph, 'name', '?')!r} as a child run, which needs the engine's ctx.run_child; "
                "run the node inside a graph run (start/run_sync), not on its own",
                run_id=_ctx.run_id, node=_ctx.node)
        plain = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in kwargs.items()}
        key = f"{name}.{_next_call(_ctx, name)}.{_digest(plain)}"
        usage: dict[str, int] = {}
        final = await _ctx.run_child(graph, plain, key=key, usage=usage)
        add_usage(_ctx.record.setdefault("usage", {}), usage)
        return ToolOutput(_shape(final, output), {"agent": {"graph": getattr(graph, "name", None),
                                                            "child": key, "usage": usage}})

    return run_agent


def _shape(value: Any, output: Output) -> Any:
    if isinstance(output, str):
        return getattr(value, output) if not isinstance(value, dict) else value[output]
    return output(value) if output is not None else value


def _next_call(ctx: NodeContext, name: str) -> int:
    """This tool's call number in the activation: with the arguments, what names its child run."""
    counts: dict[str, int] = ctx.record.setdefault("agent_tool_calls", {})
    counts[name] = counts.get(name, 0) + 1
    return counts[name]


def _digest(arguments: dict[str, Any]) -> str:
    text = json.dumps(arguments, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
