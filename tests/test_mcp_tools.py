"""MCP servers as tools, against real MCP server processes the tests start.

The server (tests/mcp_servers/catalog.py) is written with the SDK's MCPServer and
runs over stdio (the node starts it) or over streamable HTTP on 127.0.0.1 (the test
starts it on a free port and waits until the port accepts connections). The model
is the scripted one; the server logs its pids and calls to files, so the tests see
that a process was reaped and that a committed call was not made again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import waypoint as wp
from pydantic import BaseModel
from waypoint.nodes.mcp_tools import MCPServerError, MCPTools
from waypoint.testing import ScriptedModel, tool_call

CATALOG = Path(__file__).resolve().parent / "mcp_servers" / "catalog.py"


class Shop(BaseModel):
    question: str
    answer: str = ""


def shop(*tools: object) -> wp.Graph:
    g = wp.GraphBuilder(Shop, name="shop")
    g.add(wp.llm("agent", prompt="{question}", into="answer", tools=list(tools)))
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    return g.compile()


def stdio_catalog(state: Path, *, version: int = 1, **options: object) -> MCPTools:
    return wp.mcp_tools([sys.executable, str(CATALOG), str(state), "--version", str(version)], **options)


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines() if (state / "calls").exists() else []


def pids(state: Path) -> list[int]:
    return [int(line) for line in (state / "pids").read_text().split()]


def reaped(pid: int) -> bool:
    """No such process: it exited and was waited for (a zombie still answers signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def owner_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("MCP server")]


def stray_tasks() -> list[str]:
    """Tasks left running besides this test's and a SQLite store's writer: none of the SDK's, none of ours."""
    return [f"{t.get_name()}: {t.get_coro()!r}" for t in asyncio.all_tasks()
            if t is not asyncio.current_task() and "GroupCommit" not in repr(t.get_coro())]


def tool_names(request: wp.ModelRequest) -> list[str]:
    return [spec["name"] for spec in request.tools]


def tool_results(request: wp.ModelRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


async def run(graph: wp.Graph, store: object, model: ScriptedModel, *, resume: bool = False,
              run_id: str = "r") -> wp.RunResult[Shop]:
    deps = {"model": model}
    if resume:
        handle = await wp.resume(graph, run_id, store=store, deps=deps)
    else:
        handle = await wp.start(graph, {"question": "What do apples cost?"}, store=store, run_id=run_id,
                                deps=deps)
    return await handle.result(raise_on_failure=False)


@pytest.mark.asyncio
async def test_a_stdio_server_s_tools_are_offered_called_and_recorded_with_the_first_turn(store, tmp_path):
    catalog = stdio_catalog(tmp_path)
    model = ScriptedModel([
        [tool_call("price", {"item": "apple"}), tool_call("price", {"item": "kiwi"})],  # two calls at once
        [tool_call("price", {"item": 5}), tool_call("price", "[1, 2]")],  # bad arguments, twice
        "Apples cost 3 EUR.",
    ])
    result = await run(shop(catalog), store, model)
    assert result.status == "done", result.error
    assert result.state.answer == "Apples cost 3 EUR."

    first = model.requests[0]
    assert tool_names(first) == ["price", "crash", "hang"]
    assert first.tools[0]["description"] == "The price of an item, in euros."
    assert first.tools[0]["parameters"]["required"] == ["item"]  # the server's own schema
    answers = tool_results(model.requests[1])
    assert answers[0] == "apple: 3 EUR"
    assert answers[1].startswith("Error: ") and "no price for 'kiwi'" in answers[1]  # the server's tool error
    second = tool_results(model.requests[2])[2:]
    assert second[0].startswith("Error: ") and "item" in second[0]  # refused by the server's schema
    assert second[1].startswith("Error: invalid arguments for 'price'")  # not a JSON object: never sent
    assert calls(tmp_path) == ["price apple", "price kiwi"]

    steps = await store.history("r")
    turns = [s.extra["result"] for s in steps if s.kind == "item"]
    assert [t.get("toolsets") is not None for t in turns] == [True, False]  # the listing rides on turn 0
    assert [spec["name"] for spec in turns[0]["toolsets"][catalog.label]] == ["price", "crash", "hang"]
    done = next(s for s in steps if s.kind == "done")
    assert [(t["tool"], t.get("server")) for t in done.extra["trace"]][:2] == [
        ("price", catalog.label), ("price", catalog.label)]
    assert done.extra["usage"]["tool_calls"] == 4

    assert all(reaped(pid) for pid in pids(tmp_path)) and len(pids(tmp_path)) == 1
    assert stray_tasks() == []


@pytest.mark.asyncio
async def test_a_server_that_dies_mid_call_fails_the_node_clearly_and_the_run_resumes(sqlite_store, tmp_path):
    catalog = stdio_catalog(tmp_path, name="catalog")
    graph = shop(catalog)
    model = ScriptedModel([tool_call("price", {"item": "apple"}), tool_call("crash", {"reason": "test"})])
    failed = await run(graph, sqlite_store, model)
    assert failed.status == "failed"
    text = str(failed.error)
    for part in ("'catalog'", "stdio", "calling tool 'crash'", "LLM node 'agent'", "run 'r'",
                 "resume the run"):
        assert part in text, (part, text)
    cause = failed.error.__cause__
    assert isinstance(cause, MCPServerError) and (cause.server, cause.tool, cause.run_id, cause.node) == (
        "catalog", "crash", "r", "agent")
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]
    assert owner_tasks() == []

    model.add("Apples cost 3 EUR.")
    done = await run(graph, sqlite_store, model, resume=True)  # a new server process, started on first use
    assert done.status == "done" and done.state.answer == "Apples cost 3 EUR."
    assert calls(tmp_path) == ["price apple", "crash test"]  # the committed turn was not run again
    assert tool_results(model.requests[-1]) == ["apple: 3 EUR"]  # the conversation went on from turn 1
    assert len(pids(tmp_path)) == 1  # the resumed activation answered from the recorded tools: no connection
    assert owner_tasks() == []


