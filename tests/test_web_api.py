"""The JSON API of `waypoint serve` against a real uvicorn on 127.0.0.1 and a real SQLite file.

Runs are made with the library (a store of the test's own, before the server opens the
file) or through the API; what was written is read back through the API or the store.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.web_graphs import review_graph
from tests.web_server import served
from waypoint import SQLiteStore, start
from waypoint.web.security import local_user

GOOD = {"approved": True, "comment": "fine by me"}


def make_runs(db: Path, count: int, prefix: str = "r") -> list[str]:
    """`count` runs of the review graph waiting at its gate, oldest first."""
    async def go() -> list[str]:
        store = SQLiteStore(db)
        try:
            for i in range(count):
                handle = await start(review_graph, {"title": f"t{i}"}, store=store, run_id=f"{prefix}{i}")
                assert (await handle.result()).status == "waiting"
            return [f"{prefix}{i}" for i in range(count)]
        finally:
            await store.close()
    return asyncio.run(go())


def settled(client: httpx.Client, run_id: str, timeout: float = 30, **request: Any) -> dict[str, Any]:
    """The run once nothing executes it (waiting, done, failed...)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/api/runs/{run_id}", **request).json()
        if not run["executing"] and run["status"] not in ("running", "queued"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.05)


@pytest.fixture
def api(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 3)
    refs = {"review": "tests/web_graphs.py:review_graph"}
    with served(tmp_path / "runs.db", [review_graph], refs=refs) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, server


# -- reading ---------------------------------------------------------------------------
def test_runs_are_paged_newest_first_with_a_cursor(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 7)
    with served(tmp_path / "runs.db", [review_graph]) as server, httpx.Client(base_url=server.url) as client:
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/runs", params=params).json()
            seen += [run["run_id"] for run in body["runs"]]
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
        assert pages == 3 and seen == [f"r{i}" for i in reversed(range(7))]
        assert client.get("/api/runs", params={"status": "done"}).json() == {"runs": [], "next": None}
        waiting = client.get("/api/runs", params={"status": "waiting", "graph": "review"}).json()["runs"]
        assert len(waiting) == 7
        assert client.get("/api/runs", params={"graph": "other"}).json()["runs"] == []


@pytest.mark.parametrize("query, word", [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
                                         ({"status": "sleeping"}, "status"), ({"cursor": "!!"}, "cursor")])
def test_bad_query_parameters_are_400_naming_the_parameter(api, query, word):
    client, _ = api
    response = client.get("/api/runs", params=query)
    assert response.status_code == 400 and word in response.json()["error"]


def test_a_run_its_steps_and_its_state_at_a_step(api):
    client, _ = api
    run = client.get("/api/runs/r1").json()
    assert run["status"] == "waiting" and run["waiting"] == ["review"]
    assert [g["gate"] for g in run["gates"]] == ["review"] and run["gates"][0]["schema"]["title"] == "Review"
    steps = client.get("/api/runs/r1/steps").json()["steps"]
    assert [s["seq"] for s in steps] == list(range(1, run["last_seq"] + 1))
    assert [s["seq"] for s in client.get("/api/runs/r1/steps", params={"after": 1}).json()["steps"]] == \
        list(range(2, run["last_seq"] + 1))
    assert client.get("/api/runs/r1/state", params={"at": 0}).json()["state"]["notes"] == []
    assert client.get("/api/runs/r1/state").json()["state"]["notes"] == ["prepared t1"]
    assert client.get("/api/runs/r1/state", params={"at": 99}).status_code == 404


