"""What the pages show, read from the store: inbox items, timeline rows, a run's diagram.

    page = await inbox(ctx, limit=25, after=None)  # pending gates, the oldest question first
    page.items, page.next                          # ...and the key to pass as `after` for the next page
    rows = timeline(info, steps)                   # one Row a step: node, took, attempt, delta, by
    drawing = await run_diagram(graph, run_id, ctx.store)   # SVG text, or a readable fallback

Pure reading, no HTML (the templates draw it) and no Starlette: `waypoint.web.pages`
turns requests into these calls.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from waypoint.checkpoints.records import RunInfo, Step
from waypoint.nodes.address import GateAddress
from waypoint.web.context import WebContext

_ALL = 1_000_000  # list_runs limit meaning "every run": the inbox needs every waiting one


@dataclass(frozen=True)
class InboxItem:
    """One pending gate: where it is, what it asks, and the model its answer must fit."""

    run: RunInfo
    gate: str  # its address in the run: `approve`, `sub/review`, `book[3]/confirm`
    prompt: str
    payload: Any
    schema: dict[str, Any]
    seq: int  # the run's last step when read: answers apply only if the run is still there
    asked_at: float
    deadline_at: float | None = None
    model: Any = None  # the answer's pydantic model; None when this server lacks the graph

    @property
    def payload_text(self) -> str:
        return pretty(self.payload)


def gate_url(run_id: str, gate: str) -> str:
    """The shareable page of a pending gate: `/gates/<run>/<gate address>`."""
    return f"/gates/{quote(run_id, safe='/')}/{quote(gate, safe='/')}"


def pretty(value: Any) -> str:
    """A value as indented JSON text (what a person reads; escaped by the template)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


GateKey = tuple[float, str, str]  # (asked_at, run_id, gate): the inbox's order, and its cursor