@pytest.mark.asyncio
async def test_interrupting_a_run_during_a_call_closes_the_connection_and_reaps_the_server(
        sqlite_store, tmp_path):
    model = ScriptedModel([tool_call("hang", {"reason": "test"})])
    handle = await wp.start(shop(stdio_catalog(tmp_path)), {"question": "Wait."}, store=sqlite_store,
                            run_id="r", deps={"model": model})
    deadline = time.monotonic() + 60
    while calls(tmp_path) != ["hang test"]:  # wait until the server is inside the call
        assert time.monotonic() < deadline, "the server never received the call"
        await asyncio.sleep(0.02)
    stopped = await handle.interrupt()
    assert stopped.status == "interrupted"
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]
    assert stray_tasks() == []


WORKER = """
import asyncio, sys
from pathlib import Path
from pydantic import BaseModel
import waypoint as wp
from waypoint.testing import ScriptedModel, tool_call

state = Path(sys.argv[1])


class Shop(BaseModel):
    question: str
    answer: str = ""


catalog = wp.mcp_tools([sys.executable, sys.argv[3], str(state)], name="catalog")
g = wp.GraphBuilder(Shop, name="shop")
g.add(wp.llm("agent", prompt="{question}", into="answer", tools=[catalog]))
g.edge(wp.START, "agent")
g.edge("agent", wp.END)


async def main():
    async with wp.SQLiteStore(state / "runs.db") as store:
        if sys.argv[2] == "start":
            model = ScriptedModel([tool_call("price", {"item": "apple"}),
                                   tool_call("hang", {"reason": "kill"})])
            handle = await wp.start(g.compile(), {"question": "Apples?"}, store=store, run_id="r",
                                    deps={"model": model})
        else:
            model = ScriptedModel(["Apples cost 3 EUR."])
            handle = await wp.resume(g.compile(), "r", store=store, deps={"model": model})
        result = await handle.result()
    print(result.status, result.state.answer, [s["name"] for s in model.requests[0].tools])


asyncio.run(main())
"""


