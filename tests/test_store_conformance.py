"""Both stores against the conformance suite, then what only a real SQLite file can show."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import uuid

import msgspec
import pytest
from pydantic import BaseModel

from waypoint.checkpoints import MemoryStore, SQLiteStore
from waypoint.checkpoints.records import Snapshot
from waypoint.checkpoints.sqlite import SCHEMA_VERSION
from waypoint.errors import CorruptRecordError, LeaseError, SchemaVersionError, StoreError, WaypointError
from waypoint.testing.store_conformance import (
    CHECKS, check_store, info, leased, plant_memory, plant_sqlite, run_check, step,
)

STORES = {
    "memory": (lambda tmp: MemoryStore, plant_memory),
    "sqlite": (lambda tmp: lambda: SQLiteStore(tmp / f"{uuid.uuid4().hex}.db"), plant_sqlite),
    "sqlite-normal": (lambda tmp: lambda: SQLiteStore(tmp / f"{uuid.uuid4().hex}.db",
                                                      synchronous="NORMAL"), plant_sqlite),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("kind", list(STORES))
async def test_conformance(kind, check, tmp_path):
    make, plant = STORES[kind]
    twin = None if kind == "memory" else (lambda store: SQLiteStore(store.path, synchronous=store.synchronous))
    await run_check(check, make(tmp_path), plant=plant, twin=twin)


@pytest.mark.asyncio
async def test_check_store_runs_the_whole_suite(tmp_path):
    await check_store(lambda: SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.db"))  # no plant: skips one


@pytest.mark.asyncio
async def test_a_store_without_signals_passes_and_a_deaf_one_fails(tmp_path):
    class Plain(MemoryStore):  # a store of one's own without wake-ups or locks: optional
        def __init__(self):
            super().__init__()
            del self.signals

    await run_check("signals", Plain)

    class Deaf(MemoryStore):  # its waits never hear a queued run: only the poll timer ends them
        def __init__(self):
            super().__init__()
            self.signals.wait = self._timer

        async def _timer(self, queue, timeout):
            return "polled"

    with pytest.raises(AssertionError, match="did not wake its waiter"):
        await run_check("signals", Deaf)


@pytest.mark.asyncio
async def test_check_store_names_the_failing_check():
    class Forgetful(MemoryStore):
        async def list_runs(self, **filters):
            return list(reversed(await super().list_runs(**filters)))

    with pytest.raises(AssertionError, match="store check 'list_runs' failed"):
        await check_store(Forgetful)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_appends_must_be_consecutive(kind, tmp_path):
    async with STORES[kind][0](tmp_path)() as store:
        await leased(store, "r", "w1", ttl=60)
        with pytest.raises(ValueError, match="consecutive"):
            await store.append("r", "w1", [step(1), step(3)])
        await store.append("r", "w1", [step(1)])
        assert (await store.get_run("r")).last_seq == 1


@pytest.mark.asyncio
async def test_a_sqlite_append_reads_its_fence_and_writes_only_its_step(tmp_path):
    # The lease is renewed on its own schedule (the engine's heartbeat), not by each append.
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await leased(store, "r", "w1", ttl=60)
        before = await fetch(store, "SELECT * FROM runs")
        await store.append("r", "w1", [step(1)])
        await store.append("r", "w1", [step(2)])
        assert await fetch(store, "SELECT * FROM runs") == before, "an append rewrote the run's row"
        assert (await store.get_run("r")).last_seq == 2  # derived from the log
        assert [r.last_seq for r in await store.list_runs()] == [2]
        await store.renew("r", "w1", 60)
        assert (await fetch(store, "SELECT last_seq FROM runs")) == [(2,)]  # the row catches up


# -- SQLite only ---------------------------------------------------------------------------


async def fetch(store: SQLiteStore, sql: str) -> list:
    """Rows of `sql` read through the store's own connection (in its thread)."""
    return await store._conn.run(lambda raw: raw.execute(sql).fetchall())


async def pragma(store: SQLiteStore, name: str):
    return (await fetch(store, f"PRAGMA {name}"))[0][0]


