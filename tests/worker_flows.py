"""Graphs the worker tests run in real `waypoint worker` processes.

Every node execution appends one line `run_id node pid` to `$WAYPOINT_TEST_DIR/executions`
(O_APPEND: lines from several processes never interleave), so a test can check
that no node of a run executed twice. `blocker`'s node `hold` writes
`held-<run_id>` (so the test knows a worker is inside it, and which) and then
waits for the file `release` to exist: the test decides when it goes on.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, NodeContext


def _dir() -> Path:
    return Path(os.environ["WAYPOINT_TEST_DIR"])


def record(ctx: NodeContext, node: str) -> None:
    line = f"{ctx.run_id} {node} {os.getpid()}\n".encode()
    fd = os.open(_dir() / "executions", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Approve(BaseModel):
    approved: bool


class Count(BaseModel):
    n: int = 0
    approval: Approve | None = None
    path: str = ""


def _step(name: str):
    async def node(state: Count, ctx: NodeContext) -> dict:
        record(ctx, name)
        return {"n": state.n + 1}

    node.__name__ = name
    return node


def _chain() -> GraphBuilder[Count]:
    g = GraphBuilder(Count, name="chain")
    for name in ("a", "b", "c"):
        g.node(_step(name), name=name)
    g.edge(START, "a")
    g.edge("a", "b")
    g.edge("b", "c")
    g.edge("c", END)
    return g


chain = _chain().compile()


async def hold(state: Count, ctx: NodeContext) -> dict:
    record(ctx, "hold")
    (_dir() / f"held-{ctx.run_id}").write_text(str(os.getpid()))
    while not (_dir() / "release").exists():
        await asyncio.sleep(0.02)  # polls a file the test creates: the test decides, not the clock
    return {"n": state.n + 1}


def _blocker() -> GraphBuilder[Count]:
    g = GraphBuilder(Count, name="blocker")
    g.node(_step("before"), name="before")
    g.node(hold, name="hold")
    g.node(_step("after"), name="after")
    g.edge(START, "before")
    g.edge("before", "hold")
    g.edge("hold", "after")
    g.edge("after", END)
    return g


blocker = _blocker().compile()


def _gated(deadline: float | None) -> GraphBuilder[Count]:
    g = GraphBuilder(Count, name="gated" if deadline is None else "deadlined")
    g.node(_step("prep"), name="prep")
    escalation = {} if deadline is None else {"deadline": deadline, "escalate": "escalated"}
    g.gate("approve", Approve, into="approval", **escalation)
    g.node(_step("finish"), name="finish")
    g.edge(START, "prep")
    g.edge("prep", "approve")
    g.edge("approve", "finish")
    g.edge("finish", END)
    if deadline is not None:
        async def escalated(state: Count, ctx: NodeContext) -> dict:
            record(ctx, "escalated")
            return {"path": "escalated"}

        g.node(escalated, name="escalated")
        g.edge("escalated", END)
    return g


gated = _gated(None).compile()
deadlined = _gated(0.0).compile()  # due as soon as it waits: the sweep's first pass escalates it
