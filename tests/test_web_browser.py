"""The pages in a real browser: Playwright driving Debian's Chromium against a real uvicorn
on 127.0.0.1, over a real SQLite file.

The scenario of issue 15: a gated run is started, a reviewer logs in and sees it in the
inbox, submits a wrong answer (the errors show beside the inputs, nothing is written:
checked in the store), then a right one; the run's page, open in another tab since
before the answer, redraws its diagram and timeline live (no reload) and names who
approved. Screenshots of each page go to the test's tmp dir; with
WAYPOINT_SCREENSHOTS=docs/web they are written there too (the ones docs/web.md shows).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.web_graphs import review_graph
from waypoint import SQLiteStore, approval_log, start

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="apt-get install -y chromium"),
    pytest.mark.timeout(180),
]


def read(db: Path, work: Any) -> Any:
    """`work(store)` on a store of the test's own over the server's database file, in a
    thread of its own: Playwright's sync API keeps an event loop running in this one."""
    async def go() -> Any:
        store = SQLiteStore(db)
        try:
            await store.open()
            return await work(store)
        finally:
            await store.close()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


class Server:
    """`create_app` served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, db: Path, auth: Any) -> None:
        import uvicorn

        from waypoint.web.app import create_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(SQLiteStore(db), [review_graph], auth=auth, allowed_hosts=[f"127.0.0.1:{self.port}"])
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        ready = threading.Event()

        def watch() -> None:  # uvicorn sets .started once it listens
            while not self.server.started and self.thread.is_alive():
                ready.wait(0.01)
            ready.set()

        threading.Thread(target=watch, daemon=True).start()
        assert ready.wait(30) and self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Any]:
    """save(page, name): a screenshot in tmp_path, and in $WAYPOINT_SCREENSHOTS when set."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    also = os.environ.get("WAYPOINT_SCREENSHOTS")

    def save(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if also:
            Path(also).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(also) / path.name)
        return path

    yield save


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_a_reviewer_answers_a_gate_in_the_browser_and_watches_the_run_go_on(tmp_path, browser, shots):
    from waypoint.web.security import Auth, hash_password

    db = tmp_path / "runs.db"

    async def gated(store: SQLiteStore) -> int:
        for run_id, title in (("ticket-4711", "kettle <b>#4711</b>"), ("ticket-4712", "toaster #4712")):
            handle = await start(review_graph, {"title": title}, store=store, run_id=run_id)
            assert (await handle.result()).status == "waiting"
        return len(await store.history("ticket-4711"))

    steps_before = read(db, gated)
    auth = Auth(users={"ana": hash_password("correct horse")})
    with Server(db, auth) as server:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(server.url + "/inbox")  # not logged in: the login form, then back here
        assert "/login" in page.url
        page.fill("input[name=user]", "ana")
        page.fill("input[name=secret]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(server.url + "/inbox")
        gate = page.locator('li.gate[data-run="ticket-4711"]')
        assert gate.locator(".prompt").inner_text() == "Refund ticket 'kettle <b>#4711</b>'?"  # as text
        assert page.locator("li.gate").count() == 2
        shots(page, "inbox")

        # the run's page, open in a second tab before anyone answers
        watcher = context.new_page()
        watcher.on("pageerror", lambda exc: errors.append(str(exc)))
        watcher.goto(server.url + "/runs/ticket-4711")
        assert watcher.locator("#run-status").inner_text() == "waiting"
        watcher.evaluate("window.__sameDocument = true")  # gone if the page reloads
        shots(watcher, "run-waiting")

        # a wrong answer: the comment is too short, which only the server knows
        gate.locator("input[name=approved]").check()
        gate.locator("input[name=comment]").fill("no")
        gate.locator("input[name=amount]").fill("40")
        gate.locator("button[type=submit]").click()
        page.wait_for_selector("#f-comment-error")
        assert page.locator("#f-comment-error").inner_text() == "String should have at least 3 characters"
        assert page.locator("input[name=comment]").input_value() == "no"  # kept as typed
        assert page.locator("input[name=approved]").is_checked()
        assert len(read(db, lambda store: store.history("ticket-4711"))) == steps_before  # nothing written
        shots(page, "wrong-answer")

        # the right answer: on to the run's page
        page.locator("input[name=comment]").fill("fair enough, refund it")
        page.locator("form.answer button[type=submit]").click()
        page.wait_for_url(server.url + "/runs/ticket-4711")

        # the watching tab redraws by itself: diagram and timeline, no reload
        watcher.wait_for_selector('#live[data-status="done"]', timeout=30_000)
        assert watcher.evaluate("window.__sameDocument") is True
        assert watcher.locator("#run-status").inner_text() == "done"
        assert "v=4" in (watcher.locator("img#diagram").get_attribute("src") or "")
        rows = watcher.locator("#timeline tbody tr")
        assert rows.count() == 4
        answered = watcher.locator('#timeline tr[data-seq="3"]')
        assert answered.locator("td.by").inner_text() == "ana"
        assert "fair enough, refund it" in answered.inner_text()
        watcher.wait_for_function(  # the new image loads after the swap: wait for it, then it is drawn
            "() => { const img = document.querySelector('img#diagram'); return img && img.complete && "
            "img.naturalWidth > 0 && img.src.includes('v=4'); }", timeout=30_000)
        assert '"outcome": "refunded"' in watcher.locator("pre.state-json").inner_text()
        assert watcher.locator("form.cancel").count() == 0  # a finished run offers no cancel
        shots(watcher, "run-done")

        page.goto(server.url + "/runs")
        assert page.locator("table.runs tbody tr").count() == 2
        shots(page, "runs")
        page.goto(server.url + "/inbox")
        assert page.locator("li.gate").count() == 1
        assert errors == []
        context.close()

    entries = read(db, lambda store: approval_log("ticket-4711", store=store))
    assert [(e.gate, e.by, e.answer["comment"]) for e in entries] == [("review", "ana", "fair enough, refund it")]


def test_every_action_works_without_javascript(tmp_path, browser):
    """With JavaScript off, answering is a plain form POST and a redirect (Auth(): loopback)."""
    from waypoint.web.security import Auth, local_user

    db = tmp_path / "runs.db"

    async def gated(store: SQLiteStore) -> None:
        handle = await start(review_graph, {"title": "mug"}, store=store, run_id="m-1")
        assert (await handle.result()).status == "waiting"

    read(db, gated)
    with Server(db, Auth()) as server:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(server.url + "/gates/m-1/review")
        page.locator("input[name=comment]").fill("fine by me")
        page.locator("select[name=level]").select_option("high")
        page.locator("form.answer button[type=submit]").click()
        page.wait_for_url(server.url + "/runs/m-1")
        page.goto(server.url + "/runs/m-1/")  # a trailing slash is not a run id of its own
        context.close()
    entries = read(db, lambda store: approval_log("m-1", store=store))
    assert [(e.by, e.answer["level"]) for e in entries] == [(local_user(), "high")]