@pytest.mark.asyncio
@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1)])
async def test_pragmas_are_in_effect(tmp_path, synchronous, level):
    async with SQLiteStore(tmp_path / "runs.db", synchronous=synchronous, busy_timeout=2.5) as store:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == level
        assert await pragma(store, "busy_timeout") == 2500
        assert await pragma(store, "user_version") == SCHEMA_VERSION
    with pytest.raises(ValueError, match="FULL"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF; DROP TABLE runs")


@pytest.mark.asyncio
async def test_data_survives_close_and_reopen(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await leased(store, "r", "w1")
        await store.append("r", "w1", [step(1), step(2)], Snapshot(seq=2, state={"n": 2}))
        pending = [asyncio.create_task(store.append("r", "w1", [step(3)]))]
        await asyncio.sleep(0)  # queued, not yet committed
    assert pending[0].done(), "close() returned before a queued append was committed"
    async with SQLiteStore(tmp_path / "runs.db") as again:
        assert await again.load("r") == (Snapshot(seq=2, state={"n": 2}), [step(3)])
        assert (await again.get_run("r")).lease_owner == "w1"


def test_one_store_object_serves_two_event_loops(tmp_path):
    store = SQLiteStore(tmp_path / "runs.db")

    async def first():
        await leased(store, "r", "w1")
        await store.append("r", "w1", [step(1)])  # no close(): the loop ends with the store open

    async def second():
        await store.append("r", "w1", [step(2)])
        history = await store.history("r")
        await store.close()
        return history

    asyncio.run(first())
    assert [s.seq for s in asyncio.run(second())] == [1, 2]


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db"):
        pass
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(tmp_path / "runs.db")
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade waypoint"):
        await store.open()
    with pytest.raises(SchemaVersionError):
        await store.get_run("r")  # still refused, never half-open
    await store.close()


@pytest.mark.asyncio
async def test_unopenable_files_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        await SQLiteStore(tmp_path / "missing" / "runs.db").open()
    (tmp_path / "junk.db").write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StoreError, match="junk.db.*not a database"):
        await SQLiteStore(tmp_path / "junk.db").open()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["uri", "chmod"])
