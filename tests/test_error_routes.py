"""Error routes: `on_error=` sends a node's failure, after its retries, to a fallback node."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel
from waypoint import (
    END,
    START,
    GraphBuilder,
    GraphError,
    MemoryStore,
    NodeError,
    RetryPolicy,
    SQLiteStore,
    append,
    llm,
    resume,
    start,
)
from waypoint.nodes.failure import NodeFailure
from waypoint.testing import ScriptedModel

pytestmark = pytest.mark.asyncio


class S(BaseModel):
    text: str = ""
    out: str = ""
    failure: NodeFailure | None = None
    seen: Annotated[list[str], append] = []


class Ok(BaseModel):
    ok: bool = True


NO_WAIT = RetryPolicy(attempts=3, backoff=0, jitter=False)


def fallback_graph(calls: list[str], **options):
    g = GraphBuilder(S, name="recovering")

    def charge(state: S) -> dict:
        calls.append("charge")
        raise ValueError(f"card declined ({len(calls)})")

    g.node(charge, retry=NO_WAIT, on_error="fallback", writes=["out"], **options)
    g.node(lambda s: {"out": "queued for a person", "seen": ["fallback"]}, name="fallback")
    g.node(lambda s: {"seen": ["receipt"]}, name="receipt")
    g.edge(START, "charge")
    g.edge("charge", "receipt")
    g.edge("receipt", END)
    g.edge("fallback", END)
    return g.compile()


async def finished(graph, store, input=None, **kw):
    return await (await start(graph, input, store=store, **kw)).result()


async def test_a_failure_after_its_retries_takes_the_error_route_and_is_recorded():
    calls: list[str] = []
    store = MemoryStore()
    result = await finished(fallback_graph(calls, error_into="failure"), store)
    assert result.status == "done"
    assert calls == ["charge"] * 3  # every attempt of the retry policy was made first
    assert result.state.out == "queued for a person" and result.state.seen == ["fallback"]  # not receipt
    assert result.state.failure == NodeFailure(node="charge", type="ValueError",
                                               message="card declined (3)", attempts=3)
    steps = await store.history(result.run_id)
    failed = next(s for s in steps if s.node == "charge")
    assert failed.kind == "done" and failed.extra["route"] == ["error"]
    assert failed.extra["error"] == {"node": "charge", "type": "ValueError",
                                     "message": "card declined (3)", "attempts": 3}
    assert [s.node for s in steps if s.kind == "done"] == ["charge", "fallback"]


async def test_without_error_into_the_state_is_untouched_and_the_step_still_says_why():
    store = MemoryStore()
    result = await finished(fallback_graph([]), store)
    assert result.status == "done" and result.state.failure is None
    step = (await store.history(result.run_id))[0]
    assert step.delta == {} and step.extra["error"]["type"] == "ValueError"


async def test_a_node_that_succeeds_follows_its_edges():
    g = GraphBuilder(S)
    g.node(lambda s: {"seen": ["work"]}, name="work", on_error="fallback")
    g.node(lambda s: {"seen": ["fallback"]}, name="fallback")
    g.edge(START, "work")
    g.edge("work", END)
    g.edge("fallback", END)
    result = await finished(g.compile(), MemoryStore())
    assert result.state.seen == ["work"]


async def test_without_on_error_the_run_fails_and_stays_resumable():
    g = GraphBuilder(S)

    def work(state: S) -> dict:
        raise ValueError("down")

    g.node(work, writes=["out"])
    g.edge(START, "work")
    g.edge("work", END)
    handle = await start(g.compile(), None, store=MemoryStore())
    with pytest.raises(NodeError, match="raised ValueError: down"):
        await handle.result()


async def test_a_timeout_takes_the_error_route():
    g = GraphBuilder(S, name="slow")
    never = asyncio.Event()

    async def hangs(state: S) -> dict:
        await never.wait()  # never set: only the timeout ends it
        return {"out": "late"}

    g.node(hangs, timeout=0.01, on_error="fallback", error_into="failure")
    g.node(lambda s: {"out": "fallback"}, name="fallback")
    g.edge(START, "hangs")
    g.edge("hangs", END)
    g.edge("fallback", END)
    result = await finished(g.compile(), MemoryStore())
    assert result.state.out == "fallback"
    assert result.state.failure.type == "NodeError" and "timed out" in result.state.failure.message


async def test_an_llm_node_whose_model_fails_falls_back_to_another_agent():
    class Broken:
        async def complete(self, request, *, on_token=None):
            raise ConnectionError("provider unavailable")

    g = GraphBuilder(S, name="agents")
    g.add(llm("primary", prompt="{text}", into="out", model=Broken()), on_error="simple",
          error_into="failure", retry=RetryPolicy(attempts=2, backoff=0, jitter=False))
    g.add(llm("simple", prompt="Answer briefly: {text}", into="out",
              model=ScriptedModel(["Paris."])))
    g.edge(START, "primary")
    g.edge("primary", END)
    g.edge("simple", END)
    result = await finished(g.compile(), MemoryStore(), {"text": "Capital of France?"})
    assert result.state.out == "Paris."
    assert result.state.failure.attempts == 2 and "provider unavailable" in result.state.failure.message


async def test_a_router_keeps_its_routes_and_gains_the_error_one():
    g = GraphBuilder(S)

    @g.router(routes={"a": "a", "b": "b"}, on_error="fallback")
    def pick(state: S) -> Literal["a", "b"]:
        raise KeyError("no rule for this case")

    for name in ("a", "b", "fallback"):
        g.node(lambda s, name=name: {"seen": [name]}, name=name)
        g.edge(name, END)
    g.edge(START, "pick")
    graph = g.compile()
    assert dict(graph.routes["pick"]) == {"a": ("a",), "b": ("b",), "error": ("fallback",)}
    assert (await finished(graph, MemoryStore())).state.seen == ["fallback"]


async def test_the_error_step_replays_on_resume_without_running_the_node_again(tmp_path):
    """The fallback is a gate: the run waits after the failure, and a resume (a new store on
    the same file, so everything comes from the log) goes on without calling the node."""
    calls: list[str] = []
    g = GraphBuilder(S, name="replayed")

    def fetch(state: S) -> dict:
        calls.append("fetch")
        raise TimeoutError("upstream")

    g.node(fetch, on_error="ask", error_into="failure", writes=["text"])
    g.gate("ask", Ok)
    g.node(lambda s: {"out": f"asked after {s.failure.type}"}, name="done")
    g.edge(START, "fetch")
    g.edge("fetch", END)
    g.edge("ask", "done")
    g.edge("done", END)
    graph = g.compile()
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        waiting = await finished(graph, store)
    assert waiting.status == "waiting" and waiting.waiting == ["ask"]
    async with SQLiteStore(path) as store:
        done = await (await resume(graph, waiting.run_id, {"ok": True}, store=store)).result()
    assert done.state.out == "asked after TimeoutError" and calls == ["fetch"]


async def test_the_error_route_is_published_like_any_completion():
    handle = await start(fallback_graph([]), None, store=MemoryStore())
    kinds = [(e.kind, e.node, e.data.get("route")) async for e in handle.events()]
    await handle.result()
    assert ("node_finished", "charge", ["error"]) in kinds
    assert not any(kind == "node_failed" for kind, _, _ in kinds)


async def test_the_error_route_is_drawn_with_its_label():
    assert '-->|"error"| n1' in fallback_graph([]).render("mermaid")


async def test_the_run_error_kinds_are_not_routed():
    """A state update the state refuses fails the run: it is not the node's own failure."""
    g = GraphBuilder(S)
    g.node(lambda s: {"out": 42}, name="bad", on_error="fallback", writes=["out"])
    g.node(lambda s: None, name="fallback", writes=[])
    g.edge(START, "bad")
    g.edge("bad", END)
    g.edge("fallback", END)
    handle = await start(g.compile(), None, store=MemoryStore())
    with pytest.raises(NodeError, match="out"):
        await handle.result()


