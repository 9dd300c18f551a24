"""Load, and nodes that hang or raise among many concurrent runs.

A node that hangs must not hold up the other runs: with `timeout=` it fails
cleanly and the run resumes; without one, `handle.cancel()` leaves the run
"cancelled" and resumable. 1,000 (and 5,000) runs through one SQLiteStore all
complete, with peak memory bounded by the concurrency, not the number of runs.
"""

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
from pydantic import BaseModel

import waypoint as wp
from waypoint.errors import NodeError

sys.path.insert(0, str(Path(__file__).parent))
import fault_harness as harness  # noqa: E402

HARNESS = Path(__file__).parent / "fault_harness.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
ENV.pop("WAYPOINT_FAULT", None)
RUNS = 20
executed: Counter = Counter()  # (run_id, node) -> executions in this process


class Job(BaseModel):
    trail: list[str] = []


def mode_of(i: int) -> str:
    return {0: "hang", 1: "raise", 2: "hang_sync"}.get(i % 5, "ok")


def stuck_graph(timeout: float | None, sync_hang: bool = False) -> wp.Graph:
    """pre -> work -> post; work hangs or raises as `ctx.deps["mode"]` says."""
    g = wp.GraphBuilder(Job, name="stuck")

    async def pre(state: Job, ctx: wp.NodeContext) -> dict:
        executed[ctx.run_id, "pre"] += 1
        return {"trail": [*state.trail, "pre"]}

    async def work(state: Job, ctx: wp.NodeContext) -> dict:
        executed[ctx.run_id, "work"] += 1
        mode = ctx.deps["mode"]
        if mode == "hang":
            await asyncio.Event().wait()  # forever
        if mode == "hang_sync":
            await asyncio.to_thread(time.sleep, 1.0)  # a blocking call: the thread cannot be cancelled
        if mode == "raise":
            raise RuntimeError("the tool is down")
        await asyncio.sleep(0.005)
        return {"trail": [*state.trail, "work"]}

    async def post(state: Job, ctx: wp.NodeContext) -> dict:
        executed[ctx.run_id, "post"] += 1
        return {"trail": [*state.trail, "post"]}

    g.node(pre)
    g.node(work, timeout=timeout)
    g.node(post)
    for a, b in zip([wp.START, "pre", "work", "post"], ["pre", "work", "post", wp.END]):
        g.edge(a, b)
    return g.compile()


