"""`g.map()` over a compiled graph (each item a durable child run) and over a dotted path."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
from pydantic import BaseModel

from waypoint import (
    END, START, GraphBuilder, GraphError, MemoryStore, NodeContext, RunResult, SQLiteStore, resume, start,
)
from waypoint.graphs.check import check_graph

pytestmark = pytest.mark.asyncio


class Task(BaseModel):  # the worker graph's state
    name: str
    delay: float = 0.0
    report: str = ""


class Plan(BaseModel):
    tasks: list[Task] = []
    cities: list[str] = []


class Project(BaseModel):
    plan: Plan | None = None
    loose: dict[str, list[int]] = {}
    reports: list[str] = []
    finals: list[Task] = []
    numbers: list[int] = []


def worker_graph(calls: dict[str, int] | None = None, fail: set[str] | None = None,
                 before_failing: Callable[[NodeContext], Awaitable[None]] | None = None) -> Any:
    async def research(state: Task, ctx: NodeContext) -> dict:
        await asyncio.sleep(state.delay)
        if calls is not None:
            calls[state.name] = calls.get(state.name, 0) + 1
        if fail and state.name in fail:
            if before_failing is not None:
                await before_failing(ctx)
            raise RuntimeError(f"no sources for {state.name}")
        return {"report": f"report on {state.name}"}

    w = GraphBuilder(Task, name="worker")
    w.node(research)
    w.edge(START, "research")
    w.edge("research", END)
    return w.compile()


def mapping(worker: Any, *, over: str = "plan.tasks", into: str = "reports", **options: Any) -> GraphBuilder:
    g = GraphBuilder(Project, name="project")
    g.map("delegate", worker, over=over, into=into, **options)
    g.edge(START, "delegate")
    g.edge("delegate", END)
    return g


def plan(*names: str, delays: tuple[float, ...] = ()) -> dict:
    delays = delays or (0.0,) * len(names)
    return {"plan": {"tasks": [{"name": n, "delay": d} for n, d in zip(names, delays)]}}


async def finish(graph: Any, input: Any) -> RunResult:
    return await (await start(graph, input, store=MemoryStore())).result(raise_on_failure=False)


def problems(g: GraphBuilder) -> list[str]:
    with pytest.raises(GraphError) as caught:
        g.compile()
    return caught.value.problems  # type: ignore[attr-defined]


# -- running ---------------------------------------------------------------------------------
async def test_each_item_is_a_child_run_and_results_come_back_in_order():
    graph = mapping(worker_graph(), output=lambda final: final.report, max_items=5).compile()
    store = MemoryStore()
    # the first item finishes last: results still follow the plan's order
    handle = await start(graph, plan("rules", "logistics", "pricing", delays=(0.05, 0.0, 0.01)), store=store)
    result = await handle.result()
    assert result.state.reports == ["report on rules", "report on logistics", "report on pricing"]
    children = {r.run_id: r for r in await store.list_runs() if r.parent_run_id == result.run_id}
    assert sorted(children) == [f"{result.run_id}/0.0/item{i}" for i in range(3)]  # stable ids
    assert {r.status for r in children.values()} == {"done"}


async def test_by_default_the_result_is_the_workers_final_state():
    graph = mapping(worker_graph(), into="finals", max_items=5).compile()
    result = await finish(graph, plan("rules", "logistics"))
    assert result.state.finals == [Task(name="rules", report="report on rules"),
                                   Task(name="logistics", report="report on logistics")]


async def test_input_turns_an_item_that_is_not_a_model_into_the_childs_input():
    graph = mapping(worker_graph(), over="plan.cities", input=lambda city: {"name": city},
                    output=lambda final: final.report, max_items=5).compile()
    result = await finish(graph, {"plan": {"cities": ["Lisbon", "Porto"]}})
    assert result.state.reports == ["report on Lisbon", "report on Porto"]


async def test_resuming_after_a_failed_item_does_not_rerun_the_finished_ones(tmp_path):
    calls: dict[str, int] = {}
    failing = {"logistics"}
    store = SQLiteStore(tmp_path / "runs.db")

    async def siblings_done(ctx: NodeContext) -> None:
        """The failing item fails only once the other items' child runs are committed done."""
        prefix = ctx.run_id.rsplit("item", 1)[0]
        while sorted(r.status for r in await store.list_runs()
                     if r.run_id.startswith(prefix) and r.run_id != ctx.run_id) != ["done", "done"]:
            await asyncio.sleep(0.005)

    graph = mapping(worker_graph(calls, failing, siblings_done), output=lambda final: final.report,
                    max_items=5).compile()
    try:
        first = await (await start(graph, plan("rules", "logistics", "pricing"),
                                   store=store)).result(raise_on_failure=False)
        assert first.status == "failed"
        assert "no sources for logistics" in str(first.error)
        assert calls == {"rules": 1, "logistics": 1, "pricing": 1}
        failed_child = await store.get_run(f"{first.run_id}/0.0/item1")
        assert failed_child.status == "failed"

        failing.clear()  # the cause is fixed
        second = await (await resume(graph, first.run_id, store=store)).result()
        assert second.status == "done"
        assert second.state.reports == ["report on rules", "report on logistics", "report on pricing"]
        assert calls == {"rules": 1, "logistics": 2, "pricing": 1}  # only the failed item ran again
        assert (await store.get_run(f"{first.run_id}/0.0/item1")).status == "done"  # the same child run
    finally:
        await store.close()


