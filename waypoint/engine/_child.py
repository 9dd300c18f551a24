"""Subgraphs: a compiled graph run as a child run inside the parent's store.

The child run's id is `<parent run>/<activation>`, stable across crashes, so a
resumed parent picks the child's log up where it stopped instead of starting
it over. The parent's lease owner executes the child; a gate inside the child
pauses the parent under the name `<subgraph node>/<gate>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from waypoint.engine import _lease
from waypoint.engine._budget import add_usage
from waypoint.engine._frontier import Activation
from waypoint.engine._nodes import ChildWaiting
from waypoint.engine.events import Event, EventBus
from waypoint.errors import NodeError, RunNotFoundError
from waypoint.graphs.graph import Graph

if TYPE_CHECKING:
    from waypoint.engine._loop import RunLoop


def child_runner(parent: RunLoop, act: Activation):
    async def run_child(graph: Graph, child_input: Any, *, key: str | None = None,
                        usage: dict[str, int] | None = None) -> Any:
        from waypoint.engine._loop import RunLoop
        from waypoint.engine.runs import create_run_record

        child_id = f"{parent.run_id}/{act.id}" + (f"/{key}" if key else "")
        try:
            info = await parent.store.get_run(child_id)
        except RunNotFoundError:
            await create_run_record(parent.store, graph, child_id, graph.schema.initial(child_input),
                                    owner=parent.owner, parent_run_id=parent.run_id)
        else:
            if info.lease_owner not in (None, parent.owner):
                # Whoever held the child before us held the parent too, and lost it: the
                # parent's lease, which we hold, is what fences the child.
                await parent.store.release(child_id, info.lease_owner, info.status,
                                           waiting=info.waiting)
        await parent.store.claim(child_id, parent.owner, _lease.LEASE_TTL)
        prefix = act.node + "/"
        answers = {k[len(prefix):]: v for k, v in parent.answers.items() if k.startswith(prefix)}
        for key in answers:
            parent.answers.pop(prefix + key)
        loop = RunLoop(graph, parent.store, child_id, parent.owner, deps=parent.runner.deps,
                       answers=answers, bus=_forwarding_bus(parent, act), now=parent.now)
        await loop.load()
        outcome = await loop.drive()
        await parent.store.release(child_id, parent.owner, outcome.status,
                                   error=str(outcome.error) if outcome.error else None,
                                   waiting=outcome.waiting)
        if usage is not None:
            add_usage(usage, loop.frontier.usage)
        if outcome.status == "waiting" and parent.graph.nodes[act.node].kind == "map":
            raise NodeError(
                f"run {parent.run_id!r}, map {act.node!r}: the child run {child_id!r} of one of its "
                f"items waits at {outcome.waiting}, and a map item cannot pause the run. Ask before "
                "or after the map (one gate whose answer covers every item), or give each item "
                "its own subgraph node.", run_id=parent.run_id, node=act.node)
        if outcome.status == "waiting":
            deadlines = [r["deadline_at"] for r in loop.frontier.waits.values()
                         if r.get("deadline_at") is not None]
            raise ChildWaiting(child_id, outcome.waiting, loop.seq, min(deadlines, default=None))
        if outcome.status != "done":
            raise NodeError(
                f"run {parent.run_id!r}, {parent.graph.nodes[act.node].kind} {act.node!r}: child run {child_id!r} "
                f"{outcome.status}: {outcome.error}", run_id=parent.run_id, node=act.node)
        return outcome.state

    return run_child


def _forwarding_bus(parent: RunLoop, act: Activation) -> EventBus:
    """A bus whose events reappear on the parent's stream as `<node>/<child node>`."""
    bus = EventBus()
    publish = bus.publish

    def forward(event: Event) -> None:
        publish(event)
        if event.node is not None:
            parent.bus.publish(Event(event.kind, parent.run_id, f"{act.node}/{event.node}",
                                     event.activation, event.seq, event.data, event.at))

    bus.publish = forward  # type: ignore[method-assign]
    return bus
