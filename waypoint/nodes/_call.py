"""Calling user functions: sync ones in a worker thread, async ones awaited."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable


def arity(fn: Callable[..., Any]) -> int:
    """Number of positional parameters `fn` accepts (2 means it wants the context too)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


async def call(fn: Callable[..., Any], args: tuple[Any, ...], *, run_async: bool) -> Any:
    """Await `fn(*args)`; a sync `fn` runs in a worker thread so the loop keeps going."""
    if run_async:
        return await fn(*args)
    return await asyncio.to_thread(fn, *args)
