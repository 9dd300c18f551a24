"""The side-by-side table: rows, the issue's targets next to the ratios, and the machine.

A ratio is how many times better waypoint is: LangGraph / waypoint for times
and sizes, waypoint / LangGraph for runs per second. Rows 6 and 7 involve no
database, so they have one figure, under FULL.
"""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

Medians = dict[tuple[str, str, str], float]
Check = Callable[[float | None, float | None, float | None, str, Medians], bool | None]  # None: cannot judge
SYNCS = ("FULL", "NORMAL")
PACKAGES = ("waypoint-workflows", "langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite",
            "aiosqlite", "pydantic", "msgspec")


@dataclass
class Row:
    label: str
    wp: str  # waypoint's metric
    unit: str  # ms, bytes, runs/s, x
    lg: str | None = None  # LangGraph's metric, when it differs from waypoint's
    target: str = ""
    check: Check | None = None
    syncs: tuple[str, ...] = SYNCS  # ("-",): no database, one figure
    per_node: Callable[[float], float] | None = None  # waypoint's figure as ms per node, for "x floor"
    floor: str = "floor.commit_ms"  # the reference it is a multiple of (bench.floor, same run)

    @property
    def higher_is_better(self) -> bool:
        return self.unit == "runs/s"


def ratio_at_least(full: float, normal: float | None = None) -> Check:
    def check(lg: Any, wp: Any, ratio: float | None, sync: str, m: Medians) -> bool | None:
        return None if ratio is None else ratio >= (full if sync == "FULL" or normal is None else normal)
    return check


def wp_at_most(limit: float) -> Check:
    return lambda lg, wp, ratio, sync, m: wp is not None and wp <= limit


def rows(size: dict[str, Any]) -> list[Row]:
    n1, n2 = size["chain"]
    k1, k2 = size["fanout"]
    m1, m2 = size["loop"]
    r1, r2, *extra = size["resume"]
    runs, per_run = size["concurrent"]
    linear = m2 / m1

    def flat(lg: Any, wp: Any, ratio: Any, sync: str, m: Medians) -> bool | None:
        short = m.get(("wp", sync, f"resume{r1}.call_ms"))
        return None if short is None else wp <= 1.5 * short

    def resume_target(lg: Any, wp: Any, ratio: Any, sync: str, m: Medians) -> bool | None:
        return None if ratio is None else ratio >= 3 and bool(flat(lg, wp, ratio, sync, m))

    return [
        *(Row(f"(1) chain N={n}: time per node", f"chain{n}.per_node_ms", "ms",
              target="≥6x FULL, ≥12x NORMAL; ≤1.5x / ≤4x floor", check=ratio_at_least(6, 12),
              per_node=float) for n in (n1, n2)),
        *(Row(f"(1) chain N={n}: database bytes", f"chain{n}.bytes", "bytes",
              target="≥50x", check=ratio_at_least(50)) for n in (n1, n2)),
        *(Row(f"(1) chain N={n}, sync def nodes: time per node", f"chain{n}_sync.per_node_ms", "ms",
              per_node=float) for n in (n1, n2)),
        *(Row(f"(1) chain N={n}, LangGraph durability='async' (its default): time per node",
              f"chain{n}.per_node_ms", "ms", lg=f"chain{n}_async.per_node_ms") for n in (n1, n2)),
        Row(f"(2) fan-out K={k1} x 50 ms sleep, join: wall", f"fanout{k1}.wall_ms", "ms",
            target="waypoint ≤75 ms", check=wp_at_most(75)),
        Row(f"(2) fan-out K={k2} x 50 ms sleep, join: wall", f"fanout{k2}.wall_ms", "ms"),
        *(Row(f"(3) loop M={m} appending 1 KiB: total time (x floor: per iteration)", f"loop{m}.total_ms",
              "ms", per_node=lambda v, m=m: v / m) for m in (m1, m2)),
        *(Row(f"(3) loop M={m} appending 1 KiB: database bytes", f"loop{m}.bytes", "bytes",
              target="≥50x", check=ratio_at_least(50)) for m in (m1, m2)),
        # Linear growth gives m2/m1, quadratic (m2/m1)^2. Geometric snapshots make the bytes
        # per iteration swing by up to ~1.45x with where the last snapshot fell, hence 1.5x.
        Row(f"(3) loop: bytes at M={m2} / bytes at M={m1} (linear: {linear:g})", "loop.growth", "x",
            target=f"waypoint ≤{1.5 * linear:g}", check=wp_at_most(1.5 * linear)),
        Row(f"(4) resume after k={r1} in a fresh process: the call", f"resume{r1}.call_ms", "ms"),
        Row(f"(4) resume after k={r2} in a fresh process: the call", f"resume{r2}.call_ms", "ms",
            target=f"≥3x, and ≤1.5x waypoint k={r1}", check=resume_target),
        *(Row(f"(4) resume after k={k} in a fresh process: the call (waypoint's longest tail)",
              f"resume{k}.call_ms", "ms", target=f"≤1.5x waypoint k={r1}", check=flat) for k in extra),
        *(Row(f"(4) resume after k={k}: whole process (python script)", f"resume{k}.process_ms", "ms")
          for k in (r1, r2, *extra)),
        *(Row(f"(4) resume after k={k}: whole process, `waypoint resume` (LangGraph: its script)",
              f"resume{k}.cli_ms", "ms", lg=f"resume{k}.process_ms") for k in (r1, r2, *extra)),
        Row(f"(5) {runs} concurrent runs x {per_run} nodes, one file (x floor: wall per node)",
            "concurrent.runs_per_s", "runs/s", target="≥20x", check=ratio_at_least(20),
            per_node=lambda v: 1e3 / (v * per_run)),
        *(Row(f"(6) no store, {kind} nodes: time per node (N={size['nostore']}; x plain asyncio tasks)",
              f"nostore_{kind}.per_node_ms", "ms", syncs=("-",), per_node=float, floor="plain.per_node_ms")
          for kind in ("async", "sync")),
        Row("(7) `import waypoint` / `import langgraph.graph` (process wall)", "import.ms", "ms",
            target="waypoint <200 ms", check=wp_at_most(200), syncs=("-",)),
        Row("(7) import with the SQLite store (process wall)", "import_store.ms", "ms", syncs=("-",)),
        Row("(7) `waypoint --help` (process wall)", "help.ms", "ms", syncs=("-",)),
    ]


