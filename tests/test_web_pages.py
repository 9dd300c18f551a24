"""The HTML pages of `waypoint serve` (waypoint/web/pages.py), through create_app and a
real SQLite file: the inbox, a gate's page and its form, runs, a run's page, fork and
cancel; every action as a plain form POST with its CSRF token, no JavaScript.

The app runs in Starlette's TestClient (its own event loop in a thread); the tests read
the same database file through a store of their own to check what was (not) written.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.web_graphs import build_review_graph, review_graph
from waypoint import SQLiteStore, approval_log, start
from waypoint.web.app import create_app
from waypoint.web.security import local_user

EVIL = "<script>alert('x')</script>"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with_store(db: Path, work: Any) -> Any:
    store = SQLiteStore(db)
    try:
        await store.open()
        return await work(store)
    finally:
        await store.close()


def read(db: Path, work: Any) -> Any:
    """Run `work(store)` on a store of the test's own over the server's file."""
    return run(_with_store(db, work))


def started(db: Path, title: str, run_id: str, graph: Any = review_graph) -> None:
    async def go(store: SQLiteStore) -> None:
        handle = await start(graph, {"title": title}, store=store, run_id=run_id)
        assert (await handle.result()).status == "waiting"
    read(db, go)


def status_of(db: Path, run_id: str) -> str:
    async def go(store: SQLiteStore) -> str:
        return (await store.get_run(run_id)).status
    return str(read(db, go))


def settled(db: Path, run_id: str, timeout: float = 30) -> str:
    """The run's status once it stops executing (the server runs it in the background)."""
    deadline = time.monotonic() + timeout
    while (status := status_of(db, run_id)) in ("running", "queued") and time.monotonic() < deadline:
        time.sleep(0.02)
    return status


def log_of(db: Path, run_id: str) -> list[Any]:
    async def go(store: SQLiteStore) -> list[Any]:
        return await store.history(run_id)
    return list(read(db, go))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def client(db: Path) -> Any:
    app = create_app(SQLiteStore(db), [review_graph])
    with TestClient(app) as c:
        yield c


def token_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "every form carries a CSRF token"
    return found.group(1)


def form_of(client: TestClient, url: str) -> tuple[str, str]:
    page = client.get(url)
    assert page.status_code == 200, page.text
    return page.text, token_of(page.text)


def test_the_inbox_lists_every_pending_gate_oldest_first_with_its_form(client, db):
    started(db, "first", "t-1")
    started(db, "second", "t-2")
    page = client.get("/inbox")
    assert page.status_code == 200
    text = page.text
    assert text.index("Refund ticket &#39;first&#39;?") < text.index("Refund ticket &#39;second&#39;?")
    assert 'action="/gates/t-1/review"' in text and 'action="/gates/t-2/review"' in text
    assert text.count('name="csrf_token"') == 2 and 'name="seen_seq" value="2"' in text
    assert 'type="checkbox" id="f-approved" name="approved"' in text
    assert '<option value="low" selected>low</option>' in text  # the default choice
    assert 'min="0" max="1000"' in text and "Refund in euros" in text
    assert 'href="/gates/t-1/review"' in text  # the shareable link
    assert client.get("/", follow_redirects=False).headers["location"] == "/inbox"


def test_a_payload_or_state_holding_a_script_shows_as_text(client, db):
    started(db, EVIL, "evil")
    for url in ("/inbox", "/gates/evil/review", "/runs/evil", "/runs/evil?part=live", "/runs"):
        text = client.get(url).text
        assert "<script>alert" not in text, url
    assert html.escape(EVIL, quote=False) in client.get("/runs/evil").text.replace("&#39;", "'")
    assert "&lt;script&gt;" in client.get("/inbox").text


