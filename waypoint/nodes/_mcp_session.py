"""Connections to MCP servers, each owned by one task, and an activation's use of one.

    session = MCPSession(server, ctx, shared)   # MCPTools.session: nothing happens yet
    specs = await session.list_tools()          # connects (first use), lists every page
    output = await session.call("add", {"a": 1})  # a ToolOutput for the model
    await session.aclose()                      # its own connection: the server is stopped and reaped

A connection is the run's execution's (`ctx.resources`, `nodes/resources.py`): the
first activation that uses the server opens it, the run's other activations (a loop
back to the node, parallel branches) share it, and the engine closes it when the
execution ends (done, waiting at a gate, failed, interrupted). Outside an execution a
session opens a connection of its own and closes it with the activation.

The SDK's client is an anyio context whose cancel scopes must be entered and left in
one task. So one owner task enters `mcp.Client`, serves the requests it takes from a
queue (each in its own task of a task group inside the client), and leaves the client
when told to close or when the connection breaks; callers only put requests on the
queue and await their futures. A broken connection fails every pending request with
the cause; a caller that gives up (cancelled) cancels its request's task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from waypoint.errors import NodeError
from waypoint.nodes._tools import ToolOutput
from waypoint.nodes.context import NodeContext
from waypoint.nodes.mcp_tools import MCPServerError, MCPTools

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult

_PAGES = 100  # a server whose tools/list never ends stops here
_CLOSED = -32000  # mcp_types.CONNECTION_CLOSED: the SDK's code for a connection that ended


@dataclass
class _Request:
    action: Callable[[Client], Awaitable[Any]]
    future: asyncio.Future[Any]


class MCPSession:
    """One activation's use of a connection to `server`; see the module's docstring.

    `connection` is the run's execution's (shared, closed when the execution ends), or
    this session's own (`owned`: closed by `aclose`) when it runs outside an execution.
    """

    def __init__(self, server: MCPTools, ctx: NodeContext, connection: Connection | None = None) -> None:
        self.server, self.ctx = server, ctx
        self.owned = connection is None
        self.connection = Connection(server) if connection is None else connection

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server lists now: name, description, parameters (its input schema)."""
        specs: list[dict[str, Any]] = await self._ask(_list_all, None)
        return specs if self.server.only is None else self._chosen(specs, self.server.only)

    def _chosen(self, specs: list[dict[str, Any]], only: tuple[str, ...]) -> list[dict[str, Any]]:
        """The tools `mcp_tools(..., tools=[...])` names; one the server does not list is an error."""
        missing = sorted(set(only) - {spec["name"] for spec in specs})
        if missing:
            ctx = self.ctx
            raise NodeError(
                f"run {ctx.run_id!r}, LLM node {ctx.node!r}: MCP server {self.server.label!r} offers no "
                f"tool named {missing}, which mcp_tools(..., tools=[...]) asks for; it offers "
                f"{sorted(spec['name'] for spec in specs)}", run_id=ctx.run_id, node=ctx.node)
        return [spec for spec in specs if spec["name"] in only]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutput:
        """Call tool `name`; a tool error (isError, a JSON-RPC error) is a result for the model."""
        result = await self._ask(_calling(name, arguments), name)
        if isinstance(result, str):  # refused by the server
            return await self._refused(name, result)
        text = _text(result)
        if result.is_error:
            return await self._refused(name, text)
        return ToolOutput(text, {"server": self.server.label})

    async def aclose(self) -> None:
        """The activation is over: close its own connection; a shared one stays for the run's execution."""
        if self.owned:
            await self.connection.aclose()

    async def _refused(self, name: str, error: str) -> ToolOutput:
        """A tool error for the model, saying so when the tool is no longer on the server."""
        try:
            now = [spec["name"] for spec in await self._ask(_list_all, None)]
        except MCPServerError:
            now = None
        if now is not None and name not in now:
            error = (f"tool {name!r} is no longer offered by MCP server {self.server.label!r} (it was when "
                     f"this conversation started); it now offers {sorted(now)}. The server said: {error}")
        return ToolOutput(f"Error: {error}", {"server": self.server.label, "error": error})

    async def _ask(self, action: Callable[[Client], Awaitable[Any]], tool: str | None) -> Any:
        """Run `action` on the client in the owner task; a connection failure is an MCPServerError."""
        try:
            return await self.connection.ask(action)
        except MCPServerError:
            raise
        except Exception as exc:
            raise self._error(exc, tool) from exc

    def _error(self, exc: BaseException, tool: str | None) -> MCPServerError:
        server, ctx = self.server, self.ctx
        doing = f"calling tool {tool!r}" if tool else "listing its tools"
        denied = self.connection.denied
        check = (f"The server answered {denied[-1]}: give mcp_tools(..., headers={{'Authorization': ...}}) "
                 "the credentials it expects (a function of no arguments may read them when the connection "
                 "opens)" if denied else
                 f"Check that the server {'runs' if server.command else 'is up at ' + str(server.url)} "
                 "(its own output says why it stopped)")
        return MCPServerError(
            f"MCP server {server.label!r} ({server.transport}) failed while {doing} for LLM node "
            f"{ctx.node!r} of run {ctx.run_id!r}: {_cause(exc)}. {check}, then resume the run: the tool "
            "turns already committed are not run again.",
            server=server.label, tool=tool, run_id=ctx.run_id, node=ctx.node)


