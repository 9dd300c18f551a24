"""`waypoint fork` and `waypoint tick`, driven in real processes on a real SQLite file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.test_cli import EXAMPLE, wp


def run_id_of(output: str) -> str:
    return next(l.split(": ", 1)[1] for l in output.splitlines() if l.startswith("run_id: "))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


def test_fork_starts_a_new_run_from_a_step_and_leaves_the_original(db, tmp_path):
    started = wp("run", EXAMPLE, "--input", '{"topic": "tides"}', "--db", db, cwd=tmp_path)
    original = run_id_of(started.stdout)
    answer = '{"approved": true, "comment": "ok"}'
    assert wp("resume", original, "--input", answer, "--db", db).returncode == 0

    forked = wp("fork", original, "--at", "1", "--run-id", "branch", "--db", db, cwd=tmp_path)
    assert forked.returncode == 0, forked.stderr
    assert "run_id: branch" in forked.stdout and f"forked: from {original} after step 1" in forked.stdout
    assert "status: waiting" in forked.stdout  # it ran the rest again, up to the gate
    assert wp("resume", "branch", "--input", answer, "--db", db).returncode == 0
    shown = wp("show", original, "--db", db)
    assert "status: done" in shown.stdout  # the original is as it was

    missing = wp("fork", "nope", "--db", db)
    assert missing.returncode != 0 and "nope" in missing.stderr
    beyond = wp("fork", original, "--at", "999", "--db", db)
    assert beyond.returncode != 0 and "step 999 does not exist" in beyond.stderr


FLOW = '''
from pydantic import BaseModel
import waypoint as wp


class Ticket(BaseModel):
    log: list[str] = []


class Approval(BaseModel):
    approved: bool


g = wp.GraphBuilder(Ticket, name="deadlines")
g.gate("approve", Approval, deadline={deadline}, escalate="manager")
g.gate("manager", Approval)
g.edge(wp.START, "approve")
g.edge("approve", wp.END)
g.edge("manager", wp.END)
graph = g.compile()
'''


def test_tick_escalates_due_gates_and_leaves_the_rest(db, tmp_path):
    (tmp_path / "due.py").write_text(textwrap.dedent(FLOW.format(deadline=0.0)))
    (tmp_path / "later.py").write_text(textwrap.dedent(FLOW.format(deadline=3600.0)))
    due = run_id_of(wp("run", f"{tmp_path / 'due.py'}:graph", "--db", db).stdout)
    later = run_id_of(wp("run", f"{tmp_path / 'later.py'}:graph", "--db", db).stdout)

    swept = wp("tick", "--db", db)
    assert swept.returncode == 0, swept.stderr
    assert f"{due}  waiting  waiting: manager" in swept.stdout and later not in swept.stdout
    assert "1 run(s) resumed, 0 skipped" in swept.stdout
    assert "0 run(s) resumed" in wp("tick", "--db", db).stdout  # nothing else is due

    # a due run whose graph file has gone: reported, exit 1, and still waiting
    (tmp_path / "gone.py").write_text(textwrap.dedent(FLOW.format(deadline=0.0)))
    gone = run_id_of(wp("run", f"{tmp_path / 'gone.py'}:graph", "--db", db).stdout)
    (tmp_path / "gone.py").unlink()
    swept = wp("tick", "--db", db)
    assert swept.returncode == 1 and f"{gone}  skipped" in swept.stdout
    assert "status: waiting" in wp("show", gone, "--db", db).stdout
