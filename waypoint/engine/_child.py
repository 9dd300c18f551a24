"""Subgraphs: a compiled graph run as a child run inside the parent's store.

The child run's id is `<parent run>/<activation>`, stable across crashes, so a
resumed parent picks the child's log up where it stopped instead of starting
it over. The parent's lease owner executes the child; a gate inside the child
pauses the parent under the name `<subgraph node>/<gate>`, or, for an item of a
map, `<map>[<index>]/<gate>` (`nodes/address.py`): that item waits, its siblings go on.

A child's lease is the parent's owner's, as long as the parent's (its ttl) and
renewed by the parent's heartbeat (`_lease.beating`) while the child executes. Its
writes are fenced by its parent too (`_UnderParent`): each append or release of a
child first checks that the parent run is still held by this execution, so a
parent stopped or taken over (its lease lapsed, another worker claimed it) writes
nothing more for its child, even while the child's own lease is still its. The
check costs nothing while the parent's heartbeat is on time (`Beat.sure`: renewed
under 2/3 ttl ago, so its lease cannot have lapsed); after a pause or a blocked
event loop it reads the parent's row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunStatus
from waypoint.engine import _lease
from waypoint.engine._create import create_run_record
from waypoint.engine._frontier import Activation
from waypoint.engine._ids import child_run_id
from waypoint.engine.events import Event, EventBus
from waypoint.engine.waits import ChildWaiting, Go, child_address, still_waiting, take_answers
from waypoint.errors import LeaseError, NodeError, RunNotFoundError, RunStateError, WaypointError
from waypoint.graphs.graph import Graph
from waypoint.nodes.context import add_usage

if TYPE_CHECKING:
    from waypoint.checkpoints.records import RunInfo


@dataclass
class ChildRuns:
    """What the child runs of one (parent) run need from it, given explicitly.

        children = ChildRuns(graph, store, run_id, owner, deps, now, bus, make_loop=RunLoop)
        ctx.run_child = children.runner(act, go)   # for one activation of the parent

    `make_loop` is the scheduler's class (injected, so this module does not import it):
    `make_loop(graph, store, run_id, owner, deps=, answers=, bus=, now=)`.
    """

    graph: Graph[Any]  # the parent's
    store: Store
    run_id: str  # the parent's
    owner: str  # the parent's lease owner, which executes its children
    deps: Any
    now: float | None
    bus: EventBus  # the parent's: child events are forwarded to it
    make_loop: Callable[..., Any]

    def runner(self, act: Activation, go: Go) -> Callable[..., Awaitable[Any]]:
        """`ctx.run_child` for activation `act`, given the answers and wait `go` brought it."""
        async def run_child(graph: Graph[Any], child_input: Any, *, key: str | None = None,
                            usage: dict[str, int] | None = None) -> Any:
            return await self._run(act, go, graph, child_input, key, usage)

        return run_child

    async def _run(self, act: Activation, go: Go, graph: Graph[Any], child_input: Any, key: str | None,
                   usage: dict[str, int] | None) -> Any:
        child_id = child_run_id(self.run_id, act.id, key)
        node = self.graph.nodes[act.node]
        prefix, recorded = child_address(node, act.node, go.request, child_id)
        answers = take_answers(go.answers, prefix)
        waiting = still_waiting(child_id, recorded, answers, self.now)
        if waiting is not None:
            raise waiting  # an item still waiting, with nothing new: its child is left untouched
        beat = _lease.beating(self.owner)
        await _claim_child(self, act, graph, child_id, child_input,
                           beat.ttl if beat is not None else _lease.LEASE_TTL)
        store = _UnderParent(self.store, self.run_id, self.owner)
        loop = self.make_loop(graph, store, child_id, self.owner, deps=self.deps,
                              answers=answers, bus=_forwarding_bus(self.bus, self.run_id, act),
                              now=self.now)
        held = beat.children if beat is not None else set()
        held.add(child_id)  # renewed with the parent's lease from now on
        try:
            await loop.load()
            outcome = await loop.drive()
        except asyncio.CancelledError:
            # A failing sibling (or the parent being stopped) cancelled this child: hand its
            # lease back now, so that resuming the parent does not meet it held for a TTL.
            held.discard(child_id)
            await _release_quietly(store, child_id, self.owner, "interrupted")
            raise
        finally:
            held.discard(child_id)  # before its release: a beat renewing it meanwhile is no loss
        await store.release(child_id, self.owner, outcome.status,
                            error=str(outcome.error) if outcome.error else None, waiting=outcome.waiting)
        if usage is not None:
            add_usage(usage, loop.frontier.usage)
        if outcome.status == "waiting":
            raise _waiting(self, act, loop, outcome.waiting)
        if outcome.status != "done":
            raise NodeError(
                f"run {self.run_id!r}, {node.noun} {act.node!r}: child run {child_id!r} "
                f"{outcome.status}: {outcome.error}", run_id=self.run_id, node=act.node)
        return outcome.state


async def _release_quietly(store: _UnderParent, child_id: str, owner: str, status: RunStatus) -> None:
    try:
        await store.release(child_id, owner, status)
    except WaypointError:
        pass  # not ours any more (nor its parent), or the store is gone: whoever holds it decides


class _UnderParent:
    """The store as a child run's execution sees it: an append or release of the child first
    checks that its parent run is still held by `owner`, else `LeaseError` and nothing is
    written. Reads and everything else go to the store as they are."""

    def __init__(self, store: Any, parent_run_id: str, owner: str) -> None:
        self._store, self._parent, self._owner = store, parent_run_id, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _check(self, run_id: str, what: str) -> None:
        beat = _lease.beating(self._owner)
        if beat is not None and beat.sure():
            return  # the parent's lease was renewed too recently to have lapsed: still ours
        holder = (await self._store.get_run(self._parent)).lease_owner
        if holder != self._owner:
            now = f"it is now held by {holder}" if holder else "it was released"
            raise LeaseError(f"run {run_id!r}: {self._owner} cannot {what} of this child run: its parent "
                             f"run {self._parent!r} is no longer this execution's ({now}); a child is "
                             "written only by its parent's holder, which resumes it", run_id=run_id)

    async def append(self, run_id: str, owner: str, steps: list[Any], snapshot: Any = None) -> None:
        await self._check(run_id, "append steps")
        await self._store.append(run_id, owner, steps, snapshot)

    async def release(self, run_id: str, owner: str, status: RunStatus, *, error: str | None = None,
                      waiting: list[str] | None = None) -> None:
        await self._check(run_id, f"release as {status!r}")
        await self._store.release(run_id, owner, status, error=error, waiting=waiting)


def _waiting(parent: ChildRuns, act: Activation, child: Any, gates: list[str]) -> Exception:
    """What a child run stopped at `gates` raises in its parent: `ChildWaiting`, with the
    child's earliest gate deadline, or an error for a map's function worker."""
    node = parent.graph.nodes[act.node]
    if node.item_field is not None and not node.child_graphs():  # a map's function worker
        return NodeError(
            f"run {parent.run_id!r}, map {act.node!r}: child run {child.run_id!r}, started by an "
            f"item through ctx.run_child in a function worker, waits at {gates}; a map item cannot "
            "pause the run this way, since waypoint cannot see which graph such a function runs "
            "to check an answer against. Pass the worker graph to the map itself, "
            f"g.map({act.node!r}, worker_graph, over=..., into=..., output=...), and a gate "
            f"inside it makes its item wait (answered as '{act.node}[<index>]/<gate>').",
            run_id=parent.run_id, node=act.node)
    deadlines = [r["deadline_at"] for r in child.frontier.waits.values()
                 if r.get("deadline_at") is not None]
    return ChildWaiting(child.run_id, gates, child.seq, min(deadlines, default=None))


async def _claim_child(parent: ChildRuns, act: Activation, graph: Graph[Any], child_id: str,
                       child_input: Any, ttl: float) -> None:
    """Create child run `child_id` or take it over, leased by the parent's owner for `ttl`."""
    try:
        info = await parent.store.get_run(child_id)
    except RunNotFoundError:  # created leased to the parent's owner, in the same write
        await create_run_record(parent.store, graph, child_id, graph.schema.initial(child_input),
                                owner=parent.owner, parent_run_id=parent.run_id, ttl=ttl)
        return
    _check_own_child(parent, act, graph, info)
    if info.lease_owner not in (None, parent.owner):
        # Whoever held the child before us held the parent too, and lost it: the
        # parent's lease, which we hold, is what fences the child.
        await parent.store.release(child_id, info.lease_owner, info.status, waiting=info.waiting)
    await parent.store.claim(child_id, parent.owner, ttl)


