"""Node options that any kind may take: `on_error=`/`error_into=`, `cache=`, `limit=`.

The error route itself is an ordinary route (`routes[node]["error"]`), so its target,
reachability, cycles and the execution bound are checked with the others; here is
what only these options can get wrong.
"""

from __future__ import annotations

from typing import Any

from waypoint.graphs._checks import Spec
from waypoint.nodes.failure import NodeFailure

_SAMPLE = NodeFailure(node="n", type="ValueError", message="m", attempts=1)


def check_options(spec: Spec) -> list[str]:
    problems: list[str] = []
    for name, node in spec.nodes.items():
        problems += _error_options(spec, name, node) + _cache_option(name, node)
    return problems


def _error_options(spec: Spec, name: str, node: Any) -> list[str]:
    if node.on_error is not None and node.pauses:
        return [f"{node.noun} {name!r} has on_error={node.on_error!r}, but it waits for an answer and "
                "never fails by itself; remove on_error (an unanswered gate takes deadline=/escalate=)."]
    into = node.error_into
    if into is None:
        return []
    if node.on_error is None:
        return [f"node {name!r} has error_into={into!r} but no on_error=; add on_error='<fallback node>' "
                "(the failure is written only when the node takes its error route)."]
    field = spec.schema.fields.get(into)
    if field is None:
        return []  # an unknown field: reported with the node's other writes
    try:
        field.adapter.validate_python(_SAMPLE)
    except ValueError:
        return [f"node {name!r} writes its failure into {into!r}, whose type {field.annotation!r} cannot "
                f"hold a NodeFailure; declare it `{into}: NodeFailure | None = None`."]
    return []


def _cache_option(name: str, node: Any) -> list[str]:
    if node.cache is None or not (node.pauses or node.counts_loops):
        return []
    return [f"{node.noun} {name!r} has cache=, but its result depends on an answer or a loop count, not "
            "on its inputs; remove cache= (cache the nodes around it instead)."]
