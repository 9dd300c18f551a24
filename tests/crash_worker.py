"""A graph run in a subprocess that the durability tests SIGKILL and resume.

    python tests/crash_worker.py start|resume DB RUN_ID EXEC_LOG GENERATION [HOLD_AT]

Every node appends "GENERATION ACTIVATION NODE" to EXEC_LOG when it starts, so
the parent can tell which activations ran in which process. With HOLD_AT, a
node that starts once step HOLD_AT is committed hangs until the process is
killed: the run cannot finish before the parent has seen that step and killed
it, however slowly the parent is scheduled.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Annotated

from pydantic import BaseModel

import waypoint as wp


class Work(BaseModel):
    items: list[int] = [1, 2, 3, 4, 5, 6]
    left: int = 0
    right: int = 0
    steps: Annotated[list[str], wp.append] = []
    doubled: list[int] = []
    final: str = ""


async def hold_once_committed(db: str | None, run_id: str, hold_at: int | None) -> None:
    """Hang forever (until SIGKILL) if step `hold_at` of `run_id` is already committed."""
    if hold_at is None or db is None:
        return
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        last = conn.execute("SELECT max(seq) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    if (last or 0) >= hold_at:
        await asyncio.Event().wait()


def build(exec_log: str, generation: str, db: str | None = None, hold_at: int | None = None) -> wp.Graph:
    g = wp.GraphBuilder(Work, name="crashable")

    def traced(name):
        async def node(state: Work, ctx: wp.NodeContext):
            with open(exec_log, "a") as f:
                f.write(f"{generation} {ctx.activation} {name}\n")
            await hold_once_committed(db, ctx.run_id, hold_at)
            await asyncio.sleep(0.03)
            return _UPDATES[name](state)

        node.__name__ = name
        return node

    for name in ("a", "b", "c", "step", "final"):
        g.node(traced(name), name=name)
    g.join("merge")

    async def double(item: int, ctx: wp.NodeContext) -> int:
        with open(exec_log, "a") as f:
            f.write(f"{generation} {ctx.activation} double\n")
        await hold_once_committed(db, ctx.run_id, hold_at)
        await asyncio.sleep(0.03)
        return item * 2

    g.map("each", double, over="items", into="doubled", max_concurrency=2)
    g.loop_guard("again", max_iterations=3, routes={"continue": "step", "done": "each"})
    g.edge(wp.START, "a")
    g.edge("a", ["b", "c"])
    g.edge("b", "merge")
    g.edge("c", "merge")
    g.edge("merge", "again")
    g.edge("step", "again")
    g.edge("each", "final")
    g.edge("final", wp.END)
    return g.compile()


_UPDATES = {
    "a": lambda s: {"steps": ["a"]},
    "b": lambda s: {"left": 1},
    "c": lambda s: {"right": 2},
    "step": lambda s: {"steps": [f"step{len(s.steps)}"]},
    "final": lambda s: {"final": f"{s.left + s.right}:{','.join(s.steps)}:{sum(s.doubled)}"},
}


async def main(mode: str, db: str, run_id: str, exec_log: str, generation: str, hold_at: str = "") -> None:
    graph = build(exec_log, generation, db, int(hold_at) if hold_at else None)
    store = wp.SQLiteStore(db)
    try:
        if mode == "start":
            handle = await wp.start(graph, store=store, run_id=run_id)
        else:
            handle = await wp.resume(graph, run_id, store=store)
        result = await handle.result()
        print(result.status, result.state.final, flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
