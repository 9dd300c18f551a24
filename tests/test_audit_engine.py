"""Engine correctness bugs found by the audit of issue 10 (items 2, 3, 4, 5, 8, 14), one test each or more."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import BaseModel

import waypoint as wp

# -- item 2: a sync node that hangs forever must not keep the process alive -----------------

HANGING = textwrap.dedent("""
    import sys, threading
    from pydantic import BaseModel
    import waypoint as wp

    class S(BaseModel):
        n: int = 0

    g = wp.GraphBuilder(S, name="hangs")

    def stuck(state: S) -> dict:
        threading.Event().wait()          # blocks forever: only a daemon thread lets us exit
        return {}

    g.node(stuck, name="stuck", writes=[], timeout=0.2)
    g.node(lambda s: {"n": 1}, name="other", writes=["n"])
    g.edge(wp.START, ["stuck", "other"])
    g.edge("stuck", wp.END)
    g.edge("other", wp.END)
    try:
        wp.run_sync(g.compile(), store=wp.SQLiteStore(sys.argv[1]))
    except wp.NodeError as exc:
        print("status: failed")
        print("error:", exc)
""")


def test_a_sync_node_stuck_forever_does_not_keep_the_process_alive(tmp_path):
    script = tmp_path / "hangs.py"
    script.write_text(HANGING)
    # The timeout only guards the test: before the fix the process never exits.
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "runs.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "status: failed" in done.stdout
    assert "timed out after 0.2s" in done.stdout and "may still be running" in done.stdout


# -- item 3: an exhausted budget holds on resume ---------------------------------------------

class Chat(BaseModel):
    a: str = ""
    b: str = ""
    c: str = ""


def _reply(tokens: int):
    from waypoint.nodes.model import ModelResponse
    return ModelResponse("ok", [], {"input_tokens": 0, "output_tokens": tokens}, "stop")


def chain_of_three() -> wp.Graph:
    g = wp.GraphBuilder(Chat, name="abc")
    for name in "abc":
        g.add(wp.llm(name, prompt="go", into=name))
    g.edge(wp.START, "a")
    g.edge("a", "b")
    g.edge("b", "c")
    g.edge("c", wp.END)
    return g.compile()


class Deps:
    def __init__(self, model):
        self.model = model


@pytest.mark.asyncio
async def test_an_exhausted_budget_launches_nothing_on_resume(store):
    from waypoint.testing import ScriptedModel
    graph, model = chain_of_three(), ScriptedModel([_reply(100) for _ in range(3)])
    handle = await wp.start(graph, store=store, deps=Deps(model), budget=wp.Budget(tokens=150),
                            run_id="r")
    with pytest.raises(wp.BudgetExceededError, match=r"used 200 tokens \(budget 150\) after node 'b'"):
        await handle.result()

    again = await wp.resume(graph, "r", store=store, deps=Deps(model), budget=wp.Budget(tokens=150))
    with pytest.raises(wp.BudgetExceededError) as caught:
        await again.result()
    assert "used 200 tokens (budget 150)" in str(caught.value)
    assert "resume(graph, 'r', budget=Budget(tokens=400))" in str(caught.value)
    assert len(model.requests) == 2  # c did not run
    assert (await store.get_run("r")).status == "failed"

    done = await (await wp.resume(graph, "r", store=store, deps=Deps(model),
                                  budget=wp.Budget(tokens=400))).result()
    assert done.status == "done" and len(model.requests) == 3


@pytest.mark.asyncio
async def test_a_run_exactly_at_its_budget_launches_nothing_more(store):
    from waypoint.testing import ScriptedModel
    graph, model = chain_of_three(), ScriptedModel([_reply(100) for _ in range(3)])
    handle = await wp.start(graph, store=store, deps=Deps(model), budget=wp.Budget(tokens=200))
    with pytest.raises(wp.BudgetExceededError, match=r"used 200 tokens \(budget 200\) after node 'b'"):
        await handle.result()
    assert len(model.requests) == 2
