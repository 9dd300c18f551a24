"""Queued runs: `submit` records a run for a worker and returns at once; `waypoint submit`."""

from __future__ import annotations

import pytest
import waypoint as wp
from tests.test_cli import EXAMPLE
from tests.test_cli import wp as cli
from waypoint.errors import RunError


def approval_graph():
    """The example the CLI tests use, loaded as the CLI loads it."""
    from waypoint._cli.loading import load_graph

    return load_graph(EXAMPLE)[0]


@pytest.mark.asyncio
async def test_submit_records_a_queued_run_and_executes_nothing(store):
    graph = approval_graph()
    info = await wp.submit(graph, {"topic": "tides"}, store=store, queue="q", priority=3, run_id="a")
    assert (info.run_id, info.status, info.queue, info.priority) == ("a", "queued", "q", 3)
    assert info.lease_owner is None and await store.history("a") == []
    snapshot, _ = await store.load("a")
    assert snapshot is not None and snapshot.state["topic"] == "tides"
    assert [r.run_id for r in await store.list_runs(status="queued")] == ["a"]
    claimed = await store.claim_next("q", "w1", 60, graphs=[graph.name])
    assert claimed is not None and claimed.run_id == "a" and claimed.status == "running"


@pytest.mark.asyncio
async def test_submit_is_idempotent_by_run_id(store):
    graph = approval_graph()
    first = await wp.submit(graph, {"topic": "tides"}, store=store, run_id="a")
    again = await wp.submit(graph, {"topic": "other"}, store=store, run_id="a", priority=9)
    assert again == first  # the first submit stands; nothing was queued twice
    assert len(await store.list_runs()) == 1


@pytest.mark.asyncio
async def test_input_that_does_not_fit_queues_nothing(store):
    with pytest.raises(RunError, match="topic"):
        await wp.submit(approval_graph(), {"title": "no topic"}, store=store, run_id="bad")
    assert await store.list_runs() == []


def test_waypoint_submit_queues_and_returns(tmp_path):
    db = str(tmp_path / "runs.db")
    args = ["submit", EXAMPLE, "--input", '{"topic": "tides"}', "--queue", "q", "--priority", "2",
            "--run-id", "job-1", "--db", db]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert "run_id: job-1" in done.stdout and "status: queued (queue q, priority 2)" in done.stdout
    assert cli(*args).returncode == 0  # again: the same run, not a second one
    listed = cli("runs", "--status", "queued", "--db", db)
    assert listed.stdout.count("job-1") == 1, listed.stdout
    bad = cli("submit", EXAMPLE, "--input", '{"title": "x"}', "--db", db)
    assert bad.returncode == 2 and "topic" in bad.stderr
