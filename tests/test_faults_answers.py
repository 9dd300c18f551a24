"""Answers are compare-and-set: an answer applies only to the wait it was validated against.

A gate `ask` is asked again each time it is refused (a loop guard leads back to it),
so a late answer meant for the first question could land on the second. These tests
race answers (in one process through separate connections, and across processes) and
check that exactly one answer per wait executes, that every other caller is told who
got there first, and that the approval log never holds an answer to a question its
author did not see.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import waypoint as wp
from tests import fault_harness as harness
from tests.answer_worker import graph

WORKER = Path(__file__).with_name("answer_worker.py")


class HeldClaims(wp.SQLiteStore):
    """A store whose claims wait for `go` to be set: a resume caught between its
    check and its claim, as a slow process or a busy database would leave it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reached, self.go = asyncio.Event(), asyncio.Event()

    async def claim(self, run_id, owner, ttl, **expect):
        self.reached.set()
        await self.go.wait()
        return await super().claim(run_id, owner, ttl, **expect)


@pytest.mark.asyncio
async def test_a_late_answer_is_not_applied_to_the_question_asked_after_it(tmp_path):
    db = tmp_path / "runs.db"
    async with wp.SQLiteStore(db) as ann_store, HeldClaims(db) as bob_store:
        first = await (await wp.start(graph, store=ann_store, run_id="q")).result()
        assert first.waiting == ["ask"]
        bob = asyncio.create_task(wp.resume(graph, "q", {"approved": True}, by="bob", store=bob_store))
        await bob_store.reached.wait()  # Bob validated his answer against the first question
        ann = await (await wp.resume(graph, "q", {"approved": False}, by="ann", store=ann_store)).result()
        assert ann.status == "waiting" and ann.state.rounds == 1  # refused: asked again
        before = await ann_store.history("q")
        bob_store.go.set()
        with pytest.raises(wp.StaleAnswerError) as err:
            await bob
        message = str(err.value)
        assert "run 'q'" in message and "'ask' was answered by ann" in message
        assert "it now waits at ['ask']" in message and "Nothing was written" in message
        assert isinstance(err.value, wp.LeaseError) and isinstance(err.value, wp.GateError)
        assert await ann_store.history("q") == before, "a stale answer wrote to the log"
        run = await ann_store.get_run("q")
        assert (run.status, run.waiting, run.lease_owner) == ("waiting", ["ask"], None)
        log = await wp.approval_log("q", store=ann_store)
        assert [(e.by, e.answer) for e in log] == [("ann", {"approved": False})]
        # Bob reads the new question and answers it: now it applies.
        done = await (await wp.resume(graph, "q", {"approved": True}, by="bob", store=bob_store)).result()
        assert (done.status, done.state.acted_by) == ("done", "round 2")


@pytest.mark.asyncio
async def test_of_many_concurrent_answers_to_one_wait_exactly_one_executes(tmp_path):
    db = tmp_path / "runs.db"
    async with wp.SQLiteStore(db) as store:
        await (await wp.start(graph, store=store, run_id="q")).result()
        stores = [wp.SQLiteStore(db) for _ in range(8)]
        for s in stores:
            await s.open()
        try:
            async def answer(i: int, s: wp.SQLiteStore):
                try:
                    return await (await wp.resume(graph, "q", {"approved": i % 2 == 0}, by=f"u{i}",
                                                  store=s)).result()
                except wp.WaypointError as exc:
                    return exc

            outcomes = await asyncio.gather(*(answer(i, s) for i, s in enumerate(stores)))
        finally:
            for s in stores:
                await s.close()
        executed = [o for o in outcomes if isinstance(o, wp.RunResult)]
        refused = [o for o in outcomes if not isinstance(o, wp.RunResult)]
        assert len(executed) == 1, outcomes
        assert all(isinstance(o, wp.StaleAnswerError) for o in refused), refused
        log = await wp.approval_log("q", store=store)
        assert len(log) == 1 and log[0].by == f"u{outcomes.index(executed[0])}"
        assert (await store.get_run("q")).status == executed[0].status


@pytest.mark.asyncio
async def test_an_answer_to_a_run_being_executed_is_refused_as_stale(tmp_path):
    db = tmp_path / "runs.db"
    async with wp.SQLiteStore(db) as store:
        await (await wp.start(graph, store=store, run_id="q")).result()
        await store.claim("q", "otherhost:1:x", 60)  # executing elsewhere, not yet past the gate
        with pytest.raises(wp.StaleAnswerError, match="it is being executed by otherhost:1:x"):
            await wp.resume(graph, "q", {"approved": True}, by="bob", store=store)


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])


