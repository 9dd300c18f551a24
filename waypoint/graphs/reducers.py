"""Reducers: how a field merges updates instead of being overwritten.

    class State(BaseModel):
        notes: Annotated[list[str], append] = []        # updates are appended
        total: Annotated[int, reducer(operator.add)] = 0  # updates are summed

A field without a reducer keeps the last value written. Reducers run in commit
order, also when a run is replayed from its log, so they must be deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from waypoint._reducers import Reducer  # its home is below the layers: nodes tell reducers too

__all__ = ["Reducer", "append", "merge", "reducer"]


def reducer(fn: Callable[[Any, Any], Any]) -> Reducer:
    """Mark `fn(current, update) -> new` as a field's reducer."""
    return Reducer(fn, getattr(fn, "__name__", repr(fn)))


def _append(current: Any, update: Any) -> Any:
    if current is None:
        return list(update)
    return [*current, *update]


def _merge(current: Any, update: Any) -> Any:
    return {**(current or {}), **update}


append = Reducer(_append, "append")
"""List field: each update (a list) is appended to the current list."""

merge = Reducer(_merge, "merge")
"""Dict field: each update (a dict) is merged into the current dict."""
