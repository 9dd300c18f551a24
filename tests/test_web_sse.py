"""GET /api/runs/{id}/events against a real uvicorn: ids are step seqs, a reconnect with
Last-Event-ID resumes exactly, keep-alives flow, and a client that leaves costs nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.test_web_api import GOOD, make_runs
from tests.web_graphs import review_graph
from tests.web_server import Server, served
from waypoint import SQLiteStore, resume


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The SSE events of a streaming response as dicts {event, id, data} or {comment}."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line == "":
            if event:
                yield event
            event = {}
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            event[field] = json.loads(value) if field == "data" else value


def read_until(stream: Iterator[dict[str, Any]], done: Any) -> list[dict[str, Any]]:
    got = []
    for event in stream:
        got.append(event)
        if done(event):
            return got
    raise AssertionError(f"the stream ended before the awaited event: {got}")


def seqs(got: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"]) for e in got if e.get("event") == "step"]


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    make_runs(tmp_path / "runs.db", 2)
    with served(tmp_path / "runs.db", [review_graph]) as server:
        yield server


def test_a_run_streams_its_log_then_live_steps_then_ends(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        last = client.get("/api/runs/r0").json()["last_seq"]
        with client.stream("GET", "/api/runs/r0/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events(response)
            head = read_until(stream, lambda e: e.get("event") == "run")
            assert seqs(head) == list(range(1, last + 1))
            assert head[-1]["data"]["status"] == "waiting" and "id" not in head[-1]
            assert client.post("/api/runs/r0/resume", json={"answer": GOOD}).status_code == 202
            tail = read_until(stream, lambda e: e.get("event") == "end")
        done = client.get("/api/runs/r0").json()
        assert seqs(tail) == list(range(last + 1, done["last_seq"] + 1))  # each step once, in order
        assert [e["data"]["status"] for e in tail if e.get("event") == "run"][-1] == "done"
        steps = client.get("/api/runs/r0/steps").json()["steps"]
        assert [e["data"] for e in head + tail if e.get("event") == "step"] == steps


def test_a_reconnect_with_last_event_id_resumes_exactly(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/api/runs/r1/events") as response:
            first = read_until(events(response), lambda e: e.get("event") == "step")  # then drop it
        assert seqs(first) == [1]
        assert client.post("/api/runs/r1/resume", json={"answer": GOOD}).status_code == 202  # while away
        with client.stream("GET", "/api/runs/r1/events", headers={"Last-Event-ID": "1"}) as response:
            rest = read_until(events(response), lambda e: e.get("event") == "end")
        last = client.get("/api/runs/r1").json()["last_seq"]
        assert seqs(first) + seqs(rest) == list(range(1, last + 1))
        with client.stream("GET", "/api/runs/r1/events", params={"after": last - 1}) as response:
            assert seqs(read_until(events(response), lambda e: e.get("event") == "end")) == [last]


def test_steps_written_by_another_process_reach_the_stream(server, tmp_path: Path):
    """A run resumed outside the server (here: the test's own store on the same file) is
    seen by polling the store."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        last = client.get("/api/runs/r0").json()["last_seq"]
        with client.stream("GET", "/api/runs/r0/events", headers={"Last-Event-ID": str(last)}) as response:
            stream = events(response)
            assert read_until(stream, lambda e: e.get("event") == "run")[-1]["data"]["status"] == "waiting"

            async def answer_elsewhere() -> None:
                store = SQLiteStore(tmp_path / "runs.db")
                try:
                    await (await resume(review_graph, "r0", GOOD, store=store, by="cli")).result()
                finally:
                    await store.close()

            asyncio.run(answer_elsewhere())
            tail = read_until(stream, lambda e: e.get("event") == "end")
        assert seqs(tail)[0] == last + 1 and tail[0]["data"]["extra"]["by"] == "cli"


def test_keep_alive_comments_flow_while_nothing_happens(server):
    server.ctx.changes.keepalive = 0.2
    with httpx.Client(base_url=server.url, timeout=30) as client, \
            client.stream("GET", "/api/runs/r1/events", headers={"Last-Event-ID": "99"}) as response:
        got = read_until(events(response), lambda e: e.get("comment") == "keep-alive")
    assert seqs(got) == []  # nothing after seq 99: only the run's row, then keep-alives


def test_a_client_that_goes_away_leaves_nothing_behind(server):
    baseline = server.tasks()
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(5)]
    contexts = [c.stream("GET", "/api/runs/r1/events") for c in clients]
    streams = [events(context.__enter__()) for context in contexts]  # kept: dropping one closes it
    for stream in streams:
        read_until(stream, lambda e: e.get("event") == "run")
    assert server.ctx.changes.streams == 5 and server.tasks() > baseline
    for context, client in zip(contexts, clients, strict=True):
        context.__exit__(None, None, None)
        client.close()
    del streams
    wait_for(lambda: server.ctx.changes.streams == 0, "the streams' generators were not stopped")
    wait_for(lambda: server.tasks() <= baseline, f"tasks left behind: {server.tasks()} > {baseline}")
    assert len(server.ctx.changes._events) == 0  # no run watched any more