class Connection:
    """A connection to one MCP server, owned by one task; requests are queued to it.

    Opened on the first `ask`, by whichever activation asks first; closed by `aclose`
    (the run's execution's end, `nodes/resources.py`, or the session that owns it).
    A broken connection is `lost`: the next activation of the execution opens a new one.
    """

    def __init__(self, server: MCPTools) -> None:
        self.server = server
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._pending: set[asyncio.Future[Any]] = set()
        self._lost: BaseException | None = None  # why the connection ended, once it has
        self.denied: list[str] = []  # "HTTP 401 Unauthorized": what an HTTP server refused, for the error

    @property
    def lost(self) -> bool:
        """It broke or was closed: of no more use."""
        return self._lost is not None

    async def ask(self, action: Callable[[Client], Awaitable[Any]]) -> Any:
        """Run `action` on the client in the owner task (connecting on first use); its result."""
        await asyncio.shield(self._start())
        if self._lost is not None:
            raise self._lost
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._queue.put_nowait(_Request(action, future))
        try:
            return await future
        except Exception as exc:  # what reaches here broke the connection (tool errors are results):
            self._lost = self._lost or exc  # stale at once, before its owner has finished unwinding
            raise

    async def aclose(self) -> None:
        """Leave the client (stopping a stdio server) and wait until the owner task has ended."""
        if self._owner is None:
            self._lost = self._lost or ConnectionError("the connection was closed")
            return
        if self._ready is not None and not self._ready.done():
            self._owner.cancel()  # still connecting: the owner leaves the client it is entering
        self._queue.put_nowait(None)
        await asyncio.wait([self._owner])

    def _start(self) -> asyncio.Future[None]:
        if self._ready is None:  # the first use: no await between this test and the task's creation
            self._ready = asyncio.get_running_loop().create_future()
            self._ready.add_done_callback(_seen)  # a failure nobody waits for any more is not logged
            self._owner = asyncio.create_task(self._own(), name=f"MCP server {self.server.label}")
        return self._ready

    async def _own(self) -> None:
        """Enter the client, serve the queue until told to close, leave the client: all in this task."""
        import anyio
        from mcp import Client

        assert self._ready is not None
        try:
            transport = _transport(self.server, self.denied)
            async with Client(transport, read_timeout_seconds=self.server.timeout) as client:
                self._ready.set_result(None)
                async with anyio.create_task_group() as tasks:
                    while (request := await self._queue.get()) is not None:
                        tasks.start_soon(_serve, client, request)
                    tasks.cancel_scope.cancel()  # closing: what is still running is abandoned
        except Exception as exc:  # the connection broke (a task group's errors come grouped)
            self._lost = exc
        finally:  # also when cancelled: every future is settled
            self._lost = self._lost or ConnectionError("the connection was closed")
            for future in [self._ready, *self._pending]:
                if not future.done():
                    future.set_exception(self._lost)


async def _serve(client: Client, request: _Request) -> None:
    """Run one request in the owner's task group; its caller giving up cancels it."""
    import anyio

    with anyio.CancelScope() as scope:
        request.future.add_done_callback(lambda f: scope.cancel() if f.cancelled() else None)
        try:
            result = await request.action(client)
        except Exception as exc:
            if not request.future.done():
                request.future.set_exception(exc)
        else:
            if not request.future.done():
                request.future.set_result(result)


def _seen(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _transport(server: MCPTools, denied: list[str]) -> Any:
    """What `mcp.Client` connects to: StdioServerParameters for a command, else an HTTP transport."""
    if server.url is not None:
        return _http(server.url, server.headers, denied)
    from mcp import StdioServerParameters

    program, *args = server.command
    return StdioServerParameters(command=program, args=args, env=dict(server.env) if server.env else None,
                                 cwd=server.cwd)


@asynccontextmanager
async def _http(url: str, headers: Any, denied: list[str]) -> AsyncIterator[Any]:
    """The streamable-HTTP transport, with `headers` on every request (a function: called now);
    a 401 or 403 answer is noted in `denied`, since the SDK's error does not say which."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's own default client and timeouts

    async def note(response: Any) -> None:
        if response.status_code in (401, 403):
            denied.append(f"HTTP {response.status_code} {response.reason_phrase}")

    sent = dict(headers() if callable(headers) else headers or {})
    async with create_mcp_http_client(headers=sent) as http:
        http.event_hooks["response"].append(note)
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


async def _list_all(client: Client) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(_PAGES):
        page = await client.list_tools(cursor=cursor, cache_mode="refresh")
        specs += [{"name": t.name, "description": t.description or "", "parameters": t.input_schema}
                  for t in page.tools]
        cursor = page.next_cursor
        if cursor is None:
            break
    return specs


def _calling(name: str, arguments: dict[str, Any]) -> Callable[[Client], Awaitable[CallToolResult | str]]:
    async def call(client: Client) -> CallToolResult | str:
        from mcp import MCPError

        try:
            return await client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == _CLOSED:
                raise
            return f"the server refused the call ({exc.code}): {exc.message}"

    return call


def _text(result: CallToolResult) -> str:
    """The result's content as text: text blocks as they are, other blocks described."""
    parts = []
    for block in result.content:
        text = getattr(block, "text", None) or getattr(getattr(block, "resource", None), "text", None)
        parts.append(text if isinstance(text, str) else f"[{block.type} content not shown: "
                     f"{getattr(block, 'mime_type', None) or 'no MIME type'}]")
    if not parts and result.structured_content is not None:
        import json

        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


def _cause(exc: BaseException) -> str:
    """The innermost errors of `exc` (task groups wrap them), as `Type: message`."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_cause(inner) for inner in exc.exceptions)
    text = str(exc) or "(no message)"
    return text if isinstance(exc, MCPServerError) else f"{type(exc).__name__}: {text}"
