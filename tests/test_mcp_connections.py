"""An MCP server's connection lives for the run's execution: opened on first use by any activation,
shared by the run's activations, closed (a stdio server reaped) when the execution ends, whichever way.

Against the real stdio server of tests/mcp_servers/catalog.py, which logs each pid it starts with and
each call it serves, so the tests count spawns and see that every process was reaped.
"""

from __future__ import annotations

import asyncio
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
from waypoint.nodes.mcp_tools import MCPTools
from waypoint.nodes.resources import Resources, current, executing
from waypoint.testing import ScriptedModel, tool_call

CATALOG = Path(__file__).resolve().parent / "mcp_servers" / "catalog.py"
pytestmark = pytest.mark.asyncio


class Ok(BaseModel):
    ok: bool


class Shop(BaseModel):
    question: str
    answer: str = ""
    review: Ok | None = None


def catalog(state: Path) -> MCPTools:
    return wp.mcp_tools([sys.executable, str(CATALOG), str(state)], name="catalog")


def pids(state: Path) -> list[int]:
    return [int(line) for line in (state / "pids").read_text().split()] if (state / "pids").exists() else []


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines() if (state / "calls").exists() else []


def reaped(pid: int) -> bool:
    """No such process: it exited and was waited for (a zombie still answers signal 0)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def owner_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("MCP server")]


def agent_loop(state: Path, *, gate: bool = False, iterations: int = 2) -> wp.Graph:
    """agent -> guard -> (continue) agent, 1 + `iterations` activations; with `gate`, a gate before each loop."""
    g = wp.GraphBuilder(Shop, name="loop")
    g.add(wp.llm("agent", prompt="{question}", into="answer", tools=[catalog(state)]))
    g.edge(wp.START, "agent")
    g.edge("agent", "guard")
    if gate:
        g.gate("review", Ok, into="review")
        g.loop_guard("guard", max_iterations=iterations, routes={"continue": "review", "exhausted": wp.END})
        g.edge("review", "agent")
    else:
        g.loop_guard("guard", max_iterations=iterations, routes={"continue": "agent", "exhausted": wp.END})
    return g.compile()


def priced(n: int) -> list[object]:
    return [step for i in range(n) for step in (tool_call("price", {"item": "apple"}), f"Apples: 3 EUR ({i}).")]


async def test_a_loop_of_three_activations_spawns_the_server_once_and_reaps_it_at_the_end(store, tmp_path):
    model = ScriptedModel(priced(3))
    handle = await wp.start(agent_loop(tmp_path), {"question": "Apples?"}, store=store, run_id="r",
                            deps={"model": model})
    result = await handle.result()
    assert result.state.answer == "Apples: 3 EUR (2)."
    assert calls(tmp_path) == ["price apple"] * 3  # each activation called the server
    assert len(pids(tmp_path)) == 1  # ... through one connection, one process
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]
    assert owner_tasks() == []
    turns = [s.extra["result"] for s in await store.history("r") if s.kind == "item"]
    assert [("toolsets" in t) for t in turns] == [True, True, True]  # each activation's turn 0 records its list


async def test_waiting_at_a_gate_reaps_the_server_and_the_resumed_execution_opens_its_own(store, tmp_path):
    model = ScriptedModel(priced(2))
    graph = agent_loop(tmp_path, gate=True, iterations=1)
    waiting = await (await wp.start(graph, {"question": "Apples?"}, store=store, run_id="g",
                                    deps={"model": model})).result()
    assert waiting.status == "waiting" and waiting.waiting == ["review"]
    assert len(pids(tmp_path)) == 1 and [reaped(pid) for pid in pids(tmp_path)] == [True]  # nothing left open
    assert owner_tasks() == []
    done = await (await wp.resume(graph, "g", {"ok": True}, store=store, deps={"model": model})).result()
    assert done.status == "done" and calls(tmp_path) == ["price apple"] * 2
    assert len(pids(tmp_path)) == 2 and [reaped(pid) for pid in pids(tmp_path)] == [True, True]


async def test_interrupting_the_second_activation_mid_call_reaps_the_shared_server(store, tmp_path):
    model = ScriptedModel([tool_call("price", {"item": "apple"}), "Apples: 3 EUR.",
                           tool_call("hang", {"reason": "test"})])
    handle = await wp.start(agent_loop(tmp_path), {"question": "Apples?"}, store=store, run_id="i",
                            deps={"model": model})
    deadline = time.monotonic() + 60
    while calls(tmp_path) != ["price apple", "hang test"]:  # the second activation is inside its call
        assert time.monotonic() < deadline, f"the server never received the call: {calls(tmp_path)}"
        await asyncio.sleep(0.02)
    assert len(pids(tmp_path)) == 1  # the second activation used the first one's connection
    stopped = await handle.interrupt()
    assert stopped.status == "interrupted"
    assert [reaped(pid) for pid in pids(tmp_path)] == [True]
    assert owner_tasks() == []


class Closing:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.log.append(self.name)


async def test_resources_open_once_per_key_replace_stale_ones_and_close_all_even_when_cancelled():
    log: list[str] = []
    assert current() is None
    async with executing() as resources:
        assert current() is resources
        first = resources.get("a", lambda: Closing(log, "a1"))
        assert resources.get("a", lambda: Closing(log, "a2")) is first  # opened once
        assert await asyncio.create_task(_get_in_task("a")) is first  # tasks started inside see it
        resources.get("a", lambda: Closing(log, "a3"), stale=lambda r: True)  # a dead one is replaced
    assert current() is None and sorted(log) == ["a1", "a3"]  # every one opened was closed
    with pytest.raises(RuntimeError, match="closed"):
        resources.get("a", lambda: Closing(log, "late"))

    log.clear()
    started = asyncio.Event()

    async def execution() -> None:
        async with executing() as mine:
            mine.get("b", lambda: Closing(log, "b"))
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(execution())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["b"]  # an interrupted execution still closed what it opened
    assert isinstance(Resources(), Resources)


async def _get_in_task(key: str) -> object:
    resources = current()
    assert resources is not None
    return resources.get(key, lambda: Closing([], "never"))


# -- HTTP headers (auth) ------------------------------------------------------------------------------
@pytest.fixture
def guarded_catalog(tmp_path: Path) -> Iterator[str]:
    """The catalog over streamable HTTP on a free loopback port, answering 401 without the bearer token."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen([sys.executable, str(CATALOG), str(tmp_path), "--http", str(port),
                               "--token", TOKEN], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, f"the MCP server exited with {server.returncode} before listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, f"the MCP server did not listen on port {port}"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    server.send_signal(signal.SIGINT)
    server.wait(timeout=30)


