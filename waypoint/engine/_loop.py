"""The scheduler: runs every ready activation of one run concurrently.

Dataflow, not supersteps: a node starts as soon as the step that activated it is
durable. Completions are funnelled through one queue; whatever arrived while
the previous commit was in flight is committed together (group commit), then
the activations those steps created are launched.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pydantic import BaseModel

from waypoint import _faults
from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunStatus, Snapshot, Step, StepKind
from waypoint.engine._appended import Bases, restore, snapshot
from waypoint.engine._budget import Budget
from waypoint.engine._child import ChildRuns
from waypoint.engine._frontier import Activation, Frontier
from waypoint.engine._messages import Done, Failed, Finished, Message, Waiting
from waypoint.engine._nodes import NodeRunner
from waypoint.engine.events import Event, EventBus
from waypoint.engine.waits import Answer, Pause, at_launch, enqueued_answers, waiting_gates
from waypoint.errors import ConflictError, CorruptRecordError, UpdateError, WaypointError
from waypoint.graphs.graph import END, Graph

SNAPSHOT_MIN_BYTES = 64 * 1024  # snapshot once the deltas since the last one reach this
SNAPSHOT_EVERY_STEPS = 64  # ...or after this many steps, while state and tail stay small
SNAPSHOT_SMALL_BYTES = 16 * 1024
_encode = msgspec.msgpack.Encoder().encode


class Inbox:
    """The messages the runner sends the loop: a list, and the one future the loop waits on.

    `take()` returns everything sent since the last take (waiting for a first message if
    there is none), in order: what `asyncio.Queue` did with get() and get_nowait() until
    empty, without its per-message bookkeeping (one queue operation per node).
    """

    __slots__ = ("items", "waker")

    def __init__(self) -> None:
        self.items: list[Message] = []
        self.waker: asyncio.Future[None] | None = None

    def put(self, message: Message) -> None:
        self.items.append(message)
        waker = self.waker
        if waker is not None and not waker.done():
            waker.set_result(None)

    async def take(self) -> list[Message]:
        while not self.items:
            self.waker = asyncio.get_running_loop().create_future()
            try:
                await self.waker
            finally:
                self.waker = None
        batch, self.items = self.items, []
        return batch


@dataclass
class Outcome:
    status: RunStatus
    state: BaseModel
    error: WaypointError | None = None
    waiting: list[str] = field(default_factory=list)


class RunLoop:
    """Executes one run from its stored log until it finishes, fails or waits."""

    def __init__(self, graph: Graph[Any], store: Store, run_id: str, owner: str, *,
                 deps: Any = None, answers: dict[str, Answer] | None = None,
                 bus: EventBus | None = None, max_concurrency: int | None = None,
                 budget: Budget | None = None, now: float | None = None) -> None:
        self.graph, self.store, self.run_id, self.owner = graph, store, run_id, owner
        self.now = now  # what gate deadlines are checked against; None: the clock
        self.answers = dict(answers or {})
        self.budget = budget
        self.bus = bus or EventBus()
        self.queue = Inbox()
        self.children = ChildRuns(graph, store, run_id, owner, deps, now, self.bus, make_loop=RunLoop)
        self.runner = NodeRunner(graph, run_id, self.bus, send=self.queue.put, deps=deps,
                                 max_concurrency=max_concurrency, now=now,
                                 done_items=self._done_items, child_runs=self.children.runner,
                                 store=store)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.event_loop: asyncio.AbstractEventLoop  # drive() sets it
        self.outstanding = 0
        self.seq = 0
        self.since_snapshot = 0  # bytes of deltas since the last snapshot
        self.steps_since_snapshot = 0
        self.snapshot_size = 0
        self.failed_usage: dict[str, int] = {}  # what the activation that failed the run spent
        self.bases = Bases({})  # where append-only fields were last snapshotted whole (load sets it)

    # -- loading --------------------------------------------------------------
    async def load(self) -> None:
        snapshot, tail = await self.store.load(self.run_id)
        if snapshot is None:
            raise CorruptRecordError(
                f"run {self.run_id!r} has no initial snapshot; it was not created by "
                "waypoint.start or its snapshots were deleted.", run_id=self.run_id)
        record, at = "snapshot", snapshot.seq  # what a misfit is blamed on
        plain = await restore(self.store, self.run_id, snapshot) if snapshot.appended else snapshot.state
        try:
            self.state = self.graph.schema.decode_state(plain)
            self.bases = Bases.at_load(self.graph.schema, snapshot, self.state)
            self.frontier = Frontier.from_plain(snapshot.frontier)
            self.seq = snapshot.seq
            for step in tail:
                record, at = "step", step.seq
                values = self.graph.schema.decode(step.delta) if step.kind == "done" else {}
                self.state = self.frontier.apply(self.graph, self.state, step, values)
                self.seq = step.seq
            self.steps_since_snapshot = len(tail)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CorruptRecordError(
                f"run {self.run_id!r}: {record} at seq {at} does not fit graph "
                f"{self.graph.name!r} ({type(exc).__name__}: {str(exc)[:300]}); "
                f"{'fork the run from an earlier step or ' if at > 0 else ''}restore the database.",
                run_id=self.run_id, seq=at) from None
        self.snapshot_size = len(msgspec.msgpack.encode(snapshot.state))
        # Answers `resume` accepted wait in the log (answered steps) for the execution that takes them.
        self.answers = {**enqueued_answers(self.graph, tail, self.run_id), **self.answers}

    # -- driving --------------------------------------------------------------
    async def drive(self) -> Outcome:
        """Run until nothing can make progress; returns the run's new status."""
        self.event_loop = asyncio.get_running_loop()  # launch() starts tasks in it, without asking again
        try:
            if self.budget is not None and self.frontier.pending:  # spent before this resume
                self.budget.check(self.frontier.usage, run_id=self.run_id, node=None, seq=self.seq,
                                  launching=True)
            for act in list(self.frontier.pending.values()):
                self.launch(act)
            while self.outstanding:
                await self.commit_batch(await self.next_batch())
        except WaypointError as exc:
            await self.stop_tasks()
            await self.record_failure(exc)
            return Outcome("failed", self.state, exc)
        except BaseException:
            await self.stop_tasks()
            raise
        if self.frontier.pending:
            return Outcome("waiting", self.state, waiting=waiting_gates(self.frontier))
        return Outcome("done", self.state)

    async def next_batch(self) -> list[Message]:
        return await self.queue.take()

    async def commit_batch(self, batch: list[Message]) -> None:
        steps: list[Step] = []
        committed: list[asyncio.Future[None]] = []
        error: WaypointError | None = None
        for msg in batch:
            if isinstance(msg, Failed):
                self.failed_usage = msg.usage  # recorded on the fail step: it counts
                error = msg.error  # commit what came before it, then fail the run
                break
            if isinstance(msg, Done):
                self.tasks.pop(msg.act.id, None)  # its last message: its task is ending
                try:
                    steps.append(self.complete(msg.act, msg.finished))
                except WaypointError as exc:
                    error = exc
                    break
                self.outstanding -= 1
            elif isinstance(msg, Waiting):
                self.tasks.pop(msg.act.id, None)
                steps.append(self.step("wait", msg.act, extra=msg.request))
                self.outstanding -= 1
            else:
                steps.append(self.step("item", msg.act, extra={"index": msg.index, "result": msg.result}))
                committed.append(msg.committed)
        if steps:
            _faults.reached("before_commit")
            await self.store.append(self.run_id, self.owner, steps, self.maybe_snapshot(steps))
            _faults.reached("after_commit")
        for fut in committed:
            if not fut.done():  # cancelled when a sibling item failed the map meanwhile
                fut.set_result(None)
        if error is not None:
            raise error
        over = self.over_budget(steps)
        for step in steps:
            self.after_commit(step, launch=over is None)
        if over is not None:
            raise over

    def over_budget(self, steps: list[Step]) -> WaypointError | None:
        """The budget error `steps` ran into, checked before their children launch."""
        if self.budget is None or not steps:
            return None
        last = steps[-1]
        try:
            self.budget.check(self.frontier.usage, run_id=self.run_id, node=last.node, seq=last.seq,
                              launching=any(step.children for step in steps))
        except WaypointError as exc:
            return exc
        return None

    def after_commit(self, step: Step, launch: bool = True) -> None:
        node, act = step.node, step.activation
        if step.kind == "done":
            self.bus.publish(Event("node_finished", self.run_id, node, act, step.seq,
                                   {"delta": step.delta, **step.extra}))
            for i in range(len(step.children) if launch else 0):
                self.launch(self.frontier.pending[f"{step.seq}.{i}"])
        elif step.kind == "wait":
            self.bus.publish(Event("gate_waiting", self.run_id, node, act, step.seq, step.extra))

    def step(self, kind: StepKind, act: Activation, **fields: Any) -> Step:
        self.seq += 1
        step = Step(seq=self.seq, kind=kind, node=act.node, activation=act.id,
                    at=time.time(), **fields)
        self.state = self.frontier.apply(self.graph, self.state, step, {})
        return step

    def complete(self, act: Activation, done: Finished) -> Step:
        """Validate a finished activation's update and turn it into the next Step."""
        graph, schema = self.graph, self.graph.schema
        values = schema.check_update(act.node, done.outcome.update, run_id=self.run_id)
        self.check_conflicts(act, values, done.started_seq)
        targets = graph.successors(act.node, done.outcome.labels)
        children = [t for t in targets if t != END and not graph.nodes[t].join]
        extra = dict(done.record)
        if done.outcome.labels is not None:
            extra["route"] = list(done.outcome.labels)
        arrived = [t for t in targets if t != END and graph.nodes[t].join]
        if arrived:
            extra["arrived"] = arrived
        self.seq += 1
        step = Step(seq=self.seq, kind="done", node=act.node, activation=act.id, at=time.time(),
                    delta=schema.encode(values), children=children, extra=extra)
        try:
            self.state = self.frontier.apply(graph, self.state, step, values)
        except UpdateError as exc:  # a state validator refused the merged value: no step
            self.seq -= 1
            raise UpdateError(f"run {self.run_id!r}, {exc}", run_id=self.run_id, node=act.node) from None
        joins = self.frontier.ready_joins(graph)
        for join in joins:
            self.frontier.add(graph, f"{step.seq}.{len(children)}", join, act.node)
            children.append(join)
        return msgspec.structs.replace(step, children=children) if joins else step

    def check_conflicts(self, act: Activation, values: dict[str, Any], started: int) -> None:
        for name in values:
            writer = self.frontier.writers.get(name)
            if self.graph.schema.fields[name].reducer is None and writer and writer[0] > started:
                raise ConflictError(
                    f"run {self.run_id!r}: nodes {writer[1]!r} and {act.node!r} ran at the same "
                    f"time and both wrote last-value field {name!r} ({writer[1]!r} at step "
                    f"{writer[0]}). Give the field a reducer (e.g. Annotated[..., append]) or "
                    "let only one of them write it.", run_id=self.run_id, node=act.node,
                    seq=writer[0])

    def maybe_snapshot(self, steps: list[Step]) -> Snapshot | None:
        """A snapshot to commit with `steps`, when replaying the tail would cost more than it.

        Large tails (deltas past max(snapshot, 64 KiB)) always get one, so snapshots
        total at most about the deltas; a small run also gets one every 64 steps, so
        a resume never replays a long tail of tiny steps.
        """
        for step in steps:
            self.since_snapshot += len(_encode(step.delta)) + 64
        self.steps_since_snapshot += len(steps)
        big = self.since_snapshot >= max(self.snapshot_size, SNAPSHOT_MIN_BYTES)
        long_and_small = (self.steps_since_snapshot >= SNAPSHOT_EVERY_STEPS
                          and self.snapshot_size < self.since_snapshot
                          and self.snapshot_size + self.since_snapshot < SNAPSHOT_SMALL_BYTES)
        if not (big or long_and_small):
            return None
        state, appended = self.bases.split(self.graph.schema, self.state, self.seq)
        self.snapshot_size = len(_encode(state))
        self.since_snapshot = self.steps_since_snapshot = 0
        return snapshot(self.seq, state, self.frontier.to_plain(), appended)

    # -- launching -------------------------------------------------------------
    def launch(self, act: Activation) -> None:
        """Start `act`, unless it waits: where a gate pauses is `waits.at_launch`."""
        if act.id in self.tasks:
            return
        node = self.graph.nodes[act.node]
        go = at_launch(node, act, self.frontier, self.answers, self.state, self.now)
        if go is None:
            return  # still waiting for a human
        self.outstanding += 1
        if isinstance(go, Pause):
            self.queue.put(Waiting(act, go.request))
            return
        self.bus.publish(Event("node_started", self.run_id, act.node, act.id, self.seq))
        task = self.event_loop.create_task(self.runner.execute(act, self.state, self.seq, go,
                                                               self._loop_count(node, act)))
        self.tasks[act.id] = task  # until commit_batch takes its last message (no done callback)

    def _loop_count(self, node: Any, act: Activation) -> int | None:
        """A guard's count, when `act` comes round its loop (else it starts again from 0)."""
        if node.counts_loops and act.parent in self.graph.loop_bodies.get(act.node, ()):
            return self.frontier.loop_counts.get(act.node, 0)
        return None

    def _done_items(self, act_id: str) -> dict[int, Any] | None:
        """What `act_id` has committed so far (map items, LLM turns): the runner's one read."""
        return self.frontier.items.get(act_id)

    async def stop_tasks(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def record_failure(self, exc: WaypointError) -> None:
        node = exc.node or "-"
        act = next((a for a in self.frontier.pending.values() if a.node == node), None)
        act = act or Activation("-", node, "-")
        extra: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__}
        if self.failed_usage:
            extra["usage"] = self.failed_usage
        self.bus.publish(Event("node_failed", self.run_id, node, act.id, self.seq + 1, extra))
        try:
            await self.store.append(self.run_id, self.owner, [self.step("fail", act, extra=extra)])
        except WaypointError:
            pass  # the store itself failed; the run row still says what it can
