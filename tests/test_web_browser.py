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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.web_graphs import review_graph
from tests.web_server import served
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


def test_a_reviewer_answers_a_gate_in_the_browser_and_watches_the_run_go_on(tmp_path, browser, shots, has_dot):
    from waypoint.web.security import Auth, hash_password

    db = tmp_path / "runs.db"

    async def gated(store: SQLiteStore) -> int:
        for run_id, title in (("ticket-4711", "kettle <b>#4711</b>"), ("ticket-4712", "toaster #4712")):
            handle = await start(review_graph, {"title": title}, store=store, run_id=run_id)
            assert (await handle.result()).status == "waiting"
        return len(await store.history("ticket-4711"))

    steps_before = read(db, gated)

    async def third(store: SQLiteStore) -> None:
        handle = await start(review_graph, {"title": "lamp #4713"}, store=store, run_id="ticket-4713")
        assert (await handle.result()).status == "waiting"
    auth = Auth(users={"ana": hash_password("correct horse")})
    with served(db, [review_graph], auth=auth) as server:
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

        # the inbox is live: a run another process starts shows up without a reload, and
        # what was being typed into another gate's form stays
        page.wait_for_selector('body[data-live="on"]')
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        gate.locator("input[name=comment]").fill("typed before")
        read(db, lambda store: third(store))
        page.wait_for_selector('li.gate[data-run="ticket-4713"]', timeout=30_000)
        assert page.evaluate("window.__sameDocument") is True
        assert page.locator("li.gate").count() == 3 and page.locator("h1 .count").inner_text() == "3"
        assert [page.locator("li.gate").nth(i).get_attribute("data-run") for i in range(3)] == \
            ["ticket-4711", "ticket-4712", "ticket-4713"]  # the oldest question first
        assert gate.locator("input[name=comment]").input_value() == "typed before"

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
        log = read(db, lambda store: store.history("ticket-4711"))  # what the page must show, whole
        last = log[-1].seq
        if has_dot:  # the SVG of the run as it ended; without `dot`, the table of nodes as text
            assert f"v={last}" in (watcher.locator("img#diagram").get_attribute("src") or "")
        else:
            assert "done" in watcher.locator("table#diagram").inner_text()
        rows = watcher.locator("#timeline tbody tr")
        assert rows.count() == len(log)
        [taken] = [s.seq for s in log if s.kind == "done" and s.extra.get("by") == "ana"]  # the gate's step
        answered = watcher.locator(f'#timeline tr[data-seq="{taken}"]')
        assert answered.locator("td.by").inner_text() == "ana"
        assert "fair enough, refund it" in answered.inner_text()
        if has_dot:
            watcher.wait_for_function(  # the new image loads after the swap: wait for it, then it is drawn
                "() => { const img = document.querySelector('img#diagram'); return img && img.complete && "
                f"img.naturalWidth > 0 && img.src.includes('v={last}'); }}", timeout=30_000)
        assert '"outcome": "refunded"' in watcher.locator("pre.state-json").inner_text()
        assert watcher.locator("form.cancel").count() == 0  # a finished run offers no cancel
        shots(watcher, "run-done")

        page.goto(server.url + "/runs")
        assert page.locator("table.runs tbody tr").count() == 3
        shots(page, "runs")
        page.goto(server.url + "/inbox")
        assert page.locator("li.gate").count() == 2
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
    with served(db, [review_graph], auth=Auth()) as server:
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


def test_a_run_is_forked_with_an_edit_and_the_fork_cancelled_from_its_page(tmp_path, browser):
    from waypoint.web.security import Auth, local_user

    db = tmp_path / "runs.db"

    async def gated(store: SQLiteStore) -> int:
        handle = await start(review_graph, {"title": "kettle"}, store=store, run_id="k-1")
        assert (await handle.result()).status == "waiting"
        return (await store.get_run("k-1")).last_seq

    last = read(db, gated)
    with served(db, [review_graph], auth=Auth()) as server:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/runs/k-1")

        page.fill("#fork-edit", "[1, 2]")  # not an object: refused on the page, nothing made
        page.locator("form.fork button[type=submit]").click()
        page.wait_for_selector(".problem")
        assert "JSON object" in page.locator(".problem").inner_text()
        assert page.locator("#fork-edit").input_value() == "[1, 2]"  # kept as typed

        page.fill("#fork-at", str(last))
        page.fill("#fork-edit", '{"title": "kettle, edited"}')
        page.locator("form.fork button[type=submit]").click()
        page.wait_for_url(lambda url: "/runs/" in url and not url.endswith("/runs/k-1"))
        fork_id = page.url.split("/runs/", 1)[1]
        page.wait_for_selector('#live[data-status="waiting"]', timeout=30_000)
        assert "kettle, edited" in page.locator("pre.state-json").inner_text()
        assert page.locator("p.facts a").first.inner_text() == f"k-1@{last}"

        page.fill("#cancel-reason", "a duplicate")
        page.locator("form.cancel button[type=submit]").click()
        page.wait_for_selector('#live[data-status="cancelled"]', timeout=30_000)
        assert page.locator("#run-status").inner_text() == "cancelled"
        assert errors == []
        context.close()

    async def check(store: SQLiteStore) -> tuple[Any, Any, Any]:
        return await store.get_run(fork_id), await store.history(fork_id), await store.list_runs()
    fork, steps, runs = read(db, check)
    assert fork.status == "cancelled" and fork.forked_from == f"k-1@{last}"
    assert len(runs) == 2  # the refused edit made no run
    edits = [s for s in steps if s.extra.get("by") == local_user()]
    assert edits and any("a duplicate" in str(s.extra) for s in steps)
