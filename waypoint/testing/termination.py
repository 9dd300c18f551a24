"""Property-tested termination: every run of a graph ends within its bound, whatever is chosen.

    from waypoint.testing.termination import assert_terminates

    def test_the_essay_graph_always_ends():
        assert_terminates(graph, runs=100, input={"topic": "tides"})

`assert_terminates` runs the graph (in memory) many times with Hypothesis
driving every decision: each router (function routers, LLM routers, handoffs)
and every LLM node, which is replaced by a stand-in that calls no model, answers
with arbitrary labels and outputs; each loop guard's `until=`; and each gate's
answer (`gates="wait"` leaves gates waiting instead). Other nodes run as
written. Every run must end (done, failed or waiting at a gate) with at most
`graph.max_steps` node executions (done steps plus map items, subgraphs
included) when the graph states a bound. A failure shows the decisions, in
order, that led there, and Hypothesis shrinks them to a short list.

`check_terminates(graph, choices)` is one such run for given `Choices` (from
`waypoint.testing.strategies.router_choices`), for use inside your own tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

from waypoint.checkpoints.memory import MemoryStore
from waypoint.engine.handles import RunHandle, RunResult
from waypoint.engine.runs import resume, start
from waypoint.graphs.graph import Graph
from waypoint.nodes.base import Node, Outcome
from waypoint.testing.strategies import Choices, router_choices

__all__ = ["UNBOUNDED_LIMIT", "DrivenRun", "assert_terminates", "check_terminates", "drive", "run_driven"]

Gates = Literal["answer", "wait"]
UNBOUNDED_LIMIT = 10_000  # executions after which a graph without a bound counts as running away
T = TypeVar("T")  # what _in_own_loop's coroutine returns


@dataclass
class DrivenRun:
    """How one driven run ended: done, failed, waiting, runaway (over its limit) or stuck."""

    status: str
    executions: int
    trace: list[str]
    state: Any = None
    error: BaseException | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("done", "failed", "waiting")


def drive(graph: Graph[Any], choices: Choices, trace: list[str], prefix: str = "") -> Graph[Any]:
    """A copy of `graph` whose decisions come from `choices`; each one is appended to `trace`."""
    nodes = {name: _driven(graph, prefix + name, node, choices, trace) for name, node in graph.nodes.items()}
    return dataclasses.replace(graph, nodes=MappingProxyType(nodes))


class _Answers:
    """The answers of one node, in order; the last one repeats (or `default` if there is none)."""

    def __init__(self, what: str, answers: tuple[Any, ...], default: Any, trace: list[str]) -> None:
        self.what, self.answers, self.default, self.trace = what, answers, default, trace
        self.used = 0

    def next(self) -> Any:
        answers = self.answers or (self.default,)
        answer = answers[min(self.used, len(answers) - 1)]
        self.used += 1
        self.trace.append(f"{self.what} -> {answer!r}")
        return answer


@dataclass(frozen=True)
class _StandIn(Node):
    """Takes an LLM node's place: no model, an answer from the choices (not registered:
    it lives only in a driven copy of a graph)."""

    kind: ClassVar[str] = "stand_in"
    decides: ClassVar[bool] = True
    answer: Callable[[], Outcome] | None = None

    async def run(self, state: Any, ctx: Any) -> Outcome:
        assert self.answer is not None
        return self.answer()


def _driven(graph: Graph[Any], path: str, node: Any, choices: Choices, trace: list[str]) -> Any:
    if isinstance(node.inner_graph, Graph):  # a subgraph's graph, a map's worker
        return dataclasses.replace(node, graph=drive(node.inner_graph, choices, trace, path + "/"))
    if node.counts_loops and getattr(node, "until", None) is not None:
        holds = _Answers(f"loop guard {path!r} until", choices.until.get(path, ()), False, trace)
        return dataclasses.replace(node, until=lambda state: holds.next())
    if node.decides and getattr(node, "fn", None) is not None:  # a function router
        labels = _Answers(f"router {path!r}", choices.routes.get(path, ()), node.labels[0], trace)

        async def choose(state: Any) -> Any:
            return labels.next()

        return dataclasses.replace(node, fn=choose, wants_ctx=False, is_async=True)
    if node.decides:  # an LLM node, router or handoff
        return _stand_in(graph, path, node, choices, trace)
    return node


def _stand_in(graph: Graph[Any], path: str, node: Any, choices: Choices, trace: list[str]) -> _StandIn:
    routes = node.name in graph.routes
    # a node with edges beside its routes (an LLM node's "tripped") follows its edges unless told
    default = node.labels[0] if node.labels and not node.edges_beside_routes else None
    labels = _Answers(f"LLM node {path!r}", choices.routes.get(path, ()), default, trace)
    into, output = getattr(node, "into", None), choices.outputs.get(path)
    is_router = node.writes_label

    def answer() -> Outcome:
        label: str | None = labels.next() if routes else None  # a routed node has labels to answer
        value = label if is_router else output
        update = {into: value} if into and value is not None else None
        return Outcome(update=update, labels=None if label is None else (label,))

    return _StandIn(name=node.name, writes=node.writes, join=node.join, labels=node.labels,
               concurrency=node.concurrency, answer=answer)


class _CountingStore:
    """A store that counts node executions (done and item steps) and says when there are too many."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.executions = 0
        self.exceeded = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, run_id: str, owner: str, steps: list[Any], snapshot: Any = None) -> None:
        await self.inner.append(run_id, owner, steps, snapshot)
        self.executions += sum(1 for s in steps if s.kind in ("done", "item"))
        if self.executions > self.limit:
            self.exceeded.set()