def exited(pid: int) -> bool:
    """Gone, or a zombie: an orphan is reaped by whoever adopts it, which may take its time."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc (Linux)")
def test_a_killed_waypoint_process_leaves_no_server_behind_and_its_run_resumes(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(CATALOG.parent.parent.parent)}
    run = [sys.executable, str(tmp_path / "worker.py"), str(tmp_path)]
    worker = subprocess.Popen([*run, "start", str(CATALOG)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while calls(tmp_path) != ["price apple", "hang kill"]:  # the server is inside turn 1's call
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the server never received the call"
            time.sleep(0.02)
    finally:
        worker.kill()
        worker.communicate(timeout=30)
    server = pids(tmp_path)[0]
    deadline = time.monotonic() + 30
    while not exited(server):  # its stdin closed with the killed process: it stops on its own
        assert time.monotonic() < deadline, f"MCP server {server} outlived the killed waypoint process"
        time.sleep(0.02)

    resumed = subprocess.run([*run, "resume", str(CATALOG)], env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "done Apples cost 3 EUR. ['price', 'crash', 'hang']"
    assert calls(tmp_path) == ["price apple", "hang kill"]  # turn 0 was not run again
    assert len(pids(tmp_path)) == 1  # the resumed activation asked no server: it had the recorded tools


class Desk(BaseModel):
    question: str
    answer: str = ""
    note: str = ""


@pytest.mark.asyncio
async def test_a_handoff_node_uses_a_server_s_tools_before_it_transfers(sqlite_store, tmp_path):
    g = wp.GraphBuilder(Desk, name="desk")
    g.add(wp.handoff("front", prompt="{question}", into="answer", default="answered",
                     targets={"sales": "Questions about buying"}, tools=[stdio_catalog(tmp_path)]),
          routes={"sales": "sales", "answered": wp.END})
    g.node(lambda s: {"note": "sales took it"}, name="sales")
    g.edge("sales", wp.END)
    g.edge(wp.START, "front")
    model = ScriptedModel([tool_call("price", {"item": "pear"}), tool_call("transfer_to_sales", {})])
    result = await (await wp.start(g.compile(), {"question": "Pears?"}, store=sqlite_store,
                                   deps={"model": model})).result()
    assert result.state.note == "sales took it"
    assert tool_names(model.requests[0]) == ["transfer_to_sales", "price", "crash", "hang"]
    assert tool_results(model.requests[1]) == ["pear: 5 EUR"]
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]


@pytest.mark.asyncio
async def test_a_retry_policy_retries_a_broken_connection_with_a_new_one(sqlite_store, tmp_path):
    g = wp.GraphBuilder(Shop, name="shop")
    g.add(wp.llm("agent", prompt="{question}", into="answer", tools=[stdio_catalog(tmp_path)],
                 retry=wp.RetryPolicy(attempts=2, backoff=0, retry_on=(MCPServerError,))))
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    model = ScriptedModel([tool_call("price", {"item": "pear"}), tool_call("crash", {"reason": "once"}),
                           tool_call("crash", {"reason": "once"}), "Pears cost 5 EUR."])
    result = await run(g.compile(), sqlite_store, model)
    assert result.status == "done", result.error
    assert calls(tmp_path) == ["price pear", "crash once", "crash once"]  # turn 0 kept across the retry
    assert tool_results(model.requests[-1])[-1] == "survived"
    assert [reaped(pid) for pid in pids(tmp_path)] == [True, True]  # a connection per attempt
    retried = next(s for s in await sqlite_store.history("r") if s.kind == "done").extra
    assert retried.get("attempt") == 2


@pytest.mark.asyncio
async def test_closing_a_connection_still_being_opened_stops_the_server(tmp_path):
    server = wp.mcp_tools([sys.executable, str(CATALOG), str(tmp_path), "--mute"], name="mute")
    session = server.session(wp.NodeContext(run_id="r", node="agent", activation="0.0"))
    listing = asyncio.ensure_future(session.list_tools())
    deadline = time.monotonic() + 60
    while not (tmp_path / "pids").exists():  # the process runs; its handshake never comes
        assert time.monotonic() < deadline and not listing.done()
        await asyncio.sleep(0.02)
    listing.cancel()  # the node gives up (a timeout, an interrupt)
    await session.aclose()
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]
    assert stray_tasks() == []
    with pytest.raises(asyncio.CancelledError):
        await listing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, server: subprocess.Popen[bytes], limit: float = 60) -> None:
    """Poll until the server accepts connections (or has exited, or `limit` seconds pass)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the MCP server exited with {server.returncode} before listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the MCP server did not listen on port {port} within {limit} s")


@pytest.fixture
def http_catalog(tmp_path: Path) -> Iterator[object]:
    """start(version) runs the catalog over HTTP on one port; every server is stopped at the end."""
    port, started = free_port(), []

    def start(version: int = 1) -> subprocess.Popen[bytes]:
        server = subprocess.Popen([sys.executable, str(CATALOG), str(tmp_path), "--version", str(version),
                                   "--http", str(port)], stderr=subprocess.DEVNULL)
        started.append(server)
        wait_for_port(port, server)
        return server

    start.url = f"http://127.0.0.1:{port}/mcp"  # type: ignore[attr-defined]
    yield start
    for server in started:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


@pytest.mark.asyncio
async def test_over_http_a_resume_offers_the_recorded_tools_after_the_server_changed(
        sqlite_store, tmp_path, http_catalog):
    first = http_catalog(version=1)
    graph = shop(wp.mcp_tools(http_catalog.url))
    model = ScriptedModel([tool_call("price", {"item": "apple"}), tool_call("crash", {"reason": "test"})])
    failed = await run(graph, sqlite_store, model)
    assert failed.status == "failed"
    assert first.wait(timeout=30) == -signal.SIGKILL  # it died in the middle of the call
    text = str(failed.error)
    for part in (repr(http_catalog.url), "streamable HTTP", "calling tool 'crash'", "LLM node 'agent'",
                 "run 'r'"):
        assert part in text, (part, text)
    assert owner_tasks() == []

    http_catalog(version=2)  # the same URL, now without `price`, with `search`
    model.add(tool_call("price", {"item": "pear"}), "I cannot price pears any more.")
    done = await run(graph, sqlite_store, model, resume=True)
    assert done.status == "done", done.error
    resumed = model.requests[2]
    assert tool_names(resumed) == ["price", "crash", "hang"]  # as the run recorded them, not as offered now
    gone = tool_results(model.requests[3])[-1]
    assert gone.startswith("Error: tool 'price' is no longer offered by MCP server")
    assert "it now offers ['search']" in gone
    assert calls(tmp_path) == ["price apple", "crash test"]
    assert stray_tasks() == []


