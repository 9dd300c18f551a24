"""The event stream, one executor per run (leases), and bounded storage."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, LeaseError, SQLiteStore, resume, start
from waypoint.engine import _lease

pytestmark = pytest.mark.asyncio


class N(BaseModel):
    n: int = 0


def chain(length: int, node=None):
    g = GraphBuilder(N, name=f"chain{length}")
    names = [f"n{i}" for i in range(length)]
    for name in names:
        g.node(node or (lambda s: {"n": s.n + 1}), name=name, writes=["n"])
    for a, b in zip([START, *names], [*names, END]):
        g.edge(a, b)
    return g.compile()


async def test_events_stream_while_the_run_goes_on(store):
    handle = await start(chain(3), store=store)
    kinds = [(e.kind, e.node) async for e in handle.events()]
    assert kinds == [
        ("run_started", None),
        ("node_started", "n0"), ("node_finished", "n0"),
        ("node_started", "n1"), ("node_finished", "n1"),
        ("node_started", "n2"), ("node_finished", "n2"),
        ("run_finished", None),
    ]


async def test_nodes_emit_their_own_events(store):
    g = GraphBuilder(N)

    def talk(state: N, ctx) -> dict:
        for word in ("hello", "world"):
            ctx.emit("token", {"text": word})
        return {"n": 1}

    g.node(talk)
    g.edge(START, "talk")
    g.edge("talk", END)
    handle = await start(g.compile(), store=store)
    tokens = [e.data["text"] async for e in handle.events() if e.kind == "token"]
    assert tokens == ["hello", "world"]


async def test_resuming_a_run_executing_elsewhere_is_a_clear_error(tmp_path):
    store = SQLiteStore(tmp_path / "runs.db")
    release = asyncio.Event()

    async def hold(state: N) -> dict:
        await release.wait()
        return {"n": 1}

    graph = chain(1, hold)
    handle = await start(graph, store=store)  # the run is created leased: no need to wait
    other = SQLiteStore(tmp_path / "runs.db")  # as another process would
    with pytest.raises(LeaseError, match=f"run '{handle.run_id}' is being executed by"):
        await resume(graph, handle.run_id, store=other)
    release.set()
    assert (await handle.result()).state.n == 1
    await other.close()
    await store.close()


async def test_an_expired_lease_can_be_taken_over(tmp_path):
    store = SQLiteStore(tmp_path / "runs.db")
    graph = chain(2)
    handle = await start(graph, store=store)
    await handle.result()
    # A run left "running" by an owner on another host whose lease has lapsed:
    from waypoint.checkpoints.records import RunInfo

    now = time.time()
    await store.create_run(RunInfo(run_id="stale", graph=graph.name, graph_hash=graph.structure_hash,
                                   status="running", created_at=now, updated_at=now))
    await store.claim("stale", "elsewhere:1:abc", 0.01)
    await asyncio.sleep(0.05)
    taken = await store.claim("stale", _lease.new_owner(), 30)
    assert taken.lease_owner != "elsewhere:1:abc"
    await store.close()


async def test_a_thousand_node_chain_stays_small_and_loads_a_bounded_tail(tmp_path):
    store = SQLiteStore(tmp_path / "runs.db")
    result = await (await start(chain(1000), store=store)).result()
    assert result.state.n == 1000
    snapshot, tail = await store.load(result.run_id)
    assert snapshot is not None and snapshot.seq > 0
    tail_bytes = sum(len(msgspec.msgpack.encode(s)) for s in tail)
    assert tail_bytes <= 80 * 1024  # bounded by the snapshot policy, not by the run length
    for length in (500, 1000):  # a small state is snapshotted every 64 steps: resume replays little
        run = await (await start(chain(length), store=store)).result()
        assert len((await store.load(run.run_id))[1]) < 64, length
    await store.close()
    size = sum(p.stat().st_size for p in tmp_path.glob("runs.db*"))
    assert size < 1024 * 1024, size


async def test_a_large_state_is_not_snapshotted_every_64_steps(tmp_path):
    # Snapshots of a 20 KiB state every 64 steps would cost more than the deltas: the
    # step-count trigger applies only while state and tail are small.
    class Big(BaseModel):
        blob: str = "x" * 20_000
        n: int = 0

    g = GraphBuilder(Big, name="big")
    names = [f"n{i}" for i in range(200)]
    for name in names:
        g.node(lambda s: {"n": s.n + 1}, name=name, writes=["n"])
    for a, b in zip([START, *names], [*names, END]):
        g.edge(a, b)
    async with SQLiteStore(tmp_path / "runs.db") as store:
        result = await (await start(g.compile(), store=store)).result()
        snapshot, tail = await store.load(result.run_id)
    assert snapshot.seq == 0 and len(tail) == 200