async def run_driven(graph: Graph[Any], choices: Choices, *, input: Any = None, gates: Gates = "answer",
                     timeout: float = 30.0, limit: int | None = None) -> DrivenRun:
    """Run `graph` once with `choices` deciding, in a fresh MemoryStore; never raises for the run."""
    trace: list[str] = []
    driven = drive(graph, choices, trace)
    if limit is None:
        limit = graph.max_steps if graph.max_steps is not None else UNBOUNDED_LIMIT
    store = _CountingStore(MemoryStore(), limit)
    try:
        result = await asyncio.wait_for(_until_stopped(driven, store, input, choices, gates, trace), timeout)
    except TimeoutError:
        return DrivenRun("stuck", store.executions, trace)
    except Exception as exc:  # an engine bug surfacing: report it with the decisions
        return DrivenRun("crashed", store.executions, trace, error=exc)
    if result is None:
        return DrivenRun("runaway", store.executions, trace)
    return DrivenRun(result.status, store.executions, trace, result.state, result.error)


async def _until_stopped(graph: Graph[Any], store: _CountingStore, input: Any, choices: Choices,
                         gates: Gates, trace: list[str]) -> RunResult[Any] | None:
    handle = await start(graph, input, store=store)
    while True:
        result = await _result_or_runaway(handle, store)
        if result is None or result.status != "waiting" or gates != "answer":
            return result
        answers = {gate: choices.answers.get(gate) for gate in result.waiting}
        if any(a is None for a in answers.values()):
            return result  # no answer could be drawn: waiting counts as ended
        trace.extend(f"gate {gate!r} answered {a!r}" for gate, a in answers.items())
        handle = await resume(graph, result.run_id, answers=answers, store=store)


async def _result_or_runaway(handle: RunHandle[Any], store: _CountingStore) -> RunResult[Any] | None:
    waiter = asyncio.ensure_future(handle.result(raise_on_failure=False))
    stopper = asyncio.ensure_future(store.exceeded.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not store.exceeded.is_set():
        return waiter.result()
    await handle.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    return None


def check_terminates(graph: Graph[Any], choices: Choices, *, input: Any = None, gates: Gates = "answer",
                     timeout: float = 30.0, limit: int | None = None) -> DrivenRun:
    """One driven run; raises AssertionError, with the decisions made, unless it ends within bound.

    `limit` caps the executions of a graph without a bound (default `UNBOUNDED_LIMIT`).
    """
    run = _in_own_loop(lambda: run_driven(graph, choices, input=input, gates=gates,
                                          timeout=timeout, limit=limit))
    bound = graph.max_steps
    if run.ended and (bound is None or run.executions <= bound):
        return run
    if run.status == "runaway":
        what = (f"ran over its bound: more than {bound} node executions" if bound is not None
                else f"did not end after {run.executions} node executions (the graph states no bound)")
    elif run.status == "stuck":
        what = f"did not end within {timeout}s, after {run.executions} node executions"
    elif run.status == "crashed":
        what = f"crashed with {type(run.error).__name__}: {run.error}"
    else:
        what = f"ended {run.status} after {run.executions} node executions, over its bound of {bound}"
    decisions = "\n".join(f"  {line}" for line in run.trace) or "  (none)"
    raise AssertionError(f"graph {graph.name!r} {what}.\nDecisions, in order:\n{decisions}") from run.error


def assert_terminates(graph: Graph[Any], *, runs: int = 50, input: Any = None, settings: Any = None,
                      gates: Gates = "answer", timeout: float = 30.0) -> None:
    """Assert that `runs` runs with arbitrary decisions all end within `graph.max_steps`.

    `input` is the run's input, or a Hypothesis strategy of inputs. `settings`
    (a `hypothesis.settings`) is the base for the run's settings; `runs` and
    `deadline=None` take precedence. Call it from a synchronous test.
    """
    from hypothesis import HealthCheck, given
    from hypothesis import settings as Settings
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy

    inputs = input if isinstance(input, SearchStrategy) else st.just(input)
    slow = [HealthCheck.too_slow, HealthCheck.data_too_large]

    @Settings(settings, max_examples=runs, deadline=None, suppress_health_check=slow)
    @given(choices=router_choices(graph), value=inputs)
    def every_run_ends(choices: Choices, value: Any) -> None:
        check_terminates(graph, choices, input=value, gates=gates, timeout=timeout)

    every_run_ends()


def _in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run, or in a worker thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()

