"""State edits: a person changes fields of a run's state, as a recorded step.

    step = edit_step(graph, {"draft": "shorter"}, seq=info.last_seq + 1, by="ana",
                     where=f"run {run_id!r}")    # validated; nothing written yet
    await store.append(run_id, owner, [step])    # the edit is now part of the log

An edit is a Step of kind "edit": its delta is the update, encoded like a node's,
and its extra says who made it (`by`; `at` is the step's own time). `Frontier.apply`
applies it like a node's update (a reducer field merges, `append` appends; any
other field is replaced), so replay, `state_at` and resumed runs all see it.
It activates nothing: the run goes on from the work that was pending.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from waypoint._messages import problems
from waypoint.checkpoints.records import Step
from waypoint.errors import UpdateError
from waypoint.graphs.graph import Graph

EDIT_NODE = "-"  # an edit belongs to no node: recorded under "-", as a run-level failure is


def edit_step(graph: Graph[Any], update: Mapping[str, Any], *, seq: int, by: str | None = None,
              where: str, run_id: str | None = None, state: BaseModel | None = None) -> Step:
    """The "edit" Step at `seq` that sets `update`'s fields, each validated against the state.

    `where` names the place for error messages ("fork of run 'x' at step 3"). A field
    the state does not have, or a value that does not fit its field, is an UpdateError
    naming the field, raised before anything is written. Given the `state` the edit
    applies to, the state model's own validators are run on the result too (as on
    replay), so an edit they refuse is refused here and not when the run is loaded.
    """
    values = check_edit(graph, update, where=where, run_id=run_id)
    if state is not None:
        try:
            graph.schema.apply(state, values, node=EDIT_NODE)
        except UpdateError as exc:
            said = str(exc).removeprefix(f"node {EDIT_NODE!r}: ")  # no node made it: `where` says who
            raise UpdateError(f"{where}: {said} Nothing was written.", run_id=run_id) from None
    extra = {"by": by} if by is not None else {}
    return Step(seq=seq, kind="edit", node=EDIT_NODE, activation=EDIT_NODE, at=time.time(),
                delta=graph.schema.encode(values), extra=extra)


def check_edit(graph: Graph[Any], update: Mapping[str, Any], *, where: str,
               run_id: str | None = None) -> dict[str, Any]:
    """`update` validated field by field against `graph`'s state model (typed values)."""
    schema = graph.schema
    model = schema.model.__name__
    if not isinstance(update, Mapping) or not update:
        raise UpdateError(f"{where}: update={update!r:.200} must be a non-empty dict of field "
                          f"values of {model} (fields {sorted(schema.fields)}).", run_id=run_id)
    unknown = sorted(name for name in update if name not in schema.fields)
    if unknown:
        raise UpdateError(f"{where}: update= names unknown field(s) {unknown}; the state {model} "
                          f"has {sorted(schema.fields)}. Fix the key(s); nothing was written.",
                          run_id=run_id)
    values = {}
    for name, value in update.items():
        spec = schema.fields[name]
        try:
            values[name] = spec.adapter.validate_python(value)
        except ValidationError as exc:
            problem = problems(exc)
            raise UpdateError(f"{where}: update= field {name!r} got {value!r:.200}, which does not "
                              f"fit {model}.{name}: {problem}. Fix the value; nothing was written.",
                              run_id=run_id) from None
    return values
