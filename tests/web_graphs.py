"""Graphs the web tests serve: a review gate whose answer a browser can get wrong.

    from tests.web_graphs import review_graph, Review

`review_graph` runs prepare -> review (a gate) -> finish. `Review.comment` needs at
least 3 characters, which the form does not tell the browser (no `minlength`), so
only the server can refuse "no": what the tests use as a wrong answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from waypoint import END, START, GraphBuilder


class Review(BaseModel):
    """What a reviewer answers."""

    approved: bool
    comment: str = Field(min_length=3, description="Why (3 characters at least)")
    amount: int = Field(100, ge=0, le=1000, description="Refund in euros")
    level: Literal["low", "high"] = "low"


class Ticket(BaseModel):
    title: str
    notes: list[str] = []
    review: Review | None = None
    outcome: str = ""


def build_review_graph(name: str = "review") -> object:
    g = GraphBuilder(Ticket, name=name)

    @g.node
    def prepare(state: Ticket) -> dict:
        return {"notes": [f"prepared {state.title}"]}

    g.gate("review", Review, prompt=lambda s: f"Refund ticket {s.title!r}?",
           payload=lambda s: {"title": s.title, "notes": s.notes}, into="review")

    @g.node
    def finish(state: Ticket) -> dict:
        assert state.review is not None
        return {"outcome": "refunded" if state.review.approved else "declined", "notes": ["finished"]}

    g.edge(START, "prepare")
    g.edge("prepare", "review")
    g.edge("review", "finish")
    g.edge("finish", END)
    return g.compile()


review_graph = build_review_graph()
