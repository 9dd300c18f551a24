"""What resume checks before it writes anything, and where a gate's answer goes.

    check_resumable(graph, info, allow_graph_change=False)   # not done nor cancelled, same graph
    check_not_held(info)                                     # no live process runs it
    value = validate_answer(graph, info, "review/approve", {"approved": True})

All of it reads only: a refused resume changes nothing in the store.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from waypoint.checkpoints.fence import held
from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, Step
from waypoint.engine import _lease
from waypoint.engine.waits import ANSWERED, find_gate
from waypoint.errors import GateError, GraphChangedError, RunStateError, StaleAnswerError
from waypoint.graphs.graph import Graph


def check_resumable(graph: Graph[Any], info: RunInfo, allow_graph_change: bool, *,
                    force: bool = False) -> None:
    if info.status == "done":
        raise RunStateError(
            f"run {info.run_id!r} already finished; nothing to resume. Fork it from a step "
            f"to run part of it again: `waypoint fork {info.run_id} --at {info.last_seq}` (or "
            f"fork(graph, {info.run_id!r}, at={info.last_seq}, store=...)).", run_id=info.run_id)
    if info.status == "cancelled" and not force:
        raise RunStateError(
            f"run {info.run_id!r} was cancelled on purpose ({info.error or 'cancelled'}); resume "
            "it anyway with force=True (`waypoint resume --force ...`), or fork it to start over "
            "from a step.", run_id=info.run_id)
    check_same_graph(graph, info, allow_graph_change)


def check_same_graph(graph: Graph[Any], info: RunInfo, allow_graph_change: bool) -> None:
    if info.graph_hash != graph.structure_hash and not allow_graph_change:
        raise GraphChangedError(
            f"run {info.run_id!r} started with a different structure of graph {info.graph!r} "
            f"(hash {info.graph_hash}, now {graph.structure_hash}); resume it with the graph "
            "it started with, or pass allow_graph_change=True if the change is safe.",
            run_id=info.run_id)


def check_not_held(info: RunInfo) -> None:
    """Read-only: the LeaseError `claim` would raise for a run a live process is executing."""
    now = time.time()
    if (info.lease_owner is not None and info.lease_expiry >= now
            and not _lease.holder_is_dead(info.lease_owner)):
        raise held(info.run_id, info.lease_owner, info.lease_expiry, now)


async def stale_answer(store: Store, seen: RunInfo, gates: list[str]) -> StaleAnswerError:
    """The error for answers to `gates` validated against `seen`, a run that moved on since:
    who answered those gates meanwhile and when, and where the run stands now."""
    now = await store.get_run(seen.run_id)
    answered = _answers_given(await store.history(seen.run_id, after=seen.last_seq), gates)
    told = "; ".join(
        f"{s.node!r} was answered by {s.extra.get('by') or 'someone unnamed'} at "
        f"{_when(s.extra.get('answered_at', s.at))} (step {s.seq})" for s in answered)
    where = (f"it now waits at {now.waiting}: read what it asks with `waypoint show {now.run_id}` "
             "and answer that if you still mean to" if now.status == "waiting" else
             f"it is being executed by {now.lease_owner}" if now.lease_owner else
             f"it is now {now.status!r}")
    return StaleAnswerError(
        f"run {seen.run_id!r}: your answer to {gates} was not applied, because the wait it was "
        f"checked against is gone: {told or 'another resume got there first'} (the log moved from "
        f"step {seen.last_seq} to {now.last_seq}, status {seen.status!r} -> {now.status!r}). "
        f"Nothing was written; {where}.", run_id=seen.run_id, node=gates[0], seq=now.last_seq)


def _answers_given(steps: list[Step], gates: list[str]) -> list[Step]:
    """Each answer given to `gates` in `steps`, once: its `answered` step (written by resume), or
    a gate's `done` step with an answer and no `answered` step before it (a log of an older version)."""
    given: list[Step] = []
    untaken: dict[str, int] = {}  # gate -> answered steps its done step has not taken yet
    for step in steps:
        if step.node not in gates:
            continue
        if step.kind == "event" and step.extra.get("event") == ANSWERED:
            given.append(step)
            untaken[step.node] = untaken.get(step.node, 0) + 1
        elif step.kind == "done" and "answer" in step.extra:
            if untaken.get(step.node):
                untaken[step.node] -= 1
            else:
                given.append(step)
    return given


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def pick_gate(info: RunInfo, gate: str | None) -> str:
    if gate is not None:
        return gate
    if len(info.waiting) == 1:
        return info.waiting[0]
    raise GateError(
        f"run {info.run_id!r} waits at {info.waiting or 'no gate'}; name the gate to answer "
        "(gate=... / --gate).", run_id=info.run_id)


def validate_answer(graph: Graph[Any], info: RunInfo, name: str, value: Any) -> BaseModel:
    if info.status in ("running", "interrupted"):
        raise GateError(
            f"run {info.run_id!r} was interrupted while running; resume it without an answer "
            "first, then answer the gates it waits at.", run_id=info.run_id, node=name)
    if info.status == "queued":
        raise GateError(
            f"run {info.run_id!r} is queued for a worker (submitted, or already answered with "
            f"enqueue=True), so gate {name!r} takes no answer now; answer it if the run waits "
            f"there again: `waypoint show {info.run_id}`.", run_id=info.run_id, node=name)
    if info.status not in ("waiting", "cancelled") or name not in info.waiting:
        raise GateError(
            f"run {info.run_id!r}: gate {name!r} is not waiting for an answer (run status "
            f"{info.status!r}, waiting at {info.waiting}).", run_id=info.run_id, node=name)
    return find_gate(graph, name).validate(value, run_id=info.run_id)
