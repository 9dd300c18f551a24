"""Shared limits: `limit=Limit(name, size)` bounds a kind of node across every run of the process."""

from __future__ import annotations

import asyncio
from typing import Annotated

import pytest
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, MemoryStore, RunError, append, run_sync, start
from waypoint.engine.limits import Slots, slots_of
from waypoint.nodes.cache import Cache
from waypoint.nodes.limit import Limit


class S(BaseModel):
    done: Annotated[list[str], append] = []


class Probe:
    """Counts the calls in flight and holds each until the test lets it go."""

    def __init__(self) -> None:
        self.in_flight = self.most = self.finished = 0
        self.go = asyncio.Semaphore(0)

    async def call(self, name: str) -> dict:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await self.go.acquire()
        self.in_flight -= 1
        self.finished += 1
        return {"done": [name]}


def fan_out(name: str, probe: Probe, limit: Limit, width: int = 3):
    g = GraphBuilder(S, name=name)
    for i in range(width):
        async def call(state: S, i=i) -> dict:
            return await probe.call(f"{name}.{i}")

        g.node(call, name=f"call{i}", limit=limit, writes=["done"])
        g.edge(START, f"call{i}")
        g.edge(f"call{i}", END)
    return g.compile()


async def until(condition) -> None:
    """Let the event loop run until `condition()` holds (no clock: pytest's timeout is the bound)."""
    while not condition():
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_limit_bounds_the_calls_of_every_run_and_graph_together():
    model = Limit("model", 2)
    probe = Probe()
    graphs = [fan_out(name, probe, model) for name in ("triage", "draft", "triage")]
    handles = [await start(graph, None, store=MemoryStore()) for graph in graphs]  # 9 calls, 3 runs
    slots = slots_of(model)
    await until(lambda: probe.in_flight == 2 and slots.waiting == 7)  # every call has arrived
    assert slots.in_use == 2
    for released in range(1, 10):
        probe.go.release()  # one call may finish: exactly one waiting call takes its slot
        await until(lambda released=released: probe.finished == released
                    and probe.in_flight == min(2, 9 - released))
        assert slots.waiting == max(0, 7 - released) and probe.most == 2
    results = [await handle.result() for handle in handles]
    assert all(len(r.state.done) == 3 for r in results)
    assert probe.most == 2 and slots.in_use == 0 and slots.waiting == 0


@pytest.mark.asyncio
async def test_a_cache_hit_takes_no_slot():
    limit = Limit("one", 1)
    probe = Probe()
    blocked = await start(fan_out("busy", probe, limit, width=1), None, store=MemoryStore())
    await until(lambda: probe.in_flight == 1)  # the only slot is taken
    store = MemoryStore()
    g = GraphBuilder(S, name="cached")
    g.node(lambda s: {"done": ["computed"]}, name="work", limit=limit, cache=Cache())
    g.edge(START, "work")
    g.edge("work", END)
    graph = g.compile()
    key_filler = await start(graph, None, store=store)
    probe.go.release()  # lets the busy run go, so the filling run gets the slot
    await key_filler.result()
    await blocked.result()
    again = await start(fan_out("busy", probe, limit, width=1), None, store=MemoryStore())
    await until(lambda: probe.in_flight == 1)  # the slot is taken again
    hit = await (await start(graph, None, store=store)).result()  # would wait forever for the slot
    assert hit.state.done == ["computed"]
    probe.go.release()
    await again.result()


@pytest.mark.asyncio
async def test_two_sizes_for_one_limit_name_are_refused():
    probe = Probe()
    await start(fan_out("a", probe, Limit("shared", 2), width=1), None, store=MemoryStore())
    await until(lambda: probe.in_flight == 1)
    handle = await start(fan_out("b", probe, Limit("shared", 3), width=1), None, store=MemoryStore())
    with pytest.raises(RunError, match=r"Limit\('shared', 3\) disagrees with Limit\('shared', 2\)"):
        await handle.result()
    probe.go.release()


def test_each_event_loop_has_its_own_slots():
    g = GraphBuilder(S)
    g.node(lambda s: {"done": ["x"]}, name="x", limit=Limit("per-loop", 1))
    g.edge(START, "x")
    g.edge("x", END)
    graph = g.compile()
    assert run_sync(graph).state.done == ["x"] and run_sync(graph).state.done == ["x"]


@pytest.mark.asyncio
async def test_slots_serve_waiters_in_order_and_survive_cancellation():
    slots = Slots("s", 1)
    await slots.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        async with slots:
            order.append(name)

    first, second, third = (asyncio.create_task(take(n)) for n in ("first", "second", "third"))
    await asyncio.sleep(0)  # each reaches the queue
    assert slots.waiting == 3
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert slots.waiting == 2
    slots.release()
    await asyncio.gather(first, third)
    assert order == ["first", "third"] and slots.in_use == 0


@pytest.mark.asyncio
async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on():
    slots = Slots("s", 1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    follower = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to `waiter`...
    waiter.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(waiter, return_exceptions=True)
    await follower  # so the slot went on to the follower
    assert slots.in_use == 1 and slots.waiting == 0


@pytest.mark.parametrize(("args", "words"), [(("", 2), "non-empty string"), (("m", 0), "int >= 1")])
def test_a_limit_is_checked_where_it_is_written(args, words):
    with pytest.raises(ValueError, match=words):
        Limit(*args)


def test_a_limit_across_processes_holds_for_the_whole_fleet(tmp_path):
    """Two real processes, 3 limited calls each, one SQLite file: at most 2 calls at once in all."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    db, folder = tmp_path / "runs.db", tmp_path / "sync"
    folder.mkdir()
    logs = {tag: tmp_path / f"{tag}.err" for tag in ("a", "b")}
    workers = []
    for tag, log in logs.items():
        with log.open("w") as err:
            workers.append(subprocess.Popen([sys.executable, str(root / "tests" / "limit_worker.py"), str(db),
                                             str(folder), tag, "3"], cwd=root, stderr=err))

    def errors() -> str:
        return "\n".join(log.read_text() for log in logs.values())

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 60  # a guard against a hang, not part of what is checked
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            assert all(w.poll() is None for w in workers), errors()
            assert len(holding()) <= 2, f"{len(holding())} calls at once under Limit('fleet', 2)"
            time.sleep(0.01)

    def holding() -> list[Path]:
        return sorted(folder.glob("holding-*"))

    try:
        wait_for(lambda: len(list(folder.glob("arrived-*"))) == 6 and len(holding()) == 2, "2 holders of 6")
        for released in range(6):
            current = holding()
            assert len(current) <= 2
            name = current[0].name.removeprefix("holding-")
            (folder / f"go-{name}").touch()
            wait_for(lambda name=name, released=released: not (folder / f"holding-{name}").exists()
                     and len(holding()) == min(2, 6 - released - 1), "the next holder")
        for worker in workers:
            assert worker.wait(timeout=60) == 0, errors()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    counts = [int(p.read_text()) for p in folder.glob("count-*")]
    assert len(counts) == 6 and max(counts) == 2  # never a third call while two ran
