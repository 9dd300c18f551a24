"""`waypoint worker`: real worker processes draining a queue, killed, drained, woken.

Each test runs on a SQLite file (several processes on one machine) and on the
throwaway PostgreSQL server of tests/pg_server.py. Nodes record every execution
(tests/worker_flows.py), so "no node executed twice" is read from what happened;
processes are synchronised on their log lines and on files, never on sleeps.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import waypoint as wp
from tests.test_cli import wp as cli
from tests.worker_procs import FLOWS, WorkerProc, executions, executors, wait_for_file
from waypoint._cli.loading import load_graph
from waypoint.testing.store_conformance import info, step

try:  # the `pg` fixture (tests/conftest.py) skips without psycopg; these checks say it first
    import psycopg_pool as pg
except ImportError:
    pg = None


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    """Where the runs live: a SQLite file, or a fresh database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    if pg is None:
        pytest.skip('PostgreSQL tests need psycopg: pip install -e ".[postgres]"')
    return request.getfixturevalue("pg").new_database()


def flows():
    """tests/worker_flows.py as the workers import it (a graph's hash names its state's module)."""
    load_graph(f"{FLOWS}:chain")
    return sys.modules["worker_flows"]


def store_of(db: str):
    from waypoint._cli.common import Db

    return Db.of(db).store()


def in_store(db: str, work):
    """Run `work(store)` on a store of `db` in a loop of its own, closing the store after."""
    async def main():
        store = store_of(db)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def submit(db: str, graph, run_ids: list[str]) -> None:
    async def work(store):
        for run_id in run_ids:
            await wp.submit(graph, {}, store=store, run_id=run_id)

    in_store(db, work)


def statuses(db: str, run_ids: list[str]) -> dict[str, str]:
    async def work(store):
        return {run_id: (await store.get_run(run_id)).status for run_id in run_ids}

    return in_store(db, work)


def test_workers_drain_a_queue_and_execute_each_node_once(db, tmp_path):
    run_ids = [f"r{i}" for i in range(24)]
    submit(db, flows().chain, run_ids)
    workers = [WorkerProc.start(db, "chain", tmp_path, "--concurrency", "4", "--poll", "0.2",
                                "--until-idle") for _ in range(3)]
    try:
        assert [w.wait() for w in workers] == [0, 0, 0], "\n\n".join(w.log for w in workers)
    finally:
        for w in workers:
            w.kill()
    assert statuses(db, run_ids) == dict.fromkeys(run_ids, "done")
    assert executions(tmp_path) == {(r, n): 1 for r in run_ids for n in "abc"}
    claimed = [line for w in workers for line in w.lines if line.split()[1] == "claimed"]
    assert sorted(line.split()[2] for line in claimed) == sorted(run_ids), "each run claimed once"


def test_a_killed_workers_run_is_finished_by_another(db, tmp_path):
    submit(db, flows().blocker, ["k"])
    first = WorkerProc.start(db, "blocker", tmp_path, "--ttl", "2", "--poll", "0.1")
    try:
        assert int(wait_for_file(tmp_path / "held-k")) == first.pid  # inside `hold`, mid-run
        first.kill()  # SIGKILL: no drain, no release; its lease stays until it lapses
    finally:
        first.kill()
    (tmp_path / "held-k").unlink()
    (tmp_path / "release").touch()
    second = WorkerProc.start(db, "blocker", tmp_path, "--ttl", "2", "--poll", "0.1", "--until-idle")
    try:
        assert second.wait() == 0, second.log
    finally:
        second.kill()
    assert statuses(db, ["k"]) == {"k": "done"}
    ran = executors(tmp_path)
    # `before` was committed by the first worker: never again. `hold` was in flight when it
    # died: executed again (at-least-once), by the second. `after` once, by the second.
    assert ran[("k", "before")] == [first.pid]
    assert ran[("k", "hold")] == [first.pid, second.pid]
    assert ran[("k", "after")] == [second.pid]


def test_sigterm_lets_in_flight_runs_finish_and_claims_nothing_more(db, tmp_path):
    submit(db, flows().blocker, ["slow"])
    worker = WorkerProc.start(db, "blocker,chain", tmp_path, "--poll", "0.1", "--grace", "60")
    try:
        wait_for_file(tmp_path / "held-slow")
        worker.signal(signal.SIGTERM)
        worker.expect("draining: 1 run(s) in flight")
        submit(db, flows().chain, ["late"])  # queued while it drains: not for this worker
        (tmp_path / "release").touch()
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()
    assert statuses(db, ["slow", "late"]) == {"slow": "done", "late": "queued"}
    assert " claimed late" not in worker.log


