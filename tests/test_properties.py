"""Property tests: random graphs are rejected or end within their bound whatever their routers
choose; runs crashed at arbitrary points and resumed end in the state of uninterrupted ones."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule
from pydantic import BaseModel

import waypoint
from waypoint import END, START, GraphBuilder, GraphError, MemoryStore, append, resume, start, state_at
from waypoint.testing.strategies import Choices, describe, random_graphs, router_choices
from waypoint.testing.termination import assert_terminates, check_terminates, run_driven

FAST = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- random graphs ----------------------------------------------------------------------
@settings(FAST, max_examples=300)
@given(data=st.data())
def test_random_graphs_are_rejected_or_end_within_their_bound(data):
    builder = data.draw(random_graphs())
    note(describe(builder))
    try:
        graph = builder.compile()
    except GraphError as exc:
        assert exc.problems and all(p.endswith((".", ")")) for p in exc.problems)  # type: ignore[attr-defined]
        return
    check_terminates(graph, data.draw(router_choices(graph)), timeout=10)


def test_random_graphs_are_valid_often_enough_to_test_something():
    compiled = []

    @settings(FAST, max_examples=100)
    @given(random_graphs())
    def collect(builder):
        try:
            compiled.append(builder.compile().max_steps is not None or True)
        except GraphError:
            compiled.append(False)

    collect()
    assert 0.2 < sum(compiled) / len(compiled) < 0.8


# -- assert_terminates on users' graphs -----------------------------------------------------
class Essay(BaseModel):
    topic: str = ""
    drafts: Annotated[list[str], append] = []
    verdict: str = ""
    approved: bool = False


class Approval(BaseModel):
    approved: bool


class Inner(BaseModel):
    drafts: Annotated[list[str], append] = []


def inner_loop() -> waypoint.Graph:
    g = GraphBuilder(Inner, name="inner")
    g.node(lambda s: {"drafts": ["inner"]}, name="write")

    @g.router(routes={"again": "enough", "stop": END})
    def judge(state: Inner) -> Literal["again", "stop"]:
        return "stop"

    g.loop_guard("enough", max_iterations=2, until=lambda s: len(s.drafts) > 5,
                 routes={"continue": "write", "done": END})
    g.edge(START, "write")
    g.edge("write", "judge")
    return g.compile()


def essay_graph() -> waypoint.Graph:
    g = GraphBuilder(Essay, name="essay")
    g.node(lambda s: {"drafts": [s.topic]}, name="draft")
    g.subgraph("polish", inner_loop())
    g.add(waypoint.llm_router("critic", labels=["good", "bad"], fallback="unsure", prompt="{drafts}",
                              into="verdict"),
          routes={"good": "approve", "bad": "again", "unsure": "approve"})
    g.loop_guard("again", max_iterations=2, routes={"continue": "draft", "done": END})
    g.gate("approve", Approval, on_answer=lambda s, a: {"approved": a.approved})
    g.edge(START, "draft")
    g.edge("draft", "polish")
    g.edge("polish", "critic")
    g.edge("approve", END)
    return g.compile()


def test_router_choices_name_every_decision_including_those_in_subgraphs():
    graph = essay_graph()
    seen = []

    @settings(FAST, max_examples=5)
    @given(router_choices(graph))
    def collect(choices: Choices):
        seen.append(choices)

    collect()
    assert set(seen[0].routes) == {"polish/judge", "critic"}
    assert set(seen[0].until) == {"polish/enough"} and set(seen[0].answers) == {"approve"}
    assert set(seen[0].outputs) == {"critic"}


def test_assert_terminates_passes_for_a_graph_with_llm_nodes_subgraphs_and_gates():
    graph = essay_graph()
    # draft 3, polish 3 * (1 + inner 3 write + 3 judge + 3 guard), critic 3, again 3, approve 3
    assert graph.max_steps == 3 + 3 * 10 + 3 + 3 + 3
    assert_terminates(graph, runs=40, input={"topic": "tides"}, settings=FAST)
    assert_terminates(graph, runs=10, input=st.builds(Essay), gates="wait", settings=FAST)


def test_check_terminates_reports_the_decisions_that_overran_the_bound():
    graph = dataclasses.replace(essay_graph(), max_steps=4)
    choices = Choices(routes={"critic": ("bad", "bad", "good")}, answers={"approve": Approval(approved=True)})
    with pytest.raises(AssertionError) as info:
        check_terminates(graph, choices, input={"topic": "tides"})
    msg = str(info.value)
    assert msg.startswith("graph 'essay' ran over its bound: more than 4 node executions.\nDecisions, in order:\n")
    assert "  router 'polish/judge' -> 'again'" in msg  # the default: a router's first label

    with pytest.raises(AssertionError, match="Falsifying|ran over its bound"):
        assert_terminates(graph, runs=5, input={"topic": "tides"}, settings=FAST)


def test_a_run_that_never_ends_or_hangs_is_reported():
    g = GraphBuilder(Essay, name="spin")
    g.node(lambda s: {"drafts": ["x"]}, name="a")
    g.edge(START, "a")
    g.edge("a", END)
    graph = g.compile()
    spinning = dataclasses.replace(graph, edges={START: ("a",), "a": ("a",)}, max_steps=None)
    run = asyncio.run(run_driven(spinning, Choices(), limit=30))
    assert run.status == "runaway" and run.executions > 30
    with pytest.raises(AssertionError, match="did not end after 3[0-9] node executions .the graph states no bound."):
        check_terminates(spinning, Choices(), limit=30)

    async def hang(state: Essay) -> None:
        await asyncio.Event().wait()

    stuck = GraphBuilder(Essay, name="stuck")
    stuck.node(hang)
    stuck.edge(START, "hang")
    stuck.edge("hang", END)
    with pytest.raises(AssertionError, match="graph 'stuck' did not end within 0.2s, after 0 node executions"):
        check_terminates(stuck.compile(), Choices(), timeout=0.2)


@pytest.mark.asyncio
async def test_assert_terminates_works_from_inside_an_event_loop():
    assert_terminates(inner_loop(), runs=3, settings=FAST)


def test_a_join_below_another_join_fires_once():
    g = GraphBuilder(Essay, name="nested_joins")

    def step(name: str, delay: float = 0.0) -> Any:
        async def fn(state: Essay) -> dict[str, Any]:
            await asyncio.sleep(delay)
            return {"drafts": [name]}

        fn.__name__ = name
        return fn

    for name, delay in (("fork", 0), ("b", 0.05), ("c", 0.05), ("d", 0)):
        g.node(step(name, delay))
    g.join("inner", step("inner"))
    g.join("outer", step("outer"))
    g.edge(START, "fork")
    g.edge("fork", ["b", "c", "d"])  # d reaches the outer join long before b and c finish
    g.edge("b", "inner")
    g.edge("c", "inner")
    g.edge("inner", "outer")
    g.edge("d", "outer")
    g.edge("outer", END)
    result = waypoint.run_sync(g.compile())
    assert result.state.drafts.count("outer") == 1


class Listed(BaseModel):
    items: list[int] = [1, 2, 3, 4]
    out: list[int] = []


def test_a_map_never_runs_more_items_than_it_declares():
    g = GraphBuilder(Listed, name="mapper")
    g.map("each", lambda i: i, over="items", into="out", max_items=2)
    g.edge(START, "each")
    g.edge("each", END)
    assert_terminates(g.compile(), runs=1, settings=FAST)



# -- crash and resume ---------------------------------------------------------------------
class Work(BaseModel):
    log: Annotated[list[str], append] = []
    n: int = 0
    left: int = 0
    right: int = 0
    total: int = 0
    items: list[int] = [1, 2, 3, 4]
    doubled: list[int] = []
    approval: Approval | None = None


def _node(name: str, update: Any) -> Any:
    async def node(state: Work) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"log": [name], **update(state)}

    node.__name__ = name
    return node


def _graphs() -> dict[str, waypoint.Graph]:
    chain = GraphBuilder(Work, name="chain")
    for name in ("a", "b", "c"):
        chain.node(_node(name, lambda s: {"n": s.n + 1}))
    chain.edge(START, "a")
    chain.edge("a", "b")
    chain.edge("b", "c")
    chain.edge("c", END)

    fan = GraphBuilder(Work, name="fan")
    fan.node(_node("split", lambda s: {}))
    fan.node(lambda s: {"left": 1}, name="left")
    fan.node(_node("right", lambda s: {"right": 2}), name="right", writes=["right"])
    fan.join("merge", _node("merge", lambda s: {"total": s.left + s.right}))
    fan.edge(START, "split")
    fan.edge("split", ["left", "right"])
    fan.edge("left", "merge")
    fan.edge("right", "merge")
    fan.edge("merge", END)

    loop = GraphBuilder(Work, name="loop")
    loop.node(_node("work", lambda s: {"n": s.n + 1}))
    loop.loop_guard("again", max_iterations=3, until=lambda s: s.n >= 3,
                    routes={"continue": "work", "done": "finish"})
    loop.node(_node("finish", lambda s: {"total": s.n * 10}))
    loop.edge(START, "work")
    loop.edge("work", "again")
    loop.edge("finish", END)

    mapped = GraphBuilder(Work, name="map")
    mapped.node(_node("prep", lambda s: {"items": [1, 2, 3, 4, 5]}))

    async def double(item: int) -> int:
        await asyncio.sleep(0)
        return item * 2

    mapped.map("each", double, over="items", into="doubled", max_concurrency=2, max_items=5)
    mapped.edge(START, "prep")
    mapped.edge("prep", "each")
    mapped.edge("each", END)

    gated = GraphBuilder(Work, name="gate")
    gated.node(_node("ask", lambda s: {"n": 1}))
    gated.gate("approve", Approval, into="approval")
    gated.node(_node("after", lambda s: {"total": 1 if s.approval and s.approval.approved else -1}))
    gated.edge(START, "ask")
    gated.edge("ask", "approve")
    gated.edge("approve", "after")
    gated.edge("after", END)
    return {g.name: g.compile() for g in (chain, fan, loop, mapped, gated)}


GRAPHS = _graphs()
ANSWER = {"approved": True}


class Crash(BaseException):
    """The process died: nothing after this point runs (a BaseException, as SIGKILL is no exception)."""


class CrashingStore:
    """Delegates to a store; the (appends+1)-th append dies, before or after it is durable."""

    def __init__(self, inner: Any, appends: int, after_commit: bool) -> None:
        self.inner, self.left, self.after_commit = inner, appends, after_commit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, run_id: str, owner: str, steps: list[Any], snapshot: Any = None) -> None:
        if self.left == 0 and not self.after_commit:
            raise Crash()
        await self.inner.append(run_id, owner, steps, snapshot)
        self.left -= 1
        if self.left < 0:
            raise Crash()


async def _finish(graph: waypoint.Graph, store: Any, run_id: str) -> Any:
    """Resume until done, answering the gate; what an uninterrupted run would do at each stop."""
    for _ in range(5):
        info = await store.get_run(run_id)
        if info.status == "done":
            return await state_at(graph, run_id, store=store)
        if info.lease_owner is not None:  # its holder crashed: free the run as a new process would
            await store.release(run_id, info.lease_owner, info.status, waiting=info.waiting)
        answer = ANSWER if info.status == "waiting" else None
        await (await resume(graph, run_id, answer, store=store)).result()
    raise AssertionError(f"run {run_id} did not finish")


async def _uninterrupted(graph: waypoint.Graph) -> tuple[dict[str, Any], list[str]]:
    store = MemoryStore()
    handle = await start(graph, store=store)
    await handle.result()
    state = await _finish(graph, store, handle.run_id)
    return state.model_dump(), sorted(s.node for s in await store.history(handle.run_id) if s.kind == "done")


EXPECTED = {name: asyncio.run(_uninterrupted(graph)) for name, graph in GRAPHS.items()}
crashes = st.tuples(st.integers(0, 6), st.booleans()) | st.none()


class CrashAndResume(RuleBasedStateMachine):
    """Runs on one SQLite file are started, crashed anywhere, resumed (maybe crashing again)."""

    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="waypoint-crash-"))
        self.graph_of: dict[str, str] = {}

    def execute(self, crash: tuple[int, bool] | None, work: Any) -> None:
        async def main() -> None:
            real = waypoint.SQLiteStore(self.dir / "runs.db", synchronous="NORMAL")
            store = real if crash is None else CrashingStore(real, crash[0], crash[1])
            try:
                await work(store)
            except Crash:
                pass
            finally:
                await real.close()

        asyncio.run(main())

    @rule(target=runs, name=st.sampled_from(sorted(GRAPHS)), crash=crashes)
    def start_run(self, name: str, crash: tuple[int, bool] | None) -> str:
        run_id = f"run-{len(self.graph_of)}"
        self.graph_of[run_id] = name
        crash = None if crash is None else (crash[0] + 1, crash[1])  # the first append is the run's birth

        async def work(store: Any) -> None:
            await (await start(GRAPHS[name], store=store, run_id=run_id)).result()

        self.execute(crash, work)
        return run_id

    @rule(run_id=runs, crash=crashes)
    def resume_run(self, run_id: str, crash: tuple[int, bool] | None) -> None:
        graph = GRAPHS[self.graph_of[run_id]]

        async def work(store: Any) -> None:
            info = await store.get_run(run_id)
            if info.status == "done":
                return
            if info.lease_owner is not None:
                await store.release(run_id, info.lease_owner, info.status, waiting=info.waiting)
            answer = ANSWER if info.status == "waiting" else None
            await (await resume(graph, run_id, answer, store=store)).result()

        self.execute(crash, work)

    def teardown(self) -> None:
        async def check() -> None:
            store = waypoint.SQLiteStore(self.dir / "runs.db")
            try:
                for run_id, name in self.graph_of.items():
                    final = await _finish(GRAPHS[name], store, run_id)
                    done = sorted(s.node for s in await store.history(run_id) if s.kind == "done")
                    assert (final.model_dump(), done) == EXPECTED[name], f"{name} run {run_id}"
            finally:
                await store.close()

        try:
            if self.graph_of:
                asyncio.run(check())
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


CrashAndResume.TestCase.settings = settings(FAST, max_examples=60, stateful_step_count=10)
test_crashed_and_resumed_runs_end_like_uninterrupted_ones = CrashAndResume.TestCase


def test_assert_terminates_drives_llm_nodes_inside_a_map_worker_graph():
    class Item(BaseModel):
        topic: str
        summary: str = ""

    class Batch(BaseModel):
        items: list[Item] = [Item(topic="a"), Item(topic="b")]
        summaries: list[str] = []

    worker = GraphBuilder(Item, name="summarise")
    worker.add(waypoint.llm("summarise", prompt="Summarise {topic}", into="summary"))
    worker.edge(START, "summarise")
    worker.edge("summarise", END)
    g = GraphBuilder(Batch, name="batch")
    g.map("each", worker.compile(), over="items", into="summaries",
          output=lambda final: final.summary, max_items=2)
    g.edge(START, "each")
    g.edge("each", END)
    graph = g.compile()

    @settings(FAST, max_examples=3)
    @given(router_choices(graph))
    def named(choices: Choices):
        assert set(choices.outputs) == {"each/summarise"}

    named()
    assert_terminates(graph, runs=10, settings=FAST)  # no model given: the LLM node is driven
    run = asyncio.run(run_driven(graph, Choices(outputs={"each/summarise": "driven"})))
    assert (run.status, run.state.summaries) == ("done", ["driven", "driven"])
