"""Conversation graphs for tests/test_conversation*.py, and a process that sends to a thread.

    python tests/conversation_graphs.py send DB THREAD MESSAGE [HOLD_DIR]   # one message, then exit
    python tests/conversation_graphs.py linger DB THREAD MESSAGE          # ...then wait to be killed

`send` prints {"reply": ...} or {"error": type, "message": ...} as JSON (exit 0 or 1).
With HOLD_DIR, the assistant writes HOLD_DIR/started when it begins answering and
waits for HOLD_DIR/go before it replies: a test acts while the turn is in flight.
`linger` prints the reply, then blocks on stdin until it is killed (between turns).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import waypoint as wp
from pydantic import BaseModel


class UserTurn(BaseModel):
    text: str


class Talk(BaseModel):
    heard: list[str] = []
    reply: str = ""


async def assistant(state: Talk, ctx: wp.NodeContext) -> dict[str, Any]:
    """Replies '#<n>: <last message>'; deps may hold it (`hold`, or
    $TALK_HOLD: a hold directory) or fail on a message (`fail`, or $TALK_FAIL)."""
    deps = ctx.deps if isinstance(ctx.deps, dict) else {}
    hold: Callable[[Talk], Awaitable[None]] | None = deps.get("hold")
    if hold is None and os.environ.get("TALK_HOLD"):  # for `waypoint chat`, which takes no deps
        hold = file_hold(Path(os.environ["TALK_HOLD"]))
    if hold is not None:
        await hold(state)
    if state.heard[-1] in (deps.get("fail"), os.environ.get("TALK_FAIL")):  # env: for `waypoint chat`
        raise RuntimeError(f"the assistant cannot answer {state.heard[-1]!r}")
    return {"reply": f"#{len(state.heard)}: {state.heard[-1]}"}


def build(max_turns: int = 100, name: str = "talk") -> wp.Graph[Talk]:
    g = wp.GraphBuilder(Talk, name=name)
    g.gate("user", UserTurn, prompt="Your message", on_answer=lambda s, a: {"heard": [*s.heard, a.text]})
    g.node(assistant, name="assistant", writes=["reply"])
    g.loop_guard("turns", max_iterations=max_turns, routes={"continue": "user", "done": wp.END})
    g.edge(wp.START, "user")
    g.edge("user", "assistant")
    g.edge("assistant", "turns")
    return g.compile()


graph = build()
short = build(max_turns=1, name="short")  # two messages, then the thread ends


class Held:
    """deps that hold the assistant until the test releases it: `entered` is set once it waits."""

    def __init__(self) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def hold(self, state: Any) -> None:
        self.entered.set()
        await self.release.wait()

    @property
    def deps(self) -> dict[str, Any]:
        return {"hold": self.hold}


def file_hold(directory: Path) -> Callable[[Talk], Awaitable[None]]:
    async def hold(state: Talk) -> None:
        (directory / "started").write_text(state.heard[-1])
        while not (directory / "go").exists():  # the test writes it once it has acted
            await asyncio.sleep(0.01)

    return hold


async def send(db: str, thread: str, message: str, hold_dir: str | None) -> int:
    store = wp.SQLiteStore(db)
    deps = {"hold": file_hold(Path(hold_dir))} if hold_dir else None
    try:
        chat = wp.Conversation(graph, thread, store=store, deps=deps)
        reply = await chat.send(message, by=f"pid {os.getpid()}")
        print(json.dumps({"reply": reply}), flush=True)
        return 0
    except wp.WaypointError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return 1
    finally:
        await store.close()


def main(args: list[str]) -> int:
    verb, db, thread, message, *rest = args
    code = asyncio.run(send(db, thread, message, rest[0] if rest else None))
    if verb == "linger":
        sys.stdin.read()  # the test kills this process here, between turns
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