# -- what compile() refuses ------------------------------------------------------------------
def builder_with(**options) -> GraphBuilder[S]:
    g = GraphBuilder(S, name="checked")
    g.node(lambda s: None, name="work", writes=[], **options)
    g.node(lambda s: None, name="fallback", writes=[])
    g.edge(START, "work")
    g.edge("work", END)
    g.edge("fallback", END)
    return g


@pytest.mark.parametrize(("options", "words"), [
    ({"on_error": "falback"}, "route 'work' --error--> 'falback' points at unknown node 'falback'"),
    ({"error_into": "failure"}, "error_into='failure' but no on_error="),
    ({"on_error": "fallback", "error_into": "out"}, "cannot hold a NodeFailure"),
    ({"on_error": "fallback", "error_into": "nowhere"}, "writes unknown field 'nowhere'"),
])
async def test_compile_refuses_error_options_that_cannot_work(options, words):
    with pytest.raises(GraphError) as caught:
        builder_with(**options).compile()
    assert words in str(caught.value)


async def test_compile_refuses_an_error_route_that_closes_a_loop_without_a_guard():
    g = GraphBuilder(S)
    g.node(lambda s: None, name="work", writes=[], on_error="work")
    g.edge(START, "work")
    g.edge("work", END)
    with pytest.raises(GraphError, match="cycle"):
        g.compile()


