"""A thread across processes: concurrent senders, a process killed between turns or mid-turn.

Each process is `python tests/conversation_graphs.py ...` on one SQLite file. A
process answering a message writes `started` in its hold directory and waits
for `go`; the test acts in between, so nothing depends on timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import waypoint as wp
from waypoint import Conversation, RunStateError

from conversation_graphs import graph

WORKER = Path(__file__).parent / "conversation_graphs.py"
pytestmark = pytest.mark.asyncio


def spawn(verb: str, db: Path, message: str, hold: Path | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(WORKER), verb, str(db), "t", message, *([str(hold)] if hold else [])]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finished(process: subprocess.Popen[str]) -> tuple[int, dict[str, str]]:
    out, err = process.communicate(timeout=60)
    assert out.strip(), err
    return process.returncode, json.loads(out)


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Until `path` exists (the other process reached its hold); fails if that process ended first."""
    deadline = time.monotonic() + 60  # a guard against a hang, not a condition of the test
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


async def test_two_processes_send_at_once_one_is_taken_the_other_refused(tmp_path):
    db = tmp_path / "chat.db"
    hold = tmp_path / "hold"
    hold.mkdir()
    first = spawn("send", db, "from A", hold)
    wait_for(hold / "started", first)  # A's message is being answered
    code, refused = finished(spawn("send", db, "from B"))
    assert code == 1 and refused["error"] == "StaleAnswerError"
    assert "your message was not sent" in refused["message"] and "is being answered" in refused["message"]
    (hold / "go").write_text("")
    assert finished(first) == (0, {"reply": "#1: from A"})
    store = wp.SQLiteStore(db)
    try:
        turns = await Conversation(graph, "t", store=store).history()
        assert [(t.message, t.by) for t in turns] == [("from A", f"pid {first.pid}")]
    finally:
        await store.close()


async def test_a_process_killed_between_turns_leaves_the_thread_to_the_next(tmp_path):
    db = tmp_path / "chat.db"
    lingering = spawn("linger", db, "monday")
    assert json.loads(lingering.stdout.readline()) == {"reply": "#1: monday"}  # then it blocks
    lingering.send_signal(signal.SIGKILL)
    lingering.communicate()  # reaped, its pipes closed
    assert finished(spawn("send", db, "tuesday")) == (0, {"reply": "#2: tuesday"})


async def test_a_process_killed_mid_turn_leaves_a_turn_that_retry_finishes_elsewhere(tmp_path):
    db = tmp_path / "chat.db"
    assert finished(spawn("send", db, "a"))[0] == 0
    hold = tmp_path / "hold"
    hold.mkdir()
    victim = spawn("send", db, "b", hold)
    wait_for(hold / "started", victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()  # reaped: its pid is gone, so its lease is taken over at once
    store = wp.SQLiteStore(db)
    try:
        chat = Conversation(graph, "t", store=store)
        assert (await chat.current_run()).status == "running"
        with pytest.raises(RunStateError, match=r"last turn did not finish .* retry\(\)"):
            await chat.send("c")
        assert await chat.retry() == "#2: b"
        assert await chat.send("c") == "#3: c"
        assert [t.message for t in await chat.history()] == ["a", "b", "c"]
    finally:
        await store.close()