@dataclass(frozen=True)
class Pending:
    """Every pending gate of every top-level waiting run, as keys in inbox order (the oldest
    question first), and those runs by id. `version` changes whenever a gate starts or
    stops waiting (a live inbox compares it with the one it drew)."""

    keys: list[GateKey]
    runs: dict[str, RunInfo]

    @property
    def version(self) -> str:
        return hashlib.sha1(repr(self.keys).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class InboxPage:
    """A page of the inbox: its items, oldest question first, and where it sits."""

    items: list[InboxItem]
    pending: Pending
    start: int  # how many pending gates come before this page
    next: GateKey | None  # the cursor of the page after this one; None on the last page

    @property
    def total(self) -> int:
        return len(self.pending.keys)


async def inbox(ctx: WebContext, *, limit: int | None = None, after: GateKey | None = None) -> InboxPage:
    """The pending gates after `after` (a key, None: from the oldest), at most `limit`, the
    oldest question first across every page.

    The order is exact: every pending gate's key (when it was asked, run, address) comes from
    its run's wait steps (`pending`), and only the runs of this page are replayed to list
    their questions (about 2 ms a run on SQLite)."""
    now = await pending(ctx)
    start = bisect.bisect_right(now.keys, after) if after is not None else 0
    keys = now.keys[start:None if limit is None else start + limit]
    order = {(run_id, gate): index for index, (_, run_id, gate) in enumerate(keys)}
    items: list[InboxItem] = []
    for run_id in dict.fromkeys(run_id for _, run_id, _ in keys):
        items.extend(i for i in await gates_of(ctx, now.runs[run_id]) if (run_id, i.gate) in order)
    items.sort(key=lambda item: order[(item.run.run_id, item.gate)])
    more = limit is not None and start + limit < len(now.keys)
    return InboxPage(items, now, start, keys[-1] if more and keys else None)


async def pending(ctx: WebContext) -> Pending:
    """Every pending gate's key, oldest first: one `list_runs`, then each waiting run's log
    read once per change of it (remembered in `ctx.asked` by its last seq), never replayed."""
    runs = await waiting_runs(ctx)
    fresh: dict[str, tuple[Any, list[tuple[str, float]]]] = {}
    keys: list[GateKey] = []
    for info in runs:
        mark = (info.last_seq, tuple(info.waiting))
        known = ctx.asked.get(info.run_id)
        if known is None or known[0] != mark:
            known = (mark, await _asked(ctx, info))
        fresh[info.run_id] = known
        keys.extend((at, info.run_id, gate) for gate, at in known[1])
    ctx.asked = fresh  # only waiting runs are remembered
    return Pending(sorted(keys), {info.run_id: info for info in runs})


async def _asked(ctx: WebContext, info: RunInfo) -> list[tuple[str, float]]:
    """When each of the run's pending gates was asked: its node's latest wait step (as `gates_of`)."""
    waits = {step.node: step.at for step in await ctx.store.history(info.run_id) if step.kind == "wait"}
    return [(name, waits.get(GateAddress.parse(name).node, info.updated_at)) for name in info.waiting]


async def waiting_runs(ctx: WebContext) -> list[RunInfo]:
    """The top-level waiting runs (a child's gates are answered through its parent, which lists them)."""
    runs = await ctx.store.list_runs(status="waiting", limit=_ALL)
    return [info for info in runs if info.parent_run_id is None]


async def gates_of(ctx: WebContext, info: RunInfo) -> list[InboxItem]:
    """The pending gates of one run: from its graph when served, else from its wait steps."""
    from waypoint.engine import pending_gates
    from waypoint.engine.waits import find_gate

    steps = await ctx.store.history(info.run_id)
    waits = {step.node: step for step in steps if step.kind == "wait"}  # the latest per node
    graph = ctx.graph_of(info)
    if graph is None:
        heads = {name: GateAddress.parse(name).node for name in info.waiting}
        return [_unserved(info, waits[head], name) for name, head in heads.items() if head in waits]
    out = []
    for request in await pending_gates(graph, info.run_id, store=ctx.store):
        wait = waits.get(GateAddress.parse(request.name).node)
        out.append(InboxItem(info, request.name, request.prompt, request.payload, request.schema,
                             request.seq, wait.at if wait else info.updated_at,
                             wait.extra.get("deadline_at") if wait else None,
                             find_gate(graph, request.name).answer))
    return out


def _unserved(info: RunInfo, wait: Step, name: str) -> InboxItem:
    request = wait.extra
    return InboxItem(info, name, str(request.get("prompt", "")), request.get("payload"),
                     request.get("schema", {}), info.last_seq, wait.at, request.get("deadline_at"))


@dataclass(frozen=True)
class Row:
    """One step of a run's timeline."""

    seq: int
    kind: str
    node: str
    at: float
    took: float | None  # seconds from the activation's creation to this step
    attempt: int | None
    delta: str  # the state change as JSON text ("" when none)
    by: str | None  # who answered a gate or edited the state
    route: str = ""
    detail: str = ""  # an answer, an edit's reason, an error


def timeline(info: RunInfo, steps: list[Step]) -> list[Row]:
    """One row a step, oldest first. An activation `S.I` was created by step S, so how long
    a step took is its time minus step S's (the run's creation for `0.I`)."""
    at = {0: info.created_at} | {step.seq: step.at for step in steps}
    rows = []
    for step in steps:
        made = step.activation.split(".")[0]
        took = step.at - at[int(made)] if made.isdigit() and int(made) in at else None
        rows.append(Row(step.seq, step.kind, step.node, step.at, took, step.extra.get("attempt"),
                        pretty(step.delta) if step.delta else "", step.extra.get("by"),
                        " ".join(step.extra.get("route", ())), _detail(step)))
    return rows


def _detail(step: Step) -> str:
    extra = step.extra
    if "answer" in extra:
        return "answered " + json.dumps(extra["answer"], default=str, ensure_ascii=False)
    if step.kind == "wait":
        return str(extra.get("prompt", ""))
    if step.kind == "fail":
        return str(extra.get("error", ""))
    if step.kind == "event":
        return " ".join(f"{k}={v}" for k, v in extra.items() if k != "by")
    return ""


@dataclass(frozen=True)
class Drawing:
    """A run's diagram: SVG from Graphviz when `dot` is installed; otherwise each node's
    status and visits and the path taken, as text, and the DOT source."""

    svg: str | None
    dot: str
    nodes: list[tuple[str, str, int]] = field(default_factory=list)  # name, status, visits
    path: list[tuple[str, str]] = field(default_factory=list)


def diagram_formats() -> tuple[str, ...]:
    """What this server can draw, the default first: SVG only where Graphviz's `dot` is on PATH."""
    return ("svg", "mermaid", "dot") if shutil.which("dot") else ("mermaid", "dot")


async def run_diagram(graph: Any, run_id: str, store: Any) -> Drawing:
    """The run's diagram as `waypoint render --run` draws it (`run_marks` on the graph)."""
    from waypoint.engine import run_marks

    marks = await run_marks(graph, run_id, store=store)
    dot = str(graph.render("dot", run=marks))
    svg = None
    if "svg" in diagram_formats():
        svg = _bare(str(graph.render("svg", run=marks)))
    nodes = [(name, status, marks.visits.get(name, 0)) for name, status in marks.status.items()]
    return Drawing(svg, dot, nodes, list(marks.path))


def _bare(svg: str) -> str:
    """The <svg> element alone (no XML prolog or doctype), to serve as an image."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
