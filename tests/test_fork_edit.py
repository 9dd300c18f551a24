"""Editing state on fork (issue 11): `fork(..., update={...}, by=...)`.

The edit is validated against the state model before anything is written, and
is the fork's first own step (kind "edit"), so replay, `state_at`, resumes and
`waypoint show` all see it.
"""

from __future__ import annotations

import importlib.util
import textwrap
import time
from typing import Annotated

import pytest
from pydantic import BaseModel, model_validator

from tests.test_cli import wp
from waypoint import END, START, GraphBuilder, SQLiteStore, append, fork, resume, start, state_at
from waypoint.engine.edits import edit_step
from waypoint.errors import UpdateError

pytestmark = pytest.mark.asyncio


class Ok(BaseModel):
    ok: bool


class Doc(BaseModel):
    log: Annotated[list[str], append] = []
    topic: str = "tides"
    size: int = 1


def chain():
    g = GraphBuilder(Doc, name="chain")
    g.node(lambda s: {"log": [f"a:{s.topic}"]}, name="a")
    g.node(lambda s: {"log": [f"b:{s.topic}"]}, name="b")
    g.node(lambda s: {"log": [f"c:{s.topic}:{s.size}"]}, name="c")
    g.edge(START, "a")
    g.edge("a", "b")
    g.edge("b", "c")
    g.edge("c", END)
    return g.compile()


async def test_a_fork_with_an_update_runs_on_from_the_edited_state_and_records_who(store):
    graph = chain()
    source = await (await start(graph, store=store)).result()
    before = time.time()
    forked = await (await fork(graph, source.run_id, at=2, store=store, by="ana",
                               update={"topic": "waves", "size": "3", "log": ["edited"]})).result()
    assert forked.state.log == ["a:tides", "b:tides", "edited", "c:waves:3"]  # log merged by append
    first, after = await store.history(forked.run_id)
    assert (first.seq, first.kind, first.node, first.extra) == (3, "edit", "-", {"by": "ana"})
    assert first.delta == {"topic": "waves", "size": 3, "log": ["edited"]}  # validated: "3" -> 3
    assert before <= first.at <= time.time() and after.node == "c"
    assert (await state_at(graph, forked.run_id, 2, store=store)).topic == "tides"  # from the source
    edited = await state_at(graph, forked.run_id, 3, store=store)
    assert (edited.topic, edited.size, edited.log) == ("waves", 3, ["a:tides", "b:tides", "edited"])
    assert (await state_at(graph, source.run_id, store=store)).log == source.state.log  # source untouched


@pytest.mark.parametrize("update, names", [
    ({"topik": "waves"}, ["'topik'", "unknown field", "'topic'"]),
    ({"size": "big"}, ["field 'size'", "'big'", "Doc.size", "integer"]),
    ({"log": "not a list"}, ["field 'log'", "Doc.log"]),
    ({}, ["non-empty dict"]),
])
async def test_a_bad_update_names_the_field_and_writes_nothing(store, update, names):
    graph = chain()
    source = await (await start(graph, store=store)).result()
    with pytest.raises(UpdateError) as caught:
        await fork(graph, source.run_id, at=1, store=store, update=update)
    message = str(caught.value)
    assert f"fork of run {source.run_id!r} at step 1" in message
    for name in names:
        assert name in message
    assert [r.run_id for r in await store.list_runs()] == [source.run_id]  # no fork, no child


class Range(BaseModel):
    low: int = 0
    high: int = 10

    @model_validator(mode="after")
    def ordered(self) -> "Range":
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


async def test_an_update_the_state_validators_refuse_is_refused_before_anything_is_written(store):
    g = GraphBuilder(Range, name="range")
    g.node(lambda s: {"high": s.high + 1}, name="grow")
    g.edge(START, "grow")
    g.edge("grow", END)
    graph = g.compile()
    source = await (await start(graph, store=store)).result()
    with pytest.raises(UpdateError, match="low must not exceed high") as caught:
        await fork(graph, source.run_id, at=0, store=store, update={"low": 20})
    assert f"fork of run {source.run_id!r} at step 0" in str(caught.value)
    assert [r.run_id for r in await store.list_runs()] == [source.run_id]
    fine = await (await fork(graph, source.run_id, at=0, store=store, update={"low": 5})).result()
    assert (fine.state.low, fine.state.high) == (5, 11)


async def test_an_edit_made_at_a_gate_is_kept_through_the_answer(store):
    g = GraphBuilder(Doc, name="gated")
    g.node(lambda s: {"log": ["draft"]}, name="draft")
    g.gate("review", Ok, on_answer=lambda s, a: {"log": [f"review:{s.topic}:{a.ok}"]})
    g.node(lambda s: {"log": [f"publish:{s.topic}"]}, name="publish")
    g.edge(START, "draft")
    g.edge("draft", "review")
    g.edge("review", "publish")
    g.edge("publish", END)
    graph = g.compile()
    waiting = await (await start(graph, store=store)).result()
    last = (await store.get_run(waiting.run_id)).last_seq
    forked = await (await fork(graph, waiting.run_id, at=last, store=store,
                               update={"topic": "currents"}, by="bo")).result()
    assert forked.status == "waiting" and forked.waiting == ["review"]
    done = await (await resume(graph, forked.run_id, {"ok": True}, store=store)).result()
    assert done.state.log == ["draft", "review:currents:True", "publish:currents"]


async def test_edit_step_is_the_reusable_piece():
    graph = chain()
    step = edit_step(graph, {"size": 7}, seq=5, by="lead", where="run 'x'")
    assert (step.kind, step.seq, step.delta, step.extra) == ("edit", 5, {"size": 7}, {"by": "lead"})
    with pytest.raises(UpdateError, match=r"run 'x': update= names unknown field\(s\) \['nope'\]"):
        edit_step(graph, {"nope": 1}, seq=5, where="run 'x'")


FLOW = '''
from typing import Annotated
from pydantic import BaseModel, model_validator
import waypoint as wp

class Doc(BaseModel):
    log: Annotated[list[str], wp.append] = []
    topic: str = "tides"

g = wp.GraphBuilder(Doc, name="flow")
g.node(lambda s: {"log": ["a:" + s.topic]}, name="a")
g.node(lambda s: {"log": ["b:" + s.topic]}, name="b")
g.edge(wp.START, "a")
g.edge("a", "b")
g.edge("b", wp.END)
graph = g.compile()
'''


async def test_waypoint_show_lists_the_edit_and_who_made_it(tmp_path):
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    db = str(tmp_path / "runs.db")
    ran = wp("run", f"{tmp_path / 'flow.py'}:graph", "--db", db)
    assert ran.returncode == 0, ran.stderr
    spec = importlib.util.spec_from_file_location("flow_for_edit", tmp_path / "flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = SQLiteStore(db)
    [source] = await store.list_runs()
    forked = await (await fork(module.graph, source.run_id, at=1, store=store,
                               update={"topic": "waves"}, by="ana")).result()
    await store.close()
    assert forked.state.log == ["a:tides", "b:waves"]
    shown = wp("show", forked.run_id, "--db", db)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if " edit " in line]
    assert "topic" in line and "waves" in line and "ana" in line
