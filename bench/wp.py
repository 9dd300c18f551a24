"""The workloads on waypoint: graphs, and one timed execution of each.

Every workload opens its store (and reads its PRAGMA back) before the clock
starts and closes it before files are measured, exactly as `lg.py` does. Graphs
are compiled once per shape and reused across repetitions, as an application
would. `resume_<k>` attributes are the graph references `waypoint resume` loads.
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import BaseModel

from bench.common import PAD, Sync, check_synchronous, clock, db_bytes
from waypoint import END, START, GraphBuilder, MemoryStore, SQLiteStore, append, resume, start


class Counter(BaseModel):
    n: int = 0


class Fan(BaseModel):
    done: Annotated[list[str], append] = []


class Log(BaseModel):
    items: Annotated[list[str], append] = []


class Ok(BaseModel):
    ok: bool


class Gated(BaseModel):
    n: int = 0
    answer: Ok | None = None


async def _step(state: Counter) -> dict[str, Any]:
    return {"n": state.n + 1}


def _step_sync(state: Counter) -> dict[str, Any]:
    return {"n": state.n + 1}


def _add_chain(g: GraphBuilder[Any], n: int, fn: Callable[..., Any], first_from: str = START) -> str:
    for i in range(n):
        g.node(fn, name=f"n{i}", writes=["n"])
        g.edge(first_from if i == 0 else f"n{i - 1}", f"n{i}")
    return f"n{n - 1}"


@cache
def chain_graph(n: int, kind: str = "async") -> Any:
    g = GraphBuilder(Counter, name=f"chain{n}")
    g.edge(_add_chain(g, n, _step if kind == "async" else _step_sync), END)
    return g.compile()


@cache
def fanout_graph(k: int) -> Any:
    g = GraphBuilder(Fan, name=f"fanout{k}")

    async def fork(state: Fan) -> None:
        return None

    def branch(i: int) -> Callable[..., Any]:
        async def work(state: Fan) -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"done": [f"b{i}"]}
        return work

    g.node(fork, name="fork", writes=[])
    g.join("merge")
    g.edge(START, "fork")
    for i in range(k):
        g.node(branch(i), name=f"b{i}", writes=["done"])
        g.edge("fork", f"b{i}")
        g.edge(f"b{i}", "merge")
    g.edge("merge", END)
    return g.compile()


@cache
def loop_graph(m: int) -> Any:
    """START -> guard -> body -> guard ...: the body runs exactly m times."""
    g = GraphBuilder(Log, name=f"loop{m}")

    async def body(state: Log) -> dict[str, Any]:
        return {"items": [f"{len(state.items):04d}{PAD}"]}

    g.node(body, name="body", writes=["items"])
    g.loop_guard("guard", max_iterations=m, routes={"continue": "body", "exhausted": END})
    g.edge(START, "guard")
    g.edge("body", "guard")
    return g.compile()


@cache
def resume_graph(k: int) -> Any:
    """k chain nodes, a gate, one more node: a run created on it stops after k steps."""
    g = GraphBuilder(Gated, name=f"resume{k}")
    last = _add_chain(g, k, _step)
    g.gate("stop", Ok, into="answer")
    g.node(_step, name="after", writes=["n"])
    g.edge(last, "stop")
    g.edge("stop", "after")
    g.edge("after", END)
    return g.compile()


def __getattr__(name: str) -> Any:  # `waypoint resume` loads bench.wp:resume_<k>
    if name.startswith("resume_") and name[7:].isdigit():
        return lambda: resume_graph(int(name[7:]))
    raise AttributeError(name)


async def _open(folder: Path, sync: Sync) -> SQLiteStore:
    store = SQLiteStore(folder / "wp.db", synchronous=sync)
    await store.open()
    # PRAGMA synchronous is per connection, so it is read on the store's own one.
    row = await store._conn.run(lambda raw: raw.execute("PRAGMA synchronous").fetchone())  # noqa: SLF001
    check_synchronous(row[0], sync, "waypoint SQLiteStore")
    return store


async def _timed_run(graph: Any, store: Any, input: Any = None) -> tuple[float, Any]:
    started = clock()
    result = await (await start(graph, input, store=store)).result()
    elapsed = clock() - started
    if result.status != "done":
        raise RuntimeError(f"waypoint run of {graph.name} ended {result.status}")
    return elapsed, result.state


async def chain(folder: Path, n: int, sync: Sync, kind: str = "async") -> dict[str, float]:
    store = await _open(folder, sync)
    elapsed, state = await _timed_run(chain_graph(n, kind), store)
    await store.close()
    assert state.n == n
    return {"per_node_ms": elapsed / n * 1e3, "bytes": db_bytes(folder)}


async def fanout(folder: Path, k: int, sync: Sync) -> dict[str, float]:
    store = await _open(folder, sync)
    elapsed, state = await _timed_run(fanout_graph(k), store)
    await store.close()
    assert len(state.done) == k
    return {"wall_ms": elapsed * 1e3}


async def loop(folder: Path, m: int, sync: Sync) -> dict[str, float]:
    store = await _open(folder, sync)
    elapsed, state = await _timed_run(loop_graph(m), store)
    await store.close()
    assert len(state.items) == m
    return {"total_ms": elapsed * 1e3, "bytes": db_bytes(folder)}


async def concurrent(folder: Path, runs: int, n: int, sync: Sync) -> dict[str, float]:
    store, graph = await _open(folder, sync), chain_graph(n)

    async def one() -> Any:
        return await (await start(graph, None, store=store)).result()

    started = clock()
    results = await asyncio.gather(*(one() for _ in range(runs)))
    elapsed = clock() - started
    await store.close()
    assert all(r.status == "done" and r.state.n == n for r in results)
    return {"runs_per_s": runs / elapsed}


async def nostore(n: int, kind: str = "async") -> dict[str, float]:
    elapsed, state = await _timed_run(chain_graph(n, kind), MemoryStore())
    assert state.n == n
    return {"per_node_ms": elapsed / n * 1e3}


async def prepare_resume(folder: Path, k: int, sync: Sync) -> str:
    """Create a run that waits at its gate after k steps; returns its id."""
    store = await _open(folder, sync)
    handle = await start(resume_graph(k), None, store=store, graph_ref=f"bench.wp:resume_{k}")
    result = await handle.result()
    await store.close()
    assert result.status == "waiting" and result.state.n == k, result
    return result.run_id


async def resume_call(db: Path, run_id: str, k: int, sync: Sync) -> float:
    """In a fresh process: the resume call alone (graph built and store opened before)."""
    graph, store = resume_graph(k), await _open(db.parent, sync)
    started = clock()
    result = await (await resume(graph, run_id, {"ok": True}, store=store)).result()
    elapsed = clock() - started
    await store.close()
    assert result.status == "done" and result.state.n == k + 1, result
    return elapsed