def test_an_unknown_run_is_404_with_the_stores_message(api):
    client, _ = api
    for path in ("/api/runs/nope", "/api/runs/nope/steps", "/api/runs/nope/state", "/api/runs/nope/events"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["error"] and response.json()["type"] == "RunNotFoundError"
    response = client.post("/api/runs/nope/resume", json={"answer": GOOD})
    assert response.status_code == 404


def test_the_inbox_lists_every_pending_gate_oldest_first(api):
    client, _ = api
    gates = client.get("/api/gates").json()["gates"]
    assert [(g["run_id"], g["gate"]) for g in gates] == [("r0", "review"), ("r1", "review"), ("r2", "review")]
    assert gates[0]["prompt"] == "Refund ticket 't0'?" and gates[0]["payload"]["title"] == "t0"
    assert gates[0]["answerable"] is True and gates[0]["seq"] == client.get("/api/runs/r0").json()["last_seq"]



def test_the_inbox_is_paged_with_a_cursor_replaying_only_the_runs_of_a_page(tmp_path: Path, monkeypatch):
    import waypoint.web.views as views

    make_runs(tmp_path / "runs.db", 5)
    replayed: list[str] = []
    real = views.gates_of

    async def counted(ctx: Any, info: Any) -> Any:
        replayed.append(info.run_id)
        return await real(ctx, info)

    monkeypatch.setattr(views, "gates_of", counted)
    with served(tmp_path / "runs.db", [review_graph]) as server, httpx.Client(base_url=server.url) as client:
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/gates", params=params).json()
            assert body["total"] == 5 and len(body["gates"]) <= 2
            seen += [g["run_id"] for g in body["gates"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == [f"r{i}" for i in range(5)] and sorted(replayed) == seen  # each run replayed once
        assert client.get("/api/gates", params={"cursor": "!!"}).status_code == 400
        assert client.get("/api/gates", params={"limit": 0}).status_code == 400
        spec = client.get("/api/openapi.json").json()["paths"]["/api/gates"]["get"]
        assert {p["name"] for p in spec["parameters"]} == {"limit", "cursor"}

def test_graphs_come_with_their_diagrams(api, has_dot):
    client, _ = api
    [graph] = client.get("/api/graphs").json()["graphs"]
    assert graph["name"] == "review" and graph["ref"] == "tests/web_graphs.py:review_graph"
    assert graph["mermaid"].startswith("flowchart") and "digraph" in graph["dot"]
    assert "<svg" in (graph["svg"] or "") if has_dot else graph["svg"] is None
    mermaid = client.get("/api/runs/r0/diagram", params={"format": "mermaid"})
    assert mermaid.status_code == 200 and "flowchart" in mermaid.text


def test_without_graphviz_a_diagram_is_mermaid_and_svg_is_a_clear_refusal(api, monkeypatch, tmp_path):
    """The server offers what it can draw: no 5xx for a missing optional binary (the fuzz asks for it)."""
    client, _ = api
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` (the server's thread reads PATH per call)
    plain = client.get("/api/runs/r0/diagram")
    assert plain.status_code == 200 and plain.text.startswith("flowchart")  # the default without dot
    svg = client.get("/api/runs/r0/diagram", params={"format": "svg"})
    assert svg.status_code == 400 and "apt-get install graphviz" in svg.json()["error"]
    spec = client.get("/api/openapi.json").json()["paths"]["/api/runs/{run_id}/diagram"]["get"]
    [fmt] = [p for p in spec["parameters"] if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["mermaid", "dot"]


# -- changing ----------------------------------------------------------------------------
def test_start_is_idempotent_by_run_id_with_if_exists_resume(api):
    client, server = api
    first = client.post("/api/runs", json={"graph": "review", "input": {"title": "x"}, "run_id": "mine"})
    assert first.status_code == 201 and first.json()["run_id"] == "mine"
    before = settled(client, "mine")
    assert before["status"] == "waiting"
    again = client.post("/api/runs", json={"graph": "review", "input": {"title": "x"}, "run_id": "mine"})
    assert again.status_code == 409 and "mine" in again.json()["error"]
    same = client.post("/api/runs", json={"graph": "review", "input": {"title": "y"}, "run_id": "mine",
                                          "if_exists": "resume"})
    # a waiting run is returned as it stands: not resumed just to pause again (it never reads `running`)
    assert same.status_code == 200 and same.json()["status"] == "waiting"
    assert same.json()["updated_at"] == before["updated_at"] and same.json()["last_seq"] == before["last_seq"]
    assert not server.ctx.handles
    assert settled(client, "mine")["status"] == "waiting"
    assert client.get("/api/runs/mine/state").json()["state"]["title"] == "x"  # the input was ignored


def test_start_refuses_what_does_not_fit(api):
    client, _ = api
    bad = client.post("/api/runs", json={"graph": "review", "input": {"titel": "x"}})
    assert bad.status_code == 400 and "'titel' is not a field of Ticket" in bad.json()["error"]
    unknown = client.post("/api/runs", json={"graph": "nope"})
    assert unknown.status_code == 404 and "graphs served: review" in unknown.json()["error"]
    typo = client.post("/api/runs", json={"graph": "review", "inptu": {}})
    assert typo.status_code == 422 and "inptu" in typo.json()["error"]
    broken = client.post("/api/runs", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    form = client.post("/api/runs", data={"graph": "review"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]


def test_a_wrong_answer_is_422_with_field_errors_and_writes_nothing(api):
    client, _ = api
    before = client.get("/api/runs/r0").json()
    response = client.post("/api/runs/r0/resume", json={"answer": {"approved": "perhaps", "comment": "no",
                                                                   "colour": 1}})
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "InvalidAnswer" and "does not fit Review" in body["error"]
    assert {tuple(f["loc"]) for f in body["fields"]} == {("approved",), ("comment",), ("colour",)}
    assert client.get("/api/runs/r0").json() == before


def test_an_answer_is_given_by_the_authenticated_user_and_a_second_one_is_409(api):
    client, _ = api
    seq = client.get("/api/runs/r0").json()["last_seq"]
    response = client.post("/api/runs/r0/resume", json={"gate": "review", "answer": GOOD, "seen_seq": seq})
    assert response.status_code == 202
    assert settled(client, "r0")["status"] == "done"
    assert client.get("/api/runs/r0/state").json()["state"]["outcome"] == "refunded"
    [entry] = client.get("/api/approvals", params={"run_id": "r0"}).json()["approvals"]
    assert entry["by"] == local_user() and entry["answer"]["comment"] == "fine by me"
    again = client.post("/api/runs/r0/resume", json={"answer": GOOD})
    assert again.status_code == 409 and "already finished" in again.json()["error"]
    named = client.post("/api/runs/r0/resume", json={"gate": "review", "answer": GOOD})
    assert named.status_code == 409 and "already finished" in named.json()["error"]
    typo = client.post("/api/runs/r1/resume", json={"gate": "reveiw", "answer": GOOD})
    assert typo.status_code == 400 and "no gate 'reveiw'" in typo.json()["error"]
    stale = client.post("/api/runs/r1/resume", json={"answer": GOOD, "seen_seq": 1})
    assert stale.status_code == 409 and stale.json()["type"] == "StaleAnswerError"
    assert client.get("/api/runs/r1").json()["status"] == "waiting"


def test_an_answer_to_a_run_executing_elsewhere_is_409(api):
    client, server = api
    from waypoint.engine import _lease

    owner = _lease.new_owner()  # this live process: its lease is honoured
    server.call(server.ctx.store.claim("r2", owner, 60.0))
    response = client.post("/api/runs/r2/resume", json={"answer": GOOD})
    assert response.status_code == 409 and response.json()["type"] == "StaleAnswerError"
    assert "being executed by" in response.json()["error"]
    cancel = client.post("/api/runs/r2/cancel", json={})
    assert cancel.status_code == 409 and cancel.json()["type"] == "LeaseError"


def test_fork_with_an_edit_and_cancel(api):
    client, _ = api
    forked = client.post("/api/runs/r1/fork", json={"at": 1, "update": {"title": "edited"}, "run_id": "r1b"})
    assert forked.status_code == 201 and forked.json()["forked_from"] == "r1@1"
    assert settled(client, "r1b")["status"] == "waiting"
    assert client.get("/api/runs/r1b/state").json()["state"]["title"] == "edited"
    edit = [s for s in client.get("/api/runs/r1b/steps").json()["steps"] if s["kind"] == "edit"]
    assert edit and edit[0]["extra"]["by"] == local_user()
    bad = client.post("/api/runs/r1/fork", json={"update": {"title": 3}})
    assert bad.status_code == 422 and "title" in bad.json()["error"]
    cancelled = client.post("/api/runs/r1b/cancel", json={"reason": "test"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert f"cancelled by {local_user()}: test" in cancelled.json()["error"]
    assert client.post("/api/runs/r1b/resume", json={"answer": GOOD}).status_code == 409


def test_the_openapi_document_describes_every_route(api):
    client, _ = api
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/api/runs", "/api/runs/{run_id}/resume", "/api/runs/{run_id}/events", "/api/gates",
            "/api/approvals", "/api/graphs"} <= set(doc["paths"])
    assert doc["components"]["schemas"]["StartBody"]["properties"]["graph"]["enum"] == ["review"]


def test_answers_can_be_queued_for_a_worker(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 1)
    with served(tmp_path / "runs.db", [review_graph], enqueue=True) as server, \
            httpx.Client(base_url=server.url) as client:
        response = client.post("/api/runs/r0/resume", json={"answer": GOOD})
        assert response.status_code == 202 and response.json()["status"] == "queued"
        started = client.post("/api/runs", json={"graph": "review", "input": {"title": "q"}, "run_id": "q"})
        assert started.status_code == 201 and started.json()["status"] == "queued"
        assert client.post("/api/runs", json={"graph": "review", "run_id": "q"}).status_code == 409
        again = client.post("/api/runs", json={"graph": "review", "run_id": "q", "if_exists": "resume"})
        assert again.status_code == 200 and again.json()["status"] == "queued"
        assert not server.ctx.tasks  # nothing executes here


def test_a_cursor_whose_run_left_the_filter_continues_after_it(tmp_path: Path):
    make_runs(tmp_path / "runs.db", 5)
    with served(tmp_path / "runs.db", [review_graph]) as server, httpx.Client(base_url=server.url) as client:
        first = client.get("/api/runs", params={"status": "waiting", "limit": 2}).json()
        assert [r["run_id"] for r in first["runs"]] == ["r4", "r3"]
        assert client.post("/api/runs/r3/resume", json={"answer": GOOD}).status_code == 202
        assert settled(client, "r3")["status"] == "done"  # the cursor's run is no longer "waiting"
        waiting = {"status": "waiting", "limit": 2}
        second = client.get("/api/runs", params={**waiting, "cursor": first["next"]}).json()
        assert [r["run_id"] for r in second["runs"]] == ["r2", "r1"]
        third = client.get("/api/runs", params={**waiting, "cursor": second["next"]}).json()
        assert [r["run_id"] for r in third["runs"]] == ["r0"] and third["next"] is None


def test_of_concurrent_answers_to_one_gate_exactly_one_is_taken(api):
    client, server = api
    from concurrent.futures import ThreadPoolExecutor

    seq = client.get("/api/runs/r1").json()["last_seq"]

    def answer(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as own:
            body = {"answer": {**GOOD, "comment": f"answer {i}"}, "seen_seq": seq}
            return own.post("/api/runs/r1/resume", json=body).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(answer, range(6)))
    assert codes == [202, 409, 409, 409, 409, 409]
    assert settled(client, "r1")["status"] == "done"
    assert len(client.get("/api/approvals", params={"run_id": "r1"}).json()["approvals"]) == 1
    assert client.post("/api/runs/r1/fork", json={"at": 999}).status_code == 400


def slow_graph() -> Any:
    """start -> wait (sleeps an hour: a run that is executing when the test acts) -> end."""
    from pydantic import BaseModel
    from waypoint import END, START, GraphBuilder

    class Slow(BaseModel):
        note: str = ""

    g = GraphBuilder(Slow, name="slow")

    @g.node
    async def wait(state: Slow) -> dict[str, str]:
        await asyncio.sleep(3600)
        return {"note": "woke"}

    g.edge(START, "wait")
    g.edge("wait", END)
    return g.compile()


def executing(client: httpx.Client, run_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not client.get(f"/api/runs/{run_id}").json()["executing"]:
        assert time.monotonic() < deadline, f"run {run_id} never started executing"
        time.sleep(0.02)


def test_a_run_executing_here_is_cancelled_here_and_the_others_are_interrupted_at_shutdown(tmp_path: Path):
    db = tmp_path / "runs.db"
    with served(db, [slow_graph()]) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for run_id in ("a", "b"):
            assert client.post("/api/runs", json={"graph": "slow", "run_id": run_id}).status_code == 201
            executing(client, run_id)
        cancelled = client.post("/api/runs/a/cancel", json={"reason": "no need"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while list(server.ctx.handles) != ["b"]:  # a's task lets go of it once the run settled
            assert time.monotonic() < deadline, list(server.ctx.handles)
            time.sleep(0.02)

    async def statuses() -> dict[str, str]:
        store = SQLiteStore(db)
        try:
            return {r.run_id: r.status for r in await store.list_runs()}
        finally:
            await store.close()

    assert asyncio.run(statuses()) == {"a": "cancelled", "b": "interrupted"}  # b: resumable as it is


# -- what the server gives its runs ---------------------------------------------------------
def ledger_graph() -> Any:
    """book (uses ctx.deps) -> confirm (a gate) -> book again: deps on start and after an answer."""
    from pydantic import BaseModel
    from waypoint import END, START, GraphBuilder, NodeContext

    class Confirm(BaseModel):
        ok: bool

    class Order(BaseModel):
        order: str
        confirm: Confirm | None = None

    g = GraphBuilder(Order, name="ledger")

    def book(state: Order, ctx: NodeContext) -> dict[str, Any]:
        ctx.deps["ledger"].append((state.order, state.confirm is not None))
        return {}

    def rebook(state: Order, ctx: NodeContext) -> dict[str, Any]:
        return book(state, ctx)

    g.node(book)
    g.gate("confirm", Confirm, into="confirm")
    g.node(rebook)
    g.edge(START, "book")
    g.edge("book", "confirm")
    g.edge("confirm", "rebook")
    g.edge("rebook", END)
    return g.compile()


def test_the_server_gives_its_runs_deps_and_hooks(tmp_path: Path):
    from waypoint.engine.hooks import RunHooks

    ledger: list[tuple[str, bool]] = []
    ended: list[str] = []

    class Ends(RunHooks):
        def on_run_end(self, event: Any) -> None:
            ended.append(event.kind)

    with served(tmp_path / "runs.db", [ledger_graph()], deps={"ledger": ledger}, hooks=Ends()) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        started = client.post("/api/runs", json={"graph": "ledger", "input": {"order": "A"}, "run_id": "a"})
        assert started.status_code == 201
        assert settled(client, "a")["status"] == "waiting" and ledger == [("A", False)]
        assert client.post("/api/runs/a/resume", json={"answer": {"ok": True}}).status_code == 202
        assert settled(client, "a")["status"] == "done"
        assert ledger == [("A", False), ("A", True)] and ended[-1] == "run_finished"


def test_deps_are_refused_with_enqueue(tmp_path: Path):
    from waypoint.web.app import create_app

    with pytest.raises(ValueError, match="belong to the workers"):
        create_app(SQLiteStore(tmp_path / "runs.db"), [review_graph], enqueue=True, deps={"x": 1})


def test_serve_in_thread_serves_until_stopped_and_says_why_it_could_not_start(tmp_path: Path):
    from waypoint.web import serve_in_thread
    from waypoint.web.app import create_app

    make_runs(tmp_path / "runs.db", 1)
    app = create_app(SQLiteStore(tmp_path / "runs.db"), [review_graph], owns_store=True)
    mine = socket.socket()  # a socket of yours (proto 0: asyncio would not set TCP_NODELAY on it)
    mine.bind(("127.0.0.1", 0))
    with serve_in_thread(app, sock=mine) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port == mine.getsockname()[1]
        assert mine.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # no 40 ms per response
        assert [r["run_id"] for r in httpx.get(server.url + "/api/runs").json()["runs"]] == ["r0"]
    with pytest.raises(httpx.ConnectError):  # stopped: nothing listens there any more
        httpx.get(server.url + "/api/runs")
    again = create_app(SQLiteStore(tmp_path / "runs.db"), [review_graph], owns_store=True)
    url, stop = serve_in_thread(again)
    try:
        assert httpx.get(url + "/api/graphs").status_code == 200
    finally:
        stop()
        stop()  # idempotent
    broken = create_app(SQLiteStore(tmp_path / "no such dir" / "runs.db"), [review_graph], owns_store=True)
    with pytest.raises(RuntimeError, match="did not start"):
        serve_in_thread(broken, log_level="critical")


def test_a_retried_start_of_a_run_whose_wait_came_due_applies_the_deadline(tmp_path: Path):
    """Nothing to do is the only reason a retried start leaves a waiting run alone."""
    from pydantic import BaseModel
    from waypoint import END, START, GraphBuilder

    class Ok(BaseModel):
        ok: bool

    class Case(BaseModel):
        name: str
        outcome: str = ""

    g = GraphBuilder(Case, name="due")
    g.gate("approve", Ok, deadline=0.0, escalate="escalate")  # due as soon as it is asked

    @g.node
    def escalate(state: Case) -> dict[str, Any]:
        return {"outcome": "escalated"}

    g.edge(START, "approve")
    g.edge("approve", END)
    g.edge("escalate", END)
    with served(tmp_path / "runs.db", [g.compile()]) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"graph": "due", "input": {"name": "c"}, "run_id": "c", "if_exists": "resume"}
        assert client.post("/api/runs", json=body).status_code == 201
        assert settled(client, "c")["status"] == "waiting"
        assert client.post("/api/runs", json=body).status_code == 200
        assert settled(client, "c")["status"] == "done"
        assert client.get("/api/runs/c/state").json()["state"]["outcome"] == "escalated"
