"""Looking into runs: status, state as of any step, history, pending gates; forking.

    info = await get_run(run_id, store=store)                # RunInfo: status, lease, waiting
    steps = await history(run_id, store=store)               # ordered Steps with their deltas
    state = await state_at(graph, run_id, 3, store=store)    # the state right after step 3
    gates = await pending_gates(graph, run_id, store=store)  # what the waiting gates ask
    handle = await fork(graph, run_id, at=3, store=store)  # a new run from step 3
    handle = await fork(graph, run_id, at=3, store=store,  # ...with fields changed
                        update={"draft": "shorter"}, by="ana")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, Snapshot, Step
from waypoint.engine._create import create_run_record, new_run_id
from waypoint.engine._frontier import Frontier
from waypoint.engine._ids import check_user_run_id
from waypoint.engine._loop import RunLoop
from waypoint.engine.edits import edit_step
from waypoint.engine.handles import RunHandle
from waypoint.engine.runs import _launch, _Options
from waypoint.engine.waits import child_graphs, waiting_children
from waypoint.errors import RunError, RunNotFoundError
from waypoint.graphs.graph import Graph
from waypoint.nodes.address import GateAddress

S = TypeVar("S")  # the graph's state model: a fork of a Graph[Essay] is a RunHandle[Essay]


@dataclass(frozen=True)
class GateRequest:
    """A question a waiting run asks: answer it with `resume(..., gate=name, seen_seq=seq)`.

    `seq` is the run's last step when the question was read: passed back as `seen_seq`,
    the answer applies only if the run has not moved on since (the question is unchanged).
    """

    name: str
    prompt: str
    payload: Any
    schema: dict[str, Any]
    seq: int = 0


async def get_run(run_id: str, *, store: Store) -> RunInfo:
    await store.open()
    return await store.get_run(run_id)


async def history(run_id: str, *, store: Store) -> list[Step]:
    await store.open()
    await store.get_run(run_id)  # a clear RunNotFoundError for unknown ids
    return await store.history(run_id)


async def replay(graph: Graph[Any], run_id: str, seq: int | None = None, *,
                 store: Store) -> tuple[BaseModel, Frontier, int]:
    """State and frontier right after step `seq` (default: the latest).

    A fork's own log starts after its fork point; a step at or before it is read
    from the run it was forked from (`forked_from`), whose history it shares.
    """
    await store.open()
    info = await store.get_run(run_id)
    upto = info.last_seq if seq is None else seq
    if not 0 <= upto <= info.last_seq:
        raise RunError(f"run {run_id!r} has steps 0..{info.last_seq}; step {seq} does not exist.",
                       run_id=run_id, seq=seq)
    source = _fork_point(info)
    if source is not None and upto < source[1]:
        return await _replay_source(graph, store, info, source, upto)
    # The latest state is the store's own load (one read); an earlier one stops at `upto`.
    # RunLoop.load reads the store through `load` only, which is all _Bounded has
    reader = store if seq is None else cast(Store, _Bounded(store, upto))
    loop = RunLoop(graph, reader, run_id, owner="inspector")
    await loop.load()
    return loop.state, loop.frontier, loop.seq


def _fork_point(info: RunInfo) -> tuple[str, int] | None:
    """(source run, seq) of a fork, from its `forked_from` "<run>@<seq>"; None otherwise."""
    if not info.forked_from:
        return None
    source, _, seq = info.forked_from.rpartition("@")
    return (source, int(seq)) if seq.isdigit() else None


async def _replay_source(graph: Graph[Any], store: Store, info: RunInfo, source: tuple[str, int],
                         upto: int) -> tuple[BaseModel, Frontier, int]:
    try:
        return await replay(graph, source[0], upto, store=store)
    except RunNotFoundError:
        raise RunError(
            f"run {info.run_id!r} is a fork of run {source[0]!r} at step {source[1]}: its own "
            f"history starts at step {source[1]}, and {source[0]!r} is not in this store to show "
            f"step {upto}. Ask for a step from {source[1]} to {info.last_seq}.",
            run_id=info.run_id, seq=upto) from None


async def state_at(graph: Graph[Any], run_id: str, seq: int | None = None, *, store: Store) -> BaseModel:
    return (await replay(graph, run_id, seq, store=store))[0]


async def pending_gates(graph: Graph[Any], run_id: str, *, store: Store) -> list[GateRequest]:
    """The questions `run_id` waits on, its child runs' included (named `node/gate`)."""
    return await _pending(graph, store, run_id, None)


async def _pending(graph: Graph[Any], store: Store, run_id: str, seq: int | None) -> list[GateRequest]:
    _, frontier, last = await replay(graph, run_id, store=store)
    seq = last if seq is None else seq  # a child's gates are answered through its parent run
    requests = []
    for act_id, request in frontier.waits.items():
        node = frontier.pending[act_id].node
        children = waiting_children(node, request)
        if not children:
            requests.append(GateRequest(node, request["prompt"], request["payload"], request["schema"], seq))
        for prefix, child in children:
            sub = await _child_graph(graph.nodes[node], store, child["child"])
            for inner in await _pending(sub, store, child["child"], seq):
                requests.append(GateRequest(prefix + inner.name, inner.prompt, inner.payload,
                                            inner.schema, seq))
    return requests


