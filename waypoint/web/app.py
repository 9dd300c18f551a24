"""The ASGI application behind `waypoint serve`.

    from waypoint.web.app import create_app
    from waypoint.web.security import Auth, hash_password

    app = create_app(store, {"approval": graph}, refs={"approval": "examples/approval.py:graph"})
    app = create_app(store, [graph], auth=Auth(token="s3cret"))       # graphs keyed by their name
    uvicorn.run(app, host="127.0.0.1", port=8000)

What it serves:

- `/api/...`: the JSON API (`waypoint.web.api.routes()`, SSE in `waypoint.web.events`),
  described by `/api/openapi.json`;
- the HTML pages: `waypoint.web.pages.routes()`, a list of Starlette routes, mounted as
  is when that module exists (a server without it still serves the API);
- `/static/...`: the files of `waypoint/web/static/`, when that directory exists;
- `/login` and `/logout` (`waypoint.web.login`).

Everything passes `Guard` first (Host, Origin, authentication, session cookie: see
`waypoint.web.security`). Handlers reach the server's state with
`waypoint.web.context.web(request)`. A `HTTPException` raised by any handler
becomes `{"error": detail, "status": code}` under `/api/` and plain text elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from waypoint.web.context import WebContext
from waypoint.web.guard import Guard
from waypoint.web.security import ANY_HOST, DEFAULT_HOSTS, Auth

STATIC = Path(__file__).resolve().parent / "static"


def create_app(store: Any, graphs: Mapping[str, Any] | Sequence[Any], *,
               refs: Mapping[str, str] | None = None, auth: Auth | None = None,
               allowed_hosts: Sequence[str] | None = None, enqueue: bool = False,
               pages: bool = True, owns_store: bool = False, deps: Any = None, hooks: Any = None,
               tracer_provider: Any = None) -> Starlette:
    """The Starlette app serving `store` and `graphs` (a dict by graph name, or a list of graphs).

    `auth`: who may use it (`Auth()`, the default, is nobody in particular: bind it to
    loopback only, as `waypoint serve` enforces). `allowed_hosts`: the Host header values
    accepted ("127.0.0.1:8000", or "app.internal" on any port); by default the loopback
    names (`security.DEFAULT_HOSTS`: a DNS-rebinding page is refused); `["*"]` accepts any,
    for a server reached by other names (with `auth`, or behind a proxy that checks).
    `enqueue`: answers queue runs for workers instead of executing them here.
    `pages=False` serves the API alone. The store is opened at startup; the caller closes it,
    unless `owns_store` (then the app closes it at shutdown, in the loop it was used in).
    `deps` (clients, connections: `ctx.deps` in nodes), `hooks` and `tracer_provider` are
    given to every run the server executes, as to `start`; with `enqueue` they belong to
    the workers (`Worker(..., deps=)`), and passing them is a ValueError.
    """
    if enqueue and (deps is not None or hooks is not None or tracer_provider is not None):
        raise ValueError("create_app(..., enqueue=True) executes no run: deps, hooks and tracer_provider "
                         "belong to the workers that do (Worker(..., deps=...)); pass none of them here.")
    by_name = dict(graphs) if isinstance(graphs, Mapping) else {g.name: g for g in graphs}
    hosts = DEFAULT_HOSTS if allowed_hosts is None else allowed_hosts
    accepted = frozenset() if ANY_HOST in hosts else frozenset(h.lower() for h in hosts)
    ctx = WebContext(store, by_name, dict(refs or {}), auth or Auth(), enqueue, accepted, deps=deps,
                     hooks=hooks, tracer_provider=tracer_provider)
    app = Starlette(routes=_routes(pages), lifespan=_lifespan(ctx, owns_store),
                    exception_handlers={HTTPException: _http_error})
    app.state.waypoint = ctx
    app.add_middleware(_GuardFactory, ctx=ctx)
    return app


def _routes(pages: bool) -> list[BaseRoute]:
    from waypoint.web import api, login

    routes: list[BaseRoute] = [*api.routes(), *login.routes()]
    if pages:
        routes += _page_routes()
    if STATIC.is_dir():
        routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    return routes


def _page_routes() -> list[BaseRoute]:
    """`waypoint.web.pages.routes()`, or none while that module does not exist."""
    try:
        module = importlib.import_module("waypoint.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "waypoint.web.pages":
            raise  # pages exist but something they import does not: say so
        return []
    found: list[BaseRoute] = module.routes()
    return found


class _GuardFactory(Guard):
    """`Guard` as Starlette's add_middleware builds it (with the context's settings)."""

    def __init__(self, app: Any, ctx: WebContext) -> None:
        super().__init__(app, ctx.auth or Auth(), ctx.allowed_hosts)


def _lifespan(ctx: WebContext, owns_store: bool) -> Any:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.store.open()
        try:
            yield
        finally:
            await stop_runs(ctx)
            if owns_store:
                await ctx.store.close()

    return lifespan


async def stop_runs(ctx: WebContext) -> None:
    """Interrupt the runs this server executes (resumable as they are) and wait for them."""
    tasks = list(ctx.tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code,
                            headers=exc.headers)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)