@pytest.mark.asyncio
async def test_a_tool_name_the_node_has_already_is_an_error_naming_both(sqlite_store, tmp_path):
    def price(item: str) -> str:
        """A local price list."""
        return "1 EUR"

    result = await run(shop(price, stdio_catalog(tmp_path, name="catalog")), sqlite_store, ScriptedModel([]))
    assert result.status == "failed"
    assert "MCP server 'catalog' offers a tool named 'price', and so does the node's own tools" in str(
        result.error)
    assert "prefix=" in str(result.error)
    assert all(reaped(pid) for pid in pids(tmp_path))

    model = ScriptedModel([tool_call("cat_price", {"item": "pear"}), "Pears cost 5 EUR."])
    graph = shop(price, stdio_catalog(tmp_path, prefix="cat_"))
    prefixed = await run(graph, sqlite_store, model, run_id="r2")
    assert prefixed.status == "done", prefixed.error
    assert tool_names(model.requests[0]) == ["price", "cat_price", "cat_crash", "cat_hang"]
    assert tool_results(model.requests[1]) == ["pear: 5 EUR"]


@pytest.mark.asyncio
async def test_tools_offers_only_the_server_tools_it_names(sqlite_store, tmp_path):
    model = ScriptedModel([tool_call("crash", {"reason": "x"}), "No."])
    chosen = await run(shop(stdio_catalog(tmp_path, tools=["price"])), sqlite_store, model)
    assert chosen.status == "done", chosen.error
    assert tool_names(model.requests[0]) == ["price"]
    assert tool_results(model.requests[1]) == ["Error: there is no tool named 'crash'; available: ['price']. "
                                               "Call the tool again with corrected arguments."]
    assert calls(tmp_path) == []  # not sent to the server

    wrong = await run(shop(stdio_catalog(tmp_path, name="catalog", tools=["price", "refund"])), sqlite_store,
                      ScriptedModel([]), run_id="r2")
    assert wrong.status == "failed"
    assert ("MCP server 'catalog' offers no tool named ['refund'], which mcp_tools(..., tools=[...]) "
            "asks for; it offers ['crash', 'hang', 'price']") in str(wrong.error)
    assert all(reaped(pid) for pid in pids(tmp_path))


@pytest.mark.asyncio
async def test_a_server_that_cannot_start_or_be_reached_fails_the_node_naming_it(store, tmp_path):
    missing = wp.mcp_tools([str(tmp_path / "no-such-server")])
    result = await run(shop(missing), store, ScriptedModel([]))
    assert result.status == "failed"
    assert f"MCP server {missing.label!r} (stdio) failed while listing its tools" in str(result.error)
    assert "FileNotFoundError" in str(result.error)

    nobody = wp.mcp_tools(f"http://127.0.0.1:{free_port()}/mcp")
    result = await run(shop(nobody), store, ScriptedModel([]), run_id="r2")
    assert result.status == "failed"
    assert f"MCP server {nobody.label!r} (streamable HTTP) failed while listing its tools" in str(
        result.error)
    assert owner_tasks() == []


def test_mcp_tools_refuses_what_is_not_a_server():
    with pytest.raises(wp.GraphError, match=r"give a stdio command as a list, e.g. mcp_tools\(\['python'"):
        wp.mcp_tools("python server.py")
    with pytest.raises(wp.GraphError, match="a StdioServerParameters, or a streamable-HTTP URL"):
        wp.mcp_tools(42)
    with pytest.raises(wp.GraphError, match=r"tools= takes a list of the server's tool names"):
        wp.mcp_tools(["python", "server.py"], tools="search")
    with pytest.raises(wp.GraphError, match="lists the MCP server"):
        wp.llm("agent", prompt="hi", into="answer", tools=[wp.mcp_tools(["a"]), wp.mcp_tools(["a"])])


def test_building_a_graph_with_mcp_tools_does_not_import_the_sdk():
    code = ("import sys, waypoint as wp\n"
            "wp.llm('agent', prompt='hi', into='answer', tools=[wp.mcp_tools(['python', 'server.py'])])\n"
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'anyio'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
