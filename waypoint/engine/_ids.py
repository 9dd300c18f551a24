"""Run ids: the ids waypoint gives child runs, and the ids users may choose.

    child_run_id("acme", "1.0")                 # 'acme/1.0', a subgraph's child run
    child_run_id("acme", "1.0", key="item3")    # 'acme/1.0/item3', a map item's
    check_user_run_id("tenant/42")              # fine: '/' is allowed
    check_user_run_id("acme/1.0")               # RunError: shaped like a child run's id

A child run is named `<parent>/<activation>[/<key>]`, and an activation id is
`<seq>.<i>`, so every child id has a '/'-separated part made of two numbers
joined by a dot. A user's id may contain '/' ("tenant/42") but no such part:
then no user id can ever equal a child id, whatever runs exist, and a subgraph
can never take a user's run for its child (its claim also checks the parent).
"""

from __future__ import annotations

import re

from waypoint.errors import RunError

# A '/'-separated part that is an activation id ('<seq>.<i>'): the mark of a child run id.
_ACTIVATION_PART = re.compile(r"/(\d+\.\d+)(?=/|$)")


def child_run_id(parent_run_id: str, activation: str, key: str | None = None) -> str:
    """The id of the child run that `activation` of `parent_run_id` runs (stable across crashes)."""
    return f"{parent_run_id}/{activation}" + (f"/{key}" if key else "")


def check_user_run_id(run_id: object) -> str:
    """`run_id` if a user may name a run so; otherwise a RunError saying why and what to use.

    Refused: a non-string, an empty or blank id, and an id with a part like '/1.0'
    (the mark of a child run's id, see the module docstring).
    """
    if not isinstance(run_id, str):
        raise RunError(f"run_id={run_id!r}: a run id is a string ({type(run_id).__name__} given); "
                       "pass a str, or run_id=None for a generated id.")
    if not run_id.strip():
        raise RunError(f"run_id={run_id!r}: a run id cannot be empty or blank; pass a name such as "
                       "'order-42' or 'tenant/42', or run_id=None for a generated id.")
    match = _ACTIVATION_PART.search(run_id)
    if match is not None:
        suggestion = _ACTIVATION_PART.sub(r"-\1", run_id)
        raise RunError(
            f"run_id={run_id!r}: the part {match.group(1)!r} after a '/' has the shape of an "
            "activation id ('<seq>.<i>'), which waypoint reserves for child runs (the subgraph "
            f"child runs of a run 'acme' are 'acme/1.0', 'acme/2.0/item3'...), so this id could "
            f"be taken for one. Choose another id, e.g. {suggestion!r}.", run_id=run_id)
    return run_id
