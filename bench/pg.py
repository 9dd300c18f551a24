"""PostgresStore against SQLiteStore: per-append latency and appends/s under concurrency.

    python -m bench.pg                      # a throwaway local server (tests/pg_server.py)
    python -m bench.pg --url postgresql://u@host/db   # an existing, empty database

Two settings, each compared at equal durability: PostgreSQL with fsync on (its
default) against SQLite at FULL (an fsync per commit), and PostgreSQL with fsync
off against SQLite at NORMAL (no fsync; both survive a process crash). Workloads:
one run appending one step at a time (median latency of an append), and 100 runs
appending 10 steps each concurrently (appends per second, group-committed); PostgreSQL
both as shipped (no prepared statements, for PgBouncer) and with prepare=True.
Loopback only: a real network adds its round trip to every PostgreSQL figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import scratch
from waypoint.checkpoints.postgres import PostgresStore, safe_url
from waypoint.checkpoints.sqlite import SQLiteStore
from waypoint.testing.store_conformance import leased, step

SEQUENTIAL, RUNS, PER_RUN = 300, 100, 10


async def sequential_ms(store: Any) -> float:
    """Median milliseconds of one append (one step) of one run, awaited one after another."""
    run_id = f"seq-{uuid.uuid4().hex[:8]}"
    await leased(store, run_id, "w", ttl=600)
    times = []
    for seq in range(1, SEQUENTIAL + 1):
        started = time.perf_counter()
        await store.append(run_id, "w", [step(seq)])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


async def concurrent_per_s(store: Any) -> float:
    """Appends per second while RUNS runs append PER_RUN steps each, all at once."""
    runs = [f"c-{uuid.uuid4().hex[:8]}-{i}" for i in range(RUNS)]
    for run_id in runs:
        await leased(store, run_id, "w", ttl=600)

    async def appender(run_id: str) -> None:
        for seq in range(1, PER_RUN + 1):
            await store.append(run_id, "w", [step(seq, node=run_id)])

    started = time.perf_counter()
    await asyncio.gather(*(appender(r) for r in runs))
    return RUNS * PER_RUN / (time.perf_counter() - started)


async def measure(store: Any) -> tuple[float, float]:
    async with store:
        return await sequential_ms(store), await concurrent_per_s(store)


def local_url(fsync: bool) -> tuple[str, Any]:
    from tests.pg_server import PgServer, missing

    why = missing()
    if why:
        raise SystemExit(f"bench.pg: {why}, or pass --url of an empty database")
    server = PgServer.start(fsync=fsync)
    return server.url(), server


def row(label: str, pg: tuple[float, float], lite: tuple[float, float]) -> str:
    return (f"| {label} | {pg[0]:.3f} ms | {lite[0]:.3f} ms | {pg[0] / lite[0]:.2f}x | "
            f"{pg[1]:,.0f}/s | {lite[1]:,.0f}/s | {pg[1] / lite[1]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing, empty PostgreSQL database (default: start one)")
    args = parser.parse_args()
    print("| setting | PG append | SQLite append | PG/SQLite | PG 100 runs | SQLite 100 runs | PG/SQLite |")
    print("|---|---|---|---|---|---|---|")
    for fsync, sync in ((True, "FULL"), (False, "NORMAL")):
        if args.url and not fsync:
            break  # an existing server runs at its own setting: one row
        url, server = (args.url, None) if args.url else local_url(fsync)
        try:
            pg = asyncio.run(measure(PostgresStore(url)))
            prepared = asyncio.run(measure(PostgresStore(url, prepare=True)))
        finally:
            if server is not None:
                server.destroy()
        with scratch() as folder:
            lite = asyncio.run(measure(SQLiteStore(Path(folder) / "bench.db", synchronous=sync)))
        label = f"PG fsync={'on' if fsync else 'off'} vs SQLite {sync}"
        label = label if not args.url else f"PG at {safe_url(url)} vs SQLite {sync}"
        print(row(label, pg, lite))
        print(row(f"{label}, prepare=True", prepared, lite))


if __name__ == "__main__":
    main()