def test_a_bad_last_event_id_is_400(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/api/runs/r1/events", headers={"Last-Event-ID": "abc"})
        assert response.status_code == 400 and "Last-Event-ID" in response.json()["error"]


def test_streams_beyond_the_limit_are_503(server):
    server.ctx.changes.max_streams = 1
    with httpx.Client(base_url=server.url, timeout=30) as client, \
            client.stream("GET", "/api/runs/r1/events") as response:
        stream = events(response)
        read_until(stream, lambda e: e.get("event") == "run")
        refused = client.get("/api/runs/r0/events")
        assert refused.status_code == 503 and "limit" in refused.json()["error"]


def test_the_stream_ends_on_any_status_that_waits_for_someone_to_act_but_not_on_waiting(tmp_path: Path):
    from tests.web_graphs import Ticket
    from waypoint import END, START, GraphBuilder

    g = GraphBuilder(Ticket, name="broken")

    def explode(state: Ticket) -> dict[str, Any]:
        raise RuntimeError("the ledger is down")

    g.node(explode)
    g.edge(START, "explode")
    g.edge("explode", END)
    make_runs(tmp_path / "runs.db", 1)
    with served(tmp_path / "runs.db", [review_graph, g.compile()]) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:  # < keep-alive: a stalled stream fails
        with client.stream("GET", "/api/runs/r0/events") as response:  # waiting: the stream stays open
            stream = events(response)
            read_until(stream, lambda e: e.get("event") == "run")
            assert client.post("/api/runs/r0/cancel", json={"reason": "duplicate"}).status_code == 200
            tail = read_until(stream, lambda e: e.get("event") == "end")
            assert tail[-1]["data"] == {"run_id": "r0", "status": "cancelled"}
            assert list(stream) == []  # and the server closed it
        started = client.post("/api/runs", json={"graph": "broken", "input": {"title": "x"}, "run_id": "b"})
        assert started.status_code == 201
        with client.stream("GET", "/api/runs/b/events") as response:
            got = read_until(events(response), lambda e: e.get("event") == "end")
        assert got[-1]["data"] == {"run_id": "b", "status": "failed"}
        assert [e["data"]["status"] for e in got if e.get("event") == "run"][-1] == "failed"


# -- the inbox's stream ------------------------------------------------------------------
def test_the_inbox_stream_tells_at_once_when_a_gate_of_a_run_executed_here_starts_or_stops_waiting(server):
    server.ctx.changes.poll = server.ctx.changes.keepalive = 3600  # no polling: only this server's notices
    with httpx.Client(base_url=server.url, timeout=20) as client, \
            client.stream("GET", "/api/gates/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        first = read_until(stream, lambda e: e.get("event") == "inbox")[-1]
        assert first["data"]["total"] == 2 and "id" not in first
        assert first["data"]["version"] == server.call(_version(server))
        assert client.post("/api/runs/r0/resume", json={"answer": GOOD}).status_code == 202
        got = read_until(stream, lambda e: e.get("event") == "inbox")
        assert [(e["event"], e["data"]) for e in got[:-1]] == [("gone", {"run_id": "r0", "gate": "review"})]
        assert got[-1]["data"]["total"] == 1
        started = client.post("/api/runs", json={"graph": "review", "input": {"title": "new"}, "run_id": "n"})
        assert started.status_code == 201
        got = read_until(stream, lambda e: e.get("event") == "waiting")
        assert got[-1]["data"]["run_id"] == "n" and got[-1]["data"]["url"] == "/gates/n/review"
        assert read_until(stream, lambda e: e.get("event") == "inbox")[-1]["data"]["total"] == 2


def test_the_inbox_stream_sees_runs_executed_elsewhere_by_polling(server, tmp_path: Path):
    server.ctx.changes.poll = 0.05
    with httpx.Client(base_url=server.url, timeout=20) as client, \
            client.stream("GET", "/api/gates/events") as response:
        stream = events(response)
        assert read_until(stream, lambda e: e.get("event") == "inbox")[-1]["data"]["total"] == 2
        make_runs(tmp_path / "runs.db", 1, prefix="cli-")  # another process's store on the same file
        got = read_until(stream, lambda e: e.get("event") == "inbox")
        assert [(e["event"], e["data"]["run_id"]) for e in got[:-1]] == [("waiting", "cli-0")]
        assert got[-1]["data"]["total"] == 3



def test_open_inboxes_share_one_read_of_the_store_and_cost_nothing_once_gone(server):
    server.ctx.changes.poll = server.ctx.changes.keepalive = 3600
    reads: list[str | None] = []
    store, real = server.ctx.store, server.ctx.store.list_runs

    async def counted(**query: Any) -> Any:
        reads.append(query.get("status"))
        return await real(**query)

    store.list_runs = counted  # type: ignore[method-assign]
    baseline = server.tasks()
    clients = [httpx.Client(base_url=server.url, timeout=20) for _ in range(5)]
    contexts = [c.stream("GET", "/api/gates/events") for c in clients]
    streams = [events(context.__enter__()) for context in contexts]
    for stream in streams:
        assert read_until(stream, lambda e: e.get("event") == "inbox")[-1]["data"]["total"] == 2
    assert reads == ["waiting"] and server.ctx.changes.streams == 5  # five inboxes, one read
    for context, client in zip(contexts, clients, strict=True):
        context.__exit__(None, None, None)
        client.close()
    del streams
    wait_for(lambda: server.ctx.changes.streams == 0, "the inbox streams' generators were not stopped")
    wait_for(lambda: server.tasks() <= baseline, f"tasks left behind: {server.tasks()} > {baseline}")

def _version(server: Server) -> Any:
    from waypoint.web.views import pending

    async def go() -> str:
        return (await pending(server.ctx)).version
    return go()
