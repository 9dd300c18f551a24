"""waypoint on PostgreSQL: per durable node against LangGraph's AsyncPostgresSaver, and runs/s per worker.

    python -m bench.postgres                   # a throwaway server with fsync on, 5 repetitions
    python -m bench.postgres --only nodes --reps 3
    python -m bench.postgres --quick           # small sizes, 1 repetition

One server for everything (tests/pg_server.py, fsync=on and full_page_writes=on:
PostgreSQL's durable defaults, synchronous_commit on), on loopback. Each
repetition gives each side a fresh database of its own on that server.

nodes: RUNS runs of a 10-node chain, one after another, on one open store (waypoint:
PostgresStore as shipped, no prepared statements; and prepare=True) or saver
(LangGraph: AsyncPostgresSaver.from_conn_string, durability="sync", the guarantee
waypoint gives: a node's result is committed before the next node starts). Per
node: a run's wall time / 10, median over the runs; bytes per node: the WAL the
runs wrote (pg_current_wal_insert_lsn before and after) and the growth of the
side's tables with their indexes, each divided by the nodes run.

workers: 1, 2 and 4 `waypoint worker` processes (--concurrency C each) started and
ready (each printed "worker started"), then R runs submitted at once; runs/s from
the first submit to the last run done. On the 10-node chain and on io10, whose
ten nodes each await 50 ms (I/O-bound, like LLM calls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import pg_graphs
from bench.common import ROOT, child_env, clock, compile_bytecode, waypoint_cli
from waypoint import start, submit
from waypoint.checkpoints.postgres import PostgresStore

SIZES = {"full": {"sequential": (50, 1), "concurrent": (400, 100), "workers": (1, 2, 4),
                  "submitted": {"chain10": 150, "io10": 400}, "concurrency": 10},
         "quick": {"sequential": (5, 1), "concurrent": (20, 10), "workers": (1, 2),
                   "submitted": {"chain10": 20, "io10": 20}, "concurrency": 4}}
WORKLOADS = ("sequential", "concurrent")
TABLES = {"wp": ("waypoint_runs", "waypoint_steps", "waypoint_snapshots"),
          "lg": ("checkpoints", "checkpoint_blobs", "checkpoint_writes")}
Results = dict[str, list[float]]


# -- per durable node ---------------------------------------------------------------------
POOL = 10  # connections: PostgresStore's default max_size, and LangGraph's pool here


async def wp_runs(url: str, runs: int, prepare: bool, at_once: int) -> list[float]:
    graph = pg_graphs.chain10
    async with PostgresStore(url, prepare=prepare, max_size=POOL) as store:
        async def one() -> None:
            result = await (await start(graph, None, store=store)).result()
            assert result.status == "done" and result.state.n == pg_graphs.NODES, result

        return [await timed(one, at_once) for _ in range(runs // at_once)]


async def lg_runs(url: str, runs: int, at_once: int) -> list[float]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from bench import lg as lg_bench

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}  # as from_conn_string
    async with AsyncConnectionPool(url, max_size=POOL, kwargs=kwargs, open=False) as pool:
        saver = AsyncPostgresSaver(pool)  # a pool: concurrent runs are not serialised on one connection
        await saver.setup()
        graph, threads = lg_bench.chain_graph(pg_graphs.NODES).compile(checkpointer=saver), iter(range(runs))

        async def one() -> None:
            config = {"configurable": {"thread_id": f"t{next(threads)}"}, "recursion_limit": 20}
            state = await graph.ainvoke({"n": 0}, config, durability="sync")
            assert state["n"] == pg_graphs.NODES, state

        return [await timed(one, at_once) for _ in range(runs // at_once)]


async def timed(one: Any, at_once: int) -> float:
    """Wall seconds per node of `at_once` runs started together."""
    started = clock()
    await asyncio.gather(*(one() for _ in range(at_once)))
    return (clock() - started) / (at_once * pg_graphs.NODES)


def nodes_once(server: Any, side: str, workload: str, size: dict[str, Any], results: Results) -> None:
    """One repetition of one side in a fresh database: per-node ms, commits, WAL and table bytes."""
    runs, at_once = size[workload]
    url, tables = server.new_database("template0"), TABLES["lg" if side == "lg" else "wp"]
    if side == "lg":
        asyncio.run(lg_runs(url, 0, 1))  # the schema, before anything is counted
    else:
        asyncio.run(PostgresStore(url).open())
    before = (table_bytes(url, tables), wal_lsn(server), counters(server, url))
    per_node = asyncio.run(lg_runs(url, runs, at_once) if side == "lg"
                           else wp_runs(url, runs, side == "wp_prepared", at_once))
    nodes, key = runs * pg_graphs.NODES, f"{workload}.{side}"
    results[f"{key}.per_node_ms"].append(statistics.median(per_node) * 1e3)
    results[f"{key}.wal_bytes_per_node"].append(wal_since(server, before[1]) / nodes)
    results[f"{key}.table_bytes_per_node"].append((table_bytes(url, tables) - before[0]) / nodes)
    commits, syncs = (b - a for a, b in zip(before[2], counters(server, url), strict=True))
    results[f"{key}.commits_per_node"].append(commits / nodes)
    results[f"{key}.syncs_per_node"].append(syncs / nodes)


async def floor_ms(url: str, commits: int = 200) -> tuple[float, float]:
    """This server's floor, measured beside the sides: the median round trip (SELECT 1) and the
    median commit of one small row (INSERT, autocommit: a WAL flush with fsync), in ms."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id serial PRIMARY KEY, payload bytea)")
        trips, writes = [], []
        for _ in range(commits):
            started = clock()
            await conn.execute("SELECT 1")
            trips.append(clock() - started)
            started = clock()
            await conn.execute("INSERT INTO bench_floor (payload) VALUES (%s)", (b"x" * 64,))
            writes.append(clock() - started)
    return statistics.median(trips) * 1e3, statistics.median(writes) * 1e3


