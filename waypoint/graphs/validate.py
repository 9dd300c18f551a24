"""compile(): structural validation and analysis of a builder's graph (networkx).

Problems are collected, not raised one at a time, so that a user fixing a graph
sees every mistake at once; each line names the node or edge and the fix. The
checks live in `_checks_*.py`:

- `_checks_edges`: node names, edges and routes, START and END;
- `_checks_fields`: writes to unknown fields, writes whose type cannot fit
  (where annotations tell), gate, map, subgraph and LLM node settings;
- `_checks_shape`: reachability, cycles and the loop guards that bound them;
- `_checks_forks`: joins without a fork, guards shared by branches, parallel
  writes to last-value fields.

`analyse()` also returns warnings: things that are legal but look unintended,
which `waypoint check` shows and `compile()` does not raise for.
"""

from __future__ import annotations

from typing import Any

from waypoint.errors import GraphError
from waypoint.graphs._bound import execution_bound
from waypoint.graphs._checks import Spec
from waypoint.graphs._checks_edges import check_edges, check_names
from waypoint.graphs._checks_fields import check_fields
from waypoint.graphs._checks_forks import check_forks, parallel_writes
from waypoint.graphs._checks_options import check_options
from waypoint.graphs._checks_shape import check_shape, join_upstream, loop_bodies
from waypoint.graphs.graph import Graph, freeze


def analyse(spec: Spec) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a graph definition."""
    problems = check_names(spec) + check_edges(spec)
    wired = not problems  # the shape checks need every edge to lead to a known node
    problems += check_fields(spec) + check_options(spec)
    warnings: list[str] = []
    if wired:
        problems += check_shape(spec)
        found, warnings = check_forks(spec)
        problems += found + parallel_writes(spec)
    return problems, warnings


def graph_error(name: str, problems: list[str]) -> GraphError:
    error = GraphError(f"graph {name!r} has {len(problems)} problem(s):\n- " + "\n- ".join(problems))
    error.problems = list(problems)  # type: ignore[attr-defined]  # for `waypoint check`
    return error


def build(builder: Any) -> Graph[Any]:
    spec = Spec.from_builder(builder)
    problems, _ = analyse(spec)
    if problems:
        raise graph_error(spec.name, problems)
    bodies = loop_bodies(spec)
    edges = {k: tuple(v) for k, v in spec.edges.items()}
    return Graph(
        name=spec.name,
        schema=spec.schema,
        nodes=freeze(dict(spec.nodes)),
        edges=freeze(edges),
        routes=freeze({k: freeze(dict(v)) for k, v in spec.routes.items()}),
        loop_bodies=freeze(bodies),
        join_upstream=freeze(join_upstream(spec)),
        max_steps=execution_bound(spec.nodes, edges, spec.routes, bodies),
    )
