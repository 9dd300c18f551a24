"""A conversation on a real PostgreSQL server (tests/pg_server.py): the thread, its rewinds and
its refusals hold on a networked store as on SQLite, and `waypoint chat --db postgresql://...`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psycopg", reason='PostgresStore needs psycopg: pip install -e ".[postgres]"')
pytest.importorskip("psycopg_pool", reason='PostgresStore needs psycopg-pool: pip install -e ".[postgres]"')

import waypoint as wp
from waypoint.checkpoints.postgres import PostgresStore

from conversation_graphs import Held, graph

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.asyncio
async def test_a_thread_on_postgresql_sends_refuses_rewinds_and_carries_on(pg):
    url = pg.new_database()
    held = Held()
    store = PostgresStore(url)
    try:
        chat = wp.Conversation(graph, "t", store=store, deps=held.deps)
        first = asyncio.create_task(chat.send("a"))
        await held.entered.wait()
        with pytest.raises(wp.StaleAnswerError, match="your message was not sent"):
            await wp.Conversation(graph, "t", store=store).send("b")
        held.release.set()
        assert await first == "#1: a"
        assert await chat.send("b") == "#2: b"
        assert await chat.rewind(2) == "t~1"
    finally:
        await store.close()
    other = PostgresStore(url)  # another pool, as another process would have
    try:
        later = wp.Conversation(graph, "t", store=other)
        assert await later.send("c") == "#2: c"
        assert [(t.message, t.run_id) for t in await later.history()] == [("a", "t"), ("c", "t~1")]
    finally:
        await other.close()
    chat_cli = subprocess.run(
        [sys.executable, "-m", "waypoint.cli", "chat", f"{ROOT / 'tests' / 'conversation_graphs.py'}:graph",
         "--thread", "t", "--db", url, "--by", "cli"], input="d\n/history\n", capture_output=True, text=True,
        timeout=120)
    assert chat_cli.returncode == 0, chat_cli.stderr
    assert chat_cli.stdout.splitlines()[0] == "#3: d"
    assert [line for line in chat_cli.stdout.splitlines() if line.startswith("  > ")] == [
        "  > a", "  > c", "  > d"]