def _wait_for_files(paths: list[Path], procs: list[subprocess.Popen]) -> None:
    while not all(p.exists() for p in paths):
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, [p.communicate() for p in dead]
        time.sleep(0.005)


@pytest.mark.timeout(120)
def test_processes_answering_one_wait_at_once_one_executes_the_others_are_told(tmp_path):
    db, rounds, per_round = tmp_path / "runs.db", 3, 4
    tried = executed = stale = 0
    for r in range(rounds):
        run_id = f"race-{r}"
        start = _spawn("start", str(db), run_id)
        assert json.loads(start.communicate()[0])["status"] == "waiting"
        ready = [tmp_path / f"ready-{r}-{i}" for i in range(per_round)]
        go = tmp_path / f"go-{r}"
        procs = [_spawn("answer", str(db), run_id, f"p{i}", "true" if i % 2 else "false",
                        str(ready[i]), str(go)) for i in range(per_round)]
        _wait_for_files(ready, procs)
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            results.append(json.loads(out))
        winners = [res for res in results if res["outcome"] in ("done", "waiting")]
        losers = [res for res in results if res not in winners]
        assert len(winners) == 1, results
        assert all(res["outcome"] == "StaleAnswerError" for res in losers), losers
        assert all("Nothing was written" in res["error"] for res in losers)
        entries = asyncio.run(_approvals(db, run_id))
        assert [e.by for e in entries] == [winners[0]["name"]], (entries, results)
        tried, executed, stale = tried + per_round, executed + 1, stale + len(losers)
    harness.record("concurrent_answers", waits=rounds, answers_tried=tried, executed=executed,
                   refused_as_stale=stale, applied_to_an_unseen_question=0)


async def _approvals(db: Path, run_id: str) -> list[wp.ApprovalEntry]:
    async with wp.SQLiteStore(db) as store:
        return await wp.approval_log(run_id, store=store)


@pytest.mark.asyncio
async def test_an_answer_names_the_question_it_saw_and_applies_only_to_it(tmp_path):
    async with wp.SQLiteStore(tmp_path / "runs.db") as store:
        await (await wp.start(graph, store=store, run_id="q")).result()
        [first] = await wp.pending_gates(graph, "q", store=store)
        await (await wp.resume(graph, "q", {"approved": False}, by="ann", store=store,
                               seen_seq=first.seq)).result()
        [second] = await wp.pending_gates(graph, "q", store=store)
        assert second.seq > first.seq and second.name == first.name
        before = await store.history("q")
        with pytest.raises(wp.StaleAnswerError, match="'ask' was answered by ann"):
            await wp.resume(graph, "q", {"approved": True}, by="bob", store=store, seen_seq=first.seq)
        assert await store.history("q") == before
        done = await (await wp.resume(graph, "q", {"approved": True}, by="bob", store=store,
                                      seen_seq=second.seq)).result()
        assert done.status == "done"


def test_the_cli_refuses_an_answer_to_a_question_that_was_answered_first(tmp_path):
    from tests.test_cli import EXAMPLE, wp

    db = str(tmp_path / "runs.db")
    first = wp("run", EXAMPLE, "--input", '{"topic": "tides"}', "--db", db, cwd=tmp_path)
    run_id = next(l.split(": ", 1)[1] for l in first.stdout.splitlines() if l.startswith("run_id: "))
    asked = next(l for l in first.stdout.splitlines() if l.strip().startswith("asked:"))
    seq = asked.split("at step ", 1)[1].split()[0]
    ann = wp("resume", run_id, "--input", '{"approved": false, "comment": "more"}', "--by", "ann",
             "--seen-seq", seq, "--db", db)
    assert ann.returncode == 0 and "question: Publish revision 2" in ann.stdout, ann.stderr
    bob = wp("resume", run_id, "--input", '{"approved": true}', "--by", "bob", "--seen-seq", seq,
             "--db", db)
    assert bob.returncode == 1
    assert "'approve' was answered by ann" in bob.stderr and "Nothing was written" in bob.stderr
    shown = wp("show", run_id, "--db", db)
    assert "status: waiting" in shown.stdout and "answered by bob" not in shown.stdout
