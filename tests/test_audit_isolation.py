"""Isolation between runs and views that agree (audit, issue 10 items 6, 7, 9, 10).

A user's run id never becomes a subgraph's child run; a run's approval log holds
its own answers and its children's only; `state_at` on a fork reads the steps it
shares with its source; `tick` handles each run on its own, reading deadlines
from the one replay of the log.
"""

from __future__ import annotations

import time
from typing import Annotated

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, append, fork, resume, start, state_at
from waypoint.engine import _lease
from waypoint.engine._ids import check_user_run_id, child_run_id
from waypoint.engine.gates import approval_log, due_gates, tick
from waypoint.engine._create import create_run_record
from waypoint.errors import GraphChangedError, LeaseError, RunError, RunStateError

pytestmark = pytest.mark.asyncio


class Ok(BaseModel):
    ok: bool


class Doc(BaseModel):
    log: Annotated[list[str], append] = []
    ok: bool = False


def gate_graph(name: str = "inner", deadline: float | None = None):
    g = GraphBuilder(Doc, name=name)
    g.gate("approve", Ok, into=None, on_answer=lambda s, a: {"ok": a.ok, "log": [f"{name}:{a.ok}"]},
           **({"deadline": deadline, "escalate": "late"} if deadline is not None else {}))
    if deadline is not None:
        g.node(lambda s: {"log": ["late"]}, name="late")
        g.edge("late", END)
    g.edge(START, "approve")
    g.edge("approve", END)
    return g.compile()


def wrap(name: str, inner):
    """A graph whose only node is subgraph `sub` running `inner`."""
    g = GraphBuilder(Doc, name=name)
    g.subgraph("sub", inner)
    g.edge(START, "sub")
    g.edge("sub", END)
    return g.compile()


def chain():
    g = GraphBuilder(Doc, name="chain")
    for name in ("a", "b", "c"):
        g.node(lambda s, n=name: {"log": [n]}, name=name)
    g.edge(START, "a")
    g.edge("a", "b")
    g.edge("b", "c")
    g.edge("c", END)
    return g.compile()


# -- item 6: child run ids are out of users' reach --------------------------------

async def test_user_run_ids_may_use_slashes_but_never_look_like_a_child_run():
    for fine in ("tenant/42", "order-7", "v1.2", "a/b.c", "team/1.2.3", "x/1.0a"):
        assert check_user_run_id(fine) == fine
    for child in (child_run_id("acme", "0.0"), child_run_id("acme", "12.3", "item1"),
                  child_run_id("t/42", "1.0", "search.0.ab12")):
        with pytest.raises(RunError, match="reserves for child runs") as caught:
            check_user_run_id(child)
        suggestion = str(caught.value).rsplit("e.g. ", 1)[1].strip("'.")
        assert check_user_run_id(suggestion) == suggestion  # the id it suggests is accepted
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(RunError, match="cannot be empty or blank"):
            check_user_run_id(blank)
    with pytest.raises(RunError, match="is a string"):
        check_user_run_id(42)


async def _user_run_named_like_a_child(store, graph, run_id: str) -> list:
    """A waiting user run under a child-shaped id, as a database from before the check holds."""
    owner = await create_run_record(store, graph, run_id, graph.schema.initial(None))
    await store.release(run_id, owner, "failed")  # resumable
    waiting = await (await resume(graph, run_id, store=store)).result()
    assert waiting.status == "waiting"
    return await store.history(run_id)


@pytest.mark.parametrize("same_child_graph", [True, False])
async def test_a_subgraph_never_adopts_a_user_run_under_its_child_id(store, same_child_graph):
    users = gate_graph("inner" if same_child_graph else "users")
    before = await _user_run_named_like_a_child(store, users, "acme/0.0")
    parent = wrap("outer", gate_graph("inner"))
    failed = await (await start(parent, run_id="acme", store=store)).result(raise_on_failure=False)
    assert failed.status == "failed" and isinstance(failed.error, RunStateError)
    message = str(failed.error)
    assert "'acme'" in message and "'sub'" in message and "is not its child" in message
    assert "parent None" in message and "left untouched" in message
    user = await store.get_run("acme/0.0")  # the user's run: as it was, not leased, not answered
    assert (user.status, user.lease_owner, user.waiting) == ("waiting", None, ["approve"])
    assert await store.history("acme/0.0") == before


async def test_a_fork_refuses_a_new_id_shaped_like_a_child_run(store):
    graph = chain()
    done = await (await start(graph, store=store)).result()
    with pytest.raises(RunError, match="reserves for child runs"):
        await fork(graph, done.run_id, at=1, store=store, run_id="acme/1.0")
    assert [r.run_id for r in await store.list_runs()] == [done.run_id]  # nothing written


# -- item 7: a run's approval log is its own ----------------------------------------

async def test_the_approval_log_holds_a_run_and_its_children_only(store):
    graph = wrap("outer", wrap("mid", gate_graph("inner")))  # the gate two subgraphs down
    for run_id, who in (("tenant", "ana"), ("tenant/42", "bo")):
        await (await start(graph, run_id=run_id, store=store)).result()
        done = await (await resume(graph, run_id, {"ok": True}, by=who, store=store)).result()
        assert done.status == "done"
    [own] = await approval_log("tenant", store=store)
    assert (own.run_id, own.by) == ("tenant/0.0/0.0", "ana")  # its grandchild's answer, not 42's
    [other] = await approval_log("tenant/42", store=store)
    assert (other.run_id, other.by) == ("tenant/42/0.0/0.0", "bo")
    assert len(await approval_log(store=store)) == 2