async def test_read_only_file_fails_writes_and_keeps_reads(tmp_path, how):
    db = tmp_path / "runs.db"
    async with SQLiteStore(db) as store:
        for run_id in ("a", "b"):
            await leased(store, run_id, "w1")
            await store.append(run_id, "w1", [step(1)])
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only files; the uri case covers it")
        db.chmod(0o444)
    async with SQLiteStore(f"file:{db}?mode=ro" if how == "uri" else db) as ro:
        results = await asyncio.gather(ro.append("a", "w1", [step(2)]), ro.append("b", "w1", [step(2)]),
                                       return_exceptions=True)
        assert all(isinstance(r, StoreError) and "readonly" in str(r) for r in results), results
        assert [s.seq for s in await ro.history("a")] == [1]
        assert (await ro.get_run("b")).last_seq == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_writes_fail_once_the_file_is_gone_and_what_was_committed_stays_readable(tmp_path, how):
    db = tmp_path / "runs.db"
    async with SQLiteStore(db) as store:
        await leased(store, "r", "w1")
        await store.append("r", "w1", [step(1)], Snapshot(seq=1, state={"n": 1}))
        for suffix in ("", "-wal", "-shm"):
            tmp_path.joinpath(f"runs.db{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            async with SQLiteStore(db) as other:  # a new, empty database at the same path
                await other.create_run(info("other"))
        with pytest.raises(StoreError, match=f"'r'.*{db}.*was {how}.*nothing written.*resume the run"):
            await store.append("r", "w1", [step(2)])
        with pytest.raises(StoreError, match="nothing written"):
            await store.release("r", "w1", "failed")
        assert [s.seq for s in await store.history("r")] == [1]  # the open file still reads
        assert (await store.get_run("r")).last_seq == 1
    if how == "replaced":
        async with SQLiteStore(db) as other:
            assert [r.run_id for r in await other.list_runs()] == ["other"]  # left alone


@pytest.mark.asyncio
async def test_a_folder_moved_whole_keeps_its_store_writing(tmp_path):
    (tmp_path / "a").mkdir()
    async with SQLiteStore(tmp_path / "a" / "runs.db") as store:
        await leased(store, "r", "w1")
        (tmp_path / "a").rename(tmp_path / "b")
        await store.append("r", "w1", [step(1)])  # the WAL moved with it: nothing at risk
    async with SQLiteStore(tmp_path / "b" / "runs.db") as moved:
        assert [s.seq for s in await moved.history("r")] == [1]


@pytest.mark.asyncio
async def test_injection_looking_strings_are_plain_data(tmp_path):
    nasty = "x'; DROP TABLE runs; --"
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await leased(store, nasty, owner=f'"{nasty}', graph=nasty)
        await store.append(nasty, f'"{nasty}', [step(1, node=nasty)])
        assert [r.run_id for r in await store.list_runs(graph=nasty, status="running")] == [nasty]
        assert (await store.history(nasty))[0].node == nasty
        tables = {r[0] for r in await fetch(store, "SELECT name FROM sqlite_master")}
        assert {"runs", "steps", "snapshots"} <= tables


class Boom:
    """Pickling this runs a shell command on load; no store may ever unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.asyncio
async def test_hostile_payloads_never_execute(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Boom(marker))
    fields = {"seq": 2, "kind": "done", "node": "n", "activation": "n#2", "at": 1.0}
    ext = msgspec.msgpack.encode({**fields, "delta": {"x": msgspec.msgpack.Ext(7, evil), "p": evil}})
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await leased(store, "r", "w1")
        await store.append("r", "w1", [step(1), step(2), step(3)])
        await plant_sqlite(store, "r", 1, evil)
        await plant_sqlite(store, "r", 2, ext)
        await plant_sqlite(store, "r", 3, msgspec.msgpack.encode(msgspec.msgpack.Ext(1, evil)))
        with pytest.raises(CorruptRecordError, match="'r'.*seq 1"):
            await store.history("r", upto=1)
        with pytest.raises(CorruptRecordError, match="'r'.*seq 2.*extension type 7"):
            await store.history("r", after=1, upto=2)  # waypoint never writes Ext: refused, not kept
        with pytest.raises(CorruptRecordError, match="seq 3"):
            await store.history("r", after=2)
    assert not marker.exists()


@pytest.mark.asyncio
async def test_two_stores_on_one_file_see_each_other(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db") as one, SQLiteStore(tmp_path / "runs.db") as two:
        await leased(one, "r", "host1:1:a")
        with pytest.raises(LeaseError, match="is being executed by host1:1:a"):
            await two.claim("r", "host2:2:b", 60)
        await one.append("r", "host1:1:a", [step(1)])
        assert [s.seq for s in await two.history("r")] == [1]
        await one.release("r", "host1:1:a", "failed", error="x")
        await two.claim("r", "host2:2:b", 60)
        with pytest.raises(LeaseError, match="host1:1:a no longer holds the lease"):
            await one.append("r", "host1:1:a", [step(2)])
        for i in range(20):
            await leased(one if i % 2 else two, f"p{i}", "w")
        await asyncio.gather(*(s.append(f"p{i}", "w", [step(n)]) for n in (1, 2, 3)
                               for i, s in enumerate([two, one] * 10)))
        assert [(await one.get_run(f"p{i}")).last_seq for i in range(20)] == [3] * 20


@pytest.mark.asyncio
async def test_a_commit_is_one_thread_hop_and_concurrent_appends_share_it(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db") as store:
        for i in range(100):
            await leased(store, f"r{i}", "w")
        hops = 0
        real = store._conn.run

        async def counting(fn, *args):
            nonlocal hops
            hops += 1
            return await real(fn, *args)

        store._conn.run = counting
        await store.append("r0", "w", [step(1), step(2)], Snapshot(seq=2, state={}))
        assert hops == 1
        await asyncio.gather(*(store.append(f"r{i}", "w", [step(1)]) for i in range(1, 100)))
        assert hops <= 3, f"99 concurrent appends took {hops - 1} transactions"


def counting_hops(store: SQLiteStore) -> list[str]:
    """Names of what each hop into the connection's thread ran, from now on."""
    hops, real = [], store._conn.run

    async def counting(fn, *args):
        hops.append(fn.__name__)
        return await real(fn, *args)

    store._conn.run = counting
    return hops


@pytest.mark.asyncio
async def test_at_normal_commits_run_on_the_loop_and_a_held_lock_falls_back_to_the_thread(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL", busy_timeout=5) as store:
        await leased(store, "r", "w")
        hops = counting_hops(store)
        await store.append("r", "w", [step(1)])
        assert hops == [], "a commit at NORMAL went through the connection's thread"
        other = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        pending = asyncio.create_task(store.append("r", "w", [step(2)]))
        await asyncio.sleep(0.1)  # the loop is free meanwhile: the wait happens in the thread
        assert not pending.done() and hops == ["write_batch"]
        other.execute("COMMIT")
        other.close()
        await pending  # no "database is locked": it waited with the busy timeout
        assert [s.seq for s in await store.history("r")] == [1, 2]


@pytest.mark.asyncio
async def test_at_normal_the_wal_is_checkpointed_in_the_thread(tmp_path, monkeypatch):
    from waypoint.checkpoints import _sqlite_direct

    monkeypatch.setattr(_sqlite_direct, "CHECKPOINT_EVERY", 5)
    async with SQLiteStore(tmp_path / "runs.db", synchronous="NORMAL") as store:
        await leased(store, "r", "w")
        hops = counting_hops(store)
        for seq in range(1, 13):
            await store.append("r", "w", [step(seq)])
        assert "checkpoint" in hops and "write_batch" not in hops
    async with SQLiteStore(tmp_path / "runs.db") as again:
        assert [s.seq for s in await again.history("r")] == list(range(1, 13))


@pytest.mark.asyncio
async def test_start_writes_its_run_in_one_transaction(tmp_path):
    import waypoint as wp

    class State(BaseModel):
        n: int = 0

    async def a(state: State) -> dict:
        return {"n": 1}

    g = wp.GraphBuilder(State, name="one")
    g.node(a, writes=["n"])
    g.edge(wp.START, "a")
    g.edge("a", wp.END)
    graph = g.compile()
    async with SQLiteStore(tmp_path / "runs.db") as store:
        batches = []
        real = store._writes._commit  # what the group commit runs per batch

        async def counting(jobs):
            batches.append([fn.__name__ for fn, _ in jobs])
            return await real(jobs)

        store._writes._commit = counting
        result = await (await wp.start(graph, store=store, run_id="r")).result()
        assert result.status == "done"
        assert batches == [["create"], ["append"], ["release"]], batches  # row+lease+snapshot, a, end
        assert (await store.load("r"))[0].seq == 0


@pytest.mark.asyncio
async def test_a_damaged_run_fails_alone_in_its_batch(tmp_path):
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await leased(store, "bad", "w")
        await leased(store, "good", "w")
        with sqlite3.connect(tmp_path / "runs.db") as conn:  # a stray row where 'bad' logs next
            conn.execute("INSERT INTO steps (key, run_id, seq, kind, node, payload) SELECT "
                         "(num << 32) + 1, 'stray', 1, 'done', 'n', x'00' FROM runs WHERE run_id = 'bad'")
        results = await asyncio.gather(store.append("good", "w", [step(1)]),
                                       store.append("bad", "w", [step(1), step(2)]),
                                       store.append("good", "w", [step(2)]), return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], WaypointError) and "'bad'" in str(results[1])
        assert (await store.get_run("good")).last_seq == 2


@pytest.mark.asyncio
async def test_two_closes_at_once_both_return_and_the_store_opens_again(tmp_path):
    store = SQLiteStore(tmp_path / "runs.db")
    await store.create_run(info("r"))
    await asyncio.gather(store.close(), store.close())
    assert (await store.get_run("r")).run_id == "r"
    await store.close()