def _check_own_child(parent: ChildRuns, act: Activation, graph: Graph[Any], info: RunInfo) -> None:
    """Refuse to adopt a run under the child's id that this activation did not create.

    Such a run can only be a user's run named like a child (`check_user_run_id` now
    refuses those ids) or one from another graph: it is left untouched.
    """
    if info.parent_run_id == parent.run_id and info.graph == graph.name:
        return
    raise RunStateError(
        f"run {parent.run_id!r}, {parent.graph.nodes[act.node].noun} {act.node!r}: its child run "
        f"id {info.run_id!r} is taken by a run that is not its child (parent "
        f"{info.parent_run_id!r}, graph {info.graph!r}; expected parent {parent.run_id!r}, graph "
        f"{graph.name!r}). That run was left untouched. Start this run again under another id "
        f"(waypoint refuses user run ids shaped like child ids, such as {info.run_id!r}).",
        run_id=parent.run_id, node=act.node)


def _forwarding_bus(parent_bus: EventBus, parent_run_id: str, act: Activation) -> EventBus:
    """A bus whose events reappear on the parent's stream as `<node>/<child node>`."""
    bus = EventBus()
    publish = bus.publish

    def forward(event: Event) -> None:
        publish(event)
        if event.node is not None:
            parent_bus.publish(Event(event.kind, parent_run_id, f"{act.node}/{event.node}",
                                     event.activation, event.seq, event.data, event.at))

    bus.publish = forward  # type: ignore[method-assign]
    return bus