# -- item 9: state_at on a fork before its fork point ------------------------------

async def test_state_at_on_a_fork_reads_the_steps_it_shares_with_its_source(store):
    graph = chain()
    source = await (await start(graph, store=store)).result()
    forked = await (await fork(graph, source.run_id, at=2, store=store)).result()
    again = await (await fork(graph, forked.run_id, at=3, store=store)).result()
    for run in (forked, again):
        assert (await state_at(graph, run.run_id, 0, store=store)).log == []
        assert (await state_at(graph, run.run_id, 1, store=store)).log == ["a"]
        assert (await state_at(graph, run.run_id, 2, store=store)).log == ["a", "b"]
        assert (await state_at(graph, run.run_id, 3, store=store)).log == ["a", "b", "c"]
    early = await (await fork(graph, again.run_id, at=1, store=store)).result()  # a fork of a fork, earlier
    assert early.state.log == ["a", "b", "c"]
    assert (await state_at(graph, early.run_id, 1, store=store)).log == ["a"]


# -- item 10: tick handles each run on its own ---------------------------------------

async def _due_runs(store, n: int) -> list[str]:
    graph = gate_graph("deadline", deadline=0.0)
    return [(await (await start(graph, store=store)).result()).run_id for _ in range(n)]


async def test_tick_skips_a_run_whose_graph_changed_and_escalates_the_rest(store):
    graph = gate_graph("deadline", deadline=0.0)
    changed = await _due_runs(store, 1)
    g = GraphBuilder(Doc, name="deadline")  # same name, another shape
    g.node(lambda s: None, name="other", writes=[])
    g.edge(START, "other")
    g.edge("other", END)
    reshaped = g.compile()
    [fine] = await _due_runs(store, 1)
    swept = await tick(graph_for=lambda info: reshaped if info.run_id == changed[0] else graph, store=store)
    assert [(r.run_id, r.state.log) for r in swept] == [(fine, ["late"])]
    [skipped] = swept.skipped
    assert skipped.run_id == changed[0] and isinstance(skipped.error, GraphChangedError)
    assert changed[0] in skipped.reason and "allow_graph_change" in skipped.reason
    assert (await store.get_run(changed[0])).status == "waiting"


class _LosesTheRace:
    """A store whose listing of waiting runs is followed, before tick acts, by another
    process claiming `stolen`: the loser's view of two concurrent ticks."""

    def __init__(self, store, stolen: str) -> None:
        self.store, self.stolen = store, stolen

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def list_runs(self, **filters):
        runs = await self.store.list_runs(**filters)
        await self.store.claim(self.stolen, _lease.new_owner(), _lease.LEASE_TTL)
        return runs


async def test_tick_that_loses_a_run_to_another_tick_goes_on_with_the_rest(store):
    graph = gate_graph("deadline", deadline=0.0)
    first, second = await _due_runs(store, 2)
    swept = await tick(graph_for=lambda info: graph, store=_LosesTheRace(store, first))
    assert [r.run_id for r in swept] == [second] and swept[0].state.log == ["late"]
    [skipped] = swept.skipped
    assert skipped.run_id == first and isinstance(skipped.error, LeaseError)


async def test_due_gates_agrees_with_replay_after_a_subgraph_failed_past_its_answer(store):
    def boom(state: Doc) -> dict:
        raise ValueError("the step after the answer failed")

    inner = GraphBuilder(Doc, name="inner_failing")
    inner.gate("approve", Ok, into=None, on_answer=lambda s, a: {"ok": a.ok},
               deadline=3600.0, escalate="late")
    inner.node(boom)
    inner.node(lambda s: {"log": ["late"]}, name="late")
    inner.edge(START, "approve")
    inner.edge("approve", "boom")
    inner.edge("boom", END)
    inner.edge("late", END)
    graph = wrap("outer", inner.compile())
    run_id = (await (await start(graph, store=store)).result()).run_id
    later = time.time() + 7200
    assert await due_gates(run_id, later, store=store) == ["0.0"]
    failed = await (await resume(graph, run_id, {"ok": True}, store=store)).result(raise_on_failure=False)
    assert failed.status == "failed"
    # The fail step dropped the subgraph's wait (it runs again on resume): nothing is due.
    assert await due_gates(run_id, later, store=store) == []


async def test_waypoint_tick_leaves_alone_a_waiting_run_it_has_no_graph_for_when_nothing_is_due(tmp_path):
    import textwrap

    from tests.test_cli import wp
    from tests.test_cli_ops import FLOW, run_id_of
    from waypoint import SQLiteStore

    db = str(tmp_path / "runs.db")
    store = SQLiteStore(db)  # a run started from Python: no graph reference, no deadline
    quiet = (await (await start(gate_graph("python_made"), store=store)).result()).run_id
    await store.close()
    (tmp_path / "due.py").write_text(textwrap.dedent(FLOW.format(deadline=0.0)))
    due = run_id_of(wp("run", f"{tmp_path / 'due.py'}:graph", "--db", db).stdout)
    swept = wp("tick", "--db", db)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert f"{due}  waiting  waiting: manager" in swept.stdout and quiet not in swept.stdout
    assert "1 run(s) resumed, 0 skipped" in swept.stdout
