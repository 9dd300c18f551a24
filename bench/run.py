"""Run every workload on LangGraph and on waypoint and print one side-by-side table.

    python -m bench.run                  # full sizes, 5 repetitions, medians
    python -m bench.run --quick          # small sizes, 1 repetition (CI: it never rots)
    python -m bench.run --reps 3 --only chain,loop --json out.json

Each repetition of each workload runs in its own temporary directory, the two
libraries alternating which goes first, at PRAGMA synchronous=FULL and then
NORMAL (read back from each library's own connection). Without LangGraph
installed only the waypoint side runs. Sizes: see SIZES below; the third
resume size (940) is the longest tail waypoint replays today (just before its
first snapshot of a small state), so that a lucky k=1000 cannot hide it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import floor, table, wp
from bench.common import Sync, compile_bytecode, median, python, scratch, wall, waypoint_cli

try:
    from bench import lg
except ImportError:  # the bench extra is not installed: waypoint side only
    lg = None  # type: ignore[assignment]

SYNCS: tuple[Sync, ...] = ("FULL", "NORMAL")
SIZES = {
    "full": {"chain": (100, 1000), "fanout": (100, 1000), "loop": (200, 1000), "resume": (10, 1000, 940),
             "concurrent": (100, 10), "nostore": 1000, "imports": 7},
    "quick": {"chain": (10, 30), "fanout": (5, 20), "loop": (10, 30), "resume": (2, 10),
              "concurrent": (5, 3), "nostore": 30, "imports": 1},
}
WORKLOADS = ("chain", "fanout", "loop", "resume", "concurrent", "nostore", "imports")
Results = dict[tuple[str, str, str], list[float]]  # (side, sync or "-", metric) -> one value per rep


def sides(rep: int) -> list[tuple[str, Any]]:
    """Both libraries, alternating which goes first from one repetition to the next."""
    both = [("lg", lg), ("wp", wp)] if lg is not None else [("wp", wp)]
    return both if rep % 2 == 0 else both[::-1]


def record(results: Results, side: str, sync: str, prefix: str, values: dict[str, float]) -> None:
    for metric, value in values.items():
        results[(side, sync, f"{prefix}.{metric}")].append(value)


def in_scratch(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    with scratch() as folder:
        return asyncio.run(fn(folder, *args))


def bench_chain(results: Results, size: dict[str, Any], rep: int) -> None:
    for n in size["chain"]:
        for sync in SYNCS:
            for side, lib in sides(rep):
                record(results, side, sync, f"chain{n}", in_scratch(lib.chain, n, sync))
                record(results, side, sync, f"chain{n}_sync", in_scratch(lib.chain, n, sync, "sync"))
            if lg is not None:  # LangGraph's default: the checkpoint written during the next step
                record(results, "lg", sync, f"chain{n}_async",
                       in_scratch(lg.chain, n, sync, "async", "async"))


def bench_fanout(results: Results, size: dict[str, Any], rep: int) -> None:
    for k in size["fanout"]:
        for sync in SYNCS:
            for side, lib in sides(rep):
                record(results, side, sync, f"fanout{k}", in_scratch(lib.fanout, k, sync))


def bench_loop(results: Results, size: dict[str, Any], rep: int) -> None:
    for m in size["loop"]:
        for sync in SYNCS:
            for side, lib in sides(rep):
                record(results, side, sync, f"loop{m}", in_scratch(lib.loop, m, sync))


def bench_resume(results: Results, size: dict[str, Any], rep: int) -> None:
    for k in size["resume"]:
        for sync in SYNCS:
            for side, lib in sides(rep):
                record(results, side, sync, f"resume{k}", resume_in_fresh_process(side, lib, k, sync))


def resume_in_fresh_process(side: str, lib: Any, k: int, sync: Sync) -> dict[str, float]:
    """Create a run waiting after k steps, then resume it from new processes."""
    with scratch() as folder:
        run_id = asyncio.run(lib.prepare_resume(folder, k, sync))
        db = folder / f"{side}.db"
        seconds, out = wall(python("-m", "bench.resume_worker", side, str(db), run_id, str(k), sync))
        values = {"call_ms": json.loads(out)["resume_s"] * 1e3, "process_ms": seconds * 1e3}
    if side == "wp":  # the same from the command line (which opens its file at FULL)
        with scratch() as folder:
            run_id = asyncio.run(lib.prepare_resume(folder, k, sync))
            seconds, _ = wall([*waypoint_cli(), "resume", run_id, "--db", str(folder / "wp.db"),
                               "--input", '{"ok": true}'])
        values["cli_ms"] = seconds * 1e3
    return values


def bench_concurrent(results: Results, size: dict[str, Any], rep: int) -> None:
    runs, n = size["concurrent"]
    for sync in SYNCS:
        for side, lib in sides(rep):
            record(results, side, sync, "concurrent", in_scratch(lib.concurrent, runs, n, sync))


def bench_nostore(results: Results, size: dict[str, Any], rep: int) -> None:
    for kind in ("async", "sync"):
        for side, lib in sides(rep):
            record(results, side, "-", f"nostore_{kind}", asyncio.run(lib.nostore(size["nostore"], kind)))


IMPORTS = {
    "wp": {"import": "import waypoint", "import_store": "from waypoint import SQLiteStore"},
    "lg": {"import": "import langgraph.graph", "import_store": "import langgraph.checkpoint.sqlite.aio"},
}


def bench_imports(results: Results, size: dict[str, Any], rep: int) -> None:
    """Subprocess wall times; `python -c pass` is the interpreter's own start-up."""
    for i in range(size["imports"] if rep == 0 else 0):  # the first repetition takes them all
        results[("-", "-", "python.ms")].append(wall(python("-c", "pass"))[0] * 1e3)
        for side, _lib in sides(i):
            for metric, code in IMPORTS[side].items():
                results[(side, "-", f"{metric}.ms")].append(wall(python("-c", code))[0] * 1e3)
        results[("wp", "-", "help.ms")].append(wall([*waypoint_cli(), "--help"])[0] * 1e3)


