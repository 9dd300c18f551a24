"""An article that a human approves before it is published.

    waypoint run examples/approval.py:graph --input '{"topic": "tides"}'

research fans out to two sources that run concurrently, an explicit join
collects their findings, draft writes the article, and the run waits at the
human gate "approve". Approved: publish, then the end. Rejected: the loop guard
"revise" sends it back to draft with the reviewer's comment, at most twice;
after that the run ends unpublished.

Deterministic and offline: the "sources" are canned so the demo runs anywhere.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel

import waypoint
from waypoint import END, START, GraphBuilder


class Approval(BaseModel):
    """What the reviewer answers at the gate."""

    approved: bool
    comment: str = ""


class Article(BaseModel):
    topic: str
    findings: Annotated[list[str], waypoint.append] = []  # one entry per source
    notes: Annotated[list[str], waypoint.append] = []  # what happened, in order
    summary: str = ""
    draft: str = ""
    revision: int = 0
    approval: Approval | None = None
    published: str = ""


g = GraphBuilder(Article, name="approval")


@g.node
def research(state: Article) -> dict:
    return {"notes": [f"researching {state.topic!r} in two sources"]}


@g.node
async def encyclopedia(state: Article) -> dict:
    fact = f"{state.topic} have been studied since antiquity"
    return {"findings": [f"encyclopedia: {fact}"], "notes": ["encyclopedia consulted"]}


@g.node
async def archive(state: Article) -> dict:
    fact = f"the archive holds 3 reports on {state.topic}"
    return {"findings": [f"archive: {fact}"], "notes": ["archive consulted"]}


def collect(state: Article) -> dict:
    findings = sorted(state.findings)  # the sources finish in any order
    return {"summary": "; ".join(f.split(": ", 1)[1] for f in findings)}


g.join("collect", collect)


@g.node
def draft(state: Article) -> dict:
    revision = state.revision + 1
    text = f"{state.topic.title()}: what we know. {state.summary.capitalize()}."
    if state.approval is not None and state.approval.comment:
        text += f" (Revised after review: {state.approval.comment})"
    return {"draft": text, "revision": revision, "notes": [f"draft v{revision} written"]}


g.gate(
    "approve",
    Approval,
    prompt=lambda s: f"Publish revision {s.revision} of the article on {s.topic!r}?",
    payload=lambda s: {"draft": s.draft, "revision": s.revision},
    into="approval",
    routes={"approved": "publish", "rejected": "revise"},
    route=lambda state, answer: "approved" if answer.approved else "rejected",
)


g.loop_guard("revise", max_iterations=2, routes={"continue": "draft", "exhausted": END})


@g.node
def publish(state: Article) -> dict:
    slug = "-".join(state.topic.lower().split())
    return {"published": f"articles/{slug}-v{state.revision}.md", "notes": ["published"]}


g.edge(START, "research")
g.edge("research", ["encyclopedia", "archive"])
g.edge("encyclopedia", "collect")
g.edge("archive", "collect")
g.edge("collect", "draft")
g.edge("draft", "approve")
g.edge("publish", END)

graph = g.compile()
