"""The same workloads on LangGraph: StateGraph + AsyncSqliteSaver, same shapes and fields.

State is a TypedDict (LangGraph's fast path; a pydantic state would validate on
every node input and only slow it down). Runs use `durability="sync"`: a step's
checkpoint is written before the next step starts, the guarantee waypoint gives
(LangGraph's default "async" writes it while the next step runs; `run.py`
reports that mode too for the chain). The saver's connection gets
`PRAGMA synchronous` before `setup()`, and the value is read back.
"""

from __future__ import annotations

import asyncio
import operator
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Callable, TypedDict

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from bench.common import PAD, Sync, check_synchronous, clock, db_bytes


class Counter(TypedDict):
    n: int


class Fan(TypedDict):
    done: Annotated[list[str], operator.add]


class Log(TypedDict):
    i: int
    items: Annotated[list[str], operator.add]


class Gated(TypedDict, total=False):
    n: int
    answer: dict[str, Any]


async def _step(state: Counter) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def _step_sync(state: Counter) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def _add_chain(g: StateGraph, n: int, fn: Callable[..., Any]) -> str:
    for i in range(n):
        g.add_node(f"n{i}", fn)
        g.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    return f"n{n - 1}"


@cache
def chain_graph(n: int, kind: str = "async") -> StateGraph:
    g = StateGraph(Counter)
    g.add_edge(_add_chain(g, n, _step if kind == "async" else _step_sync), END)
    return g


@cache
def fanout_graph(k: int) -> StateGraph:
    g = StateGraph(Fan)

    async def fork(state: Fan) -> dict[str, Any]:
        return {}

    def branch(i: int) -> Callable[..., Any]:
        async def work(state: Fan) -> dict[str, Any]:
            await asyncio.sleep(0.05)
            return {"done": [f"b{i}"]}
        return work

    g.add_node("fork", fork)
    g.add_edge(START, "fork")
    for i in range(k):
        g.add_node(f"b{i}", branch(i))
        g.add_edge("fork", f"b{i}")
    g.add_node("merge", fork)
    g.add_edge([f"b{i}" for i in range(k)], "merge")  # waits for every branch
    g.add_edge("merge", END)
    return g


@cache
def loop_graph(m: int) -> StateGraph:
    g = StateGraph(Log)

    async def body(state: Log) -> dict[str, Any]:
        return {"i": state["i"] + 1, "items": [f"{state['i']:04d}{PAD}"]}

    g.add_node("body", body)
    g.add_edge(START, "body")
    g.add_conditional_edges("body", lambda s: "body" if s["i"] < m else END, ["body", END])
    return g


@cache
def resume_graph(k: int) -> StateGraph:
    g = StateGraph(Gated)

    async def stop(state: Gated) -> dict[str, Any]:
        return {"answer": interrupt({"question": "ok?"})}

    last = _add_chain(g, k, _step)
    g.add_node("stop", stop)
    g.add_node("after", _step)
    g.add_edge(last, "stop")
    g.add_edge("stop", "after")
    g.add_edge("after", END)
    return g


def _config(thread: str, steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}


async def _open(folder: Path, sync: Sync) -> tuple[aiosqlite.Connection, AsyncSqliteSaver]:
    conn = await aiosqlite.connect(str(folder / "lg.db"))
    await conn.execute(f"PRAGMA synchronous={sync}")  # one of two constants
    saver = AsyncSqliteSaver(conn)
    await saver.setup()  # WAL, tables
    cursor = await conn.execute("PRAGMA synchronous")
    check_synchronous((await cursor.fetchone())[0], sync, "LangGraph AsyncSqliteSaver")
    return conn, saver


async def _timed_run(graph: Any, input: Any, config: dict[str, Any], durability: str) -> tuple[float, Any]:
    started = clock()
    result = await graph.ainvoke(input, config, durability=durability)
    return clock() - started, result


async def chain(folder: Path, n: int, sync: Sync, kind: str = "async",
                durability: str = "sync") -> dict[str, float]:
    conn, saver = await _open(folder, sync)
    graph = chain_graph(n, kind).compile(checkpointer=saver)
    elapsed, state = await _timed_run(graph, {"n": 0}, _config("chain", n), durability)
    await conn.close()
    assert state["n"] == n
    return {"per_node_ms": elapsed / n * 1e3, "bytes": db_bytes(folder)}


async def fanout(folder: Path, k: int, sync: Sync) -> dict[str, float]:
    conn, saver = await _open(folder, sync)
    graph = fanout_graph(k).compile(checkpointer=saver)
    elapsed, state = await _timed_run(graph, {"done": []}, _config("fan", k + 2), "sync")
    await conn.close()
    assert len(state["done"]) == k
    return {"wall_ms": elapsed * 1e3}


async def loop(folder: Path, m: int, sync: Sync) -> dict[str, float]:
    conn, saver = await _open(folder, sync)
    graph = loop_graph(m).compile(checkpointer=saver)
    elapsed, state = await _timed_run(graph, {"i": 0, "items": []}, _config("loop", m), "sync")
    await conn.close()
    assert len(state["items"]) == m
    return {"total_ms": elapsed * 1e3, "bytes": db_bytes(folder)}


async def concurrent(folder: Path, runs: int, n: int, sync: Sync) -> dict[str, float]:
    conn, saver = await _open(folder, sync)
    graph = chain_graph(n).compile(checkpointer=saver)
    started = clock()
    results = await asyncio.gather(*(graph.ainvoke({"n": 0}, _config(f"t{i}", n), durability="sync")
                                     for i in range(runs)))
    elapsed = clock() - started
    await conn.close()
    assert all(r["n"] == n for r in results)
    return {"runs_per_s": runs / elapsed}


async def nostore(n: int, kind: str = "async") -> dict[str, float]:
    graph = chain_graph(n, kind).compile()
    started = clock()
    state = await graph.ainvoke({"n": 0}, {"recursion_limit": n + 10})
    elapsed = clock() - started
    assert state["n"] == n
    return {"per_node_ms": elapsed / n * 1e3}


async def prepare_resume(folder: Path, k: int, sync: Sync) -> str:
    """Create a thread that waits at its interrupt() after k steps; returns its id."""
    conn, saver = await _open(folder, sync)
    graph = resume_graph(k).compile(checkpointer=saver)
    state = await graph.ainvoke({"n": 0}, _config("resume", k + 2), durability="sync")
    await conn.close()
    assert state["n"] == k and "__interrupt__" in state, state
    return "resume"


async def resume_call(db: Path, thread: str, k: int, sync: Sync) -> float:
    """In a fresh process: the resume call alone (graph compiled and saver set up before)."""
    conn, saver = await _open(db.parent, sync)
    graph = resume_graph(k).compile(checkpointer=saver)
    elapsed, state = await _timed_run(graph, Command(resume={"ok": True}), _config(thread, k + 2), "sync")
    await conn.close()
    assert state["n"] == k + 1 and state["answer"] == {"ok": True}, state
    return elapsed
