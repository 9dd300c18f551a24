"""`g.join` in every spelling: bare, with a function, and as a decorator like `@g.node`."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, run_sync
from waypoint.errors import GraphError


class Parts(BaseModel):
    a: str = ""
    b: str = ""
    out: str = ""
    merges: int = 0


def branches() -> GraphBuilder[Parts]:
    g = GraphBuilder(Parts)
    g.node(lambda s: {"a": "A"}, name="left")
    g.node(lambda s: {"b": "B"}, name="right")
    g.edge(START, ["left", "right"])
    g.edge(["left", "right"], "merge")
    g.edge("merge", END)
    return g


def combine(state: Parts) -> dict:
    return {"out": state.a + state.b, "merges": state.merges + 1}


def test_a_decorated_join_runs_its_function_once_after_every_branch():
    g = branches()

    @g.join
    def merge(state: Parts) -> dict:
        return {"out": state.a + state.b, "merges": state.merges + 1}

    assert merge.__name__ == "merge"  # the decorator returns the function, as @g.node does
    assert g.nodes["merge"].join and g.nodes["merge"].writes == {"out", "merges"}
    final = run_sync(g.compile(), {}).state
    assert (final.out, final.merges) == ("AB", 1)


@pytest.mark.parametrize("decorate", [
    lambda g: g.join("merge"),
    lambda g: g.join(name="merge"),
    lambda g: g.join("merge", retry=2),
], ids=["positional-name", "keyword-name", "name-and-options"])
def test_a_join_named_in_the_decorator_takes_that_name(decorate):
    g = branches()
    assert decorate(g)(combine) is combine
    node = g.nodes["merge"]
    assert node.join and node.fn is combine and not g.duplicates
    final = run_sync(g.compile(), {}).state
    assert (final.out, final.merges) == ("AB", 1)


def test_options_alone_in_the_decorator_keep_the_functions_name():
    g = branches()
    g.join(retry=3)(combine)
    assert set(g.nodes) == {"left", "right", "combine"} and g.nodes["combine"].retry.attempts == 3


def test_a_bare_join_still_only_waits():
    g = branches()
    g.join("merge")
    assert g.nodes["merge"].fn is None and run_sync(g.compile(), {}).state.out == ""


def test_a_join_named_by_something_else_says_how_to_spell_it():
    with pytest.raises(GraphError, match=r"g\.join\(42\): a join's name is a string; write g\.join\('merge'\)"):
        GraphBuilder(Parts).join(42)
