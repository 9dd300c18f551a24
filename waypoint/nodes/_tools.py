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
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from waypoint.errors import GraphError
from waypoint.nodes._call import is_async
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


def tool(fn: Callable[..., Any] | Tool, *, name: str | None = None, description: str | None = None) -> Tool:
    """Describe `fn` as a tool; `name` and `description` default to its name and docstring."""
    if isinstance(fn, Tool):
        return fn
    tool_name = name or getattr(fn, "__name__", type(fn).__name__)
    fields, ctx_param = _fields(fn, tool_name)
    return Tool(
        name=tool_name,
        description=description or inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0],
        fn=fn,
        arguments=create_model(f"{tool_name}_arguments", __config__=_FORBID, **fields),
        ctx_param=ctx_param,
        is_async=is_async(fn),
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


async def run_calls(tools: dict[str, Tool], calls: list[ToolCall], ctx: NodeContext) -> list[ToolResult]:
    """Run one turn's calls concurrently; results come back in the calls' order.

    The first tool that raises cancels the others, and its exception propagates as
    is (not wrapped in an ExceptionGroup), so a node's `RetryPolicy.retry_on` sees it.
    """
    tasks = [asyncio.ensure_future(_run_one(tools, c, ctx)) for c in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _run_one(tools: dict[str, Tool], tc: ToolCall, ctx: NodeContext) -> ToolResult:
    chosen = tools.get(tc.name)
    if chosen is None:
        return _refused(tc, f"there is no tool named {tc.name!r}; available: {sorted(tools)}")
    try:
        kwargs = chosen.validate(tc.arguments)
    except ValidationError as exc:
        return _refused(tc, f"invalid arguments for {tc.name!r}: {_describe(exc)}")
    if chosen.ctx_param:
        kwargs[chosen.ctx_param] = ctx
    try:
        if chosen.is_async:
            result = await chosen.fn(**kwargs)
        else:  # a sync tool runs in a worker thread, so the turn's other calls go on
            result = await asyncio.to_thread(chosen.fn, **kwargs)
    except Exception as exc:
        exc.add_note(f"raised by tool {tc.name!r} called by LLM node {ctx.node!r} with {kwargs!r}")
        raise
    return ToolResult(
        message=_message(tc, result if isinstance(result, str) else _to_json(result)),
        trace={"tool": tc.name, "arguments": _jsonable(kwargs, chosen.ctx_param), "result": _plain(result)},
    )


def _refused(tc: ToolCall, error: str) -> ToolResult:
    text = f"Error: {error}. Call the tool again with corrected arguments."
    return ToolResult(
        message=_message(tc, text),
        trace={"tool": tc.name, "arguments": _parsed(tc.arguments), "error": error},
    )


def _message(tc: ToolCall, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": tc.id, "content": content}


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


def _parsed(arguments: str) -> Any:
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
