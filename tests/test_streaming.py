"""Streaming tokens to a caller: `llm(..., stream=True)` and the run's event stream.

Tokens are live work: each is an event on `handle.events()` as the model produces
it, before the node's step is committed, and none is ever committed itself (the
step holds the whole reply). Replay on resume publishes nothing, so a resumed run
does not stream a reply it already has.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, ModelResponse, RetryPolicy, SQLiteStore, llm, resume, start
from waypoint.testing import ScriptedModel

pytestmark = pytest.mark.asyncio


class Chat(BaseModel):
    question: str = ""
    answer: str = ""


class Ok(BaseModel):
    ok: bool = True


class Gated:
    """Streams its first piece, then holds the reply until the test lets it go."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces, self.go = pieces, asyncio.Event()

    async def complete(self, request, *, on_token=None):
        on_token(self.pieces[0])
        await self.go.wait()
        for piece in self.pieces[1:]:
            on_token(piece)
        return ModelResponse(text="".join(self.pieces))


def one_node(model, **options):
    g = GraphBuilder(Chat, name="streaming")
    g.add(llm("agent", prompt="{question}", into="answer", model=model, stream=True, **options))
    g.edge(START, "agent")
    g.edge("agent", END)
    return g.compile()


async def test_tokens_reach_the_caller_before_the_step_is_committed(tmp_path):
    model = Gated(["The ", "tide ", "turns."])
    async with SQLiteStore(tmp_path / "runs.db") as store:
        handle = await start(one_node(model), {"question": "Tides?"}, store=store)
        events = handle.events()
        first = await anext(e async for e in events if e.kind == "token")
        assert first.data == {"text": "The "} and first.node == "agent"
        assert await store.history(handle.run_id) == []  # nothing committed while it streams
        model.go.set()
        rest = [e async for e in events]
        result = await handle.result()
        steps = await store.history(handle.run_id)
    assert "".join(e.data["text"] for e in [first, *rest] if e.kind == "token") == result.state.answer
    assert [s.kind for s in steps] == ["done"]  # one step for the whole reply, none per token
    assert steps[0].delta == {"answer": "The tide turns."}


async def test_a_resumed_run_does_not_stream_the_reply_it_already_has(tmp_path):
    g = GraphBuilder(Chat, name="stream_then_gate")
    g.add(llm("agent", prompt="{question}", into="answer", model=ScriptedModel(["Low tide at six."]),
              stream=True))
    g.gate("check", Ok)
    g.edge(START, "agent")
    g.edge("agent", "check")
    g.edge("check", END)
    graph = g.compile()
    async with SQLiteStore(tmp_path / "runs.db") as store:
        handle = await start(graph, {"question": "When?"}, store=store)
        streamed = [e.data["text"] async for e in handle.events() if e.kind == "token"]
        waiting = await handle.result()
        again = await resume(graph, waiting.run_id, {}, store=store)
        replayed = [e async for e in again.events() if e.kind == "token"]
        done = await again.result()
    assert "".join(streamed) == "Low tide at six." and replayed == []
    assert done.state.answer == "Low tide at six."


async def test_a_retried_call_says_so_between_its_attempts_tokens():
    """A caller showing text live starts the reply again at `node_retried`."""
    script = ScriptedModel([ConnectionError("cut off"), "Second try."])

    class Partial:
        async def complete(self, request, *, on_token=None):
            if len(script.requests) == 0:
                on_token("Fir")  # streamed, then the connection drops
            return await script.complete(request, on_token=on_token)

    graph = one_node(Partial(), retry=RetryPolicy(attempts=2, backoff=0, jitter=False))
    handle = await start(graph, {"question": "?"})
    shown = ""
    async for event in handle.events():
        if event.kind == "node_retried":
            shown = ""  # what the failed attempt streamed is void
        elif event.kind == "token":
            shown += event.data["text"]
    assert shown == "Second try." == (await handle.result()).state.answer
