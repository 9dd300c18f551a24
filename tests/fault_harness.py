"""Graphs and subprocess workers for the fault tests (tests/test_faults_*.py).

    python tests/fault_harness.py crash SHAPE DB RUN_ID EXEC_LOG REPORT GEN
    python tests/fault_harness.py many DB PREFIX RUNS CONCURRENCY
    python tests/fault_harness.py race DB RUN_ID EXEC_LOG TRIED
    python tests/fault_harness.py pause DB RUN_ID READY GO
    python tests/fault_harness.py finish DB RUN_ID
    python tests/fault_harness.py fill DB RUN_ID
    python tests/fault_harness.py load DB RUNS CONCURRENCY
    python tests/fault_harness.py report FIGURES_JSONL docs/reliability.md

`crash` runs (or resumes) one of the SHAPES until it is done, answering its gate;
every traced node appends "GEN ACTIVATION NODE" to EXEC_LOG when it STARTS, and
every completion the engine reports (the `node_finished` event, published only
once the step is durable) is appended to REPORT as "GEN ACTIVATION". The parent
SIGKILLs it wherever it likes and compares both files with the database.

`many` and `race` print "ready" and wait for a "go" line on stdin (`go()`), so
that the parent starts them together without trusting the clock. Every mode
prints one JSON line on stdout. Tests that measure something call
`record(test, **figures)`: the figures are printed and, when
$WAYPOINT_RELIABILITY_FIGURES names a file, appended to it as JSON lines, from
which `report` rewrites the figures block of docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

import waypoint as wp

SLEEP = float(os.environ.get("FAULT_SLEEP", "0.003"))  # per traced node: short, but a real await
FIGURES_ENV = "WAYPOINT_RELIABILITY_FIGURES"
_trace: dict[str, Any] = {"log": None, "gen": "0"}


class Approval(BaseModel):
    approved: bool
    comment: str = ""


class Flow(BaseModel):
    """One state for every shape; reducer fields keep parallel branches order-independent."""

    trail: Annotated[list[str], wp.append] = []  # sequential parts only: order is deterministic
    parts: Annotated[dict[str, int], wp.merge] = {}  # parallel branches: merged, order-free
    items: list[int] = list(range(1, 11))
    doubled: list[int] = []
    count: int = 0
    approval: Approval | None = None
    note: str = ""


def _log_start(activation: str, node: str) -> None:
    if _trace["log"] is None:
        return
    fd = os.open(_trace["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one O_APPEND write per line: whole lines even when the process is killed
        os.write(fd, f"{_trace['gen']} {activation} {node}\n".encode())
    finally:
        os.close(fd)


def traced(g: wp.GraphBuilder, name: str, update, writes, *, join: bool = False, **options) -> None:
    """A node that logs its start, sleeps SLEEP and returns `update(state)`."""
    async def node(state: Flow, ctx: wp.NodeContext):
        _log_start(ctx.activation, name)
        await asyncio.sleep(SLEEP)
        return update(state)

    node.__name__ = name
    if join:
        g.join(name, node, writes=list(writes), **options)
    else:
        g.node(node, name=name, writes=list(writes), **options)


def _chain(g: wp.GraphBuilder, names: list[str], start: str = wp.START, end: str = wp.END) -> None:
    for a, b in zip([start, *names], [*names, end]):
        g.edge(a, b)


def step_of(name: str):
    return lambda s: {"trail": [name], "count": s.count + 1}


def chain_graph() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="fault_chain")
    names = [f"c{i}" for i in range(12)]
    for name in names:
        traced(g, name, step_of(name), ["trail", "count"])
    _chain(g, names)
    return g.compile()


def fanout_graph() -> wp.Graph:
    """split -> six branches (two of them two nodes long) -> join -> tail."""
    g = wp.GraphBuilder(Flow, name="fault_fanout")
    traced(g, "split", step_of("split"), ["trail", "count"])
    branches = [f"b{i}" for i in range(6)]
    for i, name in enumerate(branches):
        traced(g, name, lambda s, n=name, i=i: {"parts": {n: i}}, ["parts"])
    for name in ("b0", "b3"):
        traced(g, name + "x", lambda s, n=name: {"parts": {n + "x": 10}}, ["parts"])
        g.edge(name, name + "x")
    traced(g, "gather", lambda s: {"count": s.count + len(s.parts), "trail": sorted(s.parts)},
           ["count", "trail"], join=True)
    traced(g, "tail", step_of("tail"), ["trail", "count"])
    g.edge(wp.START, "split")
    g.edge("split", branches)
    for name in branches:
        g.edge(name + "x" if name in ("b0", "b3") else name, "gather")
    _chain(g, ["tail"], "gather")
    return g.compile()


def loop_graph() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="fault_loop")
    traced(g, "init", step_of("init"), ["trail", "count"])
    traced(g, "step", lambda s: {"trail": [f"step{len(s.trail)}"], "count": s.count + 1},
           ["trail", "count"])
    traced(g, "finish", step_of("finish"), ["trail", "count"])
    g.loop_guard("again", max_iterations=8, routes={"continue": "step", "done": "finish"})
    g.edge(wp.START, "init")
    g.edge("init", "again")
    g.edge("step", "again")
    g.edge("finish", wp.END)
    return g.compile()


def map_graph() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="fault_map")
    traced(g, "prep", step_of("prep"), ["trail", "count"])

    async def double(item: int, ctx: wp.NodeContext) -> int:
        _log_start(ctx.activation, "each")
        await asyncio.sleep(SLEEP)
        return item * 2

    g.map("each", double, over="items", into="doubled", max_concurrency=3)
    traced(g, "total", lambda s: {"count": sum(s.doubled), "trail": ["total"]}, ["count", "trail"])
    _chain(g, ["prep", "each", "total"])
    return g.compile()


def gate_graph() -> wp.Graph:
    """a -> b -> gate approve -> c -> d, and a side branch a -> s1 -> s2 running past the gate."""
    g = wp.GraphBuilder(Flow, name="fault_gate")
    for name in ("a", "b", "c", "d"):
        traced(g, name, step_of(name), ["trail", "count"])
    for name in ("s1", "s2"):
        traced(g, name, lambda s, n=name: {"parts": {n: 1}}, ["parts"])
    g.gate("approve", Approval, prompt="Go on?", payload=lambda s: {"count": s.count},
           into="approval")
    _chain(g, ["a", "b", "approve", "c", "d"])
    _chain(g, ["s1", "s2"], "a")
    return g.compile()


SHAPES = {"chain": chain_graph, "fanout": fanout_graph, "loop": loop_graph, "map": map_graph,
          "gate": gate_graph}
ANSWER = {"approved": True, "comment": "go"}


async def _report_commits(handle: wp.RunHandle, report: str) -> None:
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        async for event in handle.events():
            if event.kind == "node_finished":
                os.write(fd, f"{_trace['gen']} {event.activation}\n".encode())
    finally:
        os.close(fd)


async def crash(shape: str, db: str, run_id: str, log: str, report: str, gen: str) -> None:
    """Start or resume `run_id` of `shape` and drive it to the end, answering its gate."""
    _trace.update(log=log, gen=gen)
    graph = SHAPES[shape]()
    store = wp.SQLiteStore(db)
    try:
        try:
            info = await store.get_run(run_id)
        except wp.RunError:
            handle = await wp.start(graph, store=store, run_id=run_id)
        else:
            if info.status == "done":  # killed after the run finished, before the process ended
                state = await wp.state_at(graph, run_id, store=store)
                print(json.dumps({"status": "done", "state": state.model_dump(mode="json")}))
                return
            answer = ANSWER if info.status == "waiting" else None
            handle = await wp.resume(graph, run_id, answer, store=store, by="harness")
        while True:
            reporter = asyncio.create_task(_report_commits(handle, report))
            result = await handle.result()
            await reporter
            if result.status != "waiting":
                break
            handle = await wp.resume(graph, run_id, ANSWER, store=store, by="harness")
        print(json.dumps({"status": result.status, "state": result.state.model_dump(mode="json")}))
    finally:
        await store.close()


class Ticket(BaseModel):
    n: int = 0
    note: str = ""
    approval: Approval | None = None
    review: Approval | None = None


def gated_graph() -> wp.Graph:
    """a -> b -> gate approve -> c -> gate review -> d: for bad input, corruption, hostile data."""
    g = wp.GraphBuilder(Ticket, name="gated")

    async def a(state: Ticket) -> dict:
        return {"n": state.n + 1}

    async def b(state: Ticket) -> dict:
        return {"n": state.n + 1, "note": "ready"}

    async def c(state: Ticket) -> dict:
        return {"n": state.n + 10}

    async def d(state: Ticket) -> dict:
        return {"n": state.n + 100}

    for fn in (a, b, c, d):
        g.node(fn)
    g.gate("approve", Approval, prompt="Approve?", payload=lambda s: {"n": s.n}, into="approval")
    g.gate("review", Approval, prompt="Review?", into="review")
    _chain(g, ["a", "b", "approve", "c", "review", "d"])
    return g.compile()


# -- concurrency ------------------------------------------------------------------------------
class Count(BaseModel):
    n: int = 0
    fail: bool = False


def counter_graph(length: int = 6, sleep: float = 0.0, hold: str | None = None) -> wp.Graph:
    """n0 -> n1 -> ... ; node n2 raises while deps say {"fail": True}, else waits for the file `hold`."""
    g = wp.GraphBuilder(Count, name=f"counter{length}")
    names = [f"n{i}" for i in range(length)]
    for name in names:
        async def node(state: Count, ctx: wp.NodeContext, name=name):
            _log_start(f"{ctx.run_id}:{ctx.activation}", name)
            if sleep:
                await asyncio.sleep(sleep)
            if name == "n2" and (ctx.deps or {}).get("fail"):
                raise RuntimeError("n2 fails while deps say so")
            if name == "n2" and hold is not None:
                await _wait_for_file(hold)
            return {"n": state.n + 1}

        g.node(node, name=name, writes=["n"])
    _chain(g, names)
    return g.compile()


def go() -> None:
    """Say "ready" on stdout, then block until the parent writes "go" on stdin (see `tests.go`)."""
    print("ready", flush=True)
    if sys.stdin.readline() != "go\n":
        raise SystemExit("fault_harness: stdin closed before the parent said go")


async def _wait_for_file(path: str, limit: float = 60.0) -> None:
    """Poll for `path`. The limit only stops a broken run from hanging the suite; it decides nothing."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


