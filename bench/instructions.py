"""Instructions per node, counted by callgrind: CPU work without the machine's load in it.

    python -m bench.instructions                       # every figure below, per node
    python -m bench.instructions --only NORMAL,floor   # some of them

Needs valgrind (`apt-get install valgrind`). A figure is (instructions of a run of
the large chain - those of the small one) / (large - small): what one more node
costs, start-up and compilation cancelled (both graphs are compiled in both
processes; bytecode caches are written first; PYTHONHASHSEED=0, since unseeded
runs differ by up to 5%). Every thread of the process is counted (the SQLite
connection's too); time spent in the kernel (fsync, epoll) is not.

Figures: the chain of `bench.wp` on MEM (`MemoryStore`: the engine alone),
NORMAL and FULL (`SQLiteStore`); "plain", `bench.engine_cpu`'s plain asyncio
chain; "floor", one single-row WAL commit through Python's sqlite3 at NORMAL, as
`bench.floor` times it. docs/performance.md ("Session 4") has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURES = ("MEM", "NORMAL", "FULL", "plain", "floor")


async def _chain(n: int, store_kind: str, small: int, large: int) -> None:
    from waypoint import MemoryStore, SQLiteStore, start

    from bench.wp import chain_graph

    for size in (small, large):
        chain_graph(size)
    with tempfile.TemporaryDirectory() as folder:
        store = MemoryStore() if store_kind == "MEM" else SQLiteStore(
            Path(folder) / "wp.db", synchronous="FULL" if store_kind == "FULL" else "NORMAL")
        async with store:
            result = await (await start(chain_graph(n), None, store=store)).result()
    if result.status != "done":
        raise RuntimeError(f"chain of {n} on {store_kind} ended {result.status}")


def _floor(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        raw = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("CREATE TABLE steps (key INTEGER PRIMARY KEY, payload BLOB)")
        for seq in range(1, n + 1):
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO steps VALUES (?, ?)", (seq, b"x" * 80))
            raw.execute("COMMIT")
        raw.close()


def child(figure: str, n: int, small: int, large: int) -> None:
    """What one measured process runs."""
    if figure == "floor":
        _floor(n)
    elif figure == "plain":
        from bench.engine_cpu import plain_chain

        asyncio.run(plain_chain(n))
    else:
        asyncio.run(_chain(n, figure, small, large))


def count(figure: str, n: int, small: int, large: int) -> int:
    """Instructions of one process running `figure` at size n, under callgrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    args = [sys.executable, "-m", "bench.instructions", "--child", figure, str(n), str(small), str(large)]
    subprocess.run(args, env=env, check=True)  # bytecode caches written, nothing counted
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
                          env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind of {figure} at n={n} failed (exit {done.returncode}): "
                           f"{done.stderr[-500:]}")
    return int(found.group(1))


def per_node(figure: str, small: int, large: int) -> float:
    return (count(figure, large, small, large) - count(figure, small, small, large)) / (large - small)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated figures among {','.join(FIGURES)}")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=600)
    parser.add_argument("--child", nargs=4, metavar=("FIGURE", "N", "SMALL", "LARGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figure, n, small, large = args.child
        return child(figure, int(n), int(small), int(large))
    if subprocess.run(["which", "valgrind"], capture_output=True).returncode != 0:
        raise SystemExit("bench.instructions needs valgrind: apt-get install valgrind")
    figures = args.only.split(",") if args.only else list(FIGURES)
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise SystemExit(f"unknown figures {unknown}; choose among {', '.join(FIGURES)}")
    for figure in figures:
        value = per_node(figure, args.small, args.large)
        print(f"{figure}: {value / 1e3:.1f}k instructions per node "
              f"(N={args.large} minus N={args.small}, PYTHONHASHSEED=0)", flush=True)


if __name__ == "__main__":
    main()
