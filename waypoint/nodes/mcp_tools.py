"""MCP servers as tools: `mcp_tools(server)` gives an LLM node the tools of an MCP server.

    files = mcp_tools(["python", "files_server.py"])               # a stdio command
    search = mcp_tools("http://127.0.0.1:8000/mcp", prefix="web_")  # a streamable-HTTP URL
    g.add(llm("agent", prompt="{question}", into="answer", tools=[files, search, my_function]))

Through the `mcp` Python SDK's client (`pip install "waypoint-workflows[mcp]"`), loaded
only when a node first uses the server. A run's execution has one connection per
server, opened on first use (listing the tools when an activation starts) and shared by
every activation of the run that uses the server, so a loop back to an agent node does
not start its stdio server again. It is closed when the execution ends, whichever way:
done, waiting at a gate, failed or interrupted; a stdio server's process is stopped and
reaped then. A broken connection is replaced by a new one at the next use.

The tool list is recorded with the activation's first committed tool turn, so a resumed
run offers the model the tools it saw before, even if the server changed meanwhile; a
call to a tool the server no longer has goes back to the model as a tool error that
says so. Tool calls are durable turn by turn like other tools. A tool error the server
reports (`isError`, or a JSON-RPC error) goes back to the model; a connection that
fails (the server died, or cannot be reached) fails the node with an `MCPServerError`
naming the server, the tool, the run and the node; resume the run once the server is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waypoint.errors import GraphError
from waypoint.nodes._toolsets import ToolsetSession
from waypoint.nodes.context import NodeContext

__all__ = ["MCPServerError", "MCPTools", "mcp_tools"]


class MCPServerError(ConnectionError):
    """An MCP server could not be reached, or its connection broke during a call.

    A `ConnectionError`, so a node's `RetryPolicy` retries it; without retries the node
    fails and the run is resumable once the server is back.
    """

    def __init__(self, message: str, *, server: str, tool: str | None, run_id: str, node: str) -> None:
        super().__init__(message)
        self.server, self.tool, self.run_id, self.node = server, tool, run_id, node


@dataclass(frozen=True)
class MCPTools:
    """An MCP server whose tools an LLM node offers its model; made by `mcp_tools`."""

    label: str  # names the server in messages and in the recorded tool list
    command: tuple[str, ...] = ()  # stdio: the program and its arguments
    url: str | None = None  # streamable HTTP
    prefix: str = ""
    only: tuple[str, ...] | None = None  # offer only these of its tools (None: all it lists)
    env: Mapping[str, str] | None = field(default=None, hash=False)
    cwd: str | None = None
    timeout: float | None = None  # seconds to wait for each answer; None: the node's timeout= bounds it
    # HTTP headers (auth): a mapping, or a function called at each connection; never shown, never recorded
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = field(default=None, hash=False,
                                                                                   repr=False)

    def session(self, ctx: NodeContext) -> ToolsetSession:
        """This activation's use of the server: the run's execution's connection, opened on first use."""
        from waypoint.nodes._mcp_session import Connection, MCPSession

        resources = ctx.resources
        if resources is None:  # outside an execution: a connection of its own, closed with the activation
            return MCPSession(self, ctx)
        shared = resources.get(("mcp", self), lambda: Connection(self), stale=lambda c: c.lost)
        return MCPSession(self, ctx, shared)

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "streamable HTTP"


def mcp_tools(
    server: Sequence[str] | str | Any,
    *,
    name: str | None = None,
    prefix: str = "",
    tools: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
) -> MCPTools:
    """The tools of an MCP server, for `llm(..., tools=[...])`.

    `server` is a stdio command (`["python", "server.py"]`, or an object with
    `command` and `args` such as the SDK's `StdioServerParameters`) or a
    streamable-HTTP URL (`"http://127.0.0.1:8000/mcp"`). `name` names the server in
    messages and in the run's record (default: the command or the URL); `prefix` is put
    before its tools' names; `tools` offers only the tools it names. For a stdio server,
    `env` is added to the few variables the SDK passes on (HOME, PATH, ...) and `cwd` is
    where it starts. `timeout` bounds each request (seconds).

    `headers` are sent with every request to a streamable-HTTP server, for its
    authentication: a mapping, or a function returning one, called each time a
    connection opens (so a token is read from the environment or a vault at run time,
    rotates, and is not part of the graph). They are never shown in messages nor kept
    in the run's record.
    """
    command, url = _target(server)
    given: Any = server  # StdioServerParameters may carry env and cwd
    if url is None and env is None and getattr(given, "env", None):
        env = dict(given.env)
    if cwd is None and getattr(given, "cwd", None) is not None:
        cwd = given.cwd
    label = name or url or " ".join(command)
    if timeout is not None and timeout <= 0:
        raise GraphError(f"mcp_tools({label!r}): timeout must be a number of seconds > 0, or None")
    if headers is not None and url is None:
        raise GraphError(f"mcp_tools({label!r}): headers= are sent to a streamable-HTTP server; a stdio "
                         "server takes its settings through env=")
    if headers is not None and not callable(headers) and not (
            isinstance(headers, Mapping) and all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in headers.items())):
        raise GraphError(f"mcp_tools({label!r}): headers= takes a dict of strings, e.g. "
                         "headers={'Authorization': 'Bearer ...'}, or a function returning one")
    if isinstance(tools, str) or (tools is not None and not all(isinstance(t, str) for t in tools)):
        raise GraphError(f"mcp_tools({label!r}): tools= takes a list of the server's tool names, e.g. "
                         "tools=['search']")
    return MCPTools(label=label, command=command, url=url, prefix=prefix,
                    only=tuple(tools) if tools is not None else None, env=dict(env) if env else None,
                    cwd=str(cwd) if cwd is not None else None, timeout=timeout,
                    headers=dict(headers) if isinstance(headers, Mapping) else headers)


def _target(server: Any) -> tuple[tuple[str, ...], str | None]:
    """(command, None) for a stdio server, ((), url) for an HTTP one."""
    if isinstance(server, str):
        if server.startswith(("http://", "https://")):
            return (), server
        raise GraphError(
            f"mcp_tools({server!r}): a string is taken as a streamable-HTTP URL (http:// or https://); "
            f"give a stdio command as a list, e.g. mcp_tools({server.split()!r})")
    if hasattr(server, "command"):  # StdioServerParameters, or anything shaped like it
        return (str(server.command), *(str(a) for a in getattr(server, "args", None) or ())), None
    if isinstance(server, Sequence) and server and all(isinstance(part, (str, Path)) for part in server):
        return tuple(str(part) for part in server), None
    raise GraphError(
        f"mcp_tools({server!r}): give a stdio command as a list of strings (['python', 'server.py']), "
        "a StdioServerParameters, or a streamable-HTTP URL ('http://127.0.0.1:8000/mcp')")
