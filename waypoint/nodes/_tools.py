"""Tools for LLM nodes: typed Python callables the model may call.

    async def search(query: str, limit: int = 5) -> list[str]:
        '''Search the docs.'''               # the docstring is the description

    llm("answer", prompt="{question}", into="answer", tools=[search])

The parameters' JSON schema is built from the signature with pydantic; the
model's arguments are validated against it before the call, and a bad argument
(or an unknown tool) goes back to the model as the tool's result, so it can
correct itself. A parameter annotated `NodeContext` receives the node's context
(for `ctx.idempotency_key`) and is not shown to the model. An exception raised
by the tool itself fails the node, so the node's retry policy applies.

`tool(refund, needs_approval=True)` marks a tool a human approves before it
runs: the LLM node does not call it but stops on its "approval" route with the
call in the state (see `waypoint.nodes.routing.run_approved`). A tool with a
`route` (the handoff's `transfer_to_<label>`) ends the node on that route.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from waypoint._messages import problems
from waypoint.errors import GraphError
from waypoint.nodes._call import is_async
from waypoint.nodes._threads import in_thread
from waypoint.nodes.context import NodeContext
from waypoint.nodes.model import ToolCall

_FORBID = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Tool:
    """A callable offered to the model, with the pydantic model of its arguments."""

    name: str
    description: str
    fn: Callable[..., Any]
    arguments: type[BaseModel]
    ctx_param: str | None = None  # the parameter that receives the NodeContext
    is_async: bool = False
    needs_approval: bool = False  # a human approves each call before it runs
    route: str | None = None  # calling it ends the LLM node on this route (handoffs)
    graph: Any = None  # the graph it runs as a child run (agent_tool): gates inside answer as 'node/gate'

    @property
    def spec(self) -> dict[str, Any]:
        """The neutral function spec sent to the model: name, description, parameters."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "parameters": schema}

    def validate(self, arguments: str) -> dict[str, Any]:
        """The model's JSON arguments, validated and converted to the declared types."""
        parsed = self.arguments.model_validate_json(arguments or "{}")
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}


def tool(
    fn: Callable[..., Any] | Tool, *, name: str | None = None, description: str | None = None,
    needs_approval: bool | None = None,
) -> Tool:
    """Describe `fn` as a tool; `name` and `description` default to its name and docstring.

    `needs_approval=True`: the LLM node asks a human (a gate) before each call.
    """
    if isinstance(fn, Tool):
        return fn if needs_approval is None else replace(fn, needs_approval=needs_approval)
    tool_name = name or str(getattr(fn, "__name__", type(fn).__name__))
    fields, ctx_param = _fields(fn, tool_name)
    return Tool(
        name=tool_name,
        description=description or inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0],
        fn=fn,
        arguments=create_model(f"{tool_name}_arguments", __config__=_FORBID, **fields),
        ctx_param=ctx_param,
        is_async=is_async(fn),
        needs_approval=bool(needs_approval),
    )


def _fields(fn: Callable[..., Any], name: str) -> tuple[dict[str, Any], str | None]:
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to untyped parameters
        hints = {}
    fields: dict[str, Any] = {}
    ctx_param = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise GraphError(f"tool {name!r}: parameter {param.name!r} is positional-only; "
                             "tools are called with keyword arguments, drop the `/`")
        annotation = hints.get(param.name, Any)
        if annotation is NodeContext:
            ctx_param = param.name
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    return fields, ctx_param


@dataclass
class ToolResult:
    """One executed call: the message for the model and the trace entry for the log."""

    message: dict[str, Any]
    trace: dict[str, Any]


@dataclass
class ToolOutput:
    """What a tool may return to add facts to its trace entry (agents as tools do)."""

    value: Any
    trace: dict[str, Any] = field(default_factory=dict)


async def run_calls(
    tools: dict[str, Tool], calls: list[ToolCall], ctx: NodeContext, checked: list[Any] | None = None,
) -> list[ToolResult]:
    """Run one turn's calls concurrently; results come back in the calls' order.

    `checked` (from `check_call`) saves checking again. The first tool that raises
    cancels the others, and its exception propagates as is (not wrapped in an
    ExceptionGroup), so a node's `RetryPolicy.retry_on` sees it.
    """
    checked = checked if checked is not None else [check_call(tools, c) for c in calls]
    tasks = [asyncio.ensure_future(_settle(c, tc, ctx)) for c, tc in zip(checked, calls, strict=True)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def check_call(tools: dict[str, Tool], tc: ToolCall) -> tuple[Tool, dict[str, Any]] | ToolResult:
    """The tool and its validated arguments, or the refusal that goes back to the model."""
    chosen = tools.get(tc.name)
    if chosen is None:
        return _refused(tc, f"there is no tool named {tc.name!r}; available: {sorted(tools)}")
    try:
        return chosen, chosen.validate(tc.arguments)
    except ValidationError as exc:
        return _refused(tc, f"invalid arguments for {tc.name!r}: {problems(exc, whole='arguments')}")


async def _settle(checked: Any, tc: ToolCall, ctx: NodeContext) -> ToolResult:
    if isinstance(checked, ToolResult):  # refused before it ran
        return checked
    chosen, kwargs = checked
    return await execute(chosen, kwargs, tc, ctx)


async def execute(chosen: Tool, kwargs: dict[str, Any], tc: ToolCall, ctx: NodeContext) -> ToolResult:
    """Call a tool with validated arguments; the result becomes a tool message and a trace entry."""
    if chosen.ctx_param:
        kwargs = {**kwargs, chosen.ctx_param: ctx}
    try:
        if chosen.is_async:
            result = await chosen.fn(**kwargs)
        else:  # a sync tool runs in a worker thread, so the turn's other calls go on
            result = await in_thread(chosen.fn, **kwargs)
    except Exception as exc:
        exc.add_note(f"raised by tool {tc.name!r} called by LLM node {ctx.node!r} with {kwargs!r}")
        raise
    extra = result.trace if isinstance(result, ToolOutput) else {}
    result = result.value if isinstance(result, ToolOutput) else result
    return ToolResult(
        message=message(tc, result if isinstance(result, str) else _to_json(result)),
        trace={"tool": tc.name, "arguments": _jsonable(kwargs, chosen.ctx_param), "result": _plain(result),
               **extra},
    )


def answered(tc: ToolCall, content: str, **trace: Any) -> ToolResult:
    """A call answered without running anything (a transfer, a held or skipped call)."""
    return ToolResult(message(tc, content), {"tool": tc.name, "arguments": parsed(tc.arguments), **trace})


def _refused(tc: ToolCall, error: str) -> ToolResult:
    text = f"Error: {error}. Call the tool again with corrected arguments."
    return ToolResult(
        message=message(tc, text),
        trace={"tool": tc.name, "arguments": parsed(tc.arguments), "error": error},
    )


def message(tc: ToolCall, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": tc.id, "content": content}


def parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _plain(value: Any) -> Any:
    return pydantic_core.to_jsonable_python(value, fallback=repr)


def _to_json(value: Any) -> str:
    return pydantic_core.to_json(value, fallback=repr).decode()


def _jsonable(kwargs: dict[str, Any], ctx_param: str | None) -> Any:
    return _plain({k: v for k, v in kwargs.items() if k != ctx_param})
