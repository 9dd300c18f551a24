"""A travel assistant you chat with: one durable thread per conversation.

    python examples/chat.py                                   # a short scripted conversation
    waypoint chat examples/chat.py:graph --thread trip --db chat.db
    printf 'Lisbon in May?\\n/history\\n' | waypoint chat examples/chat.py:graph --thread trip

Offline (no OPENAI_API_KEY) a scripted model answers, naming what you asked and
how many messages it has seen, so you can watch the thread remember, rewind and
carry on from another terminal. With OPENAI_API_KEY set (and optionally
OPENAI_MODEL, OPENAI_BASE_URL) the real model answers; the graph is the same,
so a thread started offline carries on with it.

The shape a conversation needs: a gate that takes each user message (`user`),
a node that writes the reply (`assistant`, into the `reply` field), and a loop
guard that leads back to the gate for the next message (`turns`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from waypoint import END, START, Conversation, GraphBuilder, OpenAIModel, SQLiteStore, llm
from waypoint.nodes.model import Model, ModelRequest
from waypoint.testing import ScriptedModel


class UserTurn(BaseModel):
    text: str  # the message: the one str field of the gate's answer


class Trip(BaseModel):
    messages: list[dict[str, Any]] = []  # the whole conversation, as the model sees it
    reply: str = ""  # the assistant's last reply: what `send` returns


def add_user_turn(state: Trip, turn: UserTurn) -> dict[str, Any]:
    return {"messages": [*state.messages, {"role": "user", "content": turn.text}]}


def offline_reply(request: ModelRequest) -> str:
    seen = sum(1 for m in request.messages if m["role"] == "user")
    return (f"(offline) You asked: {request.messages[-1]['content']!r}. That is message {seen} "
            "of this thread; set OPENAI_API_KEY for real travel advice.")


def pick_model() -> Model:
    if os.environ.get("OPENAI_API_KEY"):
        return OpenAIModel()
    return ScriptedModel(itertools.repeat(offline_reply, 100_000))  # a reply computed per request


g = GraphBuilder(Trip, name="travel_chat")
g.gate("user", UserTurn, prompt="Your message", on_answer=add_user_turn)
g.add(llm("assistant", history="messages", into="reply", model=pick_model(),
          instructions="You are a concise travel assistant. Answer in two sentences at most."))
g.loop_guard("turns", max_iterations=1000, routes={"continue": "user", "done": END})
g.edge(START, "user")
g.edge("user", "assistant")
g.edge("assistant", "turns")
graph = g.compile()


async def main() -> None:
    store = SQLiteStore(Path(tempfile.mkdtemp()) / "chat.db")
    chat = Conversation(graph, "trip", store=store)
    for message in ["Where should I go in May?", "And in October?"]:
        print(f"you> {message}\n{await chat.send(message, by='you')}")
    print(f"rewound: the thread goes on as run {await chat.rewind(2)}")
    print(f"you> And in June?\n{await chat.send('And in June?', by='you')}")
    for turn in await chat.history():
        print(f"turn {turn.number} (step {turn.seq}, {turn.by}): {turn.message} -> {turn.reply}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
