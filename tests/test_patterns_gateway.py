"""Patterns 26 and 27 together: the HTTP gateway in front of a worker fleet, and a retried
start while the gateway itself executes the run (once a strict xfail: now its row, 200).

A real uvicorn on 127.0.0.1 (tests/web_server.py) serves a SQLite file with `enqueue=True`;
a `Worker` in the test's own event loop, on its own connection to that file, executes
what the gateway queues. Everything is synchronised on the run's event stream and on
threading events, never on the clock.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from tests.web_server import served
from waypoint import END, START, GraphBuilder, NodeContext, SQLiteStore
from waypoint.engine.worker import Worker


class Approval(BaseModel):
    approved: bool


class Refund(BaseModel):
    order: str
    approval: Approval | None = None
    paid: bool = False


def refund_graph() -> Any:
    """assess -> approve (a gate) -> pay; `pay` needs `ctx.deps`, which only a worker gives."""
    g = GraphBuilder(Refund, name="refunds")

    def assess(state: Refund) -> dict[str, Any]:
        return {}

    def pay(state: Refund, ctx: NodeContext) -> dict[str, Any]:
        ctx.deps["ledger"].append(state.order)  # a server without deps would fail here
        return {"paid": state.approval is not None and state.approval.approved}

    g.node(assess)
    g.gate("approve", Approval, into="approval")
    g.node(pay)
    g.edge(START, "assess")
    g.edge("assess", "approve")
    g.edge("approve", "pay")
    g.edge("pay", END)
    return g.compile()


Event = tuple[str, dict[str, Any], int | None]


def events(client: httpx.Client, run_id: str, after: int = 0) -> Iterator[Event]:
    """(event, data, id) of each Server-Sent Event of `run_id` after step `after`."""
    with client.stream("GET", f"/api/runs/{run_id}/events", headers={"Last-Event-ID": str(after)}) as reply:
        assert reply.status_code == 200, reply.read()
        kind, seq = "message", None
        for line in reply.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("data: "):
                yield kind, json.loads(line[6:]), seq
                kind, seq = "message", None


def until_status(client: httpx.Client, run_id: str, status: str, after: int = 0) -> int:
    """Follow the run's events until its row says `status`; the last step seq seen."""
    seen = after
    for kind, data, seq in events(client, run_id, after):
        seen = seq or seen
        if kind == "run" and data["status"] == status:
            return seen
        assert kind != "end", f"run {run_id} ended before reaching {status!r}"
    raise AssertionError(f"the event stream of {run_id} closed before it reached {status!r}")


def work(db: Path, graph: Any, ledger: list[str]) -> dict[str, int]:
    """One worker, on its own connection to the file, until nothing is claimable."""
    async def go() -> dict[str, int]:
        store = SQLiteStore(db)
        try:
            stats = await Worker([graph], store=store, poll=0.05, tick=None, deps={"ledger": ledger},
                                 log=lambda line: None).run(until_idle=True)
            return stats.ended
        finally:
            await store.close()
    return asyncio.run(go())


def test_a_gateway_with_enqueue_leaves_execution_to_the_workers(tmp_path: Path):
    graph, ledger = refund_graph(), []
    db = tmp_path / "runs.db"
    with served(db, [graph], enqueue=True) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"graph": "refunds", "input": {"order": "A-1"}, "run_id": "refund-A-1", "if_exists": "resume"}
        started = client.post("/api/runs", json=body)
        assert started.status_code == 201 and started.json()["status"] == "queued"
        retried = client.post("/api/runs", json={**body, "input": {"order": "other"}})
        assert retried.status_code == 200 and retried.json()["status"] == "queued"  # idempotent
        assert not server.ctx.tasks and not server.ctx.handles  # nothing executes in the server

        assert work(db, graph, ledger) == {"waiting": 1}
        seen = until_status(client, "refund-A-1", "waiting")  # the server polls the worker's writes
        [gate] = client.get("/api/gates").json()["gates"]
        answered = client.post("/api/runs/refund-A-1/resume",
                               json={"answer": {"approved": True}, "seen_seq": gate["seq"]})
        assert answered.status_code == 202 and answered.json()["status"] == "queued"
        assert ledger == []  # answered at the gateway, executed nowhere yet

        assert work(db, graph, ledger) == {"done": 1}
        kinds = [kind for kind, _, _ in events(client, "refund-A-1", after=seen)]
        assert kinds[-1] == "end" and kinds.count("step") >= 2  # the answer and `pay`, after `seen`
        state = client.get("/api/runs/refund-A-1/state").json()["state"]
        assert state["paid"] is True and ledger == ["A-1"]
        [entry] = client.get("/api/approvals", params={"run_id": "refund-A-1"}).json()["approvals"]
        assert entry["by"] and entry["answer"] == {"approved": True}


def test_a_retried_start_while_the_server_executes_the_run_returns_the_run(tmp_path: Path):
    entered, release = threading.Event(), threading.Event()
    g = GraphBuilder(Refund, name="slow")

    def think(state: Refund) -> dict[str, Any]:  # a sync node: it runs in a thread of the server
        entered.set()
        release.wait(30)
        return {}

    g.node(think)
    g.edge(START, "think")
    g.edge("think", END)
    graph = g.compile()
    db = tmp_path / "runs.db"
    with served(db, [graph]) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"graph": "slow", "input": {"order": "A-2"}, "run_id": "slow-A-2", "if_exists": "resume"}
        try:
            assert client.post("/api/runs", json=body).status_code == 201
            assert entered.wait(30), "the run's node never started"
            retried = client.post("/api/runs", json=body)  # a client whose first reply was lost
        finally:
            release.set()
        # the server's own run: its row as it stands (200), not a 409 naming the server's own lease
        assert retried.status_code == 200, retried.text
        assert retried.json()["run_id"] == "slow-A-2" and retried.json()["status"] == "running"
        assert until_status(client, "slow-A-2", "done") >= 1
