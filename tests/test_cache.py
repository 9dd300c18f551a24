"""`cache=` on a node: its result kept in the store, keyed by graph, node and inputs, with a TTL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from waypoint import (
    END,
    START,
    GraphBuilder,
    GraphError,
    MemoryStore,
    RunError,
    SQLiteStore,
    llm,
    resume,
    start,
)
from waypoint.nodes.cache import Cache, cache_key
from waypoint.testing import ScriptedModel

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent


class Q(BaseModel):
    question: str
    user: str = "ann"
    answer: str = ""
    route: str = ""


def answering(calls: list[str], cache: Cache, name: str = "cached") -> object:
    g = GraphBuilder(Q, name=name)

    def answer(state: Q) -> dict:
        calls.append(state.question)
        return {"answer": f"answer to {state.question} #{len(calls)}"}

    g.node(answer, cache=cache)
    g.edge(START, "answer")
    g.edge("answer", END)
    return g.compile()


async def finished(graph, store, input=None, **kw):
    return await (await start(graph, input, store=store, **kw)).result()


async def test_a_second_run_with_the_same_inputs_gets_the_stored_result(tmp_path):
    calls: list[str] = []
    graph = answering(calls, Cache(ttl=3600))
    async with SQLiteStore(tmp_path / "runs.db") as store:
        first = await finished(graph, store, {"question": "tides?"})
        handle = await start(graph, {"question": "tides?"}, store=store)
        kinds = [e.kind async for e in handle.events()]
        second = await handle.result()
        other = await finished(graph, store, {"question": "moon?"})
        steps = await store.history(second.run_id)
    assert calls == ["tides?", "moon?"]
    assert second.state.answer == first.state.answer == "answer to tides? #1"
    assert other.state.answer == "answer to moon? #2"
    assert "cache_hit" in kinds
    (step,) = steps
    assert step.kind == "done" and step.delta == {"answer": "answer to tides? #1"}  # an ordinary step
    assert step.extra["cached"]["run_id"] == first.run_id


async def test_key_narrows_the_inputs_and_version_invalidates():
    calls: list[str] = []
    store = MemoryStore()
    by_question = answering(calls, Cache(key=lambda s: s.question))
    await finished(by_question, store, {"question": "q", "user": "ann"})
    await finished(by_question, store, {"question": "q", "user": "bob"})  # user is not an input
    assert calls == ["q"]
    whole_state = answering(calls, Cache())
    await finished(whole_state, store, {"question": "q", "user": "bob"})  # another key: the whole state
    assert calls == ["q", "q"]
    bumped = answering(calls, Cache(key=lambda s: s.question, version="v2"))
    await finished(bumped, store, {"question": "q", "user": "ann"})
    assert calls == ["q", "q", "q"]


async def test_an_entry_past_its_ttl_is_computed_again():
    calls: list[str] = []
    store = MemoryStore()
    graph = answering(calls, Cache(ttl=0.05))
    await finished(graph, store, {"question": "q"})
    await asyncio.sleep(0.2)  # past the TTL on any clock that moves forward
    result = await finished(graph, store, {"question": "q"})
    assert calls == ["q", "q"] and result.state.answer == "answer to q #2"


async def test_the_cache_is_shared_with_another_process(tmp_path):
    """A real subprocess fills the cache in the SQLite file; this process then reads it."""
    db = tmp_path / "shared.db"
    script = textwrap.dedent(f"""
        from pydantic import BaseModel
        from waypoint import END, START, GraphBuilder, SQLiteStore, run_sync
        from waypoint.nodes.cache import Cache

        class Q(BaseModel):
            question: str
            user: str = "ann"
            answer: str = ""
            route: str = ""

        g = GraphBuilder(Q, name="cached")
        g.node(lambda s: {{"answer": "from the other process"}}, name="answer", cache=Cache(ttl=3600))
        g.edge(START, "answer")
        g.edge("answer", END)
        print(run_sync(g.compile(), {{"question": "tides?"}}, store=SQLiteStore({str(db)!r})).state.answer)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    calls: list[str] = []
    async with SQLiteStore(db) as store:
        result = await finished(answering(calls, Cache(ttl=3600)), store, {"question": "tides?"})
    assert result.state.answer == "from the other process" and calls == []


async def test_a_hit_is_replayed_from_the_log_like_any_step(tmp_path):
    class Ok(BaseModel):
        ok: bool = True

    calls: list[str] = []
    g = GraphBuilder(Q, name="cached_then_gate")

    def answer(state: Q) -> dict:
        calls.append(state.question)
        return {"answer": "computed"}

    g.node(answer, cache=Cache())
    g.gate("check", Ok)
    g.node(lambda s: {"route": f"saw {s.answer}"}, name="after")
    g.edge(START, "answer")
    g.edge("answer", "check")
    g.edge("check", "after")
    g.edge("after", END)
    graph = g.compile()
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await finished(graph, store, {"question": "q"})  # fills the cache
        waiting = await finished(graph, store, {"question": "q"})  # a hit, then the gate
    assert waiting.status == "waiting" and calls == ["q"]
    async with SQLiteStore(path) as store:
        done = await (await resume(graph, waiting.run_id, {}, store=store)).result()
    assert done.state.route == "saw computed" and calls == ["q"]


