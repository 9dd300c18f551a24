"""What a graph needs to hold a conversation, checked when the `Conversation` is made:
each refusal names what is missing and how to add it."""

from __future__ import annotations

from typing import Any

import pytest
import waypoint as wp
from pydantic import BaseModel
from waypoint import Conversation, GraphError, RunError

from conversation_graphs import UserTurn, graph


class Two(BaseModel):
    a: str
    b: str = ""


class Numbers(BaseModel):
    n: int


class Needs(BaseModel):
    text: str
    count: int


def shaped(answer: type[BaseModel] = UserTurn, *, loop: bool = True, gates: int = 1) -> wp.Graph[Any]:
    class S(BaseModel):
        reply: str = ""

    g = wp.GraphBuilder(S, name="shaped")
    for i in range(gates):
        g.gate(f"g{i}", answer)
    g.node(lambda s: {"reply": "x"}, name="reply_node")
    if gates:
        g.edge(wp.START, "g0")
        for i in range(1, gates):
            g.edge(f"g{i - 1}", f"g{i}")
        g.edge(f"g{gates - 1}", "reply_node")
    else:
        g.edge(wp.START, "reply_node")
    if loop and gates:
        g.loop_guard("turns", max_iterations=3, routes={"continue": "g0", "done": wp.END})
        g.edge("reply_node", "turns")
    else:
        g.edge("reply_node", wp.END)
    return g.compile()


@pytest.mark.parametrize(("graph_", "options", "words"), [
    (shaped(gates=0), {}, ["no gate to take the user's messages", "g.gate('user'", "docs/conversations.md"]),
    (shaped(gates=2), {}, ["several gates (['g0', 'g1'])", "gate='g0'"]),
    (shaped(), {"gate": "nope"}, ["gate='nope' is not a gate of the graph (its gates: ['g0'])"]),
    (shaped(loop=False), {}, ["gate 'g0' is on no loop", "one message only", "g.loop_guard('turns'"]),
    (shaped(Numbers), {}, ["answers with Numbers (fields: ['n'])", "no str field", "add `text: str`"]),
    (shaped(Two), {}, ["several str fields (['a', 'b'])", "message_field='a'"]),
    (shaped(Two), {"message_field": "c"}, ["no field 'c' for the message"]),
    (shaped(Needs), {}, ["['count'] are required besides the message 'text'", "give them defaults"]),
    (shaped(), {"reply": "answer"}, ["has no field 'answer' to read the reply from", "into='answer'"]),
])
def test_a_graph_not_shaped_for_a_conversation_is_refused_naming_what_is_missing(graph_, options, words):
    with pytest.raises(GraphError) as refused:
        Conversation(graph_, "t", store=wp.MemoryStore(), **options)
    assert str(refused.value).startswith("Conversation(graph 'shaped'):")
    for word in words:
        assert word in str(refused.value)


def test_a_shape_that_fits_is_taken_with_its_names():
    chat = Conversation(shaped(Two), "t", store=wp.MemoryStore(), message_field="a",
                        reply=lambda s: s.reply.upper())
    assert (chat.shape.gate.name, chat.shape.message_field) == ("g0", "a")


@pytest.mark.parametrize(("thread", "words"), [
    ("t~1", "names a rewound revision of a thread"),
    ("", "cannot be empty"),
    ("a/1.0", "reserves for child runs"),
])
def test_thread_ids_that_could_be_taken_for_other_runs_are_refused(thread, words):
    with pytest.raises(RunError, match=words):
        Conversation(graph, thread, store=wp.MemoryStore())


