"""`waypoint copy`: runs move between SQLite files and PostgreSQL exactly, and copying again is safe.

Real SQLite files, the throwaway PostgreSQL of tests/pg_server.py, and the CLI in
its own processes; the library-level checks (snapshots, a run still running at
the source, damaged and missing runs) run on the stores directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
import waypoint as wp_lib
from msgspec import structs
from tests.test_cli import EXAMPLE, wp
from waypoint import MemoryStore, SQLiteStore
from waypoint._cli.loading import load_graph
from waypoint.checkpoints.records import Snapshot
from waypoint.checkpoints.transfer import copy_runs
from waypoint.testing.store_conformance import info, plant_memory, step

INSTALL = 'pip install -e ".[postgres]"'
pytest.importorskip("psycopg", reason=f"copying to PostgreSQL needs psycopg: {INSTALL}")
pytest.importorskip("psycopg_pool", reason=f"copying to PostgreSQL needs psycopg-pool: {INSTALL}")

import psycopg  # noqa: E402
from waypoint.checkpoints.postgres import PostgresStore  # noqa: E402

APPROVE = '{"approved": true}'


async def make_source(path: Path) -> None:
    """A SQLite file with a waiting run, a finished one, a fork of it, and one still running elsewhere."""
    graph, ref = load_graph(EXAMPLE)
    async with SQLiteStore(path) as store:
        await (await wp_lib.start(graph, {"topic": "tides"}, store=store, run_id="waits",
                                  graph_ref=ref)).result()
        await (await wp_lib.start(graph, {"topic": "moss"}, store=store, run_id="done",
                                  graph_ref=ref)).result()
        await (await wp_lib.resume(graph, "done", {"approved": True}, store=store)).result()
        await (await wp_lib.fork(graph, "done", at=3, store=store, run_id="forked")).result()
        busy = info("busy", graph="approval", last_seq=0)
        await store.create_run(busy, owner="elsewhere:1:x", ttl=600, snapshot=Snapshot(seq=0, state={}))
        await store.append("busy", "elsewhere:1:x", [step(1), step(2)])


def sqlite_rows(path: Path) -> dict[str, set[tuple]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {table: set(conn.execute(f"SELECT run_id, seq, payload FROM {table}"))
                for table in ("steps", "snapshots")}


def postgres_rows(where: str) -> dict[str, set[tuple]]:
    with psycopg.connect(where) as conn:
        return {table: {(r, s, bytes(p)) for r, s, p in conn.execute(
            f"SELECT run_id, seq, payload FROM waypoint_{table}")}
                for table in ("steps", "snapshots")}


async def rows_of(db: str | Path, run_ids: list[str]) -> dict[str, wp_lib.RunInfo]:
    store = SQLiteStore(db) if isinstance(db, Path) else PostgresStore(db)
    async with store:
        return {r: await store.get_run(r) for r in run_ids}


RUNS = ["waits", "done", "forked", "busy"]


def test_sqlite_to_postgres_and_back_exactly_then_again_safely(url, tmp_path):  # noqa: F811
    src = tmp_path / "runs.db"
    asyncio.run(make_source(src))
    copied = wp("copy", "--from", str(src), "--to", url)
    assert copied.returncode == 0, copied.stderr
    assert "4 copied" in copied.stdout, copied.stdout
    busy_line = next(line for line in copied.stdout.splitlines() if " busy " in line)
    assert "was running at the source" in busy_line and f"waypoint resume busy --db {url}" in busy_line

    # Same seqs, same bytes; rows as they were, leases dropped, the running run interrupted.
    assert postgres_rows(url) == sqlite_rows(src)
    before, after = asyncio.run(rows_of(src, RUNS)), asyncio.run(rows_of(url, RUNS))
    assert before["busy"].lease_owner == "elsewhere:1:x"
    for run_id in RUNS:
        expected = structs.replace(before[run_id], lease_owner=None, lease_expiry=0.0)
        if run_id == "busy":
            expected = structs.replace(expected, status="interrupted")
        assert after[run_id] == expected, run_id

    # The waiting run waits at the destination with its question, and is answered there.
    shown = wp("show", "waits", "--db", url)
    assert "status: waiting at approve" in shown.stdout, shown.stdout + shown.stderr
    resumed = wp("resume", "waits", "--gate", "approve", "--input", APPROVE, "--db", url)
    assert resumed.returncode == 0 and "status: done" in resumed.stdout, resumed.stderr

    # Again: nothing is copied twice; the run that went on at the destination stays as it is there.
    pg_before = postgres_rows(url)
    again = wp("copy", "--from", str(src), "--to", url)
    assert again.returncode == 0 and "4 already there" in again.stdout, again.stdout + again.stderr
    assert "went on there by" in next(line for line in again.stdout.splitlines() if " waits " in line)
    assert postgres_rows(url) == pg_before

    # PostgreSQL -> a new SQLite file: the same bytes come back.
    back = tmp_path / "back.db"
    returned = wp("copy", "--from", url, "--to", str(back))
    assert returned.returncode == 0 and "4 copied" in returned.stdout, returned.stdout + returned.stderr
    assert sqlite_rows(back) == postgres_rows(url)


def test_a_conflicting_run_is_reported_and_never_overwritten(url, tmp_path):  # noqa: F811
    src = tmp_path / "runs.db"
    asyncio.run(make_source(src))
    assert wp("copy", "--from", str(src), "--to", url, "--run", "waits").returncode == 0
    # The run is answered differently at each end: the two logs now disagree.
    assert wp("resume", "waits", "--gate", "approve", "--input", APPROVE, "--db", url).returncode == 0
    rejected = wp("resume", "waits", "--gate", "approve", "--input", '{"approved": false}', "--db", str(src))
    assert rejected.returncode == 0, rejected.stderr
    pg_before = postgres_rows(url)
    clash = wp("copy", "--from", str(src), "--to", url, "--run", "waits", "--run", "nope")
    assert clash.returncode == 1, clash.stdout
    line = next(line for line in clash.stdout.splitlines() if " waits " in line)
    assert line.startswith("conflict") and "differs from the source's at seq" in line
    assert "not overwritten" in line and "waypoint fork waits --run-id NEW" in line
    assert "no run 'nope' at the source" in clash.stdout
    assert "1 conflicting (not overwritten), 1 not at the source" in clash.stdout
    assert postgres_rows(url) == pg_before


def test_the_same_database_twice_is_refused(tmp_path):
    src = tmp_path / "runs.db"
    asyncio.run(make_source(src))
    done = wp("copy", "--from", str(src), "--to", str(src))
    assert done.returncode == 2 and "same database" in done.stderr


@pytest.mark.asyncio
async def test_every_snapshot_damaged_and_missing_runs_through_the_library(tmp_path):
    source = MemoryStore()
    await source.create_run(info("long", last_seq=0), owner="w", ttl=60,
                            snapshot=Snapshot(seq=0, state={"n": 0}))
    for start in (1, 65, 129):
        steps = [step(s) for s in range(start, start + 64)]
        await source.append("long", "w", steps, Snapshot(seq=start + 63, state={"n": start + 63}))
    await source.release("long", "w", "done")
    await source.create_run(info("bad", status="done", last_seq=0))
    await source.claim("bad", "w", 60)
    await source.append("bad", "w", [step(1), step(2)])
    await source.release("bad", "w", "failed", error="x")
    await plant_memory(source, "bad", 2, b"\xc1 not msgpack")

    dest = SQLiteStore(tmp_path / "dest.db")
    results = {c.run_id: c async for c in copy_runs(source, dest, run_ids=["long", "bad", "gone"])}
    assert {r: c.outcome for r, c in results.items()} == {"long": "copied", "bad": "unreadable",
                                                          "gone": "missing"}
    assert (results["long"].steps, results["long"].snapshots) == (192, 4)
    assert "'bad'" in results["bad"].detail and "seq 2" in results["bad"].detail
    async with dest:
        assert [await dest.snapshot_at("long", s) for s in (0, 63, 64, 200)] == [
            await source.snapshot_at("long", s) for s in (0, 63, 64, 200)]
        assert await dest.history("long") == await source.history("long")
        assert await dest.get_run("long") == await source.get_run("long")
        assert [r.run_id for r in await dest.list_runs()] == ["long"], "a damaged run was half-copied"
