"""A guardrail's verdict survives a SIGKILL: the resumed process neither asks it again nor the model.

The worker's input guardrail and output guardrail each append a mark to a file
when they run; a tool kills the process inside the first tool turn, after the
input verdict was committed. The resumed run goes on from the committed verdict:
one input mark in all, and the output guardrail runs once, in the second process.
A second worker dies (WAYPOINT_FAULT=after_commit@3: the input item, the tool turn,
then the output item are durable) before the node's done step: the resumed process
takes the judged reply from the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import waypoint as wp

ROOT = Path(__file__).resolve().parent.parent

WORKER = '''
import asyncio, os, signal, sys
from pathlib import Path
from pydantic import BaseModel
import waypoint as wp
from waypoint.nodes.guardrails import input_guardrail, output_guardrail, passed
from waypoint.testing import ScriptedModel, tool_call

folder, mode, where = Path(sys.argv[1]), sys.argv[2], sys.argv[3]


class Case(BaseModel):
    problem: str
    answer: str = ""


def mark(name):
    with open(folder / name, "a") as f:
        f.write("x")


@input_guardrail
def screen(text):
    mark("input")
    return passed()


@output_guardrail
def check(reply):
    mark("output")
    return passed()


def charge(amount: int) -> str:
    """Charge the card."""
    mark("charges")
    if where == "in_tool" and not (folder / "killed").exists():
        (folder / "killed").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)
    return f"charged {amount}"


def reply(request):
    if request.messages[-1]["role"] == "user":
        return tool_call("charge", {"amount": 5})
    return "Refunded."


g = wp.GraphBuilder(Case, name="guarded")
g.add(wp.llm("agent", prompt="{problem}", into="answer", tools=[charge], guardrails=[screen, check]))
g.edge(wp.START, "agent")
g.edge("agent", wp.END)
graph = g.compile()


async def main():
    model = ScriptedModel([reply] * 3)
    async with wp.SQLiteStore(folder / "runs.db") as store:
        if mode == "start":
            handle = await wp.start(graph, {"problem": "refund"}, store=store, run_id="r", deps={"model": model})
        else:
            handle = await wp.resume(graph, "r", store=store, deps={"model": model})
        result = await handle.result()
    print(result.status, result.state.answer, len(model.requests))


asyncio.run(main())
'''


def _run(tmp_path: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WAYPOINT_FAULT", None)
    if fault:
        env["WAYPOINT_FAULT"] = fault
    return subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(tmp_path), *args],
                          capture_output=True, text=True, env=env, timeout=60)


async def _history(tmp_path: Path) -> list[tuple[str, int | None]]:
    async with wp.SQLiteStore(tmp_path / "runs.db") as store:
        return [(s.kind, s.extra.get("index")) for s in await store.history("r")]


def _marks(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    return path.read_text() if path.exists() else ""


def test_a_sigkill_after_the_input_verdict_does_not_ask_the_guardrail_again(tmp_path):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    killed = _run(tmp_path, "start", "in_tool")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (_marks(tmp_path, "input"), _marks(tmp_path, "output")) == ("x", "")
    resumed = _run(tmp_path, "resume", "in_tool")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["done", "Refunded.", "2"]  # turn 1 asked again, then the answer
    assert _marks(tmp_path, "input") == "x"  # committed before the crash: not asked again
    assert _marks(tmp_path, "output") == "x"


def test_a_sigkill_after_the_output_verdict_keeps_the_judged_reply(tmp_path):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    killed = _run(tmp_path, "start", "after_output", fault="after_commit@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    log = asyncio.run(_history(tmp_path))
    assert [(kind, index) for kind, index in log if kind in ("item", "done")] == [
        ("item", -1), ("item", 0), ("item", -2)]  # died with the verdict durable, the node not done
    assert (_marks(tmp_path, "input"), _marks(tmp_path, "output"), _marks(tmp_path, "charges")) == ("x", "x", "x")
    resumed = _run(tmp_path, "resume", "after_output")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["done", "Refunded.", "0"]  # no model call: the reply was in the log
    assert (_marks(tmp_path, "input"), _marks(tmp_path, "output"), _marks(tmp_path, "charges")) == ("x", "x", "x")
