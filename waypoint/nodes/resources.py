"""Per-execution resources: opened by a node on first use, shared by the run's activations, closed
when the run's execution ends (done, waiting at a gate, failed, interrupted).

    conn = ctx.resources.get(("mcp", server), lambda: Connection(server))   # in a node; None outside
    ...                                                                     # the engine's execution
    end = begin()          # engine/runs.py, when one execution of a run starts: its nodes see them
    ...
    await end()            # when it ends, however: each resource's aclose()

A resource is anything with `async aclose()`. The registry knows nothing of what it
holds (MCP connections are the first user, `nodes/_mcp_session.py`); the engine only
opens one per execution and closes it at the end, so a connection that costs seconds
to open (a stdio MCP server) is opened once per execution rather than per activation.
It is found through a context variable that the execution sets: the node tasks the
engine starts copy it, so `NodeContext.resources` reads it without the engine passing
it node by node. Outside an execution (a node called directly, `run_sync` of a lone
node) it is None and a node falls back to resources of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

__all__ = ["Resource", "Resources", "begin", "current", "executing"]


class Resource(Protocol):
    async def aclose(self) -> None: ...


R = TypeVar("R", bound=Resource)


class Resources:
    """One execution's resources by key; `get` opens one at most once (until it goes stale)."""

    def __init__(self) -> None:
        self._open: dict[Hashable, Any] = {}
        self._all: list[Resource] = []  # every one opened, replaced ones too: all are closed
        self.closed = False

    def get(self, key: Hashable, open_: Callable[[], R], *, stale: Callable[[R], bool] | None = None) -> R:
        """The resource under `key`, made by `open_()` on first use or when `stale(it)` says it is dead.

        No await happens here, so concurrent activations asking at once get one resource.
        """
        if self.closed:
            raise RuntimeError("this execution's resources are closed: the run's execution has ended")
        found: R | None = self._open.get(key)
        if found is None or (stale is not None and stale(found)):
            found = self._open[key] = open_()
            self._all.append(found)
        return found

    async def aclose(self) -> None:
        """Close every resource (at once); the first error is raised once all are closed."""
        self.closed = True
        opened, self._all, self._open = self._all, [], {}
        results = await asyncio.gather(*(r.aclose() for r in opened), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]


_CURRENT: ContextVar[Resources | None] = ContextVar("waypoint_execution_resources", default=None)


def current() -> Resources | None:
    """The resources of the execution this code runs in; None outside one."""
    return _CURRENT.get()


def begin() -> Callable[[], Awaitable[None]]:
    """Open one execution's resources for everything started after it in this task;
    returns the function to await at the execution's end, which closes them.

        end = begin()
        try:
            ...                   # the execution
        finally:
            await end()           # also when cancelled: what it opened is closed, then reaped

    Closing is shielded from a cancellation of the execution, so an interrupted run still
    stops (and reaps) what it opened before its task ends; a resource that fails to close
    is logged, and does not change how the run ended.
    """
    resources = Resources()
    token = _CURRENT.set(resources)

    async def end() -> None:
        _CURRENT.reset(token)
        closing = asyncio.ensure_future(resources.aclose())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait([closing])  # cancelled again while closing: finish closing first
            raise
        except Exception as exc:
            logging.getLogger("waypoint").warning("closing a run's resource failed: %r", exc)

    return end


@asynccontextmanager
async def executing() -> AsyncIterator[Resources]:
    """`begin()` as a context manager: `async with executing() as resources: ...`."""
    end = begin()
    resources = current()
    assert resources is not None
    try:
        yield resources
    finally:
        await end()