async def test_a_cached_router_takes_the_stored_route():
    calls: list[str] = []
    g = GraphBuilder(Q, name="routing")

    @g.router(routes={"short": "short", "long": "long"}, cache=Cache())
    def size(state: Q) -> Literal["short", "long"]:
        calls.append(state.question)
        return "short" if len(state.question) < 5 else "long"

    for name in ("short", "long"):
        g.node(lambda s, name=name: {"route": name}, name=name)
        g.edge(name, END)
    g.edge(START, "size")
    graph = g.compile()
    store = MemoryStore()
    assert (await finished(graph, store, {"question": "a long question"})).state.route == "long"
    assert (await finished(graph, store, {"question": "a long question"})).state.route == "long"
    assert calls == ["a long question"]


async def test_an_llm_node_is_cached_and_the_model_is_not_asked_again():
    model = ScriptedModel(["Paris."])  # one reply only: a second call would exhaust the script
    g = GraphBuilder(Q, name="agent")
    g.add(llm("agent", prompt="{question}", into="answer", model=model), cache=Cache(ttl=600))
    g.edge(START, "agent")
    g.edge("agent", END)
    graph = g.compile()
    store = MemoryStore()
    first = await finished(graph, store, {"question": "Capital of France?"})
    second = await finished(graph, store, {"question": "Capital of France?"})
    assert first.state.answer == second.state.answer == "Paris." and len(model.requests) == 1
    steps = await store.history(second.run_id)
    assert "usage" not in steps[0].extra  # nothing was spent: a budget is not charged


async def test_a_failed_node_stores_nothing():
    calls: list[str] = []
    g = GraphBuilder(Q, name="flaky")

    def answer(state: Q) -> dict:
        calls.append("call")
        if len(calls) == 1:
            raise ValueError("first call fails")
        return {"answer": "ok"}

    g.node(answer, cache=Cache())
    g.edge(START, "answer")
    g.edge("answer", END)
    graph, store = g.compile(), MemoryStore()
    failed = await (await start(graph, {"question": "q"}, store=store)).result(raise_on_failure=False)
    assert failed.status == "failed"
    assert (await finished(graph, store, {"question": "q"})).state.answer == "ok"
    assert (await finished(graph, store, {"question": "q"})).state.answer == "ok" and len(calls) == 2


async def test_a_store_without_a_cache_says_so():
    class Bare:  # a store of one's own that predates cache_get/cache_put
        def __init__(self) -> None:
            self.inner = MemoryStore()

        def __getattr__(self, name: str):
            if name.startswith("cache_"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    handle = await start(answering([], Cache()), {"question": "q"}, store=Bare())
    with pytest.raises(RunError, match="has cache=, but its store Bare has no cache_get/cache_put"):
        await handle.result()


async def test_compile_refuses_cache_on_a_gate():
    class Ok(BaseModel):
        ok: bool = True

    g = GraphBuilder(Q)
    g.gate("ask", Ok)
    g.add(g.nodes.pop("ask"), cache=Cache())
    g.edge(START, "ask")
    g.edge("ask", END)
    with pytest.raises(GraphError, match="gate 'ask' has cache=, but its result depends on an answer"):
        g.compile()


async def test_the_key_is_canonical():
    assert cache_key("g", "n", {"a": 1, "b": [1, 2]}) == cache_key("g", "n", {"b": [1, 2], "a": 1})
    assert cache_key("g", "n", {"a": 1}) != cache_key("g", "m", {"a": 1})
    assert cache_key("g", "n", {"a": 1}) != cache_key("g", "n", {"a": 1}, "v2")
    assert cache_key("g", "n", 1).startswith("g:n:")
    with pytest.raises(ValueError, match="TTL is a number of seconds > 0"):
        Cache(ttl=0)


async def test_runs_asking_the_same_thing_at_once_make_one_call():
    """A run that misses while another run of the process computes the same key waits for it."""
    calls: list[str] = []
    go = asyncio.Event()
    g = GraphBuilder(Q, name="single_flight")

    async def answer(state: Q) -> dict:
        calls.append(state.question)
        await go.wait()
        return {"answer": "computed once"}

    g.node(answer, cache=Cache(key=lambda s: s.question))
    g.edge(START, "answer")
    g.edge("answer", END)
    graph, store = g.compile(), MemoryStore()
    leader = await start(graph, {"question": "q", "user": "ann"}, store=store)
    while not calls:
        await asyncio.sleep(0)
    follower = await start(graph, {"question": "q", "user": "bob"}, store=store)
    events = follower.events()
    assert (await anext(e async for e in events if e.kind == "cache_waiting")).data["key"].startswith(
        "single_flight:answer:")
    go.set()
    first, second = await leader.result(), await follower.result()
    assert first.state.answer == second.state.answer == "computed once" and calls == ["q"]
    assert (await store.history(second.run_id))[0].extra["cached"]["run_id"] == first.run_id


async def test_when_the_leader_fails_a_waiting_run_computes_it_itself():
    calls: list[str] = []
    go = asyncio.Event()
    g = GraphBuilder(Q, name="leader_fails")

    async def answer(state: Q) -> dict:
        calls.append(state.user)
        await go.wait()
        if state.user == "ann":
            raise ValueError("the leader's call failed")
        return {"answer": f"computed by {state.user}"}

    g.node(answer, cache=Cache(key=lambda s: s.question))
    g.edge(START, "answer")
    g.edge("answer", END)
    graph, store = g.compile(), MemoryStore()
    leader = await start(graph, {"question": "q", "user": "ann"}, store=store)
    while not calls:
        await asyncio.sleep(0)
    follower = await start(graph, {"question": "q", "user": "bob"}, store=store)
    await anext(e async for e in follower.events() if e.kind == "cache_waiting")
    go.set()
    assert (await leader.result(raise_on_failure=False)).status == "failed"
    assert (await follower.result()).state.answer == "computed by bob" and calls == ["ann", "bob"]
