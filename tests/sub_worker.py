"""A graph with a subgraph, run in a subprocess and killed inside the child run.

    python tests/sub_worker.py start|resume DB EXEC_LOG GENERATION
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

from pydantic import BaseModel

import waypoint as wp


class Outer(BaseModel):
    trail: Annotated[list[str], wp.append] = []


class Inner(BaseModel):
    trail: Annotated[list[str], wp.append] = []


def build(exec_log: str, generation: str) -> wp.Graph:
    def traced(name):
        async def node(state, ctx: wp.NodeContext):
            with open(exec_log, "a") as f:
                f.write(f"{generation} {ctx.run_id}:{ctx.activation} {name}\n")
            await asyncio.sleep(0.02)
            return {"trail": [name]}

        return node

    inner = wp.GraphBuilder(Inner, name="inner")
    for name in ("i1", "i2", "i3"):
        inner.node(traced(name), name=name)
    inner.edge(wp.START, "i1")
    inner.edge("i1", "i2")
    inner.edge("i2", "i3")
    inner.edge("i3", wp.END)
    outer = wp.GraphBuilder(Outer, name="outer")
    outer.node(traced("pre"), name="pre")
    outer.subgraph("sub", inner.compile(), input=lambda s: {}, output=lambda sub: {"trail": sub.trail})
    outer.node(traced("post"), name="post")
    outer.edge(wp.START, "pre")
    outer.edge("pre", "sub")
    outer.edge("sub", "post")
    outer.edge("post", wp.END)
    return outer.compile()


async def main(mode: str, db: str, exec_log: str, generation: str) -> None:
    graph = build(exec_log, generation)
    store = wp.SQLiteStore(db)
    try:
        if mode == "start":
            handle = await wp.start(graph, store=store, run_id="outer")
        else:
            handle = await wp.resume(graph, "outer", store=store)
        print(",".join((await handle.result()).state.trail))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
