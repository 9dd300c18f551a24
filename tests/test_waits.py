"""engine/waits.py: gate addresses, finding gates, the pause decision, and the runner's explicit I/O."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic import BaseModel
from waypoint import END, START, GateError, GraphBuilder
from waypoint.engine._frontier import Activation, Frontier
from waypoint.engine._messages import Done, Failed
from waypoint.engine._nodes import NodeRunner
from waypoint.engine.events import EventBus
from waypoint.engine.waits import (
    RUN,
    Answer,
    GateAddress,
    Go,
    Pause,
    at_launch,
    child_prefix,
    find_gate,
    take_answers,
    waiting_children,
    waiting_gates,
)


class Ok(BaseModel):
    ok: bool


class S(BaseModel):
    n: int = 0
    ok: bool = False
    cities: list[str] = []
    done: list[dict] = []


def _inner():
    g = GraphBuilder(S, name="inner")
    g.gate("confirm", Ok, prompt="sure?", on_answer=lambda s, a: {"ok": a.ok})
    g.edge(START, "confirm")
    g.edge("confirm", END)
    return g.compile()


def _outer():
    g = GraphBuilder(S, name="outer")
    g.gate("review", Ok, prompt="ok?", on_answer=lambda s, a: {"ok": a.ok})
    g.subgraph("sub", _inner())
    g.map("book", _inner(), over="cities", into="done", input=lambda city: {}, output=lambda f: {})
    g.edge(START, "review")
    g.edge("review", "sub")
    g.edge("sub", "book")
    g.edge("book", END)
    return g.compile()


@pytest.mark.parametrize("text, node, index, inner", [
    ("review", "review", None, None),
    ("sub/review", "sub", None, "review"),
    ("book[3]/confirm", "book", 3, "confirm"),
    ("a/b[12]/c", "a", None, "b[12]/c"),
    ("x[1]", "x[1]", None, None),  # alone, a node's own name: only a child run has an item index
])
def test_an_address_parses_into_its_parts_and_prints_back(text, node, index, inner):
    address = GateAddress.parse(text)
    assert (address.node, address.index) == (node, index)
    assert (None if address.inner is None else str(address.inner)) == inner
    assert str(address) == text


def test_prefixes_and_waiting_children_use_the_one_format():
    assert child_prefix("sub") == "sub/" and child_prefix("book", 3) == "book[3]/"
    request = {"items": [{"index": 0, "child": "r/1.0/item0"}, {"index": 2, "child": "r/1.0/item2"}]}
    assert [p for p, _ in waiting_children("book", request)] == ["book[0]/", "book[2]/"]
    assert waiting_children("sub", {"child": "r/2.0"})[0][0] == "sub/"


def test_find_gate_follows_an_address_into_subgraphs_and_map_items():
    graph = _outer()
    assert find_gate(graph, "review").name == "review"
    assert find_gate(graph, "sub/confirm").name == "confirm"
    assert find_gate(graph, "book[3]/confirm").name == "confirm"
    for missing in ("nope", "sub/nope", "sub[1]/confirm", "review/confirm", "sub"):
        with pytest.raises(GateError, match=re.escape(f"has no gate '{missing}'")):
            find_gate(graph, missing)


def test_at_launch_pauses_a_gate_reached_now_and_holds_one_still_waiting():
    graph, frontier = _outer(), Frontier()
    act = Activation("0.0", "review", START)
    pause = at_launch(graph.nodes["review"], act, frontier, {}, S(), now=100.0)
    assert isinstance(pause, Pause) and pause.request["prompt"] == "ok?"
    frontier.waits[act.id] = pause.request
    assert at_launch(graph.nodes["review"], act, frontier, {}, S(), now=100.0) is None


def test_at_launch_gives_a_gate_its_answer_and_a_child_the_answers_inside_it():
    graph, frontier = _outer(), Frontier()
    frontier.waits["0.0"] = {"prompt": "ok?"}
    frontier.waits["2.0"] = {"child": "r/2.0", "gates": ["sub/confirm"], "child_seq": 1}
    answers = {"review": Answer(Ok(ok=True)), "sub/confirm": Answer(Ok(ok=False)),
               "other": Answer(Ok(ok=True))}
    gate = at_launch(graph.nodes["review"], Activation("0.0", "review", START), frontier, answers, S(), None)
    assert isinstance(gate, Go) and gate.answer is not None and gate.answer.value.ok
    sub = at_launch(graph.nodes["sub"], Activation("2.0", "sub", "review"), frontier, answers, S(), None)
    assert isinstance(sub, Go) and list(sub.answers or {}) == ["sub/confirm"]
    assert list(answers) == ["other"]  # taken by whom they reach; the rest stay
    assert list(take_answers(sub.answers, "sub/")) == ["confirm"]
    plain = at_launch(graph.nodes["book"], Activation("3.0", "book", "sub"), frontier, {}, S(), None)
    assert plain is RUN


def test_waiting_gates_lists_a_gates_own_name_and_the_gates_inside_children():
    frontier = Frontier()
    frontier.pending = {"1.0": Activation("1.0", "review", START), "2.0": Activation("2.0", "book", START)}
    frontier.waits = {"1.0": {"prompt": "?"},
                      "2.0": {"items": [], "gates": ["book[1]/confirm", "book[0]/confirm"]}}
    assert waiting_gates(frontier) == ["book[0]/confirm", "book[1]/confirm", "review"]


@pytest.mark.asyncio
async def test_the_runner_reports_through_send_alone():
    """Explicit I/O: a NodeRunner runs an activation with no RunLoop at all."""
    g = GraphBuilder(S, name="one")
    g.node(lambda s: {"n": s.n + 1}, name="inc", writes=["n"])
    g.node(lambda s: 1 / 0, name="boom", writes=[])
    g.edge(START, "inc")
    g.edge("inc", "boom")
    g.edge("boom", END)
    sent: list = []
    runner = NodeRunner(g.compile(), "r", EventBus(), send=sent.append, deps=None, max_concurrency=None,
                        now=None, done_items=lambda act_id: None, child_runs=lambda act, go: None)
    await runner.execute(Activation("0.0", "inc", START), S(n=1), 0, RUN)
    await runner.execute(Activation("1.0", "boom", "inc"), S(n=2), 1, RUN)
    assert isinstance(sent[0], Done) and sent[0].finished.outcome.update == {"n": 2}
    assert isinstance(sent[1], Failed) and "ZeroDivisionError" in str(sent[1].error)


_NO_CIRCLE = """
import importlib, sys, types
import waypoint
# waypoint.engine's __init__ loads all of the engine: stand a bare package in for it.
package = types.ModuleType("waypoint.engine")
package.__path__ = [waypoint.__path__[0] + "/engine"]
sys.modules["waypoint.engine"] = package
for name in ("_create", "_child", "_nodes", "waits"):
    importlib.import_module("waypoint.engine." + name)
