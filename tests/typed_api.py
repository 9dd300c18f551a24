"""What a type checker sees of the public API; checked by mypy (tests/test_typed_api.py), never run.

    mypy tests/typed_api.py

As pydantic-graph's tests/typed_graph.py: each `assert_type` pins a type a user
reads, so a change that loses it (an `Any` creeping back) fails the check.
"""

from __future__ import annotations

from typing import Any, Literal, assert_type

from pydantic import BaseModel

from waypoint import (
    END, START, BatchResult, Conversation, Graph, GraphBuilder, MemoryStore, RunHandle, RunInfo, RunResult,
    SQLiteStore, ToolCall, WaypointError, Worker, fork, resume, resume_sync, run_batch, run_sync, start,
)


class Essay(BaseModel):
    topic: str
    draft: str = ""


class Review(BaseModel):
    approved: bool


def write(state: Essay) -> dict[str, Any]:
    return {"draft": f"on {state.topic}"}


def decide(state: Essay) -> Literal["publish", "revise"]:
    return "publish" if state.draft else "revise"


def build() -> Graph[Essay]:
    g = GraphBuilder(Essay)
    assert_type(g, GraphBuilder[Essay])
    g.node(write)
    g.router(routes={"publish": END, "revise": "write"})(decide)
    g.edge(START, "write")
    g.edge("write", "decide")
    graph = g.compile()
    assert_type(graph, Graph[Essay])
    return graph


async def run_it(graph: Graph[Essay]) -> None:
    store = SQLiteStore("runs.db")
    handle = await start(graph, {"topic": "tides"}, store=store)
    assert_type(handle, RunHandle[Essay])
    result = await handle.result()
    assert_type(result, RunResult[Essay])
    assert_type(result.state, Essay)
    assert_type(result.state.draft, str)
    assert_type(await handle, RunResult[Essay])
    assert_type(result.error, WaypointError | None)
    forked = await fork(graph, result.run_id, at=1, store=store)
    assert_type(forked, RunHandle[Essay])
    again = await resume(graph, result.run_id, {"approved": True}, store=store)
    assert_type(again, RunHandle[Essay])
    assert_type((await again.cancel(reason="enough")).state, Essay)
    assert_type(await store.get_run(result.run_id), RunInfo)


def run_it_sync(graph: Graph[Essay]) -> None:
    result = run_sync(graph, {"topic": "tides"}, store=MemoryStore())
    assert_type(result, RunResult[Essay])
    assert_type(result.state.topic, str)
    assert_type(resume_sync(graph, result.run_id, store=MemoryStore()).state, Essay)


async def run_a_batch(graph: Graph[Essay]) -> None:
    batch = await run_batch(graph, [{"topic": "tides"}], batch_id="b", store=MemoryStore())
    assert_type(batch, BatchResult[Essay])
    assert_type(batch.states, list[Essay | None])
    assert_type(batch.results[0], RunResult[Essay])


async def converse_and_work(graph: Graph[Essay]) -> None:
    chat = Conversation(graph, "trip-1", store=MemoryStore())
    assert_type(chat, Conversation[Essay])
    assert_type(await chat.rewind(1), str)  # the revision's run id
    assert_type(await chat.current_run(), RunInfo | None)
    assert_type(Worker([graph], store=MemoryStore()).draining, bool)


def the_llm_side_is_typed_too() -> None:  # loaded lazily at run time, seen whole by a type checker
    assert_type(ToolCall(id="1", name="search", arguments="{}").name, str)