def derive(m: Medians, size: dict[str, Any]) -> Medians:
    """Add figures computed from others: the loop's growth from M1 to M2."""
    m1, m2 = size["loop"]
    out = dict(m)
    for side in ("lg", "wp"):
        for sync in SYNCS:
            small, big = m.get((side, sync, f"loop{m1}.bytes")), m.get((side, sync, f"loop{m2}.bytes"))
            if small and big:
                out[(side, sync, "loop.growth")] = big / small
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB" if value >= 1e6 else f"{value / 1e3:.0f} kB"
    if unit == "runs/s":
        return f"{value:.0f} runs/s"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def cells(row: Row, m: Medians, sync: str) -> tuple[list[str], bool | None]:
    lg, wp = m.get(("lg", sync, row.lg or row.wp)), m.get(("wp", sync, row.wp))
    ratio = None
    if lg and wp and row.unit != "x":
        ratio = wp / lg if row.higher_is_better else lg / wp
    verdict = None if row.check is None or wp is None else row.check(lg, wp, ratio, sync, m)
    return [fmt(lg, row.unit), fmt(wp, row.unit), "—" if ratio is None else f"{ratio:.1f}x"], verdict


def multiples(row: Row, m: Medians) -> list[str]:
    """Waypoint's figure per node as a multiple of its reference measured in the same run."""
    out = []
    for sync in SYNCS:
        key = "-" if row.syncs == ("-",) else sync
        wp = m.get(("wp", key, row.wp))
        ref = m.get(("-", key if row.floor == "floor.commit_ms" else "-", row.floor))
        show = row.per_node is not None and wp and ref and (key != "-" or sync == "FULL")
        out.append(f"{row.per_node(wp) / ref:.1f}x" if show else "")  # type: ignore[misc, operator]
    return out


def render(medians: Medians, size: dict[str, Any], *, langgraph: bool = True) -> str:
    m = derive(medians, size)
    head = ("| workload | FULL: LangGraph | waypoint | ratio | NORMAL: LangGraph | waypoint | ratio "
            "| target | result | waypoint / floor: FULL | NORMAL |")
    lines = [head, "|" + "---|" * 11]
    for row in rows(size):
        groups, verdicts = [], []
        for sync in SYNCS:
            if sync in row.syncs or (row.syncs == ("-",) and sync == "FULL"):
                values, verdict = cells(row, m, sync if row.syncs != ("-",) else "-")
                groups += values
                verdicts.append((sync, verdict))
            else:
                groups += ["", "", ""]
        lines.append(f"| {row.label} | {' | '.join(groups)} | {row.target} | {result(verdicts)} | "
                     f"{' | '.join(multiples(row, m))} |")
    floors = [m.get(("-", sync, "floor.commit_ms")) for sync in SYNCS]
    if all(floors):
        lines.append(f"\nfloor: one single-row WAL commit, {fmt(floors[0], 'ms')} at FULL and "
                     f"{fmt(floors[1], 'ms')} at NORMAL; row (6)'s reference, plain asyncio tasks "
                     f"applying the same update, {fmt(m.get(('-', '-', 'plain.per_node_ms')), 'ms')} "
                     "per node (bench.floor, measured in this run).")
    python = m.get(("-", "-", "python.ms"))
    if python is not None:
        lines.append(f"\n`python -c pass` takes {fmt(python, 'ms')} here: rows (7) include it.")
    if not langgraph:
        lines.append("\nLangGraph is not installed (pip install -e '.[bench]'): its side was skipped.")
    return "\n".join(lines)


def result(verdicts: list[tuple[str, bool | None]]) -> str:
    judged = [(sync, v) for sync, v in verdicts if v is not None]
    if not judged:
        return ""
    if all(v for _, v in judged):
        return "PASS"
    if len(judged) == 1:
        return "GAP"
    return ", ".join(f"{sync} {'PASS' if v else 'GAP'}" for sync, v in judged)


def machine(langgraph: bool) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES if langgraph or "langgraph" not in p)
    return (f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"load average at the end {os.getloadavg()[0]:.2f}\n"
            f"libraries: {versions}")


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"
