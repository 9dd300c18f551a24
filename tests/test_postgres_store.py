"""PostgresStore on a real PostgreSQL server: the conformance suite, then what only a
server shows (group commit, epochs, the database's clock, a server that goes away).

The session starts its own throwaway server (tests/pg_server.py) and each test gets
a fresh database copied from a migrated template.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from tests import pg_server

pytest.importorskip("psycopg", reason='PostgresStore needs psycopg: pip install -e ".[postgres]"')
pytest.importorskip("psycopg_pool", reason='PostgresStore needs psycopg-pool: pip install -e ".[postgres]"')

import psycopg  # noqa: E402

import waypoint as wp  # noqa: E402
from waypoint.checkpoints.postgres import SCHEMA_VERSION, PostgresStore  # noqa: E402
from waypoint.checkpoints.records import Snapshot  # noqa: E402
from waypoint.errors import LeaseError, SchemaVersionError, StoreError  # noqa: E402
from waypoint.testing.store_conformance import CHECKS, leased, run_check, step  # noqa: E402


async def plant_postgres(store: PostgresStore, run_id: str, seq: int, payload: bytes) -> None:
    """A `plant` for PostgresStore: rewrite one step's payload through another connection."""
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        await conn.execute("UPDATE waypoint_steps SET payload = %s WHERE run_id = %s AND seq = %s",
                           (payload, run_id, seq))


@pytest.mark.asyncio
@pytest.mark.parametrize("check", list(CHECKS))
async def test_conformance(pg, check):
    await run_check(check, lambda: PostgresStore(pg.new_database()), plant=plant_postgres,
                    twin=lambda store: PostgresStore(store.url))


@pytest.mark.asyncio
async def test_concurrent_appends_share_transactions(url):
    async with PostgresStore(url) as store:
        for i in range(100):
            await leased(store, f"r{i}", "w")
        transactions, real = [], store._writes._commit  # what the group commit runs per batch

        async def counting(jobs):
            transactions.append(len(jobs))
            return await real(jobs)

        store._writes._commit = counting
        await store.append("r0", "w", [step(1), step(2)], Snapshot(seq=2, state={}))
        assert transactions == [1]
        await asyncio.gather(*(store.append(f"r{i}", "w", [step(1)]) for i in range(1, 100)))
        assert len(transactions) - 1 <= 3, f"99 concurrent appends took {transactions[1:]} transactions"
        assert [(await store.get_run(f"r{i}")).last_seq for i in (0, 1, 99)] == [2, 1, 1]


@pytest.mark.asyncio
async def test_a_damaged_run_fails_alone_in_its_batch(pg, url):
    async with PostgresStore(url) as store:
        await leased(store, "bad", "w")
        await leased(store, "good", "w")
        pg.admin("INSERT INTO waypoint_steps VALUES ('bad', 2, 'done', 'n', '\\x00')", url.rpartition("/")[2])
        results = await asyncio.gather(store.append("good", "w", [step(1)]),
                                       store.append("bad", "w", [step(1), step(2)]),
                                       store.append("good", "w", [step(2)]), return_exceptions=True)
        assert results[0] is None and results[2] is None, results
        assert isinstance(results[1], StoreError) and "'bad'" in str(results[1]), results[1]
        assert "inspect it or fork the run" in str(results[1])
        assert (await store.get_run("bad")).last_seq == 0 and (await store.get_run("good")).last_seq == 2


@pytest.mark.asyncio
async def test_an_append_is_fenced_by_the_epoch_of_its_claim(url):
    async with PostgresStore(url) as one, PostgresStore(url) as two:
        await leased(one, "r", "w1")
        await one.append("r", "w1", [step(1)])
        await two.claim("r", "w1", 60)  # the same owner name, claimed again elsewhere
        with pytest.raises(LeaseError, match=r"'r'.*w1 lost its lease \(epoch 1\).*\(epoch 2\)"):
            await one.append("r", "w1", [step(2)])
        await two.append("r", "w1", [step(2)])
        assert [s.seq for s in await two.history("r")] == [1, 2]


@pytest.mark.asyncio
async def test_leases_are_on_the_database_clock(url, monkeypatch):
    async with PostgresStore(url) as store:
        await leased(store, "r", "w1", ttl=60)
        monkeypatch.setattr(time, "time", lambda: 4102444800.0)  # this worker thinks it is 2100
        with pytest.raises(LeaseError, match="is being executed by w1"):
            await store.claim("r", "w2", 60)  # not expired: the server's clock says so
        monkeypatch.undo()
        run = await store.get_run("r")
        assert time.time() + 50 < run.lease_expiry < time.time() + 70


