"""Child runs' leases: renewed by their parent's heartbeat, and fenced by their parent's lease.

A subgraph's child run is executed by its parent's executor under the parent's
owner. Its work may outlast any ttl (a long subgraph, a map item): its lease is
renewed at each of the parent's beats. A parent that is stopped or taken over
(its lease lapsed, another worker claimed it) writes nothing more for its child,
even though the child's own lease is still its. Synchronised on events the nodes
set and wait for, and on the heartbeat's renewals, never on sleeps.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import waypoint as wp
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder
from waypoint.engine import _lease
from waypoint.engine.runs import launch_claimed
from waypoint.errors import LeaseError

try:  # the `pg` fixture (tests/conftest.py) skips without psycopg; these checks say it first
    import psycopg_pool as pg
except ImportError:
    pg = None


class Count(BaseModel):
    n: int = 0


def graphs(events: dict[str, asyncio.Event]):
    """outer -> sub (a subgraph) -> slow, which says it started and waits to be let go."""
    inner = GraphBuilder(Count, name="inner")

    @inner.node
    async def slow(state: Count) -> dict:
        events["started"].set()
        await events["go"].wait()
        return {"n": state.n + 1}

    inner.edge(START, "slow")
    inner.edge("slow", END)
    outer = GraphBuilder(Count, name="outer")
    outer.subgraph("sub", inner.compile())
    outer.edge(START, "sub")
    outer.edge("sub", END)
    return outer.compile()


class CountingRenewals(wp.MemoryStore):
    """A MemoryStore that sets `renewed` once the child run's lease was renewed `enough` times."""

    def __init__(self, enough: int) -> None:
        super().__init__()
        self.enough, self.child_renewals = enough, 0
        self.renewed = asyncio.Event()

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        await super().renew(run_id, owner, ttl)
        if "/" in run_id:
            self.child_renewals += 1
            if self.child_renewals >= self.enough:
                self.renewed.set()


async def launched(store, graph, ttl: float):
    await wp.submit(graph, {}, store=store, run_id="p")
    info = await store.claim_next("default", "host:1:parent", ttl)
    assert info is not None
    return info.lease_owner, launch_claimed(graph, store, info, ttl=ttl)


async def the_child(store) -> wp.RunInfo:
    [child] = [run for run in await store.list_runs() if run.parent_run_id == "p"]
    return child


def test_a_child_that_outlasts_the_ttl_keeps_its_lease_through_the_parents_heartbeat():
    ttl = 0.3  # the child's work lasts for 4 beats (over 0.4 s): more than a whole ttl

    async def main():
        events = {"started": asyncio.Event(), "go": asyncio.Event()}
        store = CountingRenewals(enough=4)
        owner, handle = await launched(store, graphs(events), ttl)
        await asyncio.wait_for(events["started"].wait(), 30)
        child = await the_child(store)
        assert child.lease_owner == owner
        assert child.lease_expiry <= time.time() + ttl, "the child was leased for longer than its parent"
        await asyncio.wait_for(store.renewed.wait(), 30)  # 4 beats of ttl/3 since the child was claimed
        with pytest.raises(LeaseError):  # lapsed without renewals; held by the parent's owner with them
            await store.claim(child.run_id, "host:2:intruder", 60)
        assert (await the_child(store)).lease_owner == owner
        events["go"].set()
        result = await handle.result()
        return result, await the_child(store)

    result, child = asyncio.run(main())
    assert result.status == "done" and result.state.n == 1
    assert child.status == "done" and child.lease_owner is None


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_parent_taken_over_writes_nothing_more_for_its_child(kind, tmp_path, request):
    """The parent's lease is taken while its child's node executes (as when the parent's worker
    was paused past its ttl and another claimed the run): the child's result is not written,
    nor its row released, although the child's own lease is still the stopped parent's."""
    if kind == "postgres" and pg is None:
        pytest.skip('PostgreSQL tests need psycopg: pip install -e ".[postgres]"')
    where = request.getfixturevalue("pg").new_database() if kind == "postgres" else ""

    def postgres():
        from waypoint.checkpoints import PostgresStore

        return PostgresStore(where)

    async def main():
        events = {"started": asyncio.Event(), "go": asyncio.Event()}
        store = {"memory": wp.MemoryStore, "sqlite": lambda: wp.SQLiteStore(tmp_path / "runs.db"),
                 "postgres": postgres}[kind]()
        try:
            owner, handle = await launched(store, graphs(events), 60.0)  # no beat within the test
            await asyncio.wait_for(events["started"].wait(), 30)
            before = await the_child(store)
            _lease.beating(owner).sure_until = 0.0  # as after a pause past its ttl: the beat is late
            await store.release("p", owner, "running")  # its lease lapsed...
            await store.claim("p", "host:2:other", 60)  # ...and another worker claimed the run
            events["go"].set()
            result = await handle.result(raise_on_failure=False)
            return owner, before, await the_child(store), await store.history(before.run_id), result
        finally:
            await store.close()

    owner, before, after, steps, result = asyncio.run(main())
    assert (after.last_seq, after.status, after.lease_owner) == (before.last_seq, "running", owner)
    assert [step.seq for step in steps] == list(range(1, before.last_seq + 1))
    assert isinstance(result.error, LeaseError), result