async def test_an_item_whose_child_waits_at_a_gate_makes_the_run_wait_at_that_item():
    class Ok(BaseModel):
        ok: bool

    w = GraphBuilder(Task, name="asking")
    w.gate("confirm", Ok, on_answer=lambda s, answer: {"report": f"{s.name}: {answer.ok}"})
    w.edge(START, "confirm")
    w.edge("confirm", END)
    graph = mapping(w.compile(), into="finals", max_items=5).compile()
    store = MemoryStore()
    result = await (await start(graph, plan("rules", "pricing"), store=store)).result()
    assert (result.status, result.waiting) == ("waiting", ["delegate[0]/confirm", "delegate[1]/confirm"])
    done = await (await resume(graph, result.run_id, store=store, answers={
        "delegate[0]/confirm": {"ok": True}, "delegate[1]/confirm": {"ok": False}})).result()
    assert [t.report for t in done.state.finals] == ["rules: True", "pricing: False"]


async def test_over_is_a_dotted_path_for_function_workers_too():
    g = GraphBuilder(Project, name="dotted")
    g.map("double", lambda n: 2 * n, over="loose.xs", into="numbers", max_items=5)
    g.edge(START, "double")
    g.edge("double", END)
    assert (await finish(g.compile(), {"loose": {"xs": [1, 2, 3]}})).state.numbers == [2, 4, 6]


async def test_a_path_through_a_field_that_is_none_fails_naming_it():
    graph = mapping(worker_graph(), output=lambda final: final.report, max_items=5).compile()
    result = await (await start(graph, {}, store=MemoryStore())).result(raise_on_failure=False)
    assert result.status == "failed"
    message = str(result.error)
    assert "map 'delegate': state.plan is None, so there is no list at state.plan.tasks" in message
    assert "set it before the map runs" in message


# -- compile() -------------------------------------------------------------------------------
async def test_the_first_part_of_a_dotted_path_must_be_a_state_field():
    assert problems(mapping(worker_graph(), over="plna.tasks", into="finals")) == [
        "map 'delegate' iterates over 'plna.tasks', whose first part 'plna' is not a state field; "
        "the state has ['finals', 'loose', 'numbers', 'plan', 'reports']: start the path with one of them."]


async def test_later_parts_of_a_path_are_checked_where_they_are_models():
    assert problems(mapping(worker_graph(), over="plan.taks", into="finals")) == [
        "map 'delegate' iterates over 'plan.taks', but plan is a Plan, which has no field 'taks'; "
        "its fields are ['cities', 'tasks']."]
    [not_a_list] = problems(mapping(worker_graph(), over="plan.tasks.name", into="finals"))
    assert not_a_list == ("map 'delegate' iterates over 'plan.tasks.name', but plan.tasks is a list[Task], "
                          "which has no field 'name'; a path goes through models and dicts only.")
    [empty] = problems(mapping(worker_graph(), over="plan..tasks", into="finals"))
    assert "iterates over 'plan..tasks', which has an empty part" in empty


