"""`waypoint check MODULE_OR_FILE:GRAPH`: every problem, warning and the bound, without a run.

    waypoint check examples/approval.py:graph
    waypoint check myapp.flows:builder --json

GRAPH may be a `GraphBuilder` (analysed as it is, so that every problem is
reported rather than the first compile() raising), a compiled `Graph`, or a
function returning either. A module that compiles its graph at import and
fails is reported too: the problems its `GraphError` lists, and the line that
raised it. Exit codes: 0 the graph compiles (warnings allowed), 1 it has
problems, 2 the reference does not load (no such file, module or name).
"""

from __future__ import annotations

from typing import Any

from waypoint._cli.common import dumps
from waypoint._cli.output import Out

STYLES = {"error": "red", "warning": "yellow", "note": "dim", "bound": "cyan"}


def check_command(ref: str, as_json: bool, out: Out) -> int:
    """Print the report of the graph `ref` names; return the exit code."""
    report, canonical, note = _report(ref)
    if as_json:
        from waypoint.graphs.check import report_dict

        out.line(dumps({"ref": canonical, **report_dict(report), "note": note}, indent=2))
    else:
        _print(report, note, out)
    return 0 if report.ok else 1


def _report(ref: str) -> tuple[Any, str, str | None]:
    """(report, canonical reference, a note on where the definition raised, if it did)."""
    from waypoint._cli.loading import DefinitionFailed, load_definition
    from waypoint.graphs.check import CheckReport, check_graph

    try:
        target, canonical = load_definition(ref)
    except DefinitionFailed as exc:
        problems = getattr(exc.error, "problems", None) or [str(exc.error)]
        note = f"{exc.doing} raised GraphError{exc.where}, listing these"
        report = CheckReport(graph=ref, problems=tuple(problems),
                             bound="unknown until the problems are fixed")
        return report, ref, note
    return check_graph(target), canonical, None


def _print(report: Any, note: str | None, out: Out) -> None:
    from waypoint.graphs.check import report_lines

    lines = report_lines(report)
    if note is not None:
        lines.insert(1, ("note", f"  note: {note}:"))
    for kind, text in lines:
        style = STYLES.get(kind) or ("bold green" if report.ok else "bold red")
        out.line((text, style))
