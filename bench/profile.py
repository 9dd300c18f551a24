"""Where waypoint's time goes in the durable workloads: pyinstrument profiles.

    pip install pyinstrument
    python -m bench.profile                      # chain, loop, concurrent; FULL and NORMAL
    python -m bench.profile chain --sync NORMAL --html out.html

The event loop's thread is sampled; time spent in aiosqlite's thread (the
SQLite work and its fsync) shows up as the loop waiting in `select`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench import wp
from bench.common import scratch

WORKLOADS = {
    "chain": lambda folder, sync: wp.chain(folder, 1000, sync),
    "loop": lambda folder, sync: wp.loop(folder, 1000, sync),
    "concurrent": lambda folder, sync: wp.concurrent(folder, 100, 10, sync),
}


def profile(name: str, sync: str, interval: float) -> Any:
    from pyinstrument import Profiler

    with scratch() as folder:  # warm up: compile the graph, import lazily imported modules
        asyncio.run(WORKLOADS[name](folder, sync))
    profiler = Profiler(interval=interval, async_mode="disabled")
    with scratch() as folder:
        profiler.start()
        asyncio.run(WORKLOADS[name](folder, sync))
        profiler.stop()
    return profiler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help=f"among {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--sync", choices=["FULL", "NORMAL"], action="append")
    parser.add_argument("--interval", type=float, default=0.0001, help="sampling interval, seconds")
    parser.add_argument("--html", type=Path, help="write an HTML report (the last profile) here")
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose among {', '.join(WORKLOADS)}")
    for name in args.workloads or WORKLOADS:
        for sync in args.sync or ["FULL", "NORMAL"]:
            profiler = profile(name, sync, args.interval)
            print(f"\n===== {name} at synchronous={sync} =====")
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if args.html:
                args.html.write_text(profiler.output_html())


if __name__ == "__main__":
    main()
