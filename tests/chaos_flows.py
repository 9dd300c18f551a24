"""The graphs of the chaos suite (tests/test_chaos.py), as its worker processes and the test load them.

The five fault shapes of tests/fault_harness.py (a chain; a fan-out into a join; a
loop behind a guard; a map; a gate with a side branch running past it), built
here with nodes that record every execution: one line `S|E time_ns pid run_id
activation node` when a node starts and when it ends, appended with O_APPEND to
`$WAYPOINT_CHAOS_DIR/executions` (one write per line: whole lines even when the
process is SIGKILLed); `X` instead of `E` when the node was stopped (cancelled:
its worker lost the run, or handed it back). A map item records `activation/item`.

    reference("chain")   # the final state of an uninterrupted run, to compare with
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

import waypoint as wp

SLEEP = 0.02  # per node: a run lasts a while, so that kills and restarts land inside runs and nodes


class Approval(BaseModel):
    approved: bool
    comment: str = ""


class Flow(BaseModel):
    trail: Annotated[list[str], wp.append] = []
    parts: Annotated[dict[str, int], wp.merge] = {}
    items: list[int] = list(range(1, 9))
    doubled: list[int] = []
    count: int = 0
    approval: Approval | None = None


ANSWER = {"approved": True, "comment": "go"}


def _record(kind: str, run_id: str, activation: str, node: str) -> None:
    folder = os.environ.get("WAYPOINT_CHAOS_DIR")
    if folder is None:
        return
    line = f"{kind} {time.time_ns()} {os.getpid()} {run_id} {activation} {node}\n".encode()
    fd = os.open(Path(folder) / "executions", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _recorded(run_id: str, activation: str, node: str) -> AsyncIterator[None]:
    _record("S", run_id, activation, node)
    try:
        yield
    except BaseException:
        _record("X", run_id, activation, node)
        raise
    _record("E", run_id, activation, node)


def _node(g: wp.GraphBuilder, name: str, update: Any, writes: list[str]) -> None:
    async def node(state: Flow, ctx: wp.NodeContext) -> dict:
        async with _recorded(ctx.run_id, ctx.activation, name):
            await asyncio.sleep(SLEEP)
            return update(state)

    node.__name__ = name
    g.node(node, name=name, writes=writes)


def _step(name: str) -> Any:
    return lambda s: {"trail": [name], "count": s.count + 1}


def _line(g: wp.GraphBuilder, names: list[str], start: str = wp.START, end: str = wp.END) -> None:
    for a, b in zip([start, *names], [*names, end], strict=True):
        g.edge(a, b)


def _chain() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="chaos_chain")
    names = [f"c{i}" for i in range(10)]
    for name in names:
        _node(g, name, _step(name), ["trail", "count"])
    _line(g, names)
    return g.compile()


def _fanout() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="chaos_fanout")
    _node(g, "split", _step("split"), ["trail", "count"])
    branches = [f"b{i}" for i in range(5)]
    for i, name in enumerate(branches):
        _node(g, name, lambda s, n=name, i=i: {"parts": {n: i}}, ["parts"])
    _node(g, "b0x", lambda s: {"parts": {"b0x": 10}}, ["parts"])
    g.edge("b0", "b0x")

    async def gather(state: Flow, ctx: wp.NodeContext) -> dict:
        async with _recorded(ctx.run_id, ctx.activation, "gather"):
            await asyncio.sleep(SLEEP)
            return {"count": state.count + len(state.parts), "trail": sorted(state.parts)}

    g.join("gather", gather, writes=["count", "trail"])
    _node(g, "tail", _step("tail"), ["trail", "count"])
    g.edge(wp.START, "split")
    g.edge("split", branches)
    for name in branches:
        g.edge("b0x" if name == "b0" else name, "gather")
    _line(g, ["tail"], "gather")
    return g.compile()


def _loop() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="chaos_loop")
    _node(g, "init", _step("init"), ["trail", "count"])
    _node(g, "step", lambda s: {"trail": [f"step{len(s.trail)}"], "count": s.count + 1}, ["trail", "count"])
    _node(g, "finish", _step("finish"), ["trail", "count"])
    g.loop_guard("again", max_iterations=6, routes={"continue": "step", "done": "finish"})
    g.edge(wp.START, "init")
    g.edge("init", "again")
    g.edge("step", "again")
    g.edge("finish", wp.END)
    return g.compile()


def _map() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="chaos_map")
    _node(g, "prep", _step("prep"), ["trail", "count"])

    async def double(item: int, ctx: wp.NodeContext) -> int:
        async with _recorded(ctx.run_id, f"{ctx.activation}/{item}", "each"):
            await asyncio.sleep(SLEEP)
            return item * 2

    g.map("each", double, over="items", into="doubled", max_concurrency=3)
    _node(g, "total", lambda s: {"count": sum(s.doubled), "trail": ["total"]}, ["count", "trail"])
    _line(g, ["prep", "each", "total"])
    return g.compile()


def _gate() -> wp.Graph:
    g = wp.GraphBuilder(Flow, name="chaos_gate")
    for name in ("a", "b", "c", "d"):
        _node(g, name, _step(name), ["trail", "count"])
    for name in ("s1", "s2"):
        _node(g, name, lambda s, n=name: {"parts": {n: 1}}, ["parts"])
    g.gate("approve", Approval, prompt="Go on?", into="approval")
    _line(g, ["a", "b", "approve", "c", "d"])
    _line(g, ["s1", "s2"], "a")
    return g.compile()


def _hold() -> wp.Graph:
    """a -> hold -> b; `hold` writes `held-<run_id>` and waits for the file `release` (the partition
    test cuts the network while a worker is inside it)."""
    g = wp.GraphBuilder(Flow, name="chaos_hold")

    async def hold(state: Flow, ctx: wp.NodeContext) -> dict:
        async with _recorded(ctx.run_id, ctx.activation, "hold"):
            folder = Path(os.environ["WAYPOINT_CHAOS_DIR"])
            (folder / f"held-{ctx.run_id}").write_text(str(os.getpid()))
            while not (folder / "release").exists():
                await asyncio.sleep(0.02)  # the test decides when it goes on, by a file
            return {"trail": ["hold"], "count": state.count + 1}

    _node(g, "a", _step("a"), ["trail", "count"])
    g.node(hold, name="hold", writes=["trail", "count"])
    _node(g, "b", _step("b"), ["trail", "count"])
    _line(g, ["a", "hold", "b"])
    return g.compile()


SHAPES = {"chain": _chain(), "fanout": _fanout(), "loop": _loop(), "map": _map(), "gate": _gate()}
HOLD = _hold()
GRAPHS = [*SHAPES.values(), HOLD]


def reference(shape: str) -> dict[str, Any]:
    """The final state of an uninterrupted run of `shape` (its gate answered with ANSWER)."""
    async def main() -> dict[str, Any]:
        store, graph = wp.MemoryStore(), SHAPES.get(shape, HOLD)
        result = await (await wp.start(graph, store=store, run_id="reference")).result()
        if result.status == "waiting":
            result = await (await wp.resume(graph, "reference", ANSWER, store=store)).result()
        assert result.status == "done", result
        return result.state.model_dump(mode="json")

    return asyncio.run(main())