async def started_and_timed(graph: wp.Graph, store, run_id: str, mode: str):
    """(result or error, seconds from this run's start to its end)."""
    began = time.monotonic()
    handle = await wp.start(graph, store=store, run_id=run_id, deps={"mode": mode})
    try:
        return await handle.result(), time.monotonic() - began
    except wp.WaypointError as exc:
        return exc, time.monotonic() - began


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_with_a_timeout_hung_and_raising_nodes_fail_cleanly_and_resume(tmp_path):
    timeout = 0.5
    graph = stuck_graph(timeout)
    async with wp.SQLiteStore(tmp_path / "runs.db") as store:
        outcomes = await asyncio.wait_for(asyncio.gather(
            *(started_and_timed(graph, store, f"t{i}", mode_of(i)) for i in range(RUNS))), 10)
        for i, (outcome, took) in enumerate(outcomes):
            mode, run_id = mode_of(i), f"t{i}"
            if mode == "ok":  # that hung runs hold up nobody is shown without a clock by the next test
                assert outcome.status == "done", (run_id, outcome)
            elif mode == "raise":
                assert isinstance(outcome, NodeError) and "RuntimeError: the tool is down" in str(outcome)
            else:
                assert isinstance(outcome, NodeError) and f"timed out after {timeout}s" in str(outcome)
                assert outcome.run_id == run_id and outcome.node == "work"
                assert took >= timeout, (run_id, took)  # not early; lateness is bounded by wait_for above
            if mode != "ok":
                assert (await store.get_run(run_id)).status == "failed"
        for i in range(RUNS):
            if mode_of(i) != "ok":
                fixed = await (await wp.resume(graph, f"t{i}", store=store, deps={"mode": "ok"})).result()
                assert fixed.status == "done" and fixed.state.trail == ["pre", "work", "post"]
    for i in range(RUNS):
        again = mode_of(i) != "ok"
        assert [executed[f"t{i}", n] for n in ("pre", "work", "post")] == [1, 2 if again else 1, 1], i
    harness.record("stuck_nodes_with_timeout", runs=RUNS, hung=2 * RUNS // 5, raised=RUNS // 5,
                   resumed=3 * RUNS // 5, healthy_held_up=0)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_without_a_timeout_a_hung_run_is_interrupted_and_resumes(tmp_path):
    graph = stuck_graph(None)
    modes = {f"c{i}": ("hang" if mode_of(i).startswith("hang") else mode_of(i)) for i in range(RUNS)}
    async with wp.SQLiteStore(tmp_path / "runs.db") as store:
        handles = {run_id: await wp.start(graph, store=store, run_id=run_id, deps={"mode": mode})
                   for run_id, mode in modes.items()}
        waiting = {run_id: asyncio.create_task(h.result(raise_on_failure=False)) for run_id, h in handles.items()}
        others = [t for run_id, t in waiting.items() if modes[run_id] != "hang"]
        await asyncio.wait_for(asyncio.gather(*others), 5)  # the hung runs hold up nobody
        for run_id, task in waiting.items():
            if modes[run_id] == "hang":
                assert not task.done()
            else:
                assert task.result().status == ("done" if modes[run_id] == "ok" else "failed")
        for run_id, mode in modes.items():
            if mode == "hang":
                stopped = await asyncio.wait_for(handles[run_id].interrupt(), 5)
                assert stopped.status == "interrupted"
                assert (await store.get_run(run_id)).status == "interrupted"
                assert (await waiting[run_id]).status == "interrupted"
        for run_id, mode in modes.items():
            if mode == "hang":
                fixed = await (await wp.resume(graph, run_id, store=store, deps={"mode": "ok"})).result()
                assert fixed.status == "done" and fixed.state.trail == ["pre", "work", "post"]
                assert [executed[run_id, n] for n in ("pre", "work", "post")] == [1, 2, 1]
    harness.record("stuck_nodes_cancelled", runs=RUNS, cancelled=sum(m == "hang" for m in modes.values()),
                   resumed_after_cancel=sum(m == "hang" for m in modes.values()))


def load(db: Path, runs: int, concurrency: int = 50) -> dict:
    done = subprocess.run([sys.executable, str(HARNESS), "load", str(db), str(runs), str(concurrency)],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(120)
def test_a_thousand_runs_through_one_store_all_complete_in_bounded_memory(tmp_path):
    first = load(tmp_path / "a.db", 1000)
    assert first["done"] == 1000, first
    with closing(sqlite3.connect(tmp_path / "a.db")) as conn:
        assert conn.execute("SELECT status, count(*), sum(last_seq) FROM runs GROUP BY status").fetchall() \
            == [("done", 1000, 10_000)]
        assert conn.execute("SELECT count(*) FROM steps WHERE kind = 'done'").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    five = load(tmp_path / "b.db", 5000)  # five times the runs, the same concurrency
    assert five["done"] == 5000, five
    assert five["rss_peak_mb"] < first["rss_peak_mb"] + 10, (first, five)  # bounded, not per run
    assert first["rss_peak_mb"] < 200, first
    harness.record("load_1000", runs=1000, nodes_per_run=10, concurrency=50, seconds=first["seconds"],
                   runs_per_s=first["runs_per_s"], peak_rss_mb=first["rss_peak_mb"],
                   rss_before_mb=first["rss_before_mb"])
    harness.record("load_5000", runs=5000, seconds=five["seconds"], runs_per_s=five["runs_per_s"],
                   peak_rss_mb=five["rss_peak_mb"])
