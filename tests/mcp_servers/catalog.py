"""An MCP server for the tests, written with the SDK's MCPServer (FastMCP before mcp 2).

    python catalog.py STATE_DIR [--version 2] [--http PORT [--token TOKEN]] [--mute]

Over stdio by default, over streamable HTTP on 127.0.0.1:PORT with --http. It appends
its pid to STATE_DIR/pids and each tool call to STATE_DIR/calls, so tests can check
that a process was reaped and that a committed call was not made again. Version 1
offers `price`, `crash` and `hang`; version 2 has dropped `price` and offers `search`.
`crash` kills the server with SIGKILL in the middle of the call (`once`: the first
time only); `hang` never answers.
"""

import argparse
import os
import signal
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

parser = argparse.ArgumentParser()
parser.add_argument("state", type=Path)
parser.add_argument("--version", type=int, default=1)
parser.add_argument("--http", type=int)
parser.add_argument("--mute", action="store_true", help="start, but never answer the handshake")
parser.add_argument("--token", help="over HTTP: answer 401 to requests without 'Authorization: Bearer TOKEN'")
options = parser.parse_args()
with open(options.state / "pids", "a") as pids:
    pids.write(f"{os.getpid()}\n")
if options.mute:
    signal.pause()

server = MCPServer("catalog", log_level="WARNING")
PRICES = {"apple": 3, "pear": 5}


def log(call: str) -> None:
    with open(options.state / "calls", "a") as calls:
        calls.write(call + "\n")


if options.version == 1:
    @server.tool()
    def price(item: str) -> str:
        """The price of an item, in euros."""
        log(f"price {item}")
        if item not in PRICES:
            raise ToolError(f"no price for {item!r}; known items: {sorted(PRICES)}")
        return f"{item}: {PRICES[item]} EUR"

    @server.tool()
    def crash(reason: str) -> str:
        """Stops the server in the middle of the call (with reason 'once': only the first time)."""
        log(f"crash {reason}")
        if reason == "once" and (options.state / "crashed").exists():
            return "survived"
        (options.state / "crashed").touch()
        os.kill(os.getpid(), signal.SIGKILL)
        return "unreachable"

    @server.tool()
    async def hang(reason: str) -> str:
        """Never answers."""
        log(f"hang {reason}")
        await anyio.sleep_forever()
        return "unreachable"
else:
    @server.tool()
    def search(text: str) -> list[str]:
        """Items whose name contains the text."""
        log(f"search {text}")
        return [item for item in PRICES if text in item]


def guarded(app, token: str):
    """The app behind a bearer-token check; each refused request is logged as `refused`."""
    async def check(scope, receive, send):
        given = dict(scope.get("headers", ())).get(b"authorization")
        if scope["type"] == "http" and given != f"Bearer {token}".encode():
            log("refused")
            plain = [(b"content-type", b"text/plain")]
            await send({"type": "http.response.start", "status": 401, "headers": plain})
            await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
            return
        await app(scope, receive, send)
    return check


if options.http is None:
    server.run()
elif options.token is None:
    server.run("streamable-http", host="127.0.0.1", port=options.http)
else:
    import uvicorn

    uvicorn.run(guarded(server.streamable_http_app(), options.token), host="127.0.0.1", port=options.http,
                log_level="warning")