async def many(db: str, prefix: str, runs: int, concurrency: int) -> None:
    """Start `runs` runs of counter_graph once the parent says go, `concurrency` at a time."""
    graph = counter_graph()
    store = wp.SQLiteStore(db)
    limit = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i: int) -> str:
        async with limit:
            try:
                result = await (await wp.start(graph, store=store, run_id=f"{prefix}-{i}")).result()
                return result.status
            except wp.WaypointError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return "error"

    go()  # before the store is opened: its file and schema are created under contention too
    try:
        statuses = await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        await store.close()
    print(json.dumps({"done": statuses.count("done"), "errors": errors}))


async def race(db: str, run_id: str, log: str, tried: str) -> None:
    """Resume `run_id` once the parent says go: prints who executed it and who was refused.

    Whoever gets the run holds it inside n2 until the file `tried` exists, which every
    process touches once its own attempt is over: the other attempt meets a held run
    however late it is scheduled, so the test's outcome never depends on timing.
    """
    _trace.update(log=log, gen=str(os.getpid()))
    graph = counter_graph(sleep=0.02, hold=tried)
    store = wp.SQLiteStore(db)
    try:
        await store.open()
        go()
        try:
            result = await (await wp.resume(graph, run_id, store=store, deps={})).result()
            outcome = {"outcome": result.status, "n": result.state.n}
        except wp.LeaseError as exc:
            outcome = {"outcome": "lease", "error": str(exc)}
        except wp.RunError as exc:
            outcome = {"outcome": type(exc).__name__, "error": str(exc)}
        print(json.dumps(outcome))
    finally:
        Path(tried).touch()
        await store.close()


