"""Tools listed at run time (MCP servers) for LLM nodes: offered per activation, recorded with turn 0.

    g.add(llm("agent", prompt="{question}", into="answer",
              tools=[search, mcp_tools(["python", "server.py"])]))

`llm()` keeps a toolset (anything with `label`, `prefix` and `session(ctx)`, such as
`mcp_tools(...)`) apart from its plain tools. When an activation starts, `offered`
opens one session per toolset and lists its tools, unless the activation's first
tool turn was already committed: then the listing recorded with that turn is offered
again, so a resumed activation shows the model the tools it saw before, whatever the
server offers now. The listing rides on turn 0's item (`"toolsets": {label: [spec]}`).
Sessions connect on first use; `aclose` at the activation's end closes a connection of its own, while
the run's execution's shared connections (`nodes/resources.py`) are closed when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, TypeAdapter

from waypoint.errors import GraphError
from waypoint.nodes._tools import Tool
from waypoint.nodes.context import NodeContext

Spec = dict[str, Any]  # a listed tool: {"name", "description", "parameters"} (a JSON schema)
_OBJECT = TypeAdapter(dict[str, Any])


class ToolsetSession(Protocol):
    """One activation's use of a toolset: list its tools, call one, close."""

    async def list_tools(self) -> list[Spec]: ...
    async def call(self, name: str, arguments: dict[str, Any]) -> Any: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class Toolset(Protocol):
    """Tools listed at run time; `mcp_tools(...)` makes one."""

    label: str  # names it in messages and in the recorded listing
    prefix: str  # put before each of its tools' names, to keep apart tools of the same name

    def session(self, ctx: NodeContext) -> ToolsetSession: ...


class _Unchecked(BaseModel):
    """The `arguments` of a listed tool: its JSON schema is the server's, which checks them."""


@dataclass(frozen=True)
class ListedTool(Tool):
    """A tool as a toolset listed it: its schema is sent as listed; the server checks the arguments."""

    parameters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""  # the label of the toolset that lists it

    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def validate(self, arguments: str) -> dict[str, Any]:
        """The model's arguments as a JSON object (a pydantic ValidationError when they are not one)."""
        return _OBJECT.validate_json(arguments or "{}")


def split_tools(owner: str, tools: Sequence[Any]) -> tuple[list[Any], tuple[Toolset, ...]]:
    """`tools=` of llm(): the plain tools, and the toolsets (each label once)."""
    toolsets = tuple(t for t in tools if isinstance(t, Toolset))
    labels = [t.label for t in toolsets]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise GraphError(f"llm({owner!r}) lists the MCP server(s) {twice} twice; list each once, or give "
                         "each its own mcp_tools(..., name=...) if they really are different servers")
    return [t for t in tools if not isinstance(t, Toolset)], toolsets


@asynccontextmanager
async def offered(node: Any, ctx: NodeContext) -> AsyncIterator[tuple[Any, NodeContext]]:
    """The node with its toolsets' tools added, and a context that records their listing with turn 0.

    Without toolsets, `(node, ctx)` as they are. Every session is closed on the way out.
    """
    toolsets: tuple[Toolset, ...] = getattr(node, "toolsets", ())
    if not toolsets:
        yield node, ctx
        return
    sessions = {t.label: t.session(ctx) for t in toolsets}
    try:
        listing = await _listing(sessions, ctx)
        listed = _tools(node, ctx, toolsets, sessions, listing)
        yield (replace(node, tools=(*node.tools, *listed)),
               replace(ctx, commit_item=_recording(ctx, listing)))
    finally:
        await asyncio.gather(*(s.aclose() for s in sessions.values()))


async def _listing(sessions: dict[str, ToolsetSession], ctx: NodeContext) -> dict[str, list[Spec]]:
    """What turn 0 recorded for each toolset; the ones it did not record, listed now."""
    recorded = ctx.done_items.get(0, {}).get("toolsets") if isinstance(ctx.done_items.get(0), dict) else None
    listing: dict[str, list[Spec]] = dict(recorded or {})
    live = [label for label in sessions if label not in listing]
    for label, specs in zip(live, await asyncio.gather(*(sessions[x].list_tools() for x in live)),
                            strict=True):
        listing[label] = specs
    return {label: listing[label] for label in sessions}


def _tools(node: Any, ctx: NodeContext, toolsets: tuple[Toolset, ...], sessions: dict[str, ToolsetSession],
           listing: dict[str, list[Spec]]) -> list[ListedTool]:
    """The listed tools as `Tool`s; a name that two sources offer is an error naming both."""
    owners = {t.name: "the node's own tools" for t in getattr(node, "tools", ())}
    tools = []
    for toolset in toolsets:
        for spec in listing[toolset.label]:
            name = toolset.prefix + spec["name"]
            if name in owners:
                raise node.error(ctx, (
                    f"MCP server {toolset.label!r} offers a tool named {name!r}, and so does "
                    f"{owners[name]}; give mcp_tools(..., prefix='...') so that the names differ"))
            owners[name] = f"MCP server {toolset.label!r}"
            tools.append(ListedTool(
                name=name, description=spec.get("description") or "", is_async=True,
                fn=_caller(sessions[toolset.label], spec["name"]), arguments=_Unchecked,
                parameters=spec.get("parameters") or {"type": "object"}, source=toolset.label))
    return tools


def _caller(session: ToolsetSession, remote: str) -> Callable[..., Awaitable[Any]]:
    async def call(**arguments: Any) -> Any:
        return await session.call(remote, arguments)

    return call


def _recording(ctx: NodeContext, listing: dict[str, list[Spec]]) -> Any:
    """`ctx.commit_item`, adding the listing to turn 0's item (when turn 0 is still to commit)."""
    commit = ctx.commit_item
    if commit is None or 0 in ctx.done_items:
        return commit

    async def commit_with_listing(index: int, item: Any) -> Any:
        return await commit(index, {**item, "toolsets": listing} if index == 0 else item)

    return commit_with_listing
