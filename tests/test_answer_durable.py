"""An accepted answer is durable: once `resume(..., answer)` returns (and so once the web
server says 202), a crash of the process loses nothing.

`resume` writes each answer as an `answered` step under its claim before it returns; the
execution that carries the run on, this one or the next after a crash, hands it to its
gate. These tests SIGKILL a real process right after the answer was accepted and before
the gate's `done` step could be committed, then carry the run on from another process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import waypoint as wp
from tests.answer_worker import graph
from tests.test_web_api import GOOD
from tests.test_web_api_cli import free_port
from tests.web_graphs import review_graph
from tests.web_server import wait_until_serving
from waypoint.web.security import local_user

ROOT = Path(__file__).resolve().parent.parent

# Answers, prints "returned" once resume() returned, then blocks its event loop (a synchronous
# read of stdin): the execution resume launched never gets to commit the gate's done step.
ANSWERER = """
import asyncio, sys
import waypoint as wp
from tests.answer_worker import graph

async def main(db):
    store = wp.SQLiteStore(db)
    await store.open()
    await wp.resume(graph, "q", {"approved": True}, by="ann", store=store)
    print("returned", flush=True)
    sys.stdin.readline()

asyncio.run(main(sys.argv[1]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "WAYPOINT_TOKEN": ""}


def test_an_answer_accepted_by_resume_survives_a_sigkill_right_after_it_returned(tmp_path: Path):
    db = tmp_path / "runs.db"

    async def begin() -> None:
        async with wp.SQLiteStore(db) as store:
            assert (await (await wp.start(graph, store=store, run_id="q")).result()).waiting == ["ask"]

    asyncio.run(begin())
    proc = subprocess.Popen([sys.executable, "-c", ANSWERER, str(db)], cwd=ROOT, env=_env(), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "returned\n", f"the answering process said {line!r}: {proc.communicate()[1]}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    async def carry_on() -> None:
        async with wp.SQLiteStore(db) as store:
            crashed = await store.get_run("q")
            assert crashed.status == "running", "the kill was meant to land while the run executed"
            assert not any(s.kind == "done" and s.node == "ask" for s in await store.history("q")), \
                "the gate's done step was committed before the kill: the test proves nothing"
            # Another process carries the run on, with no answer of its own.
            result = await (await wp.resume(graph, "q", store=store)).result()
            assert (result.status, result.state.approved, result.state.acted_by) == ("done", True, "round 1")
            log = await wp.approval_log("q", store=store)
            assert [(e.gate, e.by, e.answer) for e in log] == [("ask", "ann", {"approved": True})]

    asyncio.run(carry_on())


def test_a_202_from_the_server_means_the_answer_survives_the_server_being_killed(tmp_path: Path):
    db = tmp_path / "runs.db"

    async def begin() -> None:
        async with wp.SQLiteStore(db) as store:
            result = await (await wp.start(review_graph, {"title": "t"}, store=store, run_id="r")).result()
            assert result.waiting == ["review"]

    asyncio.run(begin())
    port = free_port()
    # The server SIGKILLs itself just before the execution's first commit: the gate's done step.
    command = [sys.executable, "-m", "waypoint.cli", "serve", "--db", str(db), "--port", str(port),
               "tests.web_graphs:review_graph"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**_env(), "WAYPOINT_FAULT": "before_commit@1"})
    try:
        assert proc.stderr is not None
        assert "graphs: review" in proc.stderr.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_serving(client)  # the banner comes just before uvicorn binds
            try:
                response = client.post("/api/runs/r/resume", json={"answer": GOOD})
                status = response.status_code, response.text
            except httpx.TransportError:
                status = None  # killed before its response was out: the answer must survive anyway
            assert status is None or status[0] == 202, status
        assert proc.wait(30) == -signal.SIGKILL, "the fault point was not reached"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    async def carry_on() -> None:
        async with wp.SQLiteStore(db) as store:
            assert not any(s.kind == "done" and s.node == "review" for s in await store.history("r"))
            result = await (await wp.resume(review_graph, "r", store=store)).result()
            assert (result.status, result.state.outcome) == ("done", "refunded")
            log = await wp.approval_log("r", store=store)
            given = [(e.gate, e.by, e.answer["comment"]) for e in log]
            assert given == [("review", local_user(), GOOD["comment"])]

    asyncio.run(carry_on())


@pytest.mark.asyncio
async def test_an_answered_resume_writes_its_answer_once_and_the_log_reads_as_before(tmp_path: Path):
    async with wp.SQLiteStore(tmp_path / "runs.db") as store:
        await (await wp.start(graph, store=store, run_id="q")).result()
        waited = (await store.get_run("q")).last_seq
        handle = await wp.resume(graph, "q", {"approved": False}, by="ann", store=store)
        given = (await store.history("q", after=waited))[0]  # written before resume returned
        assert (given.kind, given.node, given.extra) == (
            "event", "ask", {"event": "answered", "answer": {"approved": False}, "by": "ann"})
        assert (await handle.result()).waiting == ["ask"]  # refused: asked again
        # a late answer to the first question is told who answered it, once
        with pytest.raises(wp.StaleAnswerError) as err:
            await wp.resume(graph, "q", {"approved": True}, by="bob", store=store, seen_seq=waited)
        assert str(err.value).count("answered by ann") == 1
        done = await (await wp.resume(graph, "q", {"approved": True}, by="bob", store=store)).result()
        assert (done.status, done.state.acted_by) == ("done", "round 2")
        log = await wp.approval_log("q", store=store)
        assert [(e.by, e.answer) for e in log] == [("ann", {"approved": False}), ("bob", {"approved": True})]
        written = [s.extra["by"] for s in await store.history("q") if s.kind == "event"]
        assert written == ["ann", "bob"]  # each answer written once, with its author
