"""The `waypoint` command, driven as a user drives it: real processes, real SQLite files.

Each command runs in its own process (`python -m waypoint.cli`), so resuming a
run is always done by a second process that finds the graph from the reference
stored with the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from waypoint import END, START, MemoryStore, resume, start
from waypoint._cli.answers import example, shape
from waypoint.engine.marks import run_marks

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = f"{ROOT / 'examples' / 'approval.py'}:graph"
CLI = [sys.executable, "-m", "waypoint.cli"]
HAS_DOT = shutil.which("dot") is not None


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYPOINT_DB", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONWARNINGS"] = "error"
    return env


def wp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd,
                          env=environment(), timeout=60)
    assert "Traceback" not in done.stderr, done.stderr  # every error is one clear line
    return done


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


@pytest.fixture
def waiting(db: str, tmp_path: Path) -> tuple[str, str]:
    """A run of the example waiting at its gate: (run id, output of `waypoint run`)."""
    done = wp("run", EXAMPLE, "--input", '{"topic": "tides"}', "--db", db, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = next(l.split(": ", 1)[1] for l in done.stdout.splitlines() if l.startswith("run_id: "))
    return run_id, done.stdout


def resume_command(output: str) -> list[str]:
    line = next(l for l in output.splitlines() if l.strip().startswith("resume:"))
    argv = shlex.split(line.split("resume:", 1)[1])
    assert argv[:2] == ["waypoint", "resume"]
    return argv[1:]


# -- run and resume ---------------------------------------------------------------
def test_run_waits_at_the_gate_and_says_how_to_resume(waiting, db):
    run_id, out = waiting
    assert run_id.startswith("run-")
    assert "status: waiting" in out
    assert "gate: approve" in out
    assert "question: Publish revision 1 of the article on 'tides'?" in out
    assert '"revision": 1' in out  # the payload
    assert 'answer:   {approved: boolean, comment: string = ""}' in out
    assert (f"waypoint resume {run_id} --gate approve --input "
            f"'{{\"approved\": true, \"comment\": \"\"}}' --db {db}") in out
    for line in ("started   research", "finished  encyclopedia", "finished  archive",
                 "finished  collect", "waiting   approve"):
        assert line in out
    assert 'notes+=["researching \'tides\' in two sources"]' in out  # a short delta
    assert "\x1b[" not in out  # plain text when stdout is not a terminal


def test_the_printed_command_finishes_the_run_from_another_process(waiting, db, tmp_path):
    run_id, out = waiting
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = wp(*resume_command(out), "--by", "ana", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "finished  approve" in done.stdout and "answered by ana" in done.stdout
    assert "-> approved" in done.stdout
    assert "status: done" in done.stdout
    assert '"published": "articles/tides-v1.md"' in done.stdout
    shown = wp("show", run_id, "--db", db)
    assert "status: done" in shown.stdout
    assert "answered by ana" in shown.stdout


def test_a_rejection_loops_back_to_draft(waiting, db):
    run_id, _ = waiting
    done = wp("resume", run_id, "--input", '{"approved": false, "comment": "more"}', "--db", db)
    assert done.returncode == 0, done.stderr
    assert "-> rejected" in done.stdout and "-> continue" in done.stdout
    assert "question: Publish revision 2" in done.stdout
    assert "(Revised after review: more)" in done.stdout


def test_invalid_json_is_a_usage_error(waiting, db):
    run_id, _ = waiting
    for args in (["run", EXAMPLE, "--input", '{"topic": '], ["resume", run_id, "--input", "{approved}"]):
        done = wp(*args, "--db", db)
        assert done.returncode == 2
        assert "Invalid value for '--input': not valid JSON" in done.stderr


def test_an_invalid_answer_names_gate_and_field_and_the_run_keeps_waiting(waiting, db):
    run_id, _ = waiting
    done = wp("resume", run_id, "--gate", "approve", "--input", '{"approved": "maybe"}', "--db", db)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ")
    assert "gate 'approve'" in done.stderr and "field 'approved'" in done.stderr
    shown = wp("show", run_id, "--db", db)
    assert "status: waiting at approve" in shown.stdout
    assert "gate: approve" in shown.stdout


def test_input_that_does_not_fit_the_state_is_a_usage_error(db):
    done = wp("run", EXAMPLE, "--input", '{"title": "no topic"}', "--db", db)
    assert done.returncode == 2
    assert "does not fit Article" in done.stderr and "topic" in done.stderr


def test_a_failing_node_exits_1_with_its_error(tmp_path, db):
    (tmp_path / "flaky.py").write_text(FLAKY)
    done = wp("run", f"{tmp_path / 'flaky.py'}:graph", "--input", "{}", "--db", db)
    assert done.returncode == 1
    assert "status: failed" in done.stdout
    assert "node 'explode'" in done.stderr and "ValueError: no luck" in done.stderr
    assert "retried   explode" in done.stdout and "attempt 1 raised ValueError('no luck')" in done.stdout
    assert "failed    explode" in done.stdout
    assert "fix the cause, then: waypoint resume " in done.stdout


FLAKY = """
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, RetryPolicy