print(sorted(m for m in ("waypoint.engine._loop", "waypoint.engine.runs") if m in sys.modules))
"""


def test_child_runs_and_run_creation_do_not_import_the_scheduler():
    """No import circle: creating runs, running children and nodes never load _loop or runs
    (the scheduler injects itself into child runs: `ChildRuns(make_loop=RunLoop)`)."""
    out = subprocess.run([sys.executable, "-c", _NO_CIRCLE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_kind_of_its_own_that_pauses_is_a_gate_to_the_engine():
    """The engine asks the node (`pauses`), never its kind string."""
    from waypoint.nodes.gate import GateNode

    class Signoff(GateNode):  # a kind of its own name, which the engine never heard of
        kind = "test_signoff"

    node = Signoff(name="ask", answer=Ok, prompt="sign?")
    pause = at_launch(node, Activation("0.0", "ask", START), Frontier(), {}, S(), now=None)
    assert isinstance(pause, Pause) and pause.request["prompt"] == "sign?"


def test_the_engine_compares_no_node_kind_strings():
    """Only step and event kinds are compared in waypoint/engine ('done', 'wait'...)."""
    import ast
    import pathlib

    import waypoint.engine

    found = []
    for path in pathlib.Path(waypoint.engine.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if (isinstance(side, ast.Attribute) and side.attr == "kind"
                            and not (isinstance(side.value, ast.Name)
                                     and side.value.id in ("step", "s", "event"))):
                        found.append(f"{path.name}:{node.lineno}")
    assert found == []


@pytest.mark.asyncio
async def test_drawings_read_the_log_as_replay_does():
    """marks follow the log with Frontier.advance: what waits on the drawing is what replay waits on."""
    import waypoint as wp
    from waypoint.engine.views import replay

    g = GraphBuilder(S, name="drawn")
    g.node(lambda s: {"n": 1}, name="first", writes=["n"])
    g.gate("review", Ok, prompt="ok?", on_answer=lambda s, a: {"ok": a.ok})
    g.gate("legal", Ok, prompt="legal?", on_answer=lambda s, a: {})
    g.join("publish", lambda s: 1 / 0 if s.ok else {})
    g.edge(START, "first")
    g.edge("first", ["review", "legal"])
    g.edge(["review", "legal"], "publish")
    g.edge("publish", END)
    graph, store = g.compile(), wp.MemoryStore()

    async def agree(run_id: str) -> dict[str, str]:
        marks = await wp.run_marks(graph, run_id, store=store)
        _, frontier, _ = await replay(graph, run_id, store=store)
        waiting = {frontier.pending[act].node for act in frontier.waits}
        assert {n for n, s in marks.status.items() if s == "waiting"} == waiting
        return marks.status

    first = await (await wp.start(graph, store=store, run_id="d")).result()
    status = await agree(first.run_id)
    assert status["first"] == "done" and status["publish"] == "not_reached"
    await (await wp.resume(graph, "d", {"ok": True}, gate="review", store=store)).result()
    assert (await agree("d"))["review"] == "done"
    failed = await (await wp.resume(graph, "d", {"ok": True}, gate="legal", store=store)).result(
        raise_on_failure=False)
    assert failed.status == "failed" and (await agree("d"))["publish"] == "failed"