def test_sigterm_after_the_grace_hands_runs_back_to_the_queue(db, tmp_path):
    submit(db, flows().blocker, ["held"])
    worker = WorkerProc.start(db, "blocker", tmp_path, "--poll", "0.1", "--grace", "0")
    try:
        wait_for_file(tmp_path / "held-held")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()
    worker.expect("handed back held")
    assert statuses(db, ["held"]) == {"held": "queued"}  # claimable at once by any worker
    (tmp_path / "release").touch()
    other = WorkerProc.start(db, "blocker", tmp_path, "--poll", "0.1", "--until-idle")
    try:
        assert other.wait() == 0, other.log
    finally:
        other.kill()
    assert statuses(db, ["held"]) == {"held": "done"}
    assert executions(tmp_path)[("held", "before")] == 1  # committed before the drain: kept


def test_an_answer_enqueued_from_the_cli_is_executed_by_a_worker(db, tmp_path):
    submit(db, flows().gated, ["g"])
    first = WorkerProc.start(db, "gated", tmp_path, "--poll", "0.1", "--until-idle")
    assert first.wait() == 0, first.log
    assert statuses(db, ["g"]) == {"g": "waiting"}
    answered = cli("resume", "g", "--gate", "approve", "--input", '{"approved": true}', "--by", "ann",
                   "--enqueue", "--graph", f"{FLOWS}:gated", "--db", db)
    assert answered.returncode == 0, answered.stderr
    assert "status: queued" in answered.stdout
    assert executions(tmp_path)[("g", "finish")] == 0  # nothing executed by the answer itself
    again = cli("resume", "g", "--gate", "approve", "--input", '{"approved": false}', "--enqueue",
                "--graph", f"{FLOWS}:gated", "--db", db)
    assert again.returncode == 1 and "queued" in again.stderr, again.stderr  # one answer per wait
    second = WorkerProc.start(db, "gated", tmp_path, "--poll", "0.1", "--until-idle")
    assert second.wait() == 0, second.log
    assert statuses(db, ["g"]) == {"g": "done"}
    assert executions(tmp_path)[("g", "finish")] == 1

    async def log(store):
        return await wp.approval_log("g", store=store)

    [entry] = in_store(db, log)
    assert (entry.gate, entry.by, entry.answer) == ("approve", "ann", {"approved": True})


def test_worker_once_executes_one_batch_and_exits(db, tmp_path):
    run_ids = ["a", "b", "c"]
    submit(db, flows().chain, run_ids)
    worker = WorkerProc.start(db, "chain", tmp_path, "--once", "--concurrency", "2", "--poll", "3600")
    assert worker.wait() == 0, worker.log  # an hour's poll: it exits on its batch, not on a timer
    assert "claimed 2;" in worker.lines[-1], worker.log
    assert sorted(statuses(db, run_ids).values()) == ["done", "done", "queued"]
    again = WorkerProc.start(db, "chain", tmp_path, "--once", "--poll", "3600")
    assert again.wait() == 0, again.log
    assert statuses(db, run_ids) == {"a": "done", "b": "done", "c": "done"}
    empty = WorkerProc.start(db, "chain", tmp_path, "--once", "--poll", "3600")
    assert empty.wait() == 0 and "claimed 0;" in empty.lines[-1], empty.log  # nothing queued: exits


def test_deadlines_are_swept_inside_workers(db, tmp_path):
    submit(db, flows().deadlined, ["late"])
    worker = WorkerProc.start(db, "deadlined", tmp_path, "--poll", "0.1", "--tick", "0.2")
    try:
        worker.expect("due late")
        worker.expect("ended late: done")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()
    assert executions(tmp_path)[("late", "escalated")] == 1
    assert "deadline sweeps" in worker.lines[-1] and "deadline sweeps 0" not in worker.lines[-1]


def test_refuses_a_run_of_another_graph_shape(tmp_path):
    db = str(tmp_path / "runs.db")
    submit(db, flows().blocker, ["other-shape"])  # named "blocker", another structure than below

    async def work(store):
        changed = flows()._blocker()
        changed.node(flows()._step("extra"), name="extra")
        changed.edge("after", "extra")
        changed.edge("extra", flows().END)
        graph = changed.compile()
        from waypoint.engine.worker import Worker

        return await Worker([graph], store=store, poll=0.05, tick=None, log=print).run(until_idle=True)

    stats = in_store(db, work)
    assert stats.refused == 1

    async def info(store):
        return await store.get_run("other-shape")

    run = in_store(db, info)
    assert run.status == "failed" and "different structure" in (run.error or "")
    assert not Path(tmp_path / "executions").exists()


