"""What the server knows, reachable from any request: `web(request)`.

    from waypoint.web.context import web

    async def page(request: Request) -> Response:
        ctx = web(request)
        runs = await ctx.store.list_runs(status="waiting")
        graph = ctx.graph_of(runs[0])          # the Graph that run was started from, or None
        ...

One `WebContext` per server, made by `create_app` and kept on `app.state.waypoint`.
It holds the opened store, the graphs the server was given (by graph name) and
the settings the handlers read. What a handler *does* to a run (start, answer a
gate, fork, cancel) lives in `waypoint.web.actions`, shared by the JSON API and
the pages so that both behave and fail the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from waypoint.checkpoints.protocol import Store
    from waypoint.checkpoints.records import RunInfo
    from waypoint.graphs.graph import Graph
    from waypoint.web.events import Changes
    from waypoint.web.security import Auth


@dataclass
class WebContext:
    """The server's state.

    - `store`: the opened Store every request reads and writes (SQLite or PostgreSQL).
    - `graphs`: graph name -> compiled Graph, the graphs given to `waypoint serve`.
      A run's graph is `graphs[info.graph]` (`graph_of(info)`); runs of other graphs
      are listed and shown from their log, but cannot be started, answered or forked.
    - `refs`: graph name -> "module:attr" reference, stored with runs this server starts
      so that `waypoint resume` and workers can load the graph later.
    - `auth`: who may use the server (`waypoint.web.security.Auth`); `Auth()` means none
      (allowed on loopback binds only).
    - `enqueue`: answers queue the run for a worker (`resume(..., enqueue=True)`)
      instead of executing it in this server's event loop.
    - `allowed_hosts`: Host header values accepted (DNS-rebinding guard; a name without a
      port matches any port); empty: any (create_app's `["*"]`).
    - `changes`: wakes the event streams of a run when it changes (`waypoint.web.events`);
      call `ctx.changes.notify(run_id)` after writing to a run.
    - `tasks`: runs this server executes now (background tasks), cancelled on shutdown;
      `handles`: their RunHandles by run id (a cancel of such a run stops it here).
    - `deps`, `hooks`, `tracer_provider`: given to every run this server executes (started,
      answered, resumed; a fork gets `deps`), as `start(..., deps=, hooks=, tracer_provider=)`.
    - `asked`: when each waiting run's pending gates were asked, by run id, with the run's
      last seq (`waypoint.web.views.pending` reads a run's log again only when it changed).
    """

    store: Store
    graphs: dict[str, Graph[Any]]
    refs: dict[str, str] = field(default_factory=dict)
    auth: Auth | None = None
    enqueue: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    changes: Changes = field(default_factory=lambda: _changes())
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    handles: dict[str, Any] = field(default_factory=dict)
    deps: Any = None
    hooks: Any = None
    tracer_provider: Any = None
    asked: dict[str, tuple[Any, list[tuple[str, float]]]] = field(default_factory=dict)

    def run_options(self) -> dict[str, Any]:
        """What `start` and `resume` get for a run executed here: `deps`, `hooks`, `tracer_provider`."""
        return {"deps": self.deps, "hooks": self.hooks, "tracer_provider": self.tracer_provider}

    def graph_of(self, info: RunInfo) -> Graph[Any] | None:
        """The graph run `info` was started from, if this server was given it."""
        return self.graphs.get(info.graph)


def _changes() -> Changes:
    from waypoint.web.events import Changes

    return Changes()


def web(request: HTTPConnection) -> WebContext:
    """The server's `WebContext`, from any request or websocket handler."""
    ctx: WebContext = request.app.state.waypoint
    return ctx