async def test_compile_still_wants_an_edge_out_of_a_node_that_has_only_an_error_route():
    g = builder_with(on_error="fallback")
    g.edges.remove(("work", END))
    with pytest.raises(GraphError, match="node 'work' has no outgoing edge"):
        g.compile()


async def test_a_gate_takes_no_error_route():
    g = GraphBuilder(S)
    g.gate("ask", Ok)
    g.add(g.nodes.pop("ask"), on_error="fallback")
    g.node(lambda s: None, name="fallback", writes=[])
    g.edge(START, "ask")
    g.edge("ask", END)
    g.edge("fallback", END)
    with pytest.raises(GraphError, match="gate 'ask' has on_error='fallback', but it waits for an answer"):
        g.compile()


async def test_add_names_an_option_a_node_does_not_take():
    with pytest.raises(GraphError, match=r"g.add\('simple', \.\.\.\): on_eror not option"):
        GraphBuilder(S).add(llm("simple", prompt="{text}", into="out"), on_eror="x")


async def test_the_execution_bound_counts_the_error_route_as_an_alternative():
    assert builder_with(on_error="fallback").compile().max_steps == 2  # work, then END or fallback


async def test_what_the_failed_attempts_spent_is_kept_on_the_error_step():
    class Verdict(BaseModel):
        ok: bool

    class Judged(BaseModel):
        text: str
        verdict: Verdict | None = None
        out: str = ""

    g = GraphBuilder(Judged, name="spent")
    g.add(llm("judge", prompt="{text}", output=Verdict, into="verdict", max_validation_retries=0,
              model=ScriptedModel(["not json", "still not json"])),
          retry=RetryPolicy(attempts=2, backoff=0, jitter=False), on_error="fallback")
    g.node(lambda s: {"out": "no verdict"}, name="fallback")
    g.edge(START, "judge")
    g.edge("judge", END)
    g.edge("fallback", END)
    store = MemoryStore()
    result = await finished(g.compile(), store, {"text": "Is it fine?"})
    assert result.state.out == "no verdict"
    step = (await store.history(result.run_id))[0]
    # an output that does not fit is the node's own NodeError: not retried, routed at once
    assert step.extra["error"]["attempts"] == 1 and step.extra["usage"] == {
        "input_tokens": 3, "output_tokens": 2, "calls": 1}  # the failed call's spending counts


async def test_a_tripped_guardrail_never_takes_the_error_route():
    """The fallback would answer what the guardrail refused: a trip fails the run (or takes
    `tripped`), whatever on_error says."""
    from waypoint import GuardrailTripped
    from waypoint.nodes.guardrails import input_guardrail, passed, tripwire

    @input_guardrail
    def billing_only(text: str):
        return passed() if "invoice" in text.lower() else tripwire("not a billing question")

    fallback_model = ScriptedModel(["I would have answered anyway."])
    g = GraphBuilder(S, name="guarded")
    g.add(llm("agent", prompt="{text}", into="out", guardrails=[billing_only], model=ScriptedModel([])),
          on_error="fallback")
    g.add(llm("fallback", prompt="{text}", into="out", model=fallback_model))
    g.edge(START, "agent")
    g.edge("agent", END)
    g.edge("fallback", END)
    handle = await start(g.compile(), {"text": "Write my essay"}, store=MemoryStore())
    with pytest.raises(GuardrailTripped, match="not a billing question"):
        await handle.result()
    assert fallback_model.requests == []
