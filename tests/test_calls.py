"""Consistent calls: `store=` is a keyword of every function that reads or changes runs,
and `fork(..., run_id=)` names the fork as `start(..., run_id=)` names a run."""

from __future__ import annotations

import inspect

import pytest
import waypoint as wp
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, MemoryStore

TAKE_STORE = ["approval_log", "cancel", "due_gates", "fork", "get_run", "history", "pending_gates",
              "resume", "resume_sync", "run_marks", "run_sync", "start", "state_at", "tick"]


@pytest.mark.parametrize("name", TAKE_STORE)
def test_store_is_a_keyword(name):
    from waypoint import engine

    parameter = inspect.signature(getattr(engine, name)).parameters["store"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: store is {parameter.kind}"


class S(BaseModel):
    n: int = 0


@pytest.mark.asyncio
async def test_fork_takes_the_new_run_id_as_run_id():
    g = GraphBuilder(S, name="count")
    g.node(lambda s: {"n": s.n + 1}, name="inc", writes=["n"])
    g.edge(START, "inc")
    g.edge("inc", END)
    graph, store = g.compile(), MemoryStore()
    await (await wp.start(graph, store=store, run_id="first")).result()
    forked = await (await wp.fork(graph, "first", at=0, store=store, run_id="second")).result()
    assert forked.run_id == "second" and forked.state.n == 1
    assert (await wp.get_run("second", store=store)).forked_from == "first@0"
    with pytest.raises(wp.RunError, match="shape of an activation id"):
        await wp.fork(graph, "first", at=0, store=store, run_id="first/1.0")
