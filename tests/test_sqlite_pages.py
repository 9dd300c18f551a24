"""What a SQLiteStore commit writes to disk: pages per append, space per row, old files.

Issue 13: an append of a step that fits a page writes one WAL page (the fence is
read, not written), a step of a few KB keeps to its leaf page (no overflow page
of its own), and a file of schema version 1 opens, migrates and resumes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from waypoint import END, GraphBuilder, SQLiteStore, resume, start
from waypoint.checkpoints import _sqlite_schema as schema
from waypoint.checkpoints.records import Step, encode
from waypoint.testing.store_conformance import leased, step

PAGE = 4096
FRAME = 24 + PAGE  # a WAL frame: its header and one page
WAL_HEADER = 32


def wal_frames(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, size - WAL_HEADER) // FRAME


@pytest.mark.asyncio
@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_an_append_of_a_small_step_writes_one_wal_page(tmp_path, synchronous):
    db = tmp_path / "runs.db"
    async with SQLiteStore(db, synchronous=synchronous) as store:
        await leased(store, "r", "w", ttl=60)
        await store.append("r", "w", [step(1)])  # the run's first leaf page exists from here on
        before = wal_frames(db)
        for seq in range(2, 52):  # 50 commits, one after another
            await store.append("r", "w", [step(seq)])
        written = wal_frames(db) - before
        assert (await store.get_run("r")).last_seq == 51
    # One leaf page per commit, plus now and then the interior page of a split.
    assert written <= 55, f"50 appends wrote {written} WAL pages (2 per commit: the run row rewritten)"


def big_step(seq: int) -> Step:
    return Step(seq=seq, kind="done", node="body", activation=f"body#{seq}", at=1000.0 + seq,
                delta={"items": ["x" * 1100]})


@pytest.mark.asyncio
async def test_steps_of_a_kilobyte_take_no_overflow_page(tmp_path):
    db = tmp_path / "runs.db"
    async with SQLiteStore(db) as store:
        await leased(store, "r", "w", ttl=60)
    empty = db.stat().st_size
    async with SQLiteStore(db) as store:
        for seq in range(1, 201):
            await store.append("r", "w", [big_step(seq)])
    payload = sum(len(encode(big_step(seq))) for seq in range(1, 201))
    grown = db.stat().st_size - empty  # the WAL is folded in and removed at the last close
    # Leaf pages hold three rows of 1.2 KB each; an overflow page per row would make it 3-4x.
    assert grown <= 1.5 * payload, f"{grown} bytes on disk for {payload} bytes of steps"


class Answer(BaseModel):
    ok: bool


class Gated(BaseModel):
    n: int = 0
    answer: Answer | None = None


async def _step(state: Gated) -> dict[str, Any]:
    return {"n": state.n + 1}


def gated_graph() -> Any:
    g = GraphBuilder(Gated, name="gated")
    g.node(_step, name="a", writes=["n"])
    g.node(_step, name="b", writes=["n"])
    g.gate("stop", Answer, into="answer")
    g.node(_step, name="after", writes=["n"])
    g.edge("__start__", "a")
    g.edge("a", "b")
    g.edge("b", "stop")
    g.edge("stop", "after")
    g.edge("after", END)
    return g.compile()


def as_version_1(new: Path, old: Path) -> None:
    """Copy a current file's rows into a file of schema version 1, as waypoint 0.1 wrote it."""
    with contextlib.closing(sqlite3.connect(old, isolation_level=None)) as raw:
        raw.execute("PRAGMA journal_mode=WAL")
        schema.MIGRATIONS[1](raw)
        raw.execute("PRAGMA user_version = 1")
        raw.execute("ATTACH DATABASE ? AS new", (str(new),))
        raw.execute("INSERT INTO runs SELECT run_id, graph, status, created_at, updated_at, last_seq, "
                    "lease_owner, lease_expiry, lease_ttl, error, waiting, info FROM new.runs")
        raw.execute("INSERT INTO steps SELECT run_id, seq, kind, node, payload FROM new.steps")
        raw.execute("INSERT INTO snapshots SELECT run_id, seq, payload FROM new.snapshots")


@pytest.mark.asyncio
async def test_a_version_1_file_migrates_and_its_run_resumes(tmp_path):
    graph = gated_graph()
    async with SQLiteStore(tmp_path / "new.db") as store:
        waiting = await (await start(graph, None, store=store)).result()
        assert waiting.status == "waiting"
        seen = await store.get_run(waiting.run_id)
        steps = await store.history(waiting.run_id)
    as_version_1(tmp_path / "new.db", tmp_path / "old.db")
    async with SQLiteStore(tmp_path / "old.db") as store:
        assert await store.get_run(waiting.run_id) == seen
        assert await store.history(waiting.run_id) == steps
        done = await (await resume(graph, waiting.run_id, {"ok": True}, store=store)).result()
        assert (done.status, done.state.n, done.state.answer) == ("done", 3, Answer(ok=True))
        assert (await store.get_run(waiting.run_id)).last_seq > seen.last_seq
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
