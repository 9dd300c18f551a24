"""Tool nodes: arguments from the state, validated first; retries, timeouts, idempotency keys."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, NodeContext, NodeError, RetryPolicy, resume, start

pytestmark = pytest.mark.asyncio


class Order(BaseModel):
    amount: str = "12.50"
    customer_id: str = "c-1"
    receipt: str = ""


def one_tool_graph(fn, **options):
    g = GraphBuilder(Order)
    g.tool_node(fn, into="receipt", args={"customer": "customer_id"}, **options)
    g.edge(START, fn.__name__)
    g.edge(fn.__name__, END)
    return g.compile()


async def test_arguments_come_from_the_state_converted_to_the_declared_types(store):
    seen = {}

    def charge(amount: float, customer: str, ctx: NodeContext) -> str:
        seen.update(amount=amount, customer=customer, key=ctx.idempotency_key)
        return f"charged {amount:.2f} to {customer}"

    result = await (await start(one_tool_graph(charge), store=store)).result()
    assert result.state.receipt == "charged 12.50 to c-1"
    assert seen["amount"] == 12.5 and seen["key"] == f"{result.run_id}:0.0"
    [step] = await store.history(result.run_id)
    assert step.extra["attempt"] == 1


async def test_arguments_that_do_not_fit_fail_the_node_before_the_call(store):
    called = []

    def charge(amount: float, customer: str) -> str:
        called.append(1)
        return "x"

    handle = await start(one_tool_graph(charge), {"amount": "lots"}, store=store)
    with pytest.raises(NodeError, match="tool node 'charge'.*argument 'amount'.*not called"):
        await handle.result()
    assert called == []


async def test_retries_only_the_listed_exceptions_with_backoff_and_keeps_the_key(store):
    keys = []

    async def flaky(amount: float, customer: str, ctx: NodeContext) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) < 3:
            raise ConnectionError("reset")
        return "ok"

    policy = RetryPolicy(attempts=3, backoff=0.001, retry_on=(ConnectionError,))
    result = await (await start(one_tool_graph(flaky, retry=policy), store=store)).result()
    assert result.state.receipt == "ok" and len(set(keys)) == 1 and len(keys) == 3
    [step] = await store.history(result.run_id)
    assert step.extra["attempt"] == 3

    def wrong(amount: float, customer: str) -> str:
        raise ValueError("not retried")

    handle = await start(one_tool_graph(wrong, retry=policy), store=store)
    with pytest.raises(NodeError, match="ValueError: not retried"):
        await handle.result()


async def test_a_timeout_fails_cleanly_and_the_run_resumes_with_the_same_key(store):
    keys = []

    async def slow(amount: float, customer: str, ctx: NodeContext) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            await asyncio.sleep(10)
        return "late but done"

    graph = one_tool_graph(slow, timeout=0.05)
    handle = await start(graph, store=store)
    with pytest.raises(NodeError, match="timed out after 0.05s"):
        await handle.result()
    assert (await store.get_run(handle.run_id)).status == "failed"
    done = await (await resume(graph, handle.run_id, store=store)).result()
    assert done.state.receipt == "late but done"
    assert keys[0] == keys[1]  # the same activation, the same idempotency key
