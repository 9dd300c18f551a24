"""What SQLite itself costs on this machine: the floor under any durable node.

    python -m bench.floor

    floor.commit_ms(folder, "FULL")   # one single-row WAL commit, median ms
    floor.plain_ms(1000)              # the engine CPU reference: plain asyncio tasks, ms per node

A WAL commit of one small row (BEGIN IMMEDIATE, INSERT, COMMIT: one WAL page)
on plain sqlite3 at FULL (one fsync) and NORMAL (none), one aiosqlite thread
hop carrying no work, and `bench.engine_cpu.plain_chain`: a chain of plain
asyncio tasks applying the same one-field update as the chain workload.
`bench.run` measures the first and the last in the same run as the workloads
and prints durable rows as multiples of the commit, row (6) of the chain.
Medians over a few hundred repetitions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from pathlib import Path

import aiosqlite

from bench.common import Sync, scratch


def commit_ms(folder: Path, sync: Sync, n: int = 300) -> float:
    raw = sqlite3.connect(folder / f"floor-{sync}.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(f"PRAGMA synchronous={sync}")  # one of two constants
    raw.execute("CREATE TABLE steps (key INTEGER PRIMARY KEY, payload BLOB)")
    times = []
    for seq in range(1, n + 1):
        started = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO steps VALUES (?, ?)", (seq, b"x" * 80))
        raw.execute("COMMIT")
        times.append(time.perf_counter() - started)
    raw.close()
    return statistics.median(times) * 1e3


async def hop_ms(n: int = 2000) -> float:
    conn = await aiosqlite.connect(":memory:")
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await conn.execute("SELECT 1")
        times.append(time.perf_counter() - started)
    await conn.close()
    return statistics.median(times) * 1e3


def plain_ms(n: int = 1000) -> float:
    """Per node, ms: n plain asyncio tasks applying the chain's one-field update (P2's reference)."""
    from bench.engine_cpu import plain_chain

    return float(asyncio.run(plain_chain(n))["per_node_ms"])


def floors() -> dict[str, float]:
    with scratch() as folder:
        result = {f"commit_{sync}": commit_ms(folder, sync) for sync in ("FULL", "NORMAL")}
    result["hop"] = asyncio.run(hop_ms())
    result["plain"] = plain_ms()
    return result


def describe(f: dict[str, float]) -> str:
    return (f"SQLite floor here (medians): a single-row WAL commit {f['commit_FULL']:.3f} ms at FULL, "
            f"{f['commit_NORMAL']:.3f} ms at NORMAL; an aiosqlite call {f['hop']:.3f} ms; plain "
            f"asyncio tasks applying the chain's update {f['plain'] * 1e3:.1f} us per node.")


if __name__ == "__main__":
    print(describe(floors()))