# -- disk trouble -----------------------------------------------------------------------------
def pausing_graph(ready: str | None = None, go: str | None = None) -> wp.Graph:
    """c0..c5; c3 touches READY and waits until the file GO exists (the parent's cue)."""
    g = wp.GraphBuilder(Flow, name="fault_pause")
    names = [f"c{i}" for i in range(6)]
    for name in names:
        async def node(state: Flow, name=name):
            if name == "c3" and ready is not None:
                Path(ready).touch()
                while not os.path.exists(go):
                    await asyncio.sleep(0.002)
            return {"trail": [name], "count": state.count + 1}

        g.node(node, name=name, writes=["trail", "count"])
    _chain(g, names)
    return g.compile()


async def pause(db: str, run_id: str, ready: str, go: str) -> None:
    store = wp.SQLiteStore(db)
    try:
        result = await (await wp.start(pausing_graph(ready, go), store=store, run_id=run_id)).result()
        print(json.dumps({"status": result.status, "state": result.state.model_dump(mode="json")}))
    except wp.WaypointError as exc:
        print(json.dumps({"status": "raised", "type": type(exc).__name__, "error": str(exc)}))
    finally:
        await store.close()


async def finish(db: str, run_id: str) -> None:
    store = wp.SQLiteStore(db)
    try:
        result = await (await wp.resume(pausing_graph(), run_id, store=store)).result()
        print(json.dumps({"status": result.status, "state": result.state.model_dump(mode="json")}))
    finally:
        await store.close()


