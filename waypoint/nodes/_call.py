"""Calling user functions: sync ones in a daemon worker thread (`_threads`), async ones awaited."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from waypoint.nodes._threads import in_thread


def arity(fn: Callable[..., Any]) -> int:
    """2 if `fn` wants `(state, ctx)`, else 1.

    Parameters with defaults do not count (`lambda s, name=name: ...` takes the
    state only), unless the second one is named `ctx`/`context` or annotated
    `NodeContext`.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    positional = [p for p in params if p.kind in kinds]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    if len(required) >= 2:
        return 2
    second = positional[1] if len(positional) > 1 else None
    if second is not None and (
        second.name in ("ctx", "context") or "NodeContext" in str(second.annotation)
    ):
        return 2
    return 1


def is_async(fn: Callable[..., Any]) -> bool:
    # an object whose __call__ is `async def` is awaited like an async function
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def call(fn: Callable[..., Any], args: tuple[Any, ...], *, run_async: bool) -> Any:
    """Await `fn(*args)`; a sync `fn` runs in a worker thread so the loop keeps going."""
    if run_async:
        return await fn(*args)
    return await in_thread(fn, *args)
