"""A lone write on SQLite runs in a batch of one: four statements, and a refusal rolls it all back.

A batch of one job has no savepoint of its own (`_sqlite_tx.write_batch`): when the
job is refused, the transaction is rolled back instead of committed, which must undo
every row the job wrote before it was refused, at FULL (in the connection's thread) as
at NORMAL (on the loop's thread), and leave the store writing as before.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from waypoint import SQLiteStore
from waypoint.checkpoints.records import RunInfo, Step
from waypoint.errors import StoreError, WaypointError


def info(run_id: str) -> RunInfo:
    now = time.time()
    return RunInfo(run_id=run_id, graph="g", graph_hash="h", status="running", created_at=now, updated_at=now)


def step(seq: int) -> Step:
    return Step(seq=seq, kind="done", node="n", activation=f"{seq}.0", at=time.time(), delta={"n": seq})


@pytest.mark.asyncio
async def test_a_lone_append_at_normal_runs_four_statements(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL") as store:
        await store.create_run(info("r"), owner="w", ttl=60)
        await store.append("r", "w", [step(1)])
        direct = store._direct
        assert direct is not None, "a file store at NORMAL commits on the loop's thread"
        seen: list[str] = []
        direct.raw.set_trace_callback(seen.append)
        try:
            await store.append("r", "w", [step(2)])
        finally:
            direct.raw.set_trace_callback(None)
    assert [sql.split()[0] for sql in seen] == ["BEGIN", "SELECT", "INSERT", "COMMIT"], seen


@pytest.mark.asyncio
@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
async def test_a_lone_append_refused_midway_leaves_none_of_its_steps(tmp_path, sync):
    db = tmp_path / "runs.db"
    async with SQLiteStore(db, synchronous=sync) as store:
        await store.create_run(info("r"), owner="w", ttl=60)
        await store.create_run(info("other"), owner="w", ttl=60)
        with sqlite3.connect(db) as conn:  # the database refuses seq 2 of run 'r', after seq 1 is in
            conn.execute("CREATE TRIGGER no_two BEFORE INSERT ON steps WHEN NEW.run_id = 'r' AND NEW.seq = 2 "
                         "BEGIN SELECT RAISE(ABORT, 'seq 2 refused'); END")
        with pytest.raises(StoreError, match=r"'r'.*write refused by the database.*seq 2 refused"):
            await store.append("r", "w", [step(1), step(2)])
        assert await store.history("r") == [], "the refused append's first step stayed in the log"
        await store.append("other", "w", [step(1)])  # the store goes on writing
        await store.append("r", "w", [step(1)])  # and the refused run from where its log ends
        assert [s.seq for s in await store.history("r")] == [1]
    with sqlite3.connect(db) as conn:  # in the file itself, after the store closed
        rows = conn.execute("SELECT run_id, seq FROM steps ORDER BY run_id, seq").fetchall()
    assert rows == [("other", 1), ("r", 1)]


@pytest.mark.asyncio
@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
async def test_a_lone_append_refused_by_its_fence_writes_nothing(tmp_path, sync):
    async with SQLiteStore(tmp_path / "runs.db", synchronous=sync) as store:
        await store.create_run(info("r"), owner="w", ttl=60)
        await store.append("r", "w", [step(1)])
        with pytest.raises(WaypointError, match=r"'r'.*appended from seq 3 but the log ends at seq 1"):
            await store.append("r", "w", [step(3)])
        with pytest.raises(WaypointError, match=r"'r'.*no longer holds the lease"):
            await store.append("r", "intruder", [step(2)])
        await store.append("r", "w", [step(2)])
        assert [s.seq for s in await store.history("r")] == [1, 2]
