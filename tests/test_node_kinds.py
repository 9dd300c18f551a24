"""Node kinds are classes that carry their behaviour (issue 12): one class a kind, its own name,
and the rest of waypoint asks the node, never its kind string."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, run_sync
from waypoint.errors import NodeError
from waypoint.nodes import handoff, llm_router
from waypoint.nodes.base import KINDS, Node, Outcome, register

ROOT = Path(__file__).resolve().parent.parent


class S(BaseModel):
    items: list[int] = []
    out: list[int] = []
    label: str = ""
    messages: list[dict] = []
    ok: bool = False


class A(BaseModel):
    ok: bool


def kinds_graph():
    g = GraphBuilder(S, name="kinds")
    g.node(lambda s: {"ok": True}, name="work")

    @g.router(routes={"a": "triage", "b": "each"})
    def pick(s: S) -> Literal["a", "b"]:
        return "a"

    g.add(llm_router("triage", labels=["x", "y"], fallback="y", prompt="?", into="label"),
          routes={"x": "ask", "y": "ask"})
    g.add(handoff("desk", targets={"t": "to t"}, default="done", prompt="?", history="messages"),
          routes={"t": END, "done": END})
    g.map("each", lambda i: i, over="items", into="out", max_items=3)
    g.gate("ask", A, into=None, deadline=60, escalate="desk")
    g.loop_guard("again", max_iterations=2, routes={"continue": "work", "done": END})
    g.edge(START, "work")
    g.edge("work", "pick")
    g.edge("each", END)
    g.edge("ask", "again")
    return g.compile()


def test_every_kind_has_its_own_name_and_class() -> None:
    kinds_graph()  # loads the LLM kinds too
    assert {"function", "router", "gate", "guard", "map", "subgraph", "tool", "llm", "llm_router",
            "handoff", "approved_call"} <= set(KINDS)
    assert all(cls.kind == name for name, cls in KINDS.items())
    with pytest.raises(TypeError, match="node kind 'router' of Clash is already the kind of RouterNode"):
        register(type("Clash", (Node,), {"kind": "router"}))


def test_graphs_keep_the_structure_hash_they_had_before_kinds_had_their_own_names() -> None:
    """Computed with waypoint before this change (6ae5a7a): a run started then still resumes."""
    graph = kinds_graph()
    assert graph.structure()["nodes"]["triage"][0] == "router" and graph.nodes["triage"].kind == "llm_router"
    assert graph.structure_hash == "7b72c4f76e00e2ef"


def test_an_invalid_router_label_is_a_node_error_naming_the_labels_and_is_not_retried() -> None:
    calls = []
    g = GraphBuilder(S)

    @g.router(routes={"a": END, "b": END}, retry=3)
    def pick(s: S) -> Any:
        calls.append(1)
        return "c"

    g.edge(START, "pick")
    with pytest.raises(NodeError, match=r"router 'pick' returned 'c', which is not one of its routes \['a', 'b'\]"):
        run_sync(g.compile(), {})
    assert len(calls) == 1


@register
@dataclass(frozen=True)
class Shout(Node):
    """The docs' example of a new kind: one class, registered, nothing else to touch."""

    kind: ClassVar[str] = "shout"
    drawing: ClassVar[str] = "function"
    into: str = ""

    async def run(self, state: Any, ctx: Any) -> Outcome:
        return Outcome(update={self.into: state.label.upper()})

    def caption(self) -> list[str]:
        return [f"→ {self.into}"]


def test_a_new_kind_is_one_class_and_its_registration() -> None:
    g = GraphBuilder(S)
    g.add(Shout(name="shout", into="label", writes=frozenset({"label"})))
    g.edge(START, "shout")
    g.edge("shout", END)
    graph = g.compile()
    assert run_sync(graph, {"label": "hi"}).state.label == "HI"
    assert 'n0("shout<br>→ label")' in graph.render("mermaid")
    assert KINDS["shout"] is Shout and graph.max_steps == 1


def test_no_kind_string_branches_outside_the_node_classes() -> None:
    branch = re.compile(r"\.kind\s*(==|!=|in\b)|hasattr\(node")
    found = [f"{path.relative_to(ROOT)}:{n}" for folder in ("graphs", "testing", "nodes")
             for path in sorted((ROOT / "waypoint" / folder).glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if branch.search(line) and "step.kind" not in line and "s.kind" not in line
             and "param.kind" not in line and "p.kind" not in line
             and "item.kind" not in line]  # a Box's kind is its drawing, not a node kind
    assert found == []
