"""Several processes on one SQLite file: no lock errors, exact counts, one executor per run."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

import waypoint as wp

sys.path.insert(0, str(Path(__file__).parent))
import fault_harness as harness  # noqa: E402

HARNESS = Path(__file__).parent / "fault_harness.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
ENV.pop("WAYPOINT_FAULT", None)


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HARNESS), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def go(procs: list[subprocess.Popen]) -> None:
    """Wait until every worker has said "ready" (imports done), then tell them all to go at once."""
    for proc in procs:
        line = proc.stdout.readline()  # a worker writes nothing after "ready" until it hears go
        assert line == "ready\n", line + (proc.stderr.read() if proc.poll() is not None else "")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.timeout(120)
def test_processes_sharing_a_fresh_file_never_see_database_is_locked(tmp_path):
    """3 processes x 40 runs x 6 steps, 20 runs at a time each, all starting at one instant
    on a file none of them has created yet (the schema is created under contention too)."""
    db, procs, runs, length = tmp_path / "shared.db", 3, 40, 6
    workers = [spawn("many", db, f"p{i}", runs, 20) for i in range(procs)]
    go(workers)
    began = time.monotonic()
    outputs = [finish(w) for w in workers]
    seconds = time.monotonic() - began
    for (result, err), i in zip(outputs, range(procs)):
        assert "locked" not in err and "busy" not in err, err
        assert result == {"done": runs, "errors": []}, (i, result)
    with closing(sqlite3.connect(db)) as conn:
        per_run = conn.execute("SELECT run_id, count(*), min(seq), max(seq) FROM steps GROUP BY run_id").fetchall()
        rows = conn.execute("SELECT status, last_seq, lease_owner FROM runs").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(per_run) == procs * runs
    assert all(row[1:] == (length, 1, length) for row in per_run), per_run
    assert Counter(rows) == {("done", length, None): procs * runs}
    harness.record("many_processes_one_file", processes=procs, runs=procs * runs,
                   rows_checked=procs * runs * length, lock_errors=0,
                   runs_per_s=round(procs * runs / max(seconds, 1e-3), 1))


def run_sync_failed(graph: wp.Graph, db: Path, run_id: str) -> None:
    """A run of counter_graph that failed at n2 (n0 and n1 done): resumable."""
    async def main():
        store = wp.SQLiteStore(db)
        try:
            handle = await wp.start(graph, store=store, run_id=run_id, deps={"fail": True})
            result = await handle.result(raise_on_failure=False)
            assert result.status == "failed" and result.state.n == 2
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_two_processes_resuming_one_run_at_once_exactly_one_executes_it(tmp_path):
    db, log = tmp_path / "runs.db", tmp_path / "exec.log"
    graph = harness.counter_graph(sleep=0.02)
    rounds = 4
    for r in range(rounds):
        run_sync_failed(graph, db, f"race-{r}")
    outcomes = []
    for r in range(rounds):
        pair = [spawn("race", db, f"race-{r}", log, tmp_path / f"tried-{r}") for _ in range(2)]
        go(pair)
        results = [finish(p)[0] for p in pair]
        outcomes.append(sorted(res["outcome"] for res in results))
        assert outcomes[-1] == ["done", "lease"], results
        assert next(res for res in results if res["outcome"] == "done")["n"] == 6
        refused = next(res for res in results if res["outcome"] == "lease")
        assert f"run 'race-{r}' is being executed by" in refused["error"]
    started = Counter((line.split()[1].rsplit(":", 1)[0], line.split()[2])
                      for line in log.read_text().splitlines())
    for r in range(rounds):  # n0, n1 done before; n2..n5 executed by exactly one process, once
        assert {node: started[(f"race-{r}", node)] for node in ("n0", "n1", "n2", "n3", "n4", "n5")} == \
            {"n0": 0, "n1": 0, "n2": 1, "n3": 1, "n4": 1, "n5": 1}
    harness.record("simultaneous_resume", runs=rounds, executed_once=rounds, lease_errors=rounds)


@pytest.mark.timeout(60)
def test_a_lease_of_another_host_is_waited_out_then_taken_over_once_expired(tmp_path, monkeypatch):
    db, log = tmp_path / "runs.db", tmp_path / "exec.log"
    graph = harness.counter_graph()
    run_sync_failed(graph, db, "stale")
    monkeypatch.setitem(harness._trace, "log", str(log))

    def hold(expiry: float) -> None:  # as a process on another machine would have left it
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("UPDATE runs SET status = 'running', lease_owner = 'otherhost:1:x', "
                         "lease_expiry = ? WHERE run_id = 'stale'", (expiry,))

    async def resume():
        store = wp.SQLiteStore(db)
        try:
            return await (await wp.resume(graph, "stale", store=store)).result()
        finally:
            await store.close()

    hold(time.time() + 60)  # alive elsewhere: never taken over, nothing changes
    before = harness.dump(db)
    with pytest.raises(wp.LeaseError, match="run 'stale' is being executed by otherhost:1:x") as err:
        asyncio.run(resume())
    assert err.value.run_id == "stale"
    assert harness.dump(db) == before

    hold(time.time() - 1)  # its lease lapsed: any process may recover the run
    result = asyncio.run(resume())
    assert result.status == "done" and result.state.n == 6
    assert [line.split()[2] for line in log.read_text().splitlines()] == ["n2", "n3", "n4", "n5"]
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT status, lease_owner FROM runs WHERE run_id = 'stale'").fetchone() == ("done", None)
