"""An LLM node's tool loop is durable turn by turn: a finished tool call never runs again.

Each tool turn (the model's calls and their results) is committed as an `item`
step of the activation; after a failure or a SIGKILL, the node goes on from
its last committed turn instead of asking the model again from the start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

import waypoint as wp
from waypoint.testing import ScriptedModel, tool_call

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent


class Case(BaseModel):
    problem: str
    answer: str = ""


def graph_with(tools) -> wp.Graph:
    g = wp.GraphBuilder(Case, name="react")
    g.add(wp.llm("react", prompt="{problem}", into="answer", tools=tools))
    g.edge(wp.START, "react")
    g.edge("react", wp.END)
    return g.compile()


async def test_a_failed_tool_turn_resumes_after_the_turns_that_finished(store):
    ran: list[str] = []

    def charge(amount: int) -> str:
        """Charge the card."""
        ran.append("charge")
        return f"charged {amount}"

    def email(to: str) -> str:
        """Send an email."""
        ran.append("email")
        if ran.count("email") == 1:
            raise ConnectionError("smtp down")
        return "sent"

    graph = graph_with([charge, email])
    model = ScriptedModel([tool_call("charge", {"amount": 5}), tool_call("email", {"to": "a@b"})])
    first = await (await wp.start(graph, {"problem": "refund"}, store=store, run_id="r",
                                  deps={"model": model})).result(raise_on_failure=False)
    assert first.status == "failed" and ran == ["charge", "email"]
    assert [s.kind for s in await store.history("r") if s.node == "react"] == ["item", "fail"]

    model.add(tool_call("email", {"to": "a@b"}), "Refunded and told the customer.")
    done = await (await wp.resume(graph, "r", store=store, deps={"model": model})).result()
    assert done.state.answer == "Refunded and told the customer."
    assert ran == ["charge", "email", "email"]  # the charge did not run again
    assert len(model.requests) == 4  # 2 before the failure, then only what was not answered
    resumed = model.requests[2].messages
    assert resumed[-1] == {"role": "tool", "tool_call_id": resumed[-2]["tool_calls"][0]["id"],
                           "content": "charged 5"}  # the conversation went on from turn 1
    step = [s for s in await store.history("r") if s.node == "react" and s.kind == "done"][0]
    assert [t["tool"] for t in step.extra["trace"]] == ["charge", "email"]
    assert step.extra["usage"]["calls"] == 3 and step.extra["usage"]["tool_calls"] == 2


WORKER = '''
import asyncio, os, signal, sys
from pathlib import Path
from pydantic import BaseModel
import waypoint as wp
from waypoint.testing import ScriptedModel, tool_call

folder = Path(sys.argv[1])


class Case(BaseModel):
    problem: str
    answer: str = ""


def charge(amount: int) -> str:
    """Charge the card."""
    with open(folder / "charges", "a") as f:
        f.write("x")
    return f"charged {amount}"


def email(to: str) -> str:
    """Send an email."""
    if not (folder / "killed").exists():
        (folder / "killed").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies inside turn 2
    return "sent"


def reply(request):  # what the model says, from what it has seen: the same in every process
    last = request.messages[-1]
    if last["role"] == "user":
        return tool_call("charge", {"amount": 5})
    if last["content"].startswith("charged"):
        return tool_call("email", {"to": "a@b"})
    return "Refunded."


g = wp.GraphBuilder(Case, name="react")
g.add(wp.llm("react", prompt="{problem}", into="answer", tools=[charge, email]))
g.edge(wp.START, "react")
g.edge("react", wp.END)
graph = g.compile()


async def main():
    model = ScriptedModel([reply] * 3)
    async with wp.SQLiteStore(folder / "runs.db") as store:
        if sys.argv[2] == "start":
            handle = await wp.start(graph, {"problem": "refund"}, store=store, run_id="r",
                                    deps={"model": model})
        else:
            handle = await wp.resume(graph, "r", store=store, deps={"model": model})
        result = await handle.result()
    print(result.status, result.state.answer, len(model.requests))


asyncio.run(main())
'''


async def test_a_sigkill_inside_a_tool_turn_keeps_the_turns_before_it(tmp_path):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path)]
    killed = subprocess.run([*run, "start"], capture_output=True, text=True, env=env, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "charges").read_text() == "x"
    resumed = subprocess.run([*run, "resume"], capture_output=True, text=True, env=env, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == ["done", "Refunded.", "2"]  # turn 2 asked again, then the answer
    assert (tmp_path / "charges").read_text() == "x"  # charged once across the crash