def measure_floor(results: Results, size: dict[str, Any]) -> None:
    """The references of this repetition: one single-row WAL commit per sync, plain asyncio tasks."""
    with scratch() as folder:
        for sync in SYNCS:
            results[("-", sync, "floor.commit_ms")].append(floor.commit_ms(folder, sync))
    results[("-", "-", "plain.per_node_ms")].append(floor.plain_ms(size["nostore"]))


BENCHES = {name: globals()[f"bench_{name}"] for name in WORKLOADS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition by default")
    parser.add_argument("--reps", type=int, help="repetitions (default 5, or 1 with --quick)")
    parser.add_argument("--only", help=f"comma-separated workloads among {','.join(WORKLOADS)}")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    reps = args.reps or (1 if args.quick else 5)
    chosen = args.only.split(",") if args.only else list(WORKLOADS)
    if set(chosen) - set(WORKLOADS):
        parser.error(f"--only takes names among {','.join(WORKLOADS)}")
    results: Results = defaultdict(list)
    compile_bytecode()
    for rep in range(reps):
        measure_floor(results, size)  # in the same run, so that the multiples compare like with like
        for name in chosen:
            print(f"rep {rep + 1}/{reps}: {name}", file=sys.stderr, flush=True)
            BENCHES[name](results, size, rep)
    medians = {key: median(values) for key, values in results.items()}
    print(table.machine(lg is not None))
    print(f"\n{reps} repetition(s), medians; sizes: {'quick' if args.quick else 'full'}\n")
    print(table.render(medians, size, langgraph=lg is not None))
    print("\n" + floor.describe(floor.floors()))
    if args.json:
        args.json.write_text(json.dumps({"|".join(k): v for k, v in medians.items()}, indent=1))


if __name__ == "__main__":
    main()
