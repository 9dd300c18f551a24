"""A real uvicorn on 127.0.0.1 serving `create_app`, for tests that need a real server.

    with served(tmp_path / "runs.db", [review_graph]) as server:
        httpx.get(server.url + "/api/runs")
        server.ctx.changes.streams          # the server's WebContext, read from the test thread

The server runs in a thread with its own event loop (`waypoint.web.serve_in_thread`), on
a socket the test bound first (a free port, known before the app is made, so the Host
allowlist can name it). Leaving the block stops it (in-flight runs interrupted, store
closed) and joins the thread.
In-process ASGI clients are no substitute here: they buffer endless SSE streams.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from waypoint import SQLiteStore
from waypoint.web import serve_in_thread
from waypoint.web.app import create_app
from waypoint.web.context import WebContext


@dataclass
class Server:
    url: str
    port: int
    ctx: WebContext
    loop: asyncio.AbstractEventLoop

    def tasks(self) -> int:
        """How many asyncio tasks the server's loop holds now."""
        return len(asyncio.all_tasks(self.loop))

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine in the server's loop (e.g. on its store) and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def served(db: Path, graphs: list[Any], *, loopback_hosts: bool = True, proxy_headers: bool = False,
           **options: Any) -> Iterator[Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}"] if loopback_hosts else ["*"]
    app = create_app(SQLiteStore(db), graphs, allowed_hosts=options.pop("allowed_hosts", hosts),
                     owns_store=True, **options)
    with serve_in_thread(app, sock=sock, proxy_headers=proxy_headers,
                         forwarded_allow_ips="127.0.0.1") as server:
        yield Server(server.url, port, app.state.waypoint, server.loop)


def wait_until_serving(client: httpx.Client, seconds: float = 30) -> None:
    """Poll until a `waypoint serve` subprocess answers (it prints its banner just before
    uvicorn binds); fail naming it after `seconds`. A bound on the wait, not a timing."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.get("/api/graphs").status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the server at {client.base_url} never answered"
            time.sleep(0.05)
