"""Patterns 21-25 together: batches under a shared limit, fallbacks in a batch, caches and
fallbacks on one node, a cache shared through PostgreSQL; and the patterns page itself."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from waypoint import (
    END, START, Cache, GraphBuilder, Limit, MemoryStore, NodeFailure, RetryPolicy, run_batch, start,
)
from waypoint.engine.limits import slots_of

ROOT = Path(__file__).resolve().parent.parent


class Item(BaseModel):
    name: str
    out: str = ""
    failure: NodeFailure | None = None


async def until(condition) -> None:
    """Let the event loop run until `condition()` holds (no clock: pytest's timeout is the bound)."""
    while not condition():
        await asyncio.sleep(0)


def test_the_patterns_page_numbers_its_sections_and_lists_each_in_its_table():
    text = (ROOT / "docs" / "patterns.md").read_text()
    sections = re.findall(r"^## (\d+)\. (.+)$", text, re.M)
    assert [int(n) for n, _ in sections] == list(range(1, len(sections) + 1)) and len(sections) >= 25
    table = re.findall(r"^\| \[(\d+)\. ([^\]]+)\]\(#([^)]+)\)", text, re.M)
    assert [(n, title) for n, title, _ in table] == sections
    for (n, title), body in zip(sections, re.split(r"^## \d+\. .+$", text, flags=re.M)[1:], strict=True):
        assert body.count("```python\n") == 1, f"pattern {n}. {title} has no runnable snippet"


@pytest.mark.asyncio
async def test_a_batch_wider_than_a_limit_runs_at_most_the_limit():
    limit, go = Limit("service", 2), asyncio.Semaphore(0)
    in_flight, most, finished = [0], [0], [0]
    g = GraphBuilder(Item, name="limited")

    async def call(state: Item) -> dict:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await go.acquire()
        in_flight[0] -= 1
        finished[0] += 1
        return {"out": state.name}

    g.node(call, limit=limit)
    g.edge(START, "call")
    g.edge("call", END)
    task = asyncio.create_task(run_batch(g.compile(), [{"name": str(i)} for i in range(8)], batch_id="wide",
                                         store=MemoryStore(), concurrency=6))
    await until(lambda: in_flight[0] == 2 and slots_of(limit).waiting == 4)  # 6 runs, 2 slots
    for released in range(1, 9):
        go.release()
        await until(lambda released=released: finished[0] == released)
        assert in_flight[0] <= 2
    batch = await task
    assert len(batch.done) == 8 and most[0] == 2


@pytest.mark.asyncio
async def test_items_of_a_batch_recover_through_their_fallback():
    g = GraphBuilder(Item, name="recovering")

    def enrich(state: Item) -> dict:
        if state.name.startswith("bad"):
            raise LookupError(f"no record for {state.name}")
        return {"out": f"enriched {state.name}"}

    g.node(enrich, on_error="plain", error_into="failure")
    g.node(lambda s: {"out": f"plain {s.name}"}, name="plain")
    g.edge(START, "enrich")
    g.edge("enrich", END)
    g.edge("plain", END)
    batch = await run_batch(g.compile(), [{"name": n} for n in ("a", "bad1", "b", "bad2")], batch_id="mixed",
                            store=MemoryStore(), concurrency=2)
    assert batch.done == [0, 1, 2, 3]
    assert [s.out for s in batch.states] == ["enriched a", "plain bad1", "enriched b", "plain bad2"]
    assert batch.states[1].failure.message == "no record for bad1"


@pytest.mark.asyncio
async def test_a_fallback_is_never_cached_as_the_nodes_result():
    calls: list[str] = []
    g = GraphBuilder(Item, name="cached_with_fallback")

    def lookup(state: Item) -> dict:
        calls.append(state.name)
        if len(calls) == 1:
            raise ConnectionError("service down")
        return {"out": "looked up"}

    g.node(lookup, cache=Cache(), on_error="guess", retry=RetryPolicy(attempts=1))
    g.node(lambda s: {"out": "guessed"}, name="guess")
    g.edge(START, "lookup")
    g.edge("lookup", END)
    g.edge("guess", END)
    graph, store = g.compile(), MemoryStore()
    outs = [(await (await start(graph, {"name": "x"}, store=store)).result()).state.out for _ in range(3)]
    assert outs == ["guessed", "looked up", "looked up"] and calls == ["x", "x"]  # the third is a hit


@pytest.mark.asyncio
async def test_duplicate_inputs_in_a_batch_are_computed_once_with_a_cache():
    calls: list[str] = []
    g = GraphBuilder(Item, name="dedup")

    def work(state: Item) -> dict:
        calls.append(state.name)
        return {"out": state.name.upper()}

    g.node(work, cache=Cache(key=lambda s: s.name))
    g.edge(START, "work")
    g.edge("work", END)
    batch = await run_batch(g.compile(), [{"name": n} for n in ("a", "b", "a", "a", "b")], batch_id="dups",
                            store=MemoryStore(), concurrency=1)
    assert [s.out for s in batch.states] == ["A", "B", "A", "A", "B"] and calls == ["a", "b"]


# -- PostgreSQL: the cache shared by processes of a fleet -----------------------------------


CACHED_GRAPH = """
    from pydantic import BaseModel
    from waypoint import END, START, Cache, GraphBuilder

    class Item(BaseModel):
        name: str
        out: str = ""

    def build(out):
        g = GraphBuilder(Item, name="pg_cached")
        g.node(lambda s: {"out": out}, name="work", cache=Cache(ttl=3600))
        g.edge(START, "work")
        g.edge("work", END)
        return g.compile()
"""


def test_the_cache_is_shared_by_processes_through_postgresql(pg, tmp_path):
    url = pg.new_database()
    (tmp_path / "cached_graph.py").write_text(textwrap.dedent(CACHED_GRAPH))
    runner = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from cached_graph import build
        from waypoint import run_sync
        from waypoint.checkpoints.postgres import PostgresStore
        print(run_sync(build(sys.argv[1]), {{"name": "x"}}, store=PostgresStore({url!r})).state.out)
    """)
    outs = [subprocess.run([sys.executable, "-c", runner, out], capture_output=True, text=True, cwd=ROOT,
                           timeout=120) for out in ("first process", "second process")]
    assert [o.returncode for o in outs] == [0, 0], [o.stderr for o in outs]
    assert [o.stdout.strip() for o in outs] == ["first process", "first process"]  # the second hit