@pytest.mark.asyncio
async def test_an_append_extends_the_lease(url):
    async with PostgresStore(url) as store:
        await leased(store, "r", "w1", ttl=0.2)
        expiry = (await store.get_run("r")).lease_expiry
        await store.append("r", "w1", [step(1)])  # in a later transaction, so a later now()
        assert (await store.get_run("r")).lease_expiry > expiry


@pytest.mark.asyncio
@pytest.mark.parametrize("prepare", [False, True])
async def test_server_side_prepared_statements_only_when_asked(url, prepare):
    async with PostgresStore(url, max_size=1, prepare=prepare) as store:
        await leased(store, "r", "w")
        for seq in range(1, 12):  # psycopg would prepare from the 5th run of a query
            await store.append("r", "w", [step(seq)])
            await store.get_run("r")
        async with store._pool.connection() as conn:
            count = await (await conn.execute("SELECT count(*) FROM pg_prepared_statements")).fetchone()
        assert (count[0] > 0) is prepare, count  # PgBouncer in transaction mode needs none


@pytest.mark.asyncio
async def test_a_fresh_database_is_migrated_once_by_racing_stores(pg):
    url = pg.new_database(template="template0")
    stores = [PostgresStore(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    name = url.rpartition("/")[2]
    assert pg.admin("SELECT version FROM waypoint_schema_version", name) == [(SCHEMA_VERSION,)]
    pg.admin(f"UPDATE waypoint_schema_version SET version = {SCHEMA_VERSION + 1}", name)
    with pytest.raises(SchemaVersionError, match=f"schema version {SCHEMA_VERSION + 1}.*Upgrade waypoint"):
        await PostgresStore(url).open()


@pytest.mark.asyncio
async def test_a_server_that_is_down_is_a_store_error_naming_the_url_without_password():
    url = f"postgresql://ann:s3cret@127.0.0.1:{pg_server.free_port()}/runs"
    store = PostgresStore(url, connect_timeout=2)
    with pytest.raises(StoreError) as err:
        await store.get_run("r")
    message = str(err.value)
    assert "postgresql://ann@127.0.0.1" in message and "s3cret" not in message, message
    assert "pg_isready" in message and "nothing was read or written" in message


@pytest.mark.asyncio
async def test_a_server_stopped_mid_use_fails_calls_then_works_again_once_back(pg):
    url = pg.new_database()
    async with PostgresStore(pg.url(url.rpartition("/")[2], password="hunter2"), timeout=2) as store:
        await leased(store, "r", "w1", ttl=600)
        await store.append("r", "w1", [step(1)])
        pg.stop("immediate")
        try:
            for call in (store.append("r", "w1", [step(2)]), store.get_run("r"),
                         store.append("r", "w1", [step(2)])):
                with pytest.raises(StoreError) as err:
                    await call
                assert "pg_isready" in str(err.value) and "hunter2" not in str(err.value), err.value
        finally:
            pg.restart()
        await store.append("r", "w1", [step(2)])
        assert [s.seq for s in await store.history("r")] == [1, 2]


def test_importing_the_checkpoints_package_does_not_import_psycopg():
    code = ("import sys, waypoint, waypoint.checkpoints as c; assert 'psycopg' not in sys.modules; "
            "c.PostgresStore; assert 'psycopg' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the engine end to end ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_run_waits_on_one_store_and_resumes_from_another(url):
    from tests.answer_worker import graph

    async with PostgresStore(url) as one:
        first = await (await wp.start(graph, store=one, run_id="q")).result()
        assert first.status == "waiting" and first.waiting == ["ask"]
    async with PostgresStore(url) as two:
        done = await (await wp.resume(graph, "q", {"approved": True}, by="bob", store=two)).result()
        assert done.status == "done"
        log = await wp.approval_log("q", store=two)
        assert [(e.by, e.answer) for e in log] == [("bob", {"approved": True})]


@pytest.mark.asyncio
async def test_of_answers_raced_from_two_stores_exactly_one_executes(url):
    from tests.answer_worker import graph

    async with PostgresStore(url) as one, PostgresStore(url) as two:
        await (await wp.start(graph, store=one, run_id="q")).result()

        async def answer(store, by):
            try:
                return await (await wp.resume(graph, "q", {"approved": True}, by=by, store=store)).result()
            except wp.WaypointError as exc:
                return exc

        outcomes = await asyncio.gather(answer(one, "ann"), answer(two, "bob"))
        executed = [o for o in outcomes if isinstance(o, wp.RunResult)]
        assert len(executed) == 1, outcomes
        assert all(isinstance(o, wp.StaleAnswerError) for o in outcomes if o not in executed), outcomes
        assert len(await wp.approval_log("q", store=one)) == 1
        assert (await two.get_run("q")).status == executed[0].status
