"""Reducers, as every layer tells them: the state schema (graphs) and the LLM node (nodes).

    field_reducer(Essay, "notes")     # the reducer of `notes: Annotated[list[str], append]`, or None
    is_reducer(append)                # True: a Reducer, or a plain function in Annotated[...]

`Reducer` is public as `waypoint.graphs.reducers.Reducer` (with `reducer`,
`append`, `merge`); it lives here because nodes sit below graphs and must tell
a reducer field the same way. Imports nothing of waypoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Reducer", "field_reducer", "is_reducer"]


@dataclass(frozen=True)
class Reducer:
    """Wraps `fn(current, update) -> new` for use in `Annotated[...]`."""

    fn: Callable[[Any, Any], Any]
    name: str

    def __call__(self, current: Any, update: Any) -> Any:
        return self.fn(current, update)


def is_reducer(meta: Any) -> bool:
    """Whether a piece of a field's `Annotated` metadata is its reducer."""
    return isinstance(meta, Reducer) or inspect.isfunction(meta) or inspect.isbuiltin(meta)


def field_reducer(model: Any, name: str) -> Callable[[Any, Any], Any] | None:
    """The reducer of `model`'s field `name` (a pydantic model class), or None for a last-value field."""
    info = getattr(model, "model_fields", {}).get(name)
    return next((m for m in (info.metadata if info is not None else ()) if is_reducer(m)), None)