async def fork(graph: Graph[S], source: str, /, *, at: int, store: Store, run_id: str | None = None,
               deps: Any = None, update: Mapping[str, Any] | None = None,
               by: str | None = None) -> RunHandle[S]:
    """Start a new run from the state and pending work of run `source` right after step `at`.

        handle = await fork(graph, "order-42", at=3, store=store)                  # a new id
        handle = await fork(graph, "order-42", at=3, store=store, run_id="order-42b")

    `run_id` names the fork (as `start(run_id=)` does); by default a new id is made.
    `update={"field": value}` changes fields of that state first (as LangGraph's
    `update_state`): each is validated against the state model, and a bad one is an
    UpdateError naming it, with nothing written. The edit is the fork's first own
    step (kind "edit", made `by` whom, at what time), so `history`, `state_at` and
    `waypoint show` see it; reducer fields merge it as they merge a node's update.

    A subgraph waiting at a gate inside it is forked with it: its child run is
    copied as of the step where it stopped, so the fork waits at the same gate and
    nothing the child completed runs again.
    """
    fork_id = new_run_id() if run_id is None else check_user_run_id(run_id)
    state, frontier, seq = await replay(graph, source, at, store=store)
    edit = None if update is None else edit_step(
        graph, update, seq=seq + 1, by=by, where=f"fork of run {source!r} at step {seq}",
        run_id=source, state=state)
    info = await store.get_run(source)
    await _fork_waiting_children(graph, store, source, fork_id, frontier)
    owner = await create_run_record(store, graph, fork_id, state, frontier=frontier, seq=seq,
                                    graph_ref=info.graph_ref, forked_from=f"{source}@{seq}")
    if edit is not None:
        await store.append(fork_id, owner, [edit])
    return _launch(graph, store, fork_id, owner, {}, _Options(deps), "run_started")


async def _fork_waiting_children(graph: Graph[Any], store: Store, run_id: str, fork_id: str,
                                 frontier: Frontier) -> None:
    """Copy the child runs that `frontier`'s waiting subgraphs and map items point at,
    under `fork_id`, and point the fork's wait requests at the copies."""
    for act_id, request in list(frontier.waits.items()):
        node = graph.nodes[frontier.pending[act_id].node]
        # Copies: the request may be the very dict a MemoryStore keeps in the source's log.
        moved = dict(request)
        if "items" in moved:
            moved["items"] = [dict(item) for item in moved["items"]]
        for prefix, child in waiting_children(node.name, moved):
            if child["child"].startswith(run_id + "/"):
                child.update(await _fork_child(node, store, run_id, fork_id, prefix, child))
        frontier.waits[act_id] = moved


async def _fork_child(node: Any, store: Store, run_id: str, fork_id: str, prefix: str,
                      waiting: dict[str, Any]) -> dict[str, Any]:
    """Copy one waiting child run as of the step where it stopped; its new id and seq."""
    child = waiting["child"]
    sub = await _child_graph(node, store, child)
    state, child_frontier, seq = await replay(sub, child, waiting.get("child_seq"), store=store)
    forked_child = fork_id + child[len(run_id):]
    await _fork_waiting_children(sub, store, child, forked_child, child_frontier)
    owner = await create_run_record(store, sub, forked_child, state, frontier=child_frontier,
                                    seq=seq, parent_run_id=fork_id, forked_from=f"{child}@{seq}")
    inner = [str(GateAddress.parse(gate).inner) for gate in waiting.get("gates", [])]
    await store.release(forked_child, owner, "waiting", waiting=inner)
    return {"child": forked_child, "child_seq": seq}


async def _child_graph(node: Any, store: Store, child_run_id: str) -> Graph[Any]:
    """The graph `node` ran as child run `child_run_id` (a subgraph's, or an agent tool's)."""
    graphs = child_graphs(node)
    if len(graphs) > 1:
        name = (await store.get_run(child_run_id)).graph
        graphs = [g for g in graphs if g.name == name] or graphs
    if not graphs:
        raise RunError(f"child run {child_run_id!r} waits inside node {node.name!r}, which runs no "
                       "graph: the graph has changed since the run started.", run_id=child_run_id)
    return graphs[0]


class _Bounded:
    """A read-only view of a store that stops at step `upto` (for state as of a step)."""

    def __init__(self, store: Store, upto: int) -> None:
        self.store, self.upto = store, upto

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        snapshot = await self.store.snapshot_at(run_id, self.upto)
        after = snapshot.seq if snapshot else 0
        return snapshot, await self.store.history(run_id, after=after, upto=self.upto)

    def __getattr__(self, name: str) -> Any:
        # snapshot_at, history: what a snapshot's append-only fields are rebuilt from
        # (engine/_appended.restore), all at or before `upto`
        return getattr(self.store, name)
