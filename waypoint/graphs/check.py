"""`waypoint check`: every problem and warning of a graph, and its execution bound.

    from waypoint.graphs.check import check_graph, format_report

    report = check_graph(builder)          # a GraphBuilder, or a compiled Graph
    print(format_report(report))
    raise SystemExit(0 if report.ok else 1)
    report_dict(report)                    # the same as plain data, for --json

`problems` are what `compile()` raises `GraphError` for; `warnings` are legal
but look unintended (a join with a single incoming edge). `max_steps` is the
upper bound on node executions per run (`Graph.max_steps`), None when no
finite bound can be stated; `bound` says what it counts or why there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from waypoint.graphs._bound import explain_bound
from waypoint.graphs._checks import Spec, fans_out
from waypoint.graphs._checks_shape import loop_bodies
from waypoint.graphs.graph import Graph
from waypoint.graphs.validate import analyse

__all__ = ["CheckReport", "check_graph", "fans_out", "format_report", "report_dict", "report_lines"]


@dataclass(frozen=True)
class CheckReport:
    """What `check_graph` found. `ok` is True when `compile()` would succeed."""

    graph: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    max_steps: int | None = None
    bound: str = ""  # what the bound counts, or why there is none
    nodes: int | None = None  # None when the graph could not be looked at
    edges: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_graph(target: Any) -> CheckReport:
    """Analyse a `GraphBuilder` (before compile) or a compiled `Graph`; never raises GraphError."""
    if isinstance(target, Graph):
        spec = Spec.from_graph(target)
    elif all(hasattr(target, a) for a in ("state", "nodes", "edges", "routes", "compile")):
        spec = Spec.from_builder(target)
    else:
        return CheckReport(graph=repr(target)[:80], problems=(
            f"{type(target).__name__} is not a graph; point `waypoint check` at a GraphBuilder "
            "or a compiled Graph (MODULE_OR_FILE:NAME).",))
    problems, warnings = analyse(spec)
    size = dict(graph=spec.name, nodes=len(spec.nodes), edges=sum(1 for _ in spec.labelled()))
    if problems:
        return CheckReport(problems=tuple(problems), warnings=tuple(warnings),
                           bound="unknown until the problems are fixed", **size)  # type: ignore[arg-type]
    edges = {k: tuple(v) for k, v in spec.edges.items()}
    max_steps, why = explain_bound(spec.nodes, edges, spec.routes, loop_bodies(spec))
    return CheckReport(warnings=tuple(warnings), max_steps=max_steps, bound=why, **size)  # type: ignore[arg-type]


def format_report(report: CheckReport) -> str:
    """The report as plain text, one finding per line, for the terminal."""
    return "\n".join(text for _, text in report_lines(report))


def report_lines(report: CheckReport) -> list[tuple[str, str]]:
    """(kind, text) per line of `format_report`: kind is header, error, warning or bound."""
    size = "" if report.nodes is None else f" ({report.nodes} nodes, {report.edges} edges)"
    if report.ok:
        lines = [("header", f"graph {report.graph!r}: ok{size}")]
    else:
        count = len(report.problems)
        lines = [("header", f"graph {report.graph!r}: {count} problem{'s' if count != 1 else ''}{size}")]
        lines += [("error", f"  error: {p}") for p in report.problems]
    lines += [("warning", f"  warning: {w}") for w in report.warnings]
    if report.max_steps is not None:
        bound = f"  bound: at most {report.max_steps} node executions per run ({report.bound})"
    elif report.ok:
        bound = f"  bound: none can be stated: {report.bound}"
    else:
        bound = f"  bound: {report.bound}"
    return [*lines, ("bound", bound)]


def report_dict(report: CheckReport) -> dict[str, Any]:
    """The report as plain data (`waypoint check --json`); keys are stable."""
    return {
        "graph": report.graph, "ok": report.ok, "problems": list(report.problems),
        "warnings": list(report.warnings), "max_steps": report.max_steps, "bound": report.bound,
        "nodes": report.nodes, "edges": report.edges,
    }
