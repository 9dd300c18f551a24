"""`waypoint check`, driven as a user drives it: a real process per command, graphs in files.

Exit 0 when the graph compiles (warnings allowed), 1 when it has problems (each
printed with its place and fix), 2 when the reference does not load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLI = [sys.executable, "-m", "waypoint.cli"]
HEADER = """\
from typing import Annotated, Literal
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, append

class S(BaseModel):
    x: int = 0
    name: str = ""
    seen: Annotated[list[str], append] = []
    items: list[int] = []
    results: list[int] = []

g = GraphBuilder(S, name="t")
"""


def wp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONWARNINGS"] = "error"
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr  # every error is one clear line
    return done


def graph_file(tmp_path: Path, body: str, name: str = "flow.py") -> str:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return f"{path}:g"


def check(tmp_path: Path, body: str, *more: str) -> subprocess.CompletedProcess[str]:
    return wp("check", graph_file(tmp_path, body), *more, cwd=tmp_path)


# -- graphs that compile -------------------------------------------------------------------
def test_an_example_compiles_and_its_bound_is_printed():
    done = wp("check", f"{EXAMPLES / 'approval.py'}:graph")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "graph 'approval': ok (8 nodes, 12 edges)",
        "  bound: at most 16 node executions per run (node executions, map items and subgraph "
        "steps, with every loop at its cap)",
    ]


def test_json_is_one_stable_document_with_the_graph_bound(tmp_path):
    from waypoint._cli.loading import load_graph

    ref = f"{EXAMPLES / 'refund_approval.py'}:graph"
    done = wp("check", ref, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert list(report) == ["ref", "graph", "ok", "problems", "warnings", "max_steps", "bound",
                            "nodes", "edges", "note"]
    assert report["ref"] == ref and report["ok"] is True and report["problems"] == []
    assert report["max_steps"] == load_graph(ref)[0].max_steps == 16


def test_a_builder_is_analysed_and_its_bound_equals_the_compiled_one(tmp_path):
    done = check(tmp_path, """
        g.node(lambda s: {"seen": ["work"]}, name="work")
        g.loop_guard("again", max_iterations=3, routes={"continue": "work", "done": END})
        g.edge(START, "work")
        g.edge("work", "again")
    """)
    assert done.returncode == 0, done.stderr
    assert "graph 't': ok (2 nodes, 4 edges)" in done.stdout
    assert "bound: at most 8 node executions per run" in done.stdout  # work 4, the guard 4


def test_a_warning_does_not_fail_the_check(tmp_path):
    done = check(tmp_path, """
        for name in ("a", "b", "both"):
            g.node(lambda s: None, name=name, writes=[])
        g.join("j")
        g.edge(START, ["a", "b"])
        g.edge("a", "both")
        g.edge("b", "both")
        g.edge("both", "j")  # 'both' runs once per branch; the join waits for both runs
        g.edge("j", END)
    """)
    assert done.returncode == 0, done.stderr
    assert "graph 't': ok (4 nodes, 6 edges)" in done.stdout
    assert "  warning: join 'j' has a single incoming edge (from 'both')" in done.stdout


def test_a_graph_without_a_bound_says_why(tmp_path):
    done = check(tmp_path, """
        g.map("each", str, over="items", into="results")
        g.edge(START, "each")
        g.edge("each", END)
    """)
    assert done.returncode == 0, done.stderr
    assert "bound: none can be stated: map 'each' has no max_items; pass max_items=" in done.stdout


def test_a_function_returning_a_builder(tmp_path):
    ref = graph_file(tmp_path, """
        def make():
            g.node(lambda s: None, name="a", writes=[])
            g.edge(START, "a")
            g.edge("a", END)
            return g
    """).replace(":g", ":make")
    done = wp("check", ref)
    assert done.returncode == 0 and "graph 't': ok (1 nodes, 2 edges)" in done.stdout


# -- graphs with problems: exit 1, each problem named with its place and fix ------------
def test_an_edge_to_an_unknown_node(tmp_path):
    done = check(tmp_path, """
        g.node(lambda s: None, name="Draft", writes=[])
        g.edge(START, "Draft")
        g.edge("Draft", "draft")
    """)
    assert done.returncode == 1
    assert done.stdout.splitlines()[:2] == [
        "graph 't': 1 problem (1 nodes, 2 edges)",
        "  error: edge 'Draft' -> 'draft' points at unknown node 'draft' (did you mean 'Draft'?); "
        "add the node or fix the name.",
    ]
    assert "  bound: unknown until the problems are fixed" in done.stdout


def test_a_cycle_without_a_loop_guard(tmp_path):
    done = check(tmp_path, """
        g.node(lambda s: None, name="a", writes=[])
        g.node(lambda s: None, name="b", writes=[])
        g.edge(START, "a")
        g.edge("a", "b")
        g.edge("b", ["a", END])
    """)
    assert done.returncode == 1
    assert ("has no loop guard; route the back edge through g.loop_guard(...) to bound it."
            in done.stdout)
    assert "cycle a -> b -> a" in done.stdout or "cycle b -> a -> b" in done.stdout


def test_every_problem_is_reported_at_once(tmp_path):
    done = check(tmp_path, """
        @g.router(routes={"yes": "a", "maybe": "b"})
        def decide(state: S) -> Literal["yes", "no"]:
            return "yes"

        g.node(lambda s: {"nope": 1}, name="a")
        g.node(lambda s: None, name="b", writes=[])
        g.gate("approve", dict)
        g.edge(START, "decide")
        g.edge("a", END)
        g.edge("b", "approve")
        g.edge("approve", END)
    """)
    assert done.returncode == 1
    for expected in (
        "error: router 'decide' can return 'no' but has no route for it; add routes={'no': ...}.",
        "error: router 'decide' has a route for 'maybe', which it cannot return",
        "error: node 'a' writes unknown field 'nope'; the state has",
        "error: gate 'approve': its answer schema dict is not a pydantic model",
    ):
        assert expected in done.stdout
    assert done.stdout.startswith("graph 't': 4 problems")


def test_two_branches_writing_one_last_value_field(tmp_path):
    done = check(tmp_path, """
        g.node(lambda s: {"x": 1}, name="a")
        g.node(lambda s: {"x": 2}, name="b")
        g.edge(START, ["a", "b"])
        g.edge("a", END)
        g.edge("b", END)
    """, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["max_steps"] is None
    assert report["problems"] == [
        "nodes 'a' and 'b' can run at the same time and both write last-value field(s) ['x']; "
        "give the field a reducer (Annotated[..., append]) or let one node write it."]


def test_a_module_whose_compile_fails_at_import(tmp_path):
    done = check(tmp_path, """
        g.node(lambda s: None, name="a", writes=[])
        g.node(lambda s: None, name="orphan", writes=[])
        g.edge(START, "a")
        g.edge("a", END)
        g.edge("orphan", END)
        graph = g.compile()
    """)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].endswith("flow.py:g': 1 problem")
    assert lines[1] == f"  note: importing {tmp_path / 'flow.py'} raised GraphError (at " \
                       f"{tmp_path / 'flow.py'} line 19), listing these:"
    assert lines[2] == ("  error: node 'orphan' is unreachable from START; add an edge into it "
                        "or remove it.")


def test_a_builder_call_that_raises_at_import(tmp_path):
    done = check(tmp_path, """
        class Answer(BaseModel):
            ok: bool

        g.gate("approve", Answer, deadline=60)
    """)
    assert done.returncode == 1
    assert ("error: gate 'approve': deadline= and escalate= go together; give both "
            "(e.g. deadline=3600, escalate='manager') or neither.") in done.stdout


# -- references that do not load: exit 2 ----------------------------------------------
def test_a_missing_file_or_name_is_a_usage_error(tmp_path):
    ref = graph_file(tmp_path, "")
    missing = wp("check", ref.replace(":g", ":nothing"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert "has no attribute 'nothing'; graphs it defines: ['g']." in missing.stderr
    no_file = wp("check", str(tmp_path / "absent.py:g"))
    assert no_file.returncode == 2 and "there is no file" in no_file.stderr
    no_module = wp("check", "no_such_module_here:g", cwd=tmp_path)
    assert no_module.returncode == 2 and "no module named 'no_such_module_here'" in no_module.stderr


def test_a_module_that_does_not_import_or_is_not_a_graph(tmp_path):
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('no config')\n")
    broken = wp("check", "broken.py:g", cwd=tmp_path)
    assert broken.returncode == 2
    assert "importing" in broken.stderr and "RuntimeError: no config" in broken.stderr
    (tmp_path / "number.py").write_text("g = 3\n")
    number = wp("check", "number.py:g", cwd=tmp_path)
    assert number.returncode == 2 and "it is a int, not a waypoint Graph" in number.stderr
    bad_ref = wp("check", "no-colon-here")
    assert bad_ref.returncode == 2 and "is not MODULE_OR_FILE:GRAPH" in bad_ref.stderr