class Blobs(BaseModel):
    blobs: Annotated[list[str], wp.append] = []


def filling_graph(iterations: int = 60, size: int = 16 * 1024) -> wp.Graph:
    """A loop that appends `size` bytes per iteration: fills a small disk."""
    g = wp.GraphBuilder(Blobs, name="fault_fill")

    async def grow(state: Blobs) -> dict:
        return {"blobs": [f"{len(state.blobs):06d}" + "x" * size]}

    g.node(grow, writes=["blobs"])
    g.loop_guard("again", max_iterations=iterations, routes={"continue": "grow", "done": wp.END})
    g.edge(wp.START, "grow")
    g.edge("grow", "again")
    return g.compile()


async def fill(db: str, run_id: str) -> None:
    """Start (or resume) a filling_graph run; prints its outcome, or the error that stopped it."""
    graph, store = filling_graph(), wp.SQLiteStore(db)
    try:
        try:
            await store.get_run(run_id)
        except wp.RunError:
            handle = await wp.start(graph, store=store, run_id=run_id)
        else:
            handle = await wp.resume(graph, run_id, store=store)
        result = await handle.result()
        print(json.dumps({"status": result.status, "blobs": len(result.state.blobs)}))
    except wp.WaypointError as exc:
        print(json.dumps({"status": "raised", "type": type(exc).__name__, "error": str(exc)}))
    finally:
        await store.close()


