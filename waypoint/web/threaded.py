"""A real uvicorn serving an app in a thread of this process: for tests, examples, notebooks.

    from waypoint.web import serve_in_thread

    with serve_in_thread(create_app(store, [graph])) as server:   # 127.0.0.1, a free port
        httpx.get(server.url + "/api/runs")
    # left: the server stopped (runs it executed interrupted, resumable), the thread joined

    url, stop = serve_in_thread(app)     # or without a block: call stop() when done

It returns once uvicorn listens (its startup finished, lifespan included), or raises
`RuntimeError` if it could not start. The server has its own event loop in its own
thread (`server.loop`, for `asyncio.run_coroutine_threadsafe`), so the caller may
block (httpx, a browser driver) or run a loop of its own. In-process ASGI test
clients are no substitute for event streams: they buffer them. For production,
run `waypoint serve` (or uvicorn) instead.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServedApp:
    """A running server: `url` ("http://127.0.0.1:PORT"), `port`, `loop` (its event loop)
    and `stop()` (idempotent). A context manager that stops it, and `url, stop = ...`."""

    url: str
    port: int
    loop: asyncio.AbstractEventLoop
    _halt: Any = field(repr=False)

    def stop(self) -> None:
        self._halt()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.url, self.stop))

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None,
                    timeout: float = 30.0, **config: Any) -> ServedApp:
    """Serve `app` with uvicorn in a daemon thread on `host`:`port` (0: a free port), or on
    `sock`, a socket you bound (to know the port before making the app). `config` goes to
    `uvicorn.Config` (defaults: log_level "warning", lifespan "on", timeout_graceful_shutdown 2,
    timeout_keep_alive 30)."""
    import uvicorn

    if sock is None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # accepted connections inherit it. asyncio sets it only on sockets whose proto is TCP,
        # which socket.socket() leaves 0: without it every response waited ~40 ms for the
        # client's delayed ACK (Nagle), 45 ms a request instead of 0.5 ms here
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    settings = {"log_level": "warning", "lifespan": "on", "timeout_graceful_shutdown": 2,
                "timeout_keep_alive": 30, **config}
    ready = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets)
            finally:
                ready.set()  # listening, or failed (then `started` stays False)

    server = Server(uvicorn.Config(app, **settings))
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the caller when it happens during startup
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name=f"uvicorn:{sock.getsockname()[1]}", daemon=True)
    thread.start()

    def halt() -> None:
        server.should_exit = True
        thread.join(timeout)
        sock.close()

    if not ready.wait(timeout) or not server.started:
        halt()
        why = f": {type(failure[0]).__name__}: {failure[0]}" if failure else " (see its log above)"
        raise RuntimeError(f"serve_in_thread: uvicorn did not start within {timeout} s{why}")
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    return ServedApp(f"http://{shown}:{bound[1]}", bound[1], loop, halt)