@pytest.fixture
def pg_db(db) -> str:
    if not db.startswith("postgresql"):
        pytest.skip("PostgreSQL only: LISTEN/NOTIFY wake-ups and server restarts (SQLite workers poll)")
    return db


def test_a_worker_is_woken_by_notify_not_by_its_poll(pg_db, tmp_path):
    worker = WorkerProc.start(pg_db, "chain", tmp_path, "--poll", "3600", "--tick", "0")
    try:
        worker.expect("listening for work in queue 'default'")  # LISTEN is in place
        assert " claimed " not in worker.log
        submit(pg_db, flows().chain, ["prompt"])
        worker.expect("woken: work in queue 'default'")  # an hour's poll: only NOTIFY wakes it
        worker.expect("ended prompt: done")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()
    assert "woken by notify 1" in worker.lines[-1]


def test_a_dropped_listener_connection_reconnects(pg_db, pg, tmp_path):
    worker = WorkerProc.start(pg_db, "chain", tmp_path, "--poll", "3600", "--tick", "0")
    try:
        worker.expect("listening for work in queue 'default'")
        database = pg_db.rsplit("/", 1)[1]
        [(killed,)] = pg.admin("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                               f"application_name = 'waypoint listener' AND datname = '{database}'")
        assert killed == 1
        worker.expect("no wake-ups from the store")
        worker.lines.clear()
        worker.expect("listening for work in queue 'default'")  # a new LISTEN connection
        submit(pg_db, flows().chain, ["after-drop"])
        worker.expect("woken: work in queue 'default'")
        worker.expect("ended after-drop: done")
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()


def test_postgres_notifies_when_a_run_becomes_queued_never_per_step(request):
    """Wake-ups and locks across store objects are store conformance checks; this is what only
    PostgreSQL does: the database sends NOTIFY, from the transaction that makes a run queued."""
    if pg is None:
        pytest.skip('PostgreSQL tests need psycopg: pip install -e ".[postgres]"')
    where = request.getfixturevalue("pg").new_database()

    async def main():
        first, second = store_of(where), store_of(where)
        try:
            assert await second.signals.wait("q", 5) == "listening"
            await first.create_run(info("here", status="queued", queue="q"))  # no notify() called
            assert await second.signals.wait("q", 60) == "notified"
            claimed = await first.claim_next("q", "w", 60)
            assert claimed is not None
            await first.append("here", "w", [step(1)])
            assert await second.signals.wait("q", 0.2) == "polled"  # a step sends nothing
            await first.release("here", "w", "queued")  # an enqueued answer, a hand-back
            assert await second.signals.wait("q", 60) == "notified"
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


def test_the_sweep_lock_of_a_sqlite_file_is_held_across_processes(tmp_path):
    """Within a process the lock is a flag per file; across processes it is a flock beside the
    file: another process holding it refuses it here, and its death frees it."""
    import subprocess

    db = tmp_path / "runs.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import asyncio, sys
from waypoint import SQLiteStore

async def main():
    async with SQLiteStore({str(db)!r}).signals.try_lock("waypoint tick") as mine:
        print("held" if mine else "refused", flush=True)
        sys.stdin.read()  # until the test closes our stdin, or kills us

asyncio.run(main())
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def try_it():
        async with wp.SQLiteStore(db).signals.try_lock("waypoint tick") as mine:
            return mine

    with holder:  # closes its pipes
        try:
            assert holder.stdout.readline().strip() == "held"
            assert asyncio.run(try_it()) is False, "a lock held by another process was taken here"
        finally:
            holder.kill()
            holder.wait()
    assert asyncio.run(try_it()) is True, "a dead holder's lock stayed held"


def test_a_store_without_signals_is_polled_and_swept_without_a_lock(tmp_path, monkeypatch):
    """A store of one's own need not offer `signals`: the worker says so once, polls, and its
    deadline sweep runs unlocked (each re-queue is a compare-and-set claim)."""
    from waypoint.engine.worker import Worker

    class Plain(wp.MemoryStore):
        def __init__(self):
            super().__init__()
            del self.signals

    lines: list[str] = []

    async def main():
        store = Plain()
        await wp.submit(flows().deadlined, {}, store=store, run_id="late")

        def said(line: str) -> None:
            lines.append(line)
            if line.startswith("ended late: done"):
                worker.drain()

        worker = Worker([flows().deadlined], store=store, poll=0.02, tick=0.05, log=said)
        return await worker.run()

    monkeypatch.setenv("WAYPOINT_TEST_DIR", str(tmp_path))
    stats = asyncio.run(main())
    assert len([line for line in lines if "has no signals" in line]) == 1, lines
    assert stats.ticks >= 1 and stats.ended == {"waiting": 1, "done": 1}, (stats, lines)
    assert executions(tmp_path)[("late", "escalated")] == 1


def test_two_deadline_sweeps_at_the_same_moment_requeue_each_due_run_once(db, tmp_path, monkeypatch):
    """Two workers' sweeps (two store objects on one database, as two processes have), started
    together without the lock that usually keeps them apart: each due run is re-queued by one of
    them, once, and the other skips it (its compare-and-set claim finds the run moved on)."""
    from waypoint.engine.gates import tick
    from waypoint.engine.worker import Worker

    graph = flows().deadlined
    run_ids = [f"due-{i}" for i in range(12)]
    monkeypatch.setenv("WAYPOINT_TEST_DIR", str(tmp_path))

    async def main():
        first, second = store_of(db), store_of(db)
        try:
            for run_id in run_ids:
                await wp.submit(graph, {}, store=first, run_id=run_id)
            stats = await Worker([graph], store=first, poll=0.05, tick=None).run(until_idle=True)
            assert stats.ended == {"waiting": len(run_ids)}
            sweeps = await asyncio.gather(*(tick(lambda info: graph, store=store, enqueue=True)
                                            for store in (first, second)))
            rows = [await first.get_run(run_id) for run_id in run_ids]
            return sweeps, rows, [await first.history(run_id) for run_id in run_ids]
        finally:
            await first.close()
            await second.close()

    sweeps, rows, logs = asyncio.run(main())
    queued = sorted(info.run_id for sweep in sweeps for info in sweep.queued)
    assert queued == sorted(run_ids), "a due run was re-queued twice, or not at all"
    assert {row.status for row in rows} == {"queued"}
    assert all([step.kind for step in log].count("event") == 0 for log in logs), "a sweep wrote steps"


def test_a_worker_that_loses_a_lease_stops_the_run_and_writes_nothing_more(db, tmp_path, monkeypatch):
    """The lease is taken from under a worker mid-node (as when it was cut off past its ttl and
    another worker claimed the run): its heartbeat finds another owner, the run stops there."""
    from waypoint.engine.worker import Worker

    monkeypatch.setenv("WAYPOINT_TEST_DIR", str(tmp_path))
    graph = flows().blocker
    submit(db, graph, ["taken"])

    async def main():
        store = store_of(db)
        lost = asyncio.Event()
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            if line.startswith("lost taken"):
                lost.set()

        worker = Worker([graph], store=store, ttl=0.6, poll=0.05, tick=None, log=log)
        running = asyncio.ensure_future(worker.run())
        try:
            while not (tmp_path / "held-taken").exists():  # inside `hold`, its lease renewed
                await asyncio.sleep(0.02)
            seen = await store.get_run("taken")
            await store.release("taken", seen.lease_owner, "running")  # lapsed, and ...
            assert await store.claim_next("default", "thief:1:x", 60) is not None  # ... claimed
            await asyncio.wait_for(lost.wait(), 60)
            (tmp_path / "release").touch()  # had the worker gone on, it would now finish `hold`
            worker.drain()
            stats = await asyncio.wait_for(running, 60)
            return stats, await store.history("taken"), await store.get_run("taken"), lines
        finally:
            running.cancel()
            await store.close()

    stats, steps, run, lines = asyncio.run(main())
    assert stats.lost == 1 and stats.ended == {}, lines
    assert [s.node for s in steps] == ["before"]  # nothing written after the lease was taken
    assert (run.status, run.lease_owner) == ("running", "thief:1:x")
    assert executions(tmp_path)[("taken", "after")] == 0


def test_a_run_whose_database_restarts_under_it_is_carried_on_not_failed(pg_db, pg, tmp_path):
    submit(pg_db, flows().blocker, ["outage"])
    worker = WorkerProc.start(pg_db, "blocker", tmp_path, "--ttl", "3", "--poll", "0.1", "--tick", "0")
    try:
        wait_for_file(tmp_path / "held-outage")
        pg.stop("immediate")  # mid-node: what `hold` returns cannot be committed
        try:
            (tmp_path / "release").touch()
            worker.expect("left outage to its lease")  # not marked failed
        finally:
            pg.restart()
        worker.expect("ended outage: done")  # claimed again once its lease lapsed
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.log
    finally:
        worker.kill()
    assert statuses(pg_db, ["outage"]) == {"outage": "done"}
    ran = executions(tmp_path)
    assert (ran[("outage", "before")], ran[("outage", "hold")], ran[("outage", "after")]) == (1, 2, 1)


def test_a_heartbeat_that_cannot_renew_stops_before_the_lease_can_lapse():
    """A renewal that hangs (a cut network) or fails: the execution is told its lease is lost
    while the lease still holds in the store, so it stops before anyone else may claim the run."""
    import time

    from waypoint.engine import _lease
    from waypoint.errors import StoreError

    class Cut(wp.MemoryStore):
        calls = 0

        async def renew(self, run_id, owner, ttl):
            Cut.calls += 1
            if Cut.calls % 2:
                await asyncio.Event().wait()  # no answer, ever
            raise StoreError("server closed the connection unexpectedly")

    async def main():
        store = Cut()
        await store.create_run(info("r", queue="q"), owner="w", ttl=1.5)
        told = asyncio.get_running_loop().create_future()
        beat = asyncio.ensure_future(_lease.heartbeat(store, "r", "w", 1.5, told.set_result))
        try:
            lost = await asyncio.wait_for(told, 30)
        finally:
            beat.cancel()
        return lost, time.time(), (await store.get_run("r")).lease_expiry

    lost, now, expiry = asyncio.run(main())
    assert "could not renew" in str(lost) and now < expiry, (str(lost), expiry - now)


def test_child_runs_are_never_claimed_on_their_own(tmp_path, monkeypatch):
    """A subgraph's child run is executed by its parent's executor: even a worker that serves the
    child's graph by name never claims it, not even once its lease lapsed."""
    from waypoint import END, START, GraphBuilder
    from waypoint.engine.worker import Worker

    inner = GraphBuilder(flows().Count, name="inner")
    inner.node(flows()._step("deep"), name="deep")
    inner.edge(START, "deep")
    inner.edge("deep", END)
    inner_graph = inner.compile()
    outer = GraphBuilder(flows().Count, name="outer")
    outer.subgraph("sub", inner_graph)
    outer.edge(START, "sub")
    outer.edge("sub", END)
    outer_graph = outer.compile()

    async def main():
        store = wp.SQLiteStore(tmp_path / "runs.db")
        try:
            await wp.submit(outer_graph, {}, store=store, run_id="parent")
            stats = await Worker([outer_graph, inner_graph], store=store, poll=0.05, tick=None,
                                 log=print).run(until_idle=True)
            [child] = [r for r in await store.list_runs() if r.parent_run_id == "parent"]
            await store.claim(child.run_id, "crashed:1:x", 0.0)  # held by someone gone: lapsed
            again = await store.claim_next("default", "w", 60, graphs=["inner"])
            return stats, child, again
        finally:
            await store.close()

    monkeypatch.setenv("WAYPOINT_TEST_DIR", str(tmp_path))
    stats, child, again = asyncio.run(main())
    assert stats.claimed == 1 and stats.ended == {"done": 1}
    assert child.queue == "" and again is None
    with pytest.raises(ValueError, match="child runs"):
        asyncio.run(wp.submit(outer_graph, {}, store=wp.MemoryStore(), queue=""))


def test_a_second_answer_racing_an_enqueued_one_is_told_who_answered(tmp_path, monkeypatch):
    from waypoint.errors import StaleAnswerError

    monkeypatch.setenv("WAYPOINT_TEST_DIR", str(tmp_path))
    graph = flows().gated

    async def main():
        store = wp.SQLiteStore(tmp_path / "runs.db")
        try:
            await wp.submit(graph, {}, store=store, run_id="g")
            from waypoint import Worker

            await Worker([graph], store=store, poll=0.05, tick=None, log=print).run(until_idle=True)
            seen = await store.get_run("g")
            await wp.resume(graph, "g", {"approved": True}, by="ann", store=store, enqueue=True)
            with pytest.raises(StaleAnswerError) as late:  # bob read the question at the same step
                await wp.resume(graph, "g", {"approved": False}, by="bob", store=store, enqueue=True,
                                seen_seq=seen.last_seq)
            return str(late.value), await store.get_run("g")
        finally:
            await store.close()

    message, run = asyncio.run(main())
    assert "'approve' was answered by ann" in message and run.status == "queued", message