# -- load -------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux's VmHWM, not getrusage's ru_maxrss: ru_maxrss survives execve, so a worker
    spawned by a large pytest process would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def load(db: str, runs: int, concurrency: int) -> None:
    """`runs` runs of a 10-node chain through ONE store, at most `concurrency` at a time.

    Runs are started as slots free up (a Semaphore around start + result), so memory
    holds `concurrency` runs at most: growth after the first quarter would be a leak.
    """
    graph = counter_graph(10)
    store = wp.SQLiteStore(db)
    limit = asyncio.Semaphore(concurrency)
    statuses: list[str] = []
    marks: dict[str, float] = {"rss_before_mb": peak_rss_mb()}

    async def one(i: int) -> None:
        try:
            result = await (await wp.start(graph, store=store, run_id=f"load-{i}")).result()
            statuses.append(result.status)
        finally:
            limit.release()
        if len(statuses) == runs // 4:
            marks["rss_quarter_mb"] = peak_rss_mb()

    began = time.perf_counter()
    tasks = set()
    try:
        for i in range(runs):
            await limit.acquire()
            task = asyncio.create_task(one(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        await store.close()
    seconds = time.perf_counter() - began
    print(json.dumps({"runs": runs, "done": statuses.count("done"), "seconds": round(seconds, 2),
                      "runs_per_s": round(runs / seconds, 1), "rss_peak_mb": round(peak_rss_mb(), 1),
                      **{k: round(v, 1) for k, v in marks.items()}}))


# -- helpers for the tests -------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
GATED_REF = f"{Path(__file__).resolve()}:gated_graph"  # for `waypoint ... --graph`


def cli(*args: str, cwd: str | Path | None = None, timeout: float = 60):
    """`python -m waypoint.cli ARGS` in a fresh process; every failure must be one clear line."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("WAYPOINT_DB", "WAYPOINT_FAULT")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def dump(db: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every waypoint table, in key order: compare before/after to prove nothing changed."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("runs", "steps", "snapshots")}


# -- figures ----------------------------------------------------------------------------------
def record(test: str, **figures: Any) -> None:
    """Print a test's figures; append them to $WAYPOINT_RELIABILITY_FIGURES when it is set."""
    line = json.dumps({"test": test, **figures}, sort_keys=True)
    print(f"figures {line}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")


BEGIN, END_MARK = "<!-- figures:begin -->", "<!-- figures:end -->"
TOTALS = [("kills survived (SIGKILL, parent or fault point)", "kills_survived"), ("runs", "runs"),
          ("rows checked", "rows_checked"), ("bad inputs tried", "inputs_tried"),
          ("damaged or hostile records planted", "records_planted")]


def _grouped(figures_path: str) -> dict[str, dict[str, Any]]:
    """Figures per test; parametrized cases ("name[case]") summed into one row with a case count."""
    rows: dict[str, dict[str, Any]] = {}
    for line in Path(figures_path).read_text().splitlines():
        data = json.loads(line)
        test, case = data.pop("test"), None
        if "[" in test:
            test, case = test.split("[", 1)
        row = rows.setdefault(test, {})
        if case is None:
            row.update(data)
            continue
        row["cases"] = row.get("cases", 0) + 1
        for key, value in data.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = row.get(key, 0) + value
            else:
                row[key] = sorted({*row.get(key, []), str(value)})
    return rows


def write_report(figures_path: str, doc_path: str) -> None:
    """Replace the block between the figure markers of `doc_path` with the figures."""
    rows = _grouped(figures_path)
    totals = [f"| {label} | {sum(r.get(key, 0) for r in rows.values())} |" for label, key in TOTALS]
    peaks = ", ".join(f"{rows[t]['runs']} runs: {rows[t]['peak_rss_mb']} MiB"
                      for t in ("load_1000", "load_5000") if t in rows)
    table = ["| test | figures |", "|---|---|"]
    for test, data in sorted(rows.items()):
        shown = ", ".join(f"{k}: {'/'.join(v) if isinstance(v, list) else v}" for k, v in sorted(data.items()))
        table.append(f"| `{test}` | {shown} |")
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = "\n".join([
        BEGIN, f"Generated {stamp} by `tests/test_faults_*.py` on {os.cpu_count()} cores, python "
        f"{sys.version.split()[0]}, SQLite {__import__('sqlite3').sqlite_version}.", "",
        "| total | |", "|---|---|", *totals, f"| peak RSS of the load worker | {peaks} |", "",
        *table, END_MARK])
    doc = Path(doc_path).read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END_MARK)
    Path(doc_path).write_text(head + block + tail)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "crash":
        asyncio.run(crash(*args[:6]))
    elif mode == "many":
        asyncio.run(many(args[0], args[1], int(args[2]), int(args[3])))
    elif mode == "race":
        asyncio.run(race(*args[:4]))
    elif mode == "pause":
        asyncio.run(pause(*args[:4]))
    elif mode == "finish":
        asyncio.run(finish(*args[:2]))
    elif mode == "fill":
        asyncio.run(fill(*args[:2]))
    elif mode == "load":
        asyncio.run(load(args[0], int(args[1]), int(args[2])))
    elif mode == "report":
        write_report(args[0], args[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