class S(BaseModel):
    n: int = 0

g = GraphBuilder(S)

@g.node(retry=RetryPolicy(attempts=2, backoff=0.01, jitter=False))
def explode(state: S) -> dict:
    raise ValueError("no luck")

g.edge(START, "explode")
g.edge("explode", END)
graph = g.compile()
"""


def test_modules_builders_and_factories_load_from_the_current_directory(tmp_path, db):
    (tmp_path / "flows.py").write_text(FLOWS)
    for attr in ("builder", "make_graph"):
        done = wp("run", f"flows:{attr}", "--input", '{"n": 1}', "--db", db, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "status: done" in done.stdout and '"n": 2' in done.stdout
    listed = wp("runs", "--db", db)
    assert listed.stdout.count("counter") == 2


FLOWS = """
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder

class Counter(BaseModel):
    n: int

builder = GraphBuilder(Counter, name="counter")

@builder.node
def bump(state: Counter) -> dict:
    return {"n": state.n + 1}

builder.edge(START, "bump")
builder.edge("bump", END)

def make_graph():
    return builder.compile()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_interrupt_the_run_and_it_stays_resumable(tmp_path, db, sig, code):
    (tmp_path / "sleepy.py").write_text(SLEEPY)
    ref = f"{tmp_path / 'sleepy.py'}:graph"
    env = {**environment(), "NAP": "60", "PYTHONFAULTHANDLER": "1"}
    # preexec_fn: a shell without job control starts background jobs with SIGINT ignored,
    # and a child inherits that (Python then installs no Ctrl-C handler): as a terminal would,
    # give the CLI SIGINT's default disposition, whatever this test runner inherited.
    proc = subprocess.Popen([*CLI, "run", ref, "--db", db], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("started   nap"):
            break
    proc.send_signal(sig)
    out, err = _communicate_or_dump(proc)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    run_id = err.split("interrupted: run ", 1)[1].split()[0]
    listed = wp("runs", "--db", db).stdout
    assert "interrupted" in listed and "cancelled" not in listed
    assert run_id in wp("runs", "--db", db, "--status", "interrupted").stdout
    printed = shlex.split(err.split("stays resumable: ", 1)[1].strip())
    assert printed == ["waypoint", "resume", run_id, "--db", db]
    done = wp(*printed[1:])  # NAP unset: the nap is short this time
    assert done.returncode == 0, done.stderr
    assert "started   first" not in done.stdout and "finished  nap" in done.stdout


def _communicate_or_dump(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """The process's output once it exits; if it hangs, SIGABRT makes faulthandler print every
    thread's stack (PYTHONFAULTHANDLER=1), and the test fails showing where it hung."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the process did not exit within {timeout}s of the signal; its stacks:\n{err[-6000:]}")


def test_a_cancelled_run_resumes_only_by_force(waiting, db):
    run_id, _ = waiting
    cancelled = wp("cancel", run_id, "--reason", "withdrawn", "--by", "ann", "--db", db)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"{run_id}  cancelled" in cancelled.stdout
    refused = wp("resume", run_id, "--input", '{"approved": true}', "--db", db)
    assert refused.returncode == 1 and "cancelled on purpose" in refused.stderr
    assert "withdrawn" in refused.stderr
    forced = shlex.split(refused.stderr.split("resume it anyway with `", 1)[1].split("`", 1)[0])
    # the cancelled row lists no waiting gate any more (engine): name it
    done = wp(*forced[1:], "--gate", "approve", "--input", '{"approved": true}')
    assert done.returncode == 0, done.stderr
    assert "status: done" in done.stdout


SLEEPY = """
import asyncio, os
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder

class S(BaseModel):
    n: int = 0

g = GraphBuilder(S, name="sleepy")

@g.node
def first(state: S) -> dict:
    return {"n": 1}

@g.node
async def nap(state: S) -> dict:
    await asyncio.sleep(float(os.environ.get("NAP", "0")))
    return {"n": 2}

g.edge(START, "first")
g.edge("first", "nap")
g.edge("nap", END)
graph = g.compile()
"""


# -- errors -------------------------------------------------------------------------------
def test_unknown_run_id(waiting, db):
    for command in ("show", "resume"):
        done = wp(command, "run-nope", "--db", db)
        assert done.returncode == 1
        assert "no run 'run-nope'" in done.stderr


def test_graphs_that_do_not_load(tmp_path, db):
    (tmp_path / "broken.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    cases = {
        "no_such_module_xyz:graph": "no module named 'no_such_module_xyz'",
        "missing/flows.py:graph": f"there is no file {tmp_path / 'missing' / 'flows.py'}",
        f"{tmp_path / 'broken.py'}:graph": f"RuntimeError: boom (at {tmp_path / 'broken.py'} line 2)",
        f"{EXAMPLE}x": "has no attribute 'graphx'; graphs it defines: ['g', 'graph']",
        f"{ROOT / 'examples' / 'approval.py'}:Approval": "not a waypoint Graph",
        "no-colon-here": "is not MODULE_OR_FILE:GRAPH",
    }
    for ref, message in cases.items():
        done = wp("run", ref, "--db", db, cwd=tmp_path)
        assert done.returncode == 2, ref
        assert message in done.stderr, (ref, done.stderr)


def test_reading_commands_need_an_existing_database(tmp_path):
    done = wp("runs", "--db", str(tmp_path / "absent.db"))
    assert done.returncode == 2
    assert f"no waypoint database at {tmp_path / 'absent.db'}" in done.stderr
    (tmp_path / "notes.db").write_text("not a database")
    done = wp("runs", "--db", str(tmp_path / "notes.db"))
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ") and "not a database" in done.stderr


# -- runs, show, render ----------------------------------------------------------------
def test_runs_lists_the_run(waiting, db):
    run_id, _ = waiting
    listed = wp("runs", "--db", db)
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["RUN", "ID", "GRAPH", "STATUS", "STEPS", "CREATED", "UPDATED", "WAITING"]
    assert row.split()[:4] == [run_id, "approval", "waiting", "6"]
    assert row.split()[-1] == "approve"
    assert "no runs with status done" in wp("runs", "--db", db, "--status", "done").stdout


def test_show_prints_state_and_history_with_deltas(waiting, db):
    run_id, _ = waiting
    out = wp("show", run_id, "--db", db).stdout
    assert "status: waiting at approve" in out
    assert "state (after step 6):" in out and '"topic": "tides"' in out
    history = out.split("history:", 1)[1]
    assert "1  done   research" in history and "next=encyclopedia,archive" in history
    assert 'findings+=["archive: the archive holds 3 reports on tides"]' in history
    assert "wait   approve" in history and "asks: Publish revision 1" in history
    early = wp("show", run_id, "--db", db, "--state-at", "1").stdout
    assert "state (after step 1):" in early and '"findings": []' in early


def test_show_json(waiting, db):
    run_id, _ = waiting
    data = json.loads(wp("show", run_id, "--db", db, "--json").stdout)
    assert data["run"]["status"] == "waiting" and data["state"]["topic"] == "tides"
    nodes = [s["node"] for s in data["history"]]
    assert nodes[0] == "research" and set(nodes[1:3]) == {"encyclopedia", "archive"}
    assert [s["seq"] for s in data["history"]] == list(range(1, 7))
    assert data["waiting"][0]["gate"] == "approve"
    assert data["waiting"][0]["schema"]["required"] == ["approved"]


def test_render_draws_the_run(waiting, db, tmp_path):
    run_id, _ = waiting
    dot = wp("render", EXAMPLE, "--run", run_id, "--db", db)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "approval"')
    assert "research ×1" in dot.stdout and "#ffe0b2" in dot.stdout  # approve is waiting
    mmd = tmp_path / "run.mmd"
    assert wp("render", "--run", run_id, "--db", db, "-o", str(mmd)).returncode == 0
    assert mmd.read_text().startswith("flowchart")
    plain = wp("render", EXAMPLE, "--format", "mermaid")
    assert plain.stdout.startswith("flowchart") and "×" not in plain.stdout
    if HAS_DOT:
        svg = tmp_path / "run.svg"
        assert wp("render", EXAMPLE, "--run", run_id, "--db", db, "-o", str(svg)).returncode == 0
        assert "<svg" in svg.read_text()
    bad = wp("render", EXAMPLE, "-o", str(tmp_path / "run.txt"))
    assert bad.returncode == 2 and "cannot tell the format" in bad.stderr


def test_the_demo_script_runs_end_to_end(tmp_path):
    env = environment()
    env.update(WAYPOINT_DB=str(tmp_path / "demo.db"), WAYPOINT_CLI=shlex.join(CLI))
    done = subprocess.run(["bash", str(ROOT / "examples" / "demo.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: waiting" in done.stdout and "status: done" in done.stdout
    assert '"comment": "ship it"' in done.stdout
    drawing = tmp_path / ("approval.svg" if HAS_DOT else "approval.mmd")
    assert drawing.exists() and drawing.stat().st_size > 0


def test_help_does_not_import_rich_or_user_code():
    code = ("import sys; from waypoint import cli; "
            "sys.argv = ['waypoint', '--help']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "assert 'rich' not in sys.modules and 'approval' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment(), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "resume" in done.stdout and "render" in done.stdout


# -- in-process: answer shapes and run marks --------------------------------------------
def test_answer_shape_and_example_from_a_schema():
    from typing import Literal

    from pydantic import BaseModel

    class Reviewer(BaseModel):
        name: str
        level: int = 1

    class Answer(BaseModel):
        verdict: Literal["yes", "no"]
        score: float
        tags: list[str] = []
        reviewer: Reviewer
        note: str | None = None

    schema = Answer.model_json_schema()
    assert shape(schema) == ('{verdict: "yes" | "no", score: number, tags: list[string] = [], '
                             'reviewer: {name: string, level: integer = 1}, '
                             'note: string | null = null}')
    assert example(schema) == {"verdict": "yes", "score": 0, "tags": [],
                               "reviewer": {"name": "", "level": 1}, "note": None}
    Answer.model_validate(example(schema))


def test_run_marks_status_visits_and_path():
    graph = load_example()

    async def main():
        store = MemoryStore()
        first = await (await start(graph, {"topic": "t"}, store=store)).result()
        waiting = await run_marks(graph, first.run_id, store=store)
        await (await resume(graph, first.run_id, {"approved": True}, store=store)).result()
        return waiting, await run_marks(graph, first.run_id, store=store)

    waiting, done = asyncio.run(main())
    assert waiting.status["approve"] == "waiting" and waiting.status["publish"] == "not_reached"
    assert waiting.visits == {"research": 1, "encyclopedia": 1, "archive": 1, "collect": 1,
                              "draft": 1, "approve": 1}
    assert {(START, "research"), ("encyclopedia", "collect"), ("archive", "collect"),
            ("draft", "approve")} <= set(waiting.path)
    assert set(done.status.values()) == {"done", "not_reached"}
    assert done.status["revise"] == "not_reached"
    assert ("approve", "publish") in done.path and ("publish", END) in done.path
    assert ("approve", "revise") not in done.path


def test_run_marks_inside_a_subgraph():
    from pydantic import BaseModel

    from waypoint import GraphBuilder

    class Ok(BaseModel):
        ok: bool

    class S(BaseModel):
        n: int = 0

    inner = GraphBuilder(S, name="inner")
    inner.node(lambda s: {"n": s.n + 1}, name="bump")
    inner.gate("check", Ok, prompt="ok?")
    inner.edge(START, "bump")
    inner.edge("bump", "check")
    inner.edge("check", END)
    outer = GraphBuilder(S, name="outer")
    outer.subgraph("sub", inner.compile())
    outer.node(lambda s: {"n": s.n * 2}, name="after", writes=["n"])
    outer.edge(START, "sub")
    outer.edge("sub", "after")
    outer.edge("after", END)
    graph = outer.compile()

    async def main():
        store = MemoryStore()
        first = await (await start(graph, {}, store=store)).result()
        return await run_marks(graph, first.run_id, store=store)

    marks = asyncio.run(main())
    assert marks.status == {"sub": "waiting", "sub/bump": "done", "sub/check": "waiting",
                            "after": "not_reached"}
    assert marks.path == [(START, "sub"), ("sub/__start__", "sub/bump"), ("sub/bump", "sub/check")]
    graph.render("dot", status=marks.status, visits=marks.visits, path=marks.path)


def load_example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("examples_approval", ROOT / "examples" / "approval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("examples_approval", module)
    spec.loader.exec_module(module)
    return module.graph
