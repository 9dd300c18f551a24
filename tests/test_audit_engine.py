"""Engine correctness bugs found by the audit of issue 10 (items 2, 3, 4, 5, 8, 14), one test each or more."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Annotated

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


# -- item 4: what a failed activation spent is recorded and counts ---------------------------

class Invoice(BaseModel):
    total: float


class Extracted(BaseModel):
    invoice: Invoice | None = None


def never_valid() -> wp.Graph:
    g = wp.GraphBuilder(Extracted, name="never_valid")
    g.add(wp.llm("extract", prompt="go", output=Invoice, into="invoice"))
    g.edge(wp.START, "extract")
    g.edge("extract", wp.END)
    return g.compile()


def _bad(tokens: int):
    from waypoint.nodes.model import ModelResponse
    return ModelResponse("not json", [], {"input_tokens": 0, "output_tokens": tokens}, "stop")


@pytest.mark.asyncio
async def test_a_failed_llm_activation_records_its_usage_and_the_budget_trips(sqlite_store, tmp_path):
    from waypoint.testing import ScriptedModel
    store, graph = sqlite_store, never_valid()
    model = ScriptedModel([_bad(50) for _ in range(12)])
    budget = wp.Budget(tokens=200)
    first = await wp.start(graph, store=store, deps=Deps(model), budget=budget, run_id="r")
    with pytest.raises(wp.NodeError, match="does not fit Invoice"):
        await first.result()
    [fail] = [s for s in await store.history("r") if s.kind == "fail"]
    assert fail.extra["usage"] == {"output_tokens": 150, "calls": 3}

    second = await wp.resume(graph, "r", store=store, deps=Deps(model), budget=budget)
    with pytest.raises(wp.NodeError):
        await second.result()  # 150 spent, under 200: it may try once more, and spends 300
    third = await wp.resume(graph, "r", store=store, deps=Deps(model), budget=budget)
    with pytest.raises(wp.BudgetExceededError, match=r"used 300 tokens \(budget 200\)"):
        await third.result()
    assert len(model.requests) == 6

    await store.close()
    env = {"PYTHONWARNINGS": "error", "PATH": ""}
    shown = subprocess.run([sys.executable, "-m", "waypoint.cli", "show", "r", "--db", str(store.path)],
                           capture_output=True, text=True, timeout=60, env=env)
    assert '"output_tokens": 150, "calls": 3' in shown.stdout, shown.stdout + shown.stderr


class Cost(BaseModel):
    n: int = 0


@pytest.mark.asyncio
async def test_what_a_retried_attempt_spent_counts_in_the_done_step(store):
    g = wp.GraphBuilder(Cost, name="retried")
    attempts = []

    def pay(state: Cost, ctx: wp.NodeContext) -> dict:
        ctx.record["usage"] = {"input_tokens": 10, "calls": 1}
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("flaky provider")
        return {"n": 1}

    g.node(pay, name="pay", writes=["n"], retry=wp.RetryPolicy(attempts=2, backoff=0, jitter=False))
    g.edge(wp.START, "pay")
    g.edge("pay", wp.END)
    done = await (await wp.start(g.compile(), store=store, run_id="r")).result()
    assert done.status == "done" and attempts == [1, 2]
    [step] = [s for s in await store.history("r") if s.node == "pay"]
    assert step.extra["usage"] == {"input_tokens": 20, "calls": 2}


@pytest.mark.asyncio
async def test_a_failed_llm_node_does_not_count_its_kept_tool_turn_twice(store):
    from waypoint.nodes.model import ModelResponse
    from waypoint.testing import ScriptedModel, tool_call

    def lookup(customer: str) -> str:
        """Find a customer."""
        return "found"

    g = wp.GraphBuilder(Extracted, name="turns")
    g.add(wp.llm("extract", prompt="go", output=Invoice, into="invoice", tools=[lookup]))
    g.edge(wp.START, "extract")
    g.edge("extract", wp.END)
    graph = g.compile()
    call = ModelResponse(None, [tool_call("lookup", {"customer": "c"})],
                         {"input_tokens": 0, "output_tokens": 10}, "tool_calls")
    model = ScriptedModel([call, *[_bad(50) for _ in range(3)]])
    with pytest.raises(wp.NodeError):
        await (await wp.start(graph, store=store, deps=Deps(model), run_id="r")).result()
    [fail] = [s for s in await store.history("r") if s.kind == "fail"]
    assert fail.extra["usage"] == {"output_tokens": 150, "calls": 3}  # the kept turn is not in it

    good = ModelResponse('{"total": 1}', [], {"input_tokens": 0, "output_tokens": 20}, "stop")
    done = await (await wp.resume(graph, "r", store=store, deps=Deps(ScriptedModel([good])))).result()
    assert done.status == "done"
    steps = await store.history("r")
    [finished] = [s for s in steps if s.kind == "done" and s.node == "extract"]
    assert finished.extra["usage"]["output_tokens"] == 30  # the kept turn's 10, restored, and 20
    assert finished.extra["usage"]["tool_calls"] == 1


# -- item 5: an unannotated fan-out router into a loop guard; issue 11: the join to write ----

class Loop(BaseModel):
    n: int = 0


def _split(state):  # no return annotation: it may return several labels, and does
    return ["x", "y"]


def fan_into_guard(*, joined: bool) -> wp.GraphBuilder:
    g = wp.GraphBuilder(Loop, name="fan_loop")
    g.loop_guard("again", max_iterations=2, routes={"continue": "split", "exhausted": wp.END})
    g.router(_split, name="split", routes={"x": "left", "y": "right"})
    g.node(lambda s: None, name="left", writes=[])
    g.node(lambda s: None, name="right", writes=[])
    g.edge(wp.START, "again")
    if joined:  # what the error says to write
        g.join("again_merge")
        g.edge(["left", "right"], "again_merge")
        g.edge("again_merge", "again")
    else:
        g.edge(["left", "right"], "again")
    return g


def test_an_unannotated_fan_out_router_into_a_loop_guard_is_refused_with_the_join_to_write():
    with pytest.raises(wp.GraphError) as caught:
        fan_into_guard(joined=False).compile()
    msg = str(caught.value)
    assert "loop guard 'again' can be reached by 2 branches at once (from fork 'split'" in msg
    assert "router 'split' has no return annotation" in msg and "-> Literal[...]" in msg
    assert ("g.join('again_merge'), g.edge(['left', 'right'], 'again_merge') and "
            "g.edge('again_merge', 'again')") in msg


@pytest.mark.asyncio
async def test_the_advised_join_compiles_and_runs_stay_within_the_stated_bound(store):
    graph = fan_into_guard(joined=True).compile()
    done = await (await wp.start(graph, store=store, run_id="r")).result()
    executions = [s for s in await store.history("r") if s.kind == "done"]
    assert done.status == "done" and len(executions) <= graph.max_steps
    assert [s.node for s in executions].count("split") == 2  # the cap holds


def test_assert_terminates_agrees_with_compile_on_the_joined_graph():
    from waypoint.testing.termination import assert_terminates
    assert_terminates(fan_into_guard(joined=True).compile(), runs=25)


# -- item 14: compiling a wide fan-out is near-linear ----------------------------------------

class Wide(BaseModel):
    done: Annotated[list[str], wp.append] = []
    last: str = ""


def wide_fan_out(k: int, last_value_writers: int) -> wp.GraphBuilder:
    g = wp.GraphBuilder(Wide, name=f"wide{k}")
    names = [f"b{i}" for i in range(k)]
    for i, name in enumerate(names):
        g.node(lambda s: None, name=name, writes=["last"] if i < last_value_writers else ["done"])
    g.join("merge")
    g.edge(wp.START, names)
    g.edge(names, "merge")
    g.edge("merge", wp.END)
    return g


@pytest.mark.parametrize("writers", [0, 2])
def test_the_parallel_writes_check_compares_only_nodes_that_write_last_value_fields(monkeypatch, writers):
    from waypoint.graphs import _checks_forks
    compared = []
    clash = _checks_forks._clash
    monkeypatch.setattr(_checks_forks, "_clash", lambda a, b, *rest: compared.append((a, b)) or clash(a, b, *rest))
    g = wide_fan_out(2000, writers)
    if writers:
        with pytest.raises(wp.GraphError, match="nodes 'b0' and 'b1' can run at the same time"):
            g.compile()
    else:
        assert g.compile().max_steps == 2000 + 1
    assert len(compared) == writers * (writers - 1) // 2  # not 2000 * 1999 / 2


# -- item 8: the state's validators apply live, on replay and on restore alike ---------------

from pydantic import field_validator, model_validator  # noqa: E402


class Ticket(BaseModel):
    code: str = ""
    seen: Annotated[list[str], wp.append] = []

    @field_validator("code")
    @classmethod
    def tidy(cls, value: str) -> str:
        return value.strip().upper()


class Ok(BaseModel):
    ok: bool = True


def ticket_graph() -> wp.Graph:
    g = wp.GraphBuilder(Ticket, name="ticket")
    g.node(lambda s: {"code": "  ab-1 "}, name="set", writes=["code"])
    g.node(lambda s: {"seen": [s.code]}, name="look", writes=["seen"])
    g.gate("pause", Ok)
    g.node(lambda s: {"seen": [s.code]}, name="again", writes=["seen"])
    g.edge(wp.START, "set")
    g.edge("set", "look")
    g.edge("look", "pause")
    g.edge("pause", "again")
    g.edge("again", wp.END)
    return g.compile()


@pytest.mark.asyncio
async def test_field_validators_apply_to_updates_as_on_assignment(store):
    graph = ticket_graph()
    waiting = await (await wp.start(graph, store=store, run_id="r")).result()
    assert waiting.state.code == "AB-1" and waiting.state.seen == ["AB-1"]
    assert (await wp.state_at(graph, "r", 1, store=store)).code == "AB-1"  # replayed, no snapshot
    done = await (await wp.resume(graph, "r", {"ok": True}, store=store)).result()
    assert done.state.seen == ["AB-1", "AB-1"]  # the node after the pause sees what look saw


class Order(BaseModel):
    price: int = 0
    qty: int = 0
    total: int = 0

    @model_validator(mode="after")
    def totals(self) -> "Order":
        self.total = self.price * self.qty
        return self


@pytest.mark.asyncio
async def test_a_model_validator_sees_the_whole_update_at_once(store):
    g = wp.GraphBuilder(Order, name="order")
    g.node(lambda s: {"price": 3, "qty": 4}, name="fill", writes=["price", "qty"])
    g.edge(wp.START, "fill")
    g.edge("fill", wp.END)
    graph = g.compile()
    done = await (await wp.start(graph, store=store, run_id="r")).result()
    assert done.state.total == 12
    assert (await wp.state_at(graph, "r", 1, store=store)).total == 12


class Positive(BaseModel):
    n: int = 1

    @field_validator("n")
    @classmethod
    def positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("n must be positive")
        return value


@pytest.mark.asyncio
async def test_an_update_a_validator_refuses_fails_the_node_naming_the_field(store):
    g = wp.GraphBuilder(Positive, name="positive")
    g.node(lambda s: {"n": -1}, name="bad", writes=["n"])
    g.edge(wp.START, "bad")
    g.edge("bad", wp.END)
    with pytest.raises(wp.UpdateError, match=r"run 'r', node 'bad'.*n: Value error, n must be positive"):
        await (await wp.start(g.compile(), store=store, run_id="r")).result()
    assert [s.kind for s in await store.history("r")] == ["fail"]


class Stripped(BaseModel):
    model_config = {"str_strip_whitespace": True}
    code: str = ""


@pytest.mark.asyncio
async def test_the_models_config_applies_to_updates_as_on_restore(store):
    g = wp.GraphBuilder(Stripped, name="stripped")
    g.node(lambda s: {"code": "  ab-1 "}, name="set", writes=["code"])
    g.edge(wp.START, "set")
    g.edge("set", wp.END)
    graph = g.compile()
    done = await (await wp.start(graph, store=store, run_id="r")).result()
    restored = Stripped.model_validate(done.state.model_dump(mode="json"))
    assert done.state.code == restored.code == "ab-1"


def test_a_node_two_branches_reach_names_the_join_to_write():
    g = wp.GraphBuilder(Wide, name="twice")
    g.node(lambda s: None, name="a", writes=[])
    g.node(lambda s: None, name="b", writes=[])
    g.node(lambda s: {"last": "x"}, name="c", writes=["last"])
    g.edge(wp.START, ["a", "b"])
    g.edge(["a", "b"], "c")
    g.edge("c", wp.END)
    with pytest.raises(wp.GraphError) as caught:
        g.compile()
    assert ("merge the branches with a join before 'c': g.join('c_merge'), g.edge(['a', 'b'], 'c_merge') "
            "and g.edge('c_merge', 'c')") in str(caught.value)