def test_a_wrong_answer_shows_field_errors_beside_inputs_and_writes_nothing(client, db):
    started(db, "broken kettle", "t-1")
    before = log_of(db, "t-1")
    _, token = form_of(client, "/gates/t-1/review")
    answer = {"csrf_token": token, "seen_seq": "2", "comment": "no", "amount": "5000", "level": "high"}
    refused = client.post("/gates/t-1/review", data=answer, follow_redirects=False)
    assert refused.status_code == 422
    text = refused.text
    assert re.search(r'id="f-comment-error">String should have at least 3 characters<', text)
    assert re.search(r'id="f-amount-error">Input should be less than or equal to 1000<', text)
    assert 'name="comment" value="no"' in text and 'value="5000"' in text  # redrawn as typed
    assert '<option value="high" selected>' in text
    assert log_of(db, "t-1") == before and status_of(db, "t-1") == "waiting"


def test_a_right_answer_takes_the_run_on_and_the_run_page_shows_who_answered(client, db):
    started(db, "broken kettle", "t-1")
    _, token = form_of(client, "/inbox")
    answer = {"csrf_token": token, "seen_seq": "2", "approved": "on", "comment": "fair enough",
              "amount": "40", "level": "low"}
    done = client.post("/gates/t-1/review", data=answer, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/runs/t-1"
    assert settled(db, "t-1") == "done"
    entries = read(db, lambda store: approval_log("t-1", store=store))
    assert [(e.gate, e.by, e.answer["amount"]) for e in entries] == [("review", local_user(), 40)]
    page = client.get("/runs/t-1").text
    assert f'<td class="by">{local_user()}</td>' in page
    assert "&#34;outcome&#34;: &#34;refunded&#34;" in page
    assert "No gate is waiting" in client.get("/inbox").text
    gone = client.get("/gates/t-1/review")
    assert gone.status_code == 200 and "is not waiting at this gate" in gone.text


def test_a_form_without_its_csrf_token_is_refused_and_writes_nothing(client, db):
    started(db, "kettle", "t-1")
    before = log_of(db, "t-1")
    for token in (None, "forged"):
        data = {"approved": "on", "comment": "sure thing", **({"csrf_token": token} if token else {})}
        refused = client.post("/gates/t-1/review", data=data, follow_redirects=False)
        assert refused.status_code == 403 and "csrf_token" in refused.text
    refused = client.post("/runs/t-1/cancel", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert log_of(db, "t-1") == before and status_of(db, "t-1") == "waiting"


def test_an_answer_to_a_question_already_answered_is_refused_and_says_who(client, db):
    started(db, "kettle", "t-1")
    _, token = form_of(client, "/gates/t-1/review")
    right = {"csrf_token": token, "seen_seq": "2", "approved": "on", "comment": "first one"}
    assert client.post("/gates/t-1/review", data=right, follow_redirects=False).status_code == 303
    assert settled(db, "t-1") == "done"
    late = client.post("/gates/t-1/review", data={**right, "comment": "second one"})
    assert late.status_code == 409 and "not waiting at gate" in late.text
    answers = read(db, lambda store: approval_log("t-1", store=store))
    assert [e.answer["comment"] for e in answers] == ["first one"]


def test_a_stale_question_is_refused_when_the_run_moved_on(client, db):
    """Answering with the seq the page showed: if the run is waiting again at a new step,
    the old form's answer is not applied to the new question."""
    started(db, "kettle", "t-1")
    _, token = form_of(client, "/gates/t-1/review")
    answer = {"csrf_token": token, "seen_seq": "1", "approved": "on", "comment": "old page"}
    stale = client.post("/gates/t-1/review", data=answer)
    assert stale.status_code == 409
    assert "t-1" in stale.text and status_of(db, "t-1") == "waiting"


def test_run_ids_and_gates_with_slashes_have_shareable_links(client, db):
    started(db, "nested id", "tenant/42")
    page = client.get("/inbox").text
    assert 'href="/gates/tenant/42/review"' in page
    gate = client.get("/gates/tenant/42/review")
    assert gate.status_code == 200 and "Refund ticket &#39;nested id&#39;?" in gate.text
    assert client.get("/runs/tenant/42").status_code == 200
    missing = client.get("/gates/nobody/review")
    assert missing.status_code == 404 and "no run in this store matches 'nobody/review'" in missing.text


def test_the_runs_table_filters_and_pages(client, db):
    for i in range(5):
        started(db, f"t{i}", f"r-{i}")
    _, token = form_of(client, "/gates/r-0/review")
    client.post("/gates/r-0/review", data={"csrf_token": token, "seen_seq": "2", "approved": "on",
                                           "comment": "all good"})
    assert settled(db, "r-0") == "done"
    everything = client.get("/runs").text
    assert all(f">r-{i}</a>" in everything for i in range(5))
    assert "<th>waiting at</th>" in everything and 'href="/gates/r-3/review"' in everything
    waiting = client.get("/runs?status=waiting").text
    assert ">r-0</a>" not in waiting and ">r-1</a>" in waiting
    assert ">r-0</a>" in client.get("/runs?status=done").text
    assert "No run matches" in client.get("/runs?graph=other").text
    pages, url = [], "/runs?limit=2"
    while url:
        text = client.get(url).text
        pages.append(re.findall(r'<tr class="status-\w+">\s*<td><a href="/runs/([^"]+)"', text))
        found = re.search(r'rel="next" href="([^"]+)"', text)
        url = html.unescape(found.group(1)) if found else ""
        assert ('rel="prev" href="/runs?limit=2"' in text) == (len(pages) > 1)
    assert pages == [["r-4", "r-3"], ["r-2", "r-1"], ["r-0"]]  # newest first, each run once
    bad = client.get("/runs?cursor=nonsense")
    assert bad.status_code == 400 and "cursor" in bad.text


def test_the_run_page_shows_the_state_at_any_step(client, db):
    started(db, "kettle", "t-1")
    now = client.get("/runs/t-1").text
    assert "State now (step 2)" in now and "prepared kettle" in now
    first = client.get("/runs/t-1?at=0").text
    assert "State after step 0" in first and "prepared kettle" not in first.split('id="state"')[1]
    assert '<tr class="kind-done current" data-seq="1">' in client.get("/runs/t-1?at=1").text


@pytest.mark.needs_dot
def test_the_diagram_is_an_svg_of_the_runs_marks(client, db):
    started(db, "kettle", "t-1")
    page = client.get("/runs/t-1").text
    assert 'src="/runs/t-1?part=svg&amp;v=2"' in page
    svg = client.get("/runs/t-1?part=svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and svg.text.startswith("<svg")
    assert "#ffe0b2" in svg.text  # the waiting gate's colour (graphs/render.py)


def test_without_graphviz_the_diagram_is_readable_text(client, db, monkeypatch):
    import waypoint.web.views as views

    monkeypatch.setattr(views.shutil, "which", lambda name: None)
    started(db, "kettle", "t-1")
    page = client.get("/runs/t-1").text
    assert "Graphviz" in page and "apt-get install graphviz" in page
    assert re.search(r"<td>review</td><td><span class=\"badge waiting\">waiting</span></td><td>1</td>", page)
    assert "prepare → review" in page
    assert client.get("/runs/t-1?part=svg").status_code == 404


def test_fork_with_an_edit_and_cancel(client, db):
    started(db, "kettle", "t-1")
    _, token = form_of(client, "/runs/t-1")
    bad = client.post("/runs/t-1/fork", data={"csrf_token": token, "at": "1", "edit": '{"title": 5}'})
    assert bad.status_code == 422 and "title" in bad.text
    assert client.post("/runs/t-1/fork", data={"csrf_token": token, "edit": "[1]"}).status_code == 422
    forked = client.post("/runs/t-1/fork", data={"csrf_token": token, "at": "1", "edit": '{"title": "teapot"}'},
                         follow_redirects=False)
    assert forked.status_code == 303
    fork_id = forked.headers["location"].removeprefix("/runs/")
    assert settled(db, fork_id) == "waiting"
    fork_page = client.get(forked.headers["location"]).text
    assert "forked from" in fork_page and "Refund ticket &#39;teapot&#39;?" in fork_page
    assert f'<td class="by">{local_user()}</td>' in fork_page  # the edit step, by whom
    cancelled = client.post("/runs/t-1/cancel", data={"csrf_token": token, "reason": "duplicate"},
                            follow_redirects=False)
    assert cancelled.status_code == 303 and status_of(db, "t-1") == "cancelled"
    page = client.get("/runs/t-1").text
    assert 'badge cancelled' in page and "Cancel this run" not in page


def test_runs_of_graphs_this_server_was_not_given_are_listed_with_the_cli_command(db):
    other = build_review_graph("elsewhere")
    started(db, "foreign", "f-1", graph=other)
    with TestClient(create_app(SQLiteStore(db), [review_graph])) as client:
        inbox = client.get("/inbox").text
        assert "Refund ticket &#39;foreign&#39;?" in inbox and "waypoint resume f-1 --gate review" in inbox
        assert 'action="/gates/f-1/review"' not in inbox
        page = client.get("/runs/f-1").text
        assert "cannot draw it" in page and "Fork" not in page


def test_the_live_part_is_the_fragment_the_script_swaps_in(client, db):
    started(db, "kettle", "t-1")
    part = client.get("/runs/t-1?part=live").text
    assert '<div id="live" data-status="waiting" data-seq="2"' in part
    assert "<html" not in part and 'id="timeline"' in part
    page = client.get("/runs/t-1").text
    assert 'data-events="/api/runs/t-1/events"' in page and '<script src="/static/live.js"' in page
    assert client.get("/static/live.js").status_code == 200
    assert client.get("/static/waypoint.css").status_code == 200


def test_a_gate_whose_model_has_no_docstring_nor_defaults(db):
    from pydantic import BaseModel

    from waypoint import END, START, GraphBuilder

    class Bare(BaseModel):
        ok: bool

    class State(BaseModel):
        bare: Bare | None = None

    g = GraphBuilder(State, name="bare")
    g.gate("ask", Bare, into="bare")
    g.edge(START, "ask")
    g.edge("ask", END)
    graph = g.compile()

    async def go(store: SQLiteStore) -> str:
        return (await (await start(graph, {}, store=store, run_id="b-1")).result()).status

    assert read(db, go) == "waiting"
    with TestClient(create_app(SQLiteStore(db), [graph])) as client:
        gate = client.get("/gates/b-1/ask")
        assert gate.status_code == 200 and 'name="ok"' in gate.text
        assert client.get("/inbox").status_code == 200


def test_gates_inside_map_items_are_answered_by_their_address(db):
    """A map over a graph with a gate waits once per item (`book[1]/review`): each is in the
    inbox, has its own page, and is answered there, validated by the worker graph's model."""
    from pydantic import BaseModel

    from waypoint import END, START, GraphBuilder

    class Books(BaseModel):
        titles: list[str]
        results: list[dict] = []

    g = GraphBuilder(Books, name="books")
    g.map("book", review_graph, over="titles", into="results", max_items=5,
          input=lambda title: {"title": title}, output=lambda final: {"outcome": final.outcome})
    g.edge(START, "book")
    g.edge("book", END)
    graph = g.compile()

    async def go(store: SQLiteStore) -> list[str]:
        handle = await start(graph, {"titles": ["dune", "emma"]}, store=store, run_id="shelf/1")
        assert (await handle.result()).status == "waiting"
        return list((await store.get_run("shelf/1")).waiting)

    assert read(db, go) == ["book[0]/review", "book[1]/review"]
    with TestClient(create_app(SQLiteStore(db), [graph])) as client:
        inbox = client.get("/inbox").text
        assert 'action="/gates/shelf/1/book%5B1%5D/review"' in inbox
        assert "Refund ticket &#39;emma&#39;?" in inbox and "Refund ticket &#39;dune&#39;?" in inbox
        page = client.get("/gates/shelf/1/book[1]/review").text
        assert "Refund ticket &#39;emma&#39;?" in page and "dune" not in page
        token = token_of(page)
        wrong = client.post("/gates/shelf/1/book%5B1%5D/review", data={"csrf_token": token, "comment": "x"})
        assert wrong.status_code == 422 and 'id="f-comment-error"' in wrong.text
        right = client.post("/gates/shelf/1/book%5B1%5D/review", follow_redirects=False,
                            data={"csrf_token": token, "comment": "a classic", "approved": "on"})
        assert right.status_code == 303 and right.headers["location"] == "/runs/shelf/1"
        assert settled(db, "shelf/1") == "waiting"
        entries = read(db, lambda store: approval_log("shelf/1", store=store))
        assert [(e.answer["comment"], e.by) for e in entries] == [("a classic", local_user())]
        left = client.get("/inbox").text
        assert "Refund ticket &#39;dune&#39;?" in left and "emma" not in left


def test_a_gate_with_a_deadline_shows_it_and_says_when_it_passed(db):
    from pydantic import BaseModel

    from waypoint import END, START, GraphBuilder

    class Ok(BaseModel):
        ok: bool

    class State(BaseModel):
        ok: Ok | None = None

    def build(seconds: float) -> Any:
        g = GraphBuilder(State, name=f"timed{int(seconds)}")
        g.gate("ask", Ok, into="ok", prompt="Quick?", deadline=seconds, escalate="late")
        g.node(lambda s: None, name="late", writes=[])
        g.edge(START, "ask")
        g.edge("ask", END)
        g.edge("late", END)
        return g.compile()

    soon, later = build(-1), build(3600)

    async def go(store: SQLiteStore) -> None:
        for graph, run_id in ((soon, "late-1"), (later, "slow-1")):
            assert (await (await start(graph, {}, store=store, run_id=run_id)).result()).status == "waiting"

    read(db, go)
    with TestClient(create_app(SQLiteStore(db), [soon, later])) as client:
        inbox = client.get("/inbox").text
        assert inbox.count("<dt>deadline</dt>") == 2 and inbox.count("(passed)") == 1
        passed = inbox.split('data-run="late-1"')[1].split("</li>")[0]
        assert '<dd class="late">' in passed and "(passed)" in passed


@pytest.mark.parametrize("url", ["/runs/nobody", "/runs/nobody?part=svg", "/gates/", "/gates/x",
                                 "/runs?status=bogus&limit=0", "/runs?limit=99999999999", "/runs/t-1?at=999",
                                 "/runs/t-1?at=-1", "/runs/t-1?part=nonsense", "/gates/t-1/nope"])
def test_odd_urls_get_an_answer_not_a_crash(client, db, url):
    started(db, "kettle", "t-1")
    response = client.get(url)
    assert response.status_code in (200, 400, 404), (url, response.text[-500:])


def test_the_inbox_pages_in_the_exact_order_questions_were_asked(client, db, monkeypatch):
    """Pages are cut by gate (when asked, run, address), not by a run's last change: a run
    touched after its question (here its lease taken and given back) keeps its place."""
    import waypoint.web.pages as pages

    monkeypatch.setattr(pages, "INBOX_PAGE", 2)
    for i in range(3):
        started(db, f"t{i}", f"w-{i}")

    async def touch(store: SQLiteStore) -> None:  # w-0's row changes last; its question is still the oldest
        info = await store.claim("w-0", "someone", 30)
        await store.release("w-0", "someone", "waiting", waiting=list(info.waiting))
    read(db, touch)
    first = client.get("/inbox").text
    assert re.findall(r'data-run="(w-\d)"', first) == ["w-0", "w-1"]
    assert 'rel="prev"' not in first
    assert '<span class="count" title="gates waiting for an answer">3</span>' in first
    assert "Gates 1 to 2 of 3 waiting" in first
    after = re.search(r'rel="next" href="(/inbox\?cursor=[^"]+)"', first)
    assert after is not None
    second = client.get(after.group(1).replace("&amp;", "&")).text
    assert re.findall(r'data-run="(w-\d)"', second) == ["w-2"] and 'rel="prev" href="/inbox"' in second
    assert "Gates 3 to 3 of 3" in second and 'rel="next"' not in second
    assert client.get("/inbox?cursor=nonsense").status_code == 400
