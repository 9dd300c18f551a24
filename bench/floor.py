"""What SQLite itself costs on this machine: the floor under any durable node.

    python -m bench.floor

A WAL commit of one small row (BEGIN IMMEDIATE, UPDATE, INSERT, COMMIT) on
plain sqlite3 at FULL (one fsync) and NORMAL (none), and one aiosqlite thread
hop carrying no work. Medians over a few hundred repetitions.
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
    raw.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, last_seq INTEGER)")
    raw.execute("CREATE TABLE steps (run_id TEXT, seq INTEGER, payload BLOB, PRIMARY KEY (run_id, seq))")
    raw.execute("INSERT INTO runs VALUES ('r', 0)")
    times = []
    for seq in range(1, n + 1):
        started = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("UPDATE runs SET last_seq = ? WHERE run_id = 'r'", (seq,))
        raw.execute("INSERT INTO steps VALUES ('r', ?, ?)", (seq, b"x" * 80))
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


def floors() -> dict[str, float]:
    with scratch() as folder:
        result = {f"commit_{sync}": commit_ms(folder, sync) for sync in ("FULL", "NORMAL")}
    result["hop"] = asyncio.run(hop_ms())
    return result


def describe(f: dict[str, float]) -> str:
    return (f"SQLite floor here (medians): a WAL commit {f['commit_FULL']:.3f} ms at FULL, "
            f"{f['commit_NORMAL']:.3f} ms at NORMAL; an aiosqlite call {f['hop']:.3f} ms.")


if __name__ == "__main__":
    print(describe(floors()))