async def test_a_dotted_path_must_end_at_a_list():
    class Holder(BaseModel):
        inner: Task = Task(name="x")
        out: list[str] = []

    g = GraphBuilder(Holder)
    g.map("each", str.upper, over="inner.name", into="out")
    g.edge(START, "each")
    g.edge("each", END)
    assert problems(g) == [
        "map 'each' iterates over field 'inner.name' of type str, which is not a list; point over= "
        "at a list field (e.g. list[str])."]


async def test_the_workers_final_state_must_fit_into_unless_output_is_given():
    assert problems(mapping(worker_graph(), into="reports")) == [
        "map 'delegate': each item's result is the final state of worker graph 'worker' (Task), which "
        "cannot fit the items of field 'reports' (list[str]); pass output=lambda final: final.<field>, "
        "or type the field list[Task]."]

    def as_number(final: Task) -> int:
        return len(final.report)

    [wrong] = problems(mapping(worker_graph(), into="finals", output=as_number))
    assert wrong == ("map 'delegate': its output= function returns int, which cannot fit the items of "
                     "field 'finals' (list[Task]); fix the annotation or the field's type.")


async def test_items_must_be_able_to_fill_the_workers_state():
    assert problems(mapping(worker_graph(), over="plan.cities", into="finals")) == [
        "map 'delegate': its items are str, which cannot be the input of worker graph 'worker'; "
        "pass input=lambda item: {...} (a dict of Task's fields)."]

    class Note(BaseModel):
        text: str
        delay: str = "soon"

    class Notes(BaseModel):
        notes: list[Note] = []
        finals: list[Task] = []

    g = GraphBuilder(Notes)
    g.map("each", worker_graph(), over="notes", into="finals")
    g.edge(START, "each")
    g.edge("each", END)
    assert problems(g) == [
        "map 'each': field 'name' of Task is required but the items (Note) have no field of that name "
        "to fill it; pass input=lambda item: {...} or give 'name' a default.",
        "map 'each' passes the items' field 'delay' (str) into Task's 'delay' (float), which cannot "
        "hold it; align the types or pass input=..."]


async def test_a_worker_graph_must_be_compiled_and_a_function_takes_no_mappings():
    builder = GraphBuilder(Task, name="worker")
    [uncompiled] = problems(mapping(builder, into="finals"))
    assert uncompiled == ("map 'delegate' runs a worker graph that is not compiled (GraphBuilder); pass "
                          "builder.compile(): g.map('delegate', worker.compile(), over=..., into=...).")
    [mapped_fn] = problems(mapping(lambda task: task, into="finals", output=lambda t: t))
    assert mapped_fn.startswith("map 'delegate': input= and output= apply to a worker graph")


# -- the bound and the drawing ---------------------------------------------------------------
async def test_the_bound_counts_each_items_worker_steps():
    worker = worker_graph()
    assert worker.max_steps == 1
    graph = mapping(worker, into="finals", max_items=4).compile()
    assert graph.max_steps == 1 + 4 * (1 + 1)  # the map, then per item its item step and the child's

    inner = GraphBuilder(Plan, name="inner")
    inner.map("each", str.upper, over="cities", into="cities")  # no max_items: no bound
    inner.edge(START, "each")
    inner.edge("each", END)
    no_bound = inner.compile()
    assert no_bound.max_steps is None
    report = check_graph(mapping(no_bound, over="plan.tasks", into="finals", input=lambda t: {},
                                 output=lambda final: Task(name="x"), max_items=4))
    assert report.ok and report.max_steps is None
    assert "map 'delegate' runs a worker graph without a bound of its own" in report.bound


async def test_the_worker_graph_is_drawn_beside_the_map():
    graph = mapping(worker_graph(), into="finals", max_items=4).compile()
    text = graph.render("mermaid", status={"delegate/research": "done"})
    assert 'subgraph n0_w ["each item: worker"]' in text
    assert 'n0 -.->|"each item"| n0_w_n_start' in text
    assert "class n0_w_n0 done" in text
    dot = graph.render("dot")
    assert 'n0 -> n0_w_n_start [label="each item", style="dashed"];' in dot
    assert "subgraph cluster_n0_w {" in dot