def floor_once(server: Any, results: Results) -> None:
    trip, commit = asyncio.run(floor_ms(server.new_database("template0")))
    results["floor.round_trip_ms"].append(trip)
    results["floor.commit_ms"].append(commit)


def counters(server: Any, url: str) -> tuple[int, int]:
    """Transactions committed in the database, and WAL syncs (fsyncs) of the server, so far.

    Statistics reach the shared counters when a backend is idle or exits: every
    connection of the side was closed before this is read, and it waits for them."""
    time.sleep(1.1)
    name = url.rsplit("/", 1)[1]
    row = server.admin("SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = "
                       f"'{name}'), (SELECT wal_sync FROM pg_stat_wal)")[0]  # our own database name
    return int(row[0]), int(row[1])


def wal_lsn(server: Any) -> str:
    return str(server.admin("SELECT pg_current_wal_insert_lsn()")[0][0])


def wal_since(server: Any, lsn: str) -> float:
    return float(server.admin(f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{lsn}')")[0][0])


def table_bytes(url: str, tables: tuple[str, ...]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return sum(conn.execute("SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)",
                                (t,)).fetchone()[0] for t in tables)


# -- workers -------------------------------------------------------------------------------
@contextmanager
def workers(url: str, graph: str, count: int, concurrency: int, queue: str) -> Iterator[None]:
    """`count` worker processes, yielded once each has said it started; drained (SIGTERM) after."""
    logs = Path(tempfile.mkdtemp(prefix="wpbench-workers-"))
    env = {**child_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), child_env().get("PYTHONPATH", "")])}
    procs = []
    for i in range(count):
        with (logs / f"w{i}.log").open("w") as out:
            procs.append(subprocess.Popen(
                [*waypoint_cli(), "worker", f"bench.pg_graphs:{graph}", "--db", url, "--queue", queue,
                 "--concurrency", str(concurrency), "--poll", "0.5", "--tick", "0"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        wait_for_lines(logs, count, "worker started", procs)
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


def wait_for_lines(logs: Path, count: int, text: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while sum(text in p.read_text() for p in logs.glob("w*.log")) < count:
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = "\n".join(p.read_text()[-1500:] for p in logs.glob("w*.log"))
            raise RuntimeError(f"workers did not start ({'exited' if dead else 'timed out'}):\n{tails}")
        time.sleep(0.05)


async def submit_and_wait(url: str, graph: Any, runs: int, queue: str) -> float:
    """Runs per second: R runs submitted at once, until the last one is done."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with PostgresStore(url) as store, conn:
        started = clock()
        await asyncio.gather(*(submit(graph, None, store=store, queue=queue) for _ in range(runs)))
        while True:
            row = await (await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed') "
                "FROM waypoint_runs WHERE queue = %s", (queue,))).fetchone()
            assert row is not None and row[1] == 0, f"{row[1] if row else '?'} run(s) failed"
            if row[0] == runs:
                return runs / (clock() - started)
            await asyncio.sleep(0.01)


def workers_once(server: Any, size: dict[str, Any], results: Results) -> None:
    for name, runs in size["submitted"].items():
        for count in size["workers"]:
            url, queue = server.new_database(), f"bench-{name}-{count}"
            with workers(url, name, count, size["concurrency"], queue):
                per_s = asyncio.run(submit_and_wait(url, getattr(pg_graphs, name), runs, queue))
            results[f"{name}.workers{count}.runs_per_s"].append(per_s)


# -- report ------------------------------------------------------------------------------
SIDES = (("lg", "LangGraph + AsyncPostgresSaver (durability=sync)"), ("wp", "waypoint + PostgresStore"),
         ("wp_prepared", "waypoint, prepare=True"))
METRICS = ("per_node_ms", "commits_per_node", "syncs_per_node", "wal_bytes_per_node", "table_bytes_per_node")


def report(medians: dict[str, float], size: dict[str, Any], reps: int) -> str:
    lines = [f"{reps} repetition(s), medians; PostgreSQL {server_version(medians)}, fsync on, loopback; "
             f"floor in the same run: a round trip {medians['floor.round_trip_ms']:.3f} ms, a commit of one "
             f"row {medians['floor.commit_ms']:.3f} ms; load average {os.getloadavg()[0]:.1f} at the end"]
    for workload in WORKLOADS:
        if f"{workload}.wp.per_node_ms" not in medians:
            continue
        runs, at_once = size[workload]
        lines += ["", f"| 10-node chain, {runs} runs, {at_once} at a time: per durable node | time | "
                  "commits | WAL fsyncs | WAL bytes | table bytes |", "|---|---|---|---|---|---|"]
        for side, label in SIDES:
            values = [medians.get(f"{workload}.{side}.{m}", float("nan")) for m in METRICS]
            lines.append(f"| {label} | {values[0]:.3f} ms | {values[1]:.2f} | {values[2]:.2f} | "
                         f"{values[3]:,.0f} | {values[4]:,.0f} |")
        ratios = [medians.get(f"{workload}.lg.{m}", float("nan")) / medians[f"{workload}.wp.{m}"]
                  if medians.get(f"{workload}.wp.{m}") else float("nan") for m in METRICS]
        lines.append("| LangGraph / waypoint | " + " | ".join(f"{r:.1f}x" for r in ratios) + " |")
    lines += worker_rows(medians, size)
    return "\n".join(lines)


def worker_rows(medians: dict[str, float], size: dict[str, Any]) -> list[str]:
    counts = size["workers"]
    if not any(k.endswith("runs_per_s") for k in medians):
        return []
    head = " | ".join(f"{c} worker{'s' if c > 1 else ''}" for c in counts)
    lines = ["", f"| runs/s (concurrency {size['concurrency']} each) | {head} | {counts[-1]} vs 1 |",
             "|---|" + "---|" * (len(counts) + 1)]
    for name, runs in size["submitted"].items():
        values = [medians.get(f"{name}.workers{c}.runs_per_s", float("nan")) for c in counts]
        lines.append(f"| {name} ({runs} runs) | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | {values[-1] / values[0]:.2f}x |")
    return lines


def has_langgraph() -> bool:
    """LangGraph's side needs langgraph (the bench extra) and langgraph-checkpoint-postgres."""
    from importlib.util import find_spec

    try:
        return find_spec("langgraph.checkpoint.postgres") is not None
    except ModuleNotFoundError:  # no langgraph at all
        return False


def server_version(medians: dict[str, float]) -> str:
    return str(int(medians.get("server_version", 0)) // 10000 or "?")


def main(argv: list[str] | None = None) -> None:
    from tests.pg_server import PgServer, missing

    parser = argparse.ArgumentParser(prog="python -m bench.postgres", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition by default")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, or 1 with --quick)")
    parser.add_argument("--only", choices=["nodes", "workers"], help="one of the two parts")
    parser.add_argument("--json", type=Path, help="also write every value here")
    args = parser.parse_args(argv)
    size, reps = SIZES["quick" if args.quick else "full"], args.reps or (1 if args.quick else 5)
    if not has_langgraph():
        print("bench.postgres: LangGraph's side skipped (pip install langgraph-checkpoint-postgres)",
              file=sys.stderr)
    why = missing()
    if why:
        raise SystemExit(f"bench.postgres: {why}")
    compile_bytecode()
    server, results = PgServer.start(fsync=True), defaultdict(list)
    try:
        server.prepare_template()
        results["server_version"].append(float(server.admin("SHOW server_version_num")[0][0]))
        for rep in range(reps):
            sides = [side for side, _ in SIDES if side != "lg" or has_langgraph()]
            floor_once(server, results)
            for workload in WORKLOADS if args.only != "workers" else ():
                for side in sides if rep % 2 == 0 else sides[::-1]:
                    print(f"rep {rep + 1}/{reps}: {workload} {side}", file=sys.stderr, flush=True)
                    nodes_once(server, side, workload, size, results)
            if args.only != "nodes":
                print(f"rep {rep + 1}/{reps}: workers", file=sys.stderr, flush=True)
                workers_once(server, size, results)
    finally:
        server.destroy()
    medians = {k: statistics.median(v) for k, v in results.items()}
    print(report(medians, size, reps))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
