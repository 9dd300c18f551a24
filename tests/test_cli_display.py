"""The live display of `run`/`resume`, rendered from given sequences of events (no clocks)."""

from __future__ import annotations

import asyncio
import io

from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, MemoryStore, start
from waypoint._cli.live import EventView
from waypoint._cli.output import Out
from waypoint._cli.progress import Running, elapsed
from waypoint.engine.events import Event


class S(BaseModel):
    items: list[int] = []
    results: list[int] = []


def graph():
    g = GraphBuilder(S, name="mapped")
    g.node(lambda s: {"items": [1, 2, 3, 4]}, name="plan", writes=["items"])
    g.map("double", lambda x: 2 * x, over="items", into="results", max_items=10)
    g.edge(START, "plan")
    g.edge("plan", "double")
    g.edge("double", END)
    return g.compile()


def ev(kind, node, act, at, seq=None, **data):
    return Event(kind, "r", node, act, seq, data, at=at)


def rendered(renderable) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_event_lines_have_a_header_and_each_finished_node_its_time(capsys):
    view = EventView(graph(), Out(color=False))
    for event in [ev("node_started", "plan", "0.0", 100.0),
                  ev("node_finished", "plan", "0.0", 101.5, seq=1, delta={"items": [1]}),
                  ev("node_started", "double", "1.0", 101.5),
                  ev("map_progress", "double", "1.0", 102.0, done=1, total=4),
                  ev("node_failed", "double", "1.0", 173.0, seq=2, type="ValueError", error="x")]:
        view.show(event)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["EVENT", "NODE", "ACT", "SEQ", "TIME", "DETAIL"]
    assert lines[1].split() == ["started", "plan", "0.0"]
    assert lines[2].split()[:5] == ["finished", "plan", "0.0", "1", "1.50s"]
    assert lines[4].split()[:5] == ["failed", "double", "1.0", "2", "1m11s"]
    assert len(lines) == 5  # map_progress is for the live panel, not a line
    assert lines[0].index("TIME") + 4 == lines[2].index("1.50s") + 5  # right-aligned under TIME


def test_the_live_panel_shows_running_nodes_their_time_and_a_maps_bar():
    running = Running()
    for event in [ev("node_started", "plan", "0.0", 100.0),
                  ev("node_finished", "plan", "0.0", 100.2, seq=1),
                  ev("node_started", "double", "1.0", 100.2),
                  ev("node_started", "slow", "1.1", 100.2),
                  ev("map_progress", "double", "1.0", 101.0, done=3, total=4)]:
        running.update(event)
    text = rendered(running.panel(now=145.2))
    header, double, slow = text.splitlines()[:3]
    assert header.split() == ["RUNNING", "ACT", "ELAPSED", "PROGRESS"]
    assert double.split()[:3] == ["double", "1.0", "45.0s"] and "3/4 items" in double
    assert "━" in double  # the bar
    assert slow.split() == ["slow", "1.1", "45.0s"]
    assert "plan" not in text  # finished: no longer running
    later = rendered(running.panel(now=400.2))
    assert "5m00s" in later  # the same node, asked later: its time went up


def test_elapsed_stays_short():
    assert [elapsed(s) for s in (0.041, 12.34, 125, 3725)] == ["0.04s", "12.3s", "2m05s", "1h02m"]


def test_a_map_reports_its_progress_as_events():
    async def main():
        handle = await start(graph(), {}, store=MemoryStore())
        events = [e async for e in handle.events()]
        await handle.result()
        return events

    progress = [e.data for e in asyncio.run(main()) if e.kind == "map_progress"]
    assert progress[0] == {"done": 0, "total": 4} and progress[-1] == {"done": 4, "total": 4}
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
