"""What a graph needs to hold a conversation, checked when a `Conversation` is made.

    shape = ChatShape.of(graph, gate=None, message_field=None, reply="reply")
    shape.gate.name, shape.message_field       # where a message goes: 'user', 'text'
    shape.reply_of(state)                      # the reply, read from the state

The graph waits at a gate for each user message (the message is a str field of
the gate's answer), answers it into the state (the reply field, or a function of
the state), and comes back to the gate through a loop guard for the next one.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waypoint.errors import GraphError
from waypoint.graphs.graph import Graph
from waypoint.nodes.gate import GateNode

_SHAPE = ("a conversation's graph waits at a gate for each user message, writes its reply to a "
          "state field, and leads back to the gate through a loop guard: g.gate('user', UserTurn, "
          "on_answer=...), a node writing 'reply' (e.g. llm('assistant', history='messages', "
          "into='reply')) and g.loop_guard('turns', max_iterations=1000, routes={'continue': 'user', "
          "'done': END}); see docs/conversations.md")


@dataclass(frozen=True)
class ChatShape:
    """The gate that takes the user's messages, the answer field that carries one, and the reply."""

    gate: GateNode
    message_field: str
    reply: str | Callable[[Any], Any]

    @classmethod
    def of(cls, graph: Graph[Any], *, gate: str | None, message_field: str | None,
           reply: str | Callable[[Any], Any]) -> ChatShape:
        where = f"Conversation(graph {graph.name!r})"
        node = _gate(graph, gate, where)
        if not any(node.name in body for body in graph.loop_bodies.values()):
            raise GraphError(
                f"{where}: gate {node.name!r} is on no loop, so the thread could take one message "
                f"only; lead the graph back to it through a loop guard, e.g. g.loop_guard('turns', "
                f"max_iterations=1000, routes={{'continue': {node.name!r}, 'done': END}}).")
        if isinstance(reply, str) and reply not in graph.schema.fields:
            raise GraphError(
                f"{where}: the state {graph.state_type.__name__} has no field {reply!r} to read the "
                f"reply from (fields: {sorted(graph.schema.fields)}); add `{reply}: str = ''` and have "
                f"the assistant write it (llm(..., into={reply!r})), or pass reply='<field>' or "
                "reply=lambda state: ... .")
        return cls(node, _message_field(node, message_field, where), reply)

    def reply_of(self, state: Any) -> Any:
        return getattr(state, self.reply) if isinstance(self.reply, str) else self.reply(state)


def _gate(graph: Graph[Any], name: str | None, where: str) -> GateNode:
    gates = sorted(n for n, node in graph.nodes.items() if isinstance(node, GateNode))
    if name is not None:
        node = graph.nodes.get(name)
        if not isinstance(node, GateNode):
            raise GraphError(f"{where}: gate={name!r} is not a gate of the graph (its gates: {gates}); "
                             f"name one of them, or add it: {_SHAPE}.")
        return node
    if not gates:
        raise GraphError(f"{where}: the graph has no gate to take the user's messages; {_SHAPE}.")
    if len(gates) > 1:
        raise GraphError(f"{where}: the graph has several gates ({gates}); name the one that takes the "
                         f"user's messages: Conversation(graph, thread_id, gate={gates[0]!r}, ...).")
    return typing.cast(GateNode, graph.nodes[gates[0]])


def _message_field(gate: GateNode, name: str | None, where: str) -> str:
    """The answer's str field that carries a message; every other field needs a default."""
    model = gate.answer
    fields = model.model_fields
    texts = [f for f, info in fields.items() if info.annotation is str]
    answer = f"gate {gate.name!r} answers with {model.__name__} (fields: {list(fields)})"
    if name is not None and name not in fields:
        raise GraphError(f"{where}: {answer}, which has no field {name!r} for the message; "
                         f"name one of {list(fields)}, or add `{name}: str` to {model.__name__}.")
    if name is None and len(texts) != 1:
        raise GraphError(
            f"{where}: {answer}, which has " + ("no str field to carry the message; add `text: str`"
                                                if not texts else f"several str fields ({texts}); name "
                                                f"the message's: message_field={texts[0]!r}") + ".")
    chosen = name or texts[0]
    required = [f for f, info in fields.items() if info.is_required() and f != chosen]
    if required:
        raise GraphError(f"{where}: {answer}: {required} are required besides the message {chosen!r}, "
                         "so a message alone is not an answer; give them defaults.")
    return chosen
