"""A gate routes on its answer: g.gate(..., routes={...}, route=lambda state, answer: ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, SQLiteStore, append, resume, start
from waypoint.engine.views import history
from waypoint.errors import GraphError, NodeError


class Doc(BaseModel):
    text: str = ""
    seen: Annotated[list[str], append] = []


class Review(BaseModel):
    approved: bool


def _builder(route=None, **gate) -> GraphBuilder[Doc]:
    g = GraphBuilder(Doc, name="review")
    g.node(lambda s: {"seen": ["write"]}, name="write")
    g.node(lambda s: {"seen": ["publish"]}, name="publish")
    g.node(lambda s: {"seen": ["rework"]}, name="rework")
    choose = route or (lambda state, answer: "publish" if answer.approved else "revise")
    g.gate("review", Review, routes={"publish": "publish", "revise": "rework"}, route=choose, **gate)
    g.edge(START, "write")
    g.edge("write", "review")
    g.edge(["publish", "rework"], END)
    return g


@pytest.mark.asyncio
@pytest.mark.parametrize(("approved", "ran"), [(True, "publish"), (False, "rework")])
async def test_the_answer_picks_the_route_and_the_log_records_it(tmp_path: Path, approved: bool, ran: str) -> None:
    graph = _builder().compile()
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        first = await (await start(graph, {}, store=store, run_id="r1")).result()
        assert (first.status, first.waiting) == ("waiting", ["review"])
        done = await (await resume(graph, "r1", {"approved": approved}, store=store)).result()
        assert done.status == "done" and done.state.seen == ["write", ran]
        step = next(s for s in await history("r1", store=store) if s.node == "review" and s.kind == "done")
        assert step.extra["route"] == ["publish" if approved else "revise"]
    finally:
        await store.close()


def test_labels_come_from_a_literal_annotation_and_compile_checks_them() -> None:
    def only_publish(state: Doc, answer: Review) -> Literal["publish"]:
        return "publish"

    with pytest.raises(GraphError) as info:
        _builder(only_publish).compile()
    assert ("gate 'review' has a route for 'revise', which it cannot return (it returns ['publish']); "
            "remove the route or add the label to the Literal return type of its route=") in str(info.value)


def test_routes_and_route_go_together_and_no_edge_beside_them() -> None:
    g = GraphBuilder(Doc)
    with pytest.raises(GraphError, match="routes= and route= go together"):
        g.gate("review", Review, routes={"a": END})
    g = _builder()
    g.edge("review", END)
    with pytest.raises(GraphError, match="node 'review' routes by label; give its targets in routes="):
        g.compile()


def test_the_bound_counts_and_the_drawing_labels_the_routes() -> None:
    graph = _builder().compile()
    assert graph.max_steps == 4  # write, review, and each route's node once (counted as for a router)
    dot = graph.render("dot")
    assert '[label="publish"]' in dot and '[label="revise"]' in dot


@pytest.mark.asyncio
async def test_a_label_the_routes_lack_fails_the_run_naming_them(tmp_path: Path) -> None:
    graph = _builder(lambda state, answer: "maybe").compile()
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        await (await start(graph, {}, store=store, run_id="r1")).result()
        handle = await resume(graph, "r1", {"approved": True}, store=store)
        with pytest.raises(NodeError, match=r"gate 'review' returned 'maybe', which is not one of its "
                                            r"routes \['publish', 'revise'\]"):
            await handle.result()
    finally:
        await store.close()