TOKEN = "s3cret-token-for-the-test"


def http_shop(server: MCPTools) -> wp.Graph:
    g = wp.GraphBuilder(Shop, name="shop")
    g.add(wp.llm("agent", prompt="{question}", into="answer", tools=[server]))
    g.edge(wp.START, "agent")
    g.edge("agent", wp.END)
    return g.compile()


async def test_headers_reach_an_http_server_that_needs_a_token_and_are_kept_nowhere(
        sqlite_store, tmp_path, guarded_catalog):
    model = ScriptedModel([tool_call("price", {"item": "apple"})])
    refused = await (await wp.start(http_shop(wp.mcp_tools(guarded_catalog, name="catalog")), {"question": "?"},
                                    store=sqlite_store, run_id="no", deps={"model": model})).result(
        raise_on_failure=False)
    assert refused.status == "failed" and "'catalog'" in str(refused.error), refused.error
    assert "401" in str(refused.error), str(refused.error)
    assert set(calls(tmp_path)) == {"refused"}  # without the token, nothing reached the tools
    before = len(calls(tmp_path))

    read: list[str] = []

    def bearer() -> dict[str, str]:  # called when a connection opens: a token from a vault, rotated
        read.append("token")
        return {"Authorization": f"Bearer {TOKEN}"}

    for run_id, headers in (("dict", {"Authorization": f"Bearer {TOKEN}"}), ("fn", bearer)):
        server = wp.mcp_tools(guarded_catalog, name="catalog", headers=headers)
        assert TOKEN not in repr(server)
        model = ScriptedModel([tool_call("price", {"item": "apple"}), "Apples cost 3 EUR."])
        done = await (await wp.start(http_shop(server), {"question": "?"}, store=sqlite_store, run_id=run_id,
                                     deps={"model": model})).result()
        assert done.state.answer == "Apples cost 3 EUR."
        history = await sqlite_store.history(run_id)
        assert TOKEN not in repr(history)  # neither in the recorded listing nor anywhere in the record
    assert read == ["token"] and calls(tmp_path)[before:] == ["price apple", "price apple"]


async def test_headers_are_for_http_servers_and_must_be_strings():
    with pytest.raises(wp.GraphError, match="stdio server takes its settings through env="):
        wp.mcp_tools(["python", "server.py"], headers={"Authorization": "x"})
    with pytest.raises(wp.GraphError, match="dict of strings"):
        wp.mcp_tools("http://127.0.0.1:1/mcp", headers={"X-Retries": 3})  # type: ignore[dict-item]
