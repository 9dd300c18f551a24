"""GraphBuilder.edge with lists on either side: fan-out and fan-in in one line."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, run_sync
from waypoint.errors import GraphError


class Parts(BaseModel):
    a: str = ""
    b: str = ""
    out: str = ""


def fan_in(sources: object) -> GraphBuilder[Parts]:
    g = GraphBuilder(Parts)
    g.node(lambda s: {"a": "A"}, name="left")
    g.node(lambda s: {"b": "B"}, name="right")
    g.join("merge", lambda s: {"out": s.a + s.b})
    g.edge(START, ["left", "right"])
    g.edge(sources, "merge")  # type: ignore[arg-type]
    g.edge("merge", END)
    return g


@pytest.mark.parametrize("sources", [["left", "right"], ("left", "right")])
def test_a_list_of_sources_adds_one_edge_from_each(sources: object) -> None:
    g = fan_in(sources)
    assert [e for e in g.edges if e[1] == "merge"] == [("left", "merge"), ("right", "merge")]
    assert run_sync(g.compile(), {}).state.out == "AB"


def test_lists_on_both_sides_add_an_edge_per_pair() -> None:
    g = GraphBuilder(Parts)
    g.edge(["a", "b"], ["c", "d"])
    assert g.edges == [("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")]


@pytest.mark.parametrize(("source", "target", "argument", "bad"), [
    (["left", 3], "merge", "source", "[3]"),
    ([], "merge", "source", "[]"),
    (None, "merge", "source", "None"),
    ("left", ["merge", None], "target", "[None]"),
    ("left", [], "target", "[]"),
    ({"left"}, "merge", "source", "{'left'}"),
])
def test_a_bad_source_or_target_is_refused_naming_the_argument(
    source: object, target: object, argument: str, bad: str
) -> None:
    g = GraphBuilder(Parts)
    with pytest.raises(GraphError) as caught:
        g.edge(source, target)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"the {argument} must be a node name or a non-empty list of node names, got {bad}" in message
    assert "g.edge(['b', 'c'], 'join')" in message  # how to write it
    assert g.edges == []  # nothing half-added
