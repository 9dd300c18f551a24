"""Crash and resume for real: subprocesses, SIGKILL, SQLite files on disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import waypoint as wp

sys.path.insert(0, str(Path(__file__).parent))
from crash_worker import build  # noqa: E402

WORKER = Path(__file__).parent / "crash_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}


def spawn(mode, db, run_id, exec_log, generation, hold_at=""):
    """The worker; with `hold_at` its run cannot finish before step `hold_at` is seen and killed."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, str(db), run_id, str(exec_log), str(generation), str(hold_at)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def done_activations(db) -> set[str]:
    """Completed activations, and map items as "activation[index]"."""
    from waypoint.checkpoints.records import decode_step

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT payload FROM steps WHERE run_id = ? AND kind IN ('done', 'item')",
                            ("crash",)).fetchall()
    steps = [decode_step(r[0], run_id="crash") for r in rows]
    return {s.activation if s.kind == "done" else f"{s.activation}[{s.extra['index']}]" for s in steps}


def last_seq(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT max(seq) FROM steps WHERE run_id = ?", ("crash",)).fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:
        return 0


def wait_for_seq(proc, db, target, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if last_seq(db) >= target:
            return True
        time.sleep(0.002)
    raise AssertionError(f"run did not reach step {target}")


def uninterrupted_final(tmp_path) -> str:
    graph = build(str(tmp_path / "clean.log"), "0")
    return wp.run_sync(graph, store=wp.SQLiteStore(tmp_path / "clean.db")).state.final


@pytest.mark.timeout(120)
# The run has 19 steps: a, b, c, merge, 4 guard passes, 3 loop steps, 6 map items, each, final.
@pytest.mark.parametrize("kill_at", [[1], [2, 5], [4, 9, 14], [7, 12, 15, 17], [3, 13, 18]])
def test_sigkill_at_any_step_loses_nothing_and_repeats_nothing(tmp_path, kill_at):
    db, log = tmp_path / "runs.db", tmp_path / "exec.log"
    proc = spawn("start", db, "crash", log, 0, kill_at[0])
    committed_before_kill: list[set[str]] = []
    for generation, target in enumerate(kill_at, start=1):
        assert wait_for_seq(proc, db, target), f"the run finished before step {target}"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        committed_before_kill.append(done_activations(db))
        proc = spawn("resume", db, "crash", log, generation, ([*kill_at, ""])[generation])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["done", uninterrupted_final(tmp_path)]

    final_done = done_activations(db)
    runs = [line.split() for line in log.read_text().splitlines()]
    for generation, done in enumerate(committed_before_kill, start=1):
        assert done <= final_done  # nothing committed was lost
        again = {act for gen, act, _ in runs if int(gen) >= generation} & done
        assert not again, f"completed activations ran again after kill {generation}: {again}"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


GATE_WORKER = Path(__file__).parent / "gate_worker.py"


def gate_worker(*args):
    return subprocess.run([sys.executable, str(GATE_WORKER), *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=60)


def test_a_waiting_run_is_resumed_by_id_from_another_process(tmp_path):
    import json

    db = tmp_path / "runs.db"
    started = json.loads(gate_worker("start", db).stdout)
    assert started["status"] == "waiting" and started["state"]["text"] == "REFUND ORDER 42"

    bad = gate_worker("resume", db, started["run_id"], '{"approve": "maybe"}')
    assert bad.returncode == 1 and "gate 'decide'" in bad.stderr and "'approve'" in bad.stderr

    done = gate_worker("resume", db, started["run_id"], '{"approve": true, "reason": "ok"}')
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["status"] == "done" and final["state"]["decision"] == "True:ok"
    with sqlite3.connect(db) as conn:
        nodes = [r[0] for r in conn.execute("SELECT node FROM steps WHERE run_id = ? AND kind = 'done' "
                                            "ORDER BY seq", (started["run_id"],))]
    assert nodes == ["triage", "decide", "close"]  # nothing ran twice across the processes


# start() is one commit (inside_commit 1); the 2nd is node a's, with a finished and uncommitted
@pytest.mark.parametrize("point,nth", [("before_commit", 2), ("inside_commit", 2), ("after_commit", 5)])
def test_named_fault_points_lose_nothing(tmp_path, point, nth):
    """A node's work done but not committed runs again; a committed step never does."""
    db, log = tmp_path / "runs.db", tmp_path / "exec.log"
    crashed = subprocess.run(
        [sys.executable, str(WORKER), "start", str(db), "crash", str(log), "0"],
        capture_output=True, text=True, env={**ENV, "WAYPOINT_FAULT": f"{point}@{nth}"}, timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    committed = done_activations(db)
    proc = spawn("resume", db, "crash", log, 1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["done", uninterrupted_final(tmp_path)]
    runs = [line.split() for line in log.read_text().splitlines()]
    before = {act for gen, act, _ in runs if gen == "0"}
    after = {act for gen, act, _ in runs if gen == "1"}
    assert not after & committed  # committed work never runs again
    assert before - committed <= after  # work that was in flight (or uncommitted) runs again
    if point == "after_commit":
        assert before <= committed  # every step was durable; its successors had not started
    else:
        assert before - committed, "the crash should have caught finished work uncommitted"


def test_a_crash_inside_a_subgraph_resumes_inside_it(tmp_path):
    worker = Path(__file__).parent / "sub_worker.py"
    db, log = tmp_path / "runs.db", tmp_path / "exec.log"

    def run(mode, generation, **env):
        return subprocess.run([sys.executable, str(worker), mode, str(db), str(log), generation],
                              capture_output=True, text=True, env={**ENV, **env}, timeout=60)

    crashed = run("start", "0", WAYPOINT_FAULT="after_commit@3")  # pre, i1, i2 committed
    assert crashed.returncode == -signal.SIGKILL
    done = run("resume", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pre,i1,i2,i3,post"
    second = [line.split()[2] for line in log.read_text().splitlines() if line.startswith("1 ")]
    assert second == ["i3", "post"]  # the child picked up after i2; nothing ran twice
