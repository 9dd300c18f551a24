"""Executing one activation: context, limits, retries, timeouts, gates, maps, subgraphs.

The runner turns whatever a node does into exactly one message on the run
loop's queue: ("done", act, Finished) or ("failed", act, NodeError, usage) or, for a
subgraph that stopped at a gate inside it or a map some of whose items did,
("wait", act, request).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter

from waypoint.engine._budget import add_usage, counting_children, unkept
from waypoint.engine._frontier import Activation
from waypoint.engine.events import Event
from waypoint.errors import NodeError, WaypointError
from waypoint.nodes.base import Outcome
from waypoint.nodes.composite import ChildPaused, ItemsWaiting, item_address
from waypoint.nodes.context import NodeContext

if TYPE_CHECKING:
    from waypoint.engine._loop import RunLoop

_ANY: TypeAdapter[Any] = TypeAdapter(Any)  # what an LLM node commits per tool turn is plain data


@dataclass
class Finished:
    outcome: Outcome
    record: dict[str, Any]
    started_seq: int


class ChildWaiting(ChildPaused):
    """A subgraph's child run stopped at gates (names relative to the child) after step `seq`.

    `deadline_at` is the earliest deadline among them, so the parent's own wait
    comes due (at resume and in the `tick()` sweep) when a gate inside does.
    """

    def __init__(self, child_run_id: str, gates: list[str], seq: int,
                 deadline_at: float | None = None) -> None:
        self.child_run_id, self.gates, self.seq = child_run_id, gates, seq
        self.deadline_at = deadline_at
        super().__init__(f"child run {child_run_id} waits at {gates}")


class NodeRunner:
    def __init__(self, loop: RunLoop, deps: Any, max_concurrency: int | None) -> None:
        self.loop = loop
        self.deps = deps
        self.limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self.node_limits: dict[str, asyncio.Semaphore] = {}
        self.expired: set[str] = set()
        self.claimed: dict[str, Any] = {}  # gate activation id -> the answer it took
        self.lost: dict[str, dict[str, int]] = {}  # act id -> what its failed attempts spent

    def claim_answer(self, act: Activation) -> bool:
        """True when `act` may run now because an answer reaches it.

        A gate takes its answer at launch, so when one gate waits in several
        activations at once, one answer goes to the oldest and the rest keep waiting.
        A subgraph passes answers addressed inside it ('node/gate') to its child run,
        and a map those addressed to its waiting items ('map[index]/gate') to theirs.
        """
        answers = self.loop.answers
        if act.id in self.claimed:
            return True
        kind = self.loop.graph.nodes[act.node].kind
        if kind == "gate":
            if act.node not in answers:
                return False
            self.claimed[act.id] = answers.pop(act.node)
            return True
        if kind == "map":
            items = self.loop.frontier.waits.get(act.id, {}).get("items", ())
            prefixes = tuple(item_address(act.node, entry["index"]) + "/" for entry in items)
            return bool(prefixes) and any(k.startswith(prefixes) for k in answers)
        return any(k.startswith(act.node + "/") for k in answers)

    def expire(self, act: Activation) -> None:
        """Mark a gate whose deadline passed: it completes on its escalation route."""
        self.expired.add(act.id)

    async def execute(self, act: Activation, state: BaseModel, started_seq: int) -> None:
        queue = self.loop.queue
        lost = self.lost.setdefault(act.id, {})
        try:
            async with self._limits(act.node):
                done = await self._attempts(act, state, started_seq)
            queue.put_nowait(("done", act, done))
        except ChildWaiting as waiting:
            queue.put_nowait(("wait", act, _child_wait(waiting, act.node + "/")))
        except ItemsWaiting as waiting:
            queue.put_nowait(("wait", act, _items_wait(act, waiting)))
        except WaypointError as exc:
            queue.put_nowait(("failed", act, _with_place(exc, self.loop.run_id, act), lost))
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise  # the run is being stopped: the activation stays pending, resumable
        except BaseException as exc:  # noqa: BLE001 - a node's Halt(BaseException) must not hang the run
            queue.put_nowait(("failed", act, self._node_error(act, exc), lost))
        finally:
            self.lost.pop(act.id, None)

    async def _attempts(self, act: Activation, state: BaseModel, started_seq: int) -> Finished:
        """Run `act` until an attempt succeeds or may not be retried.

        What failed attempts spent and nothing else keeps (`_budget.unkept`) is summed in
        `self.lost[act.id]`: the step that ends the activation, done or fail, carries it.
        """
        node, lost = self.loop.graph.nodes[act.node], self.lost[act.id]
        attempt = 1
        while True:
            from_children: dict[str, int] = {}
            ctx = self._context(act, attempt, from_children)
            try:
                outcome = await self._run(node, act, state, ctx)
                if attempt > 1:
                    ctx.record["attempt"] = attempt
                if lost:
                    add_usage(ctx.record.setdefault("usage", {}), lost)
                return Finished(outcome, ctx.record, started_seq)
            except (ChildPaused, ItemsWaiting):
                raise
            except BaseException as exc:
                turns = self.loop.frontier.items.get(act.id) if node.keeps_turns else None
                add_usage(lost, unkept(ctx.record.get("usage"), turns, from_children))
                if not isinstance(exc, Exception) or isinstance(exc, WaypointError):
                    raise
                if not node.retry.should_retry(exc, attempt):
                    raise
                delay = node.retry.delay(attempt)
                self.loop.bus.publish(Event("node_retried", self.loop.run_id, act.node, act.id,
                                            data={"attempt": attempt, "error": repr(exc), "delay": delay}))
                await asyncio.sleep(delay)
                attempt += 1

    async def _run(self, node: Any, act: Activation, state: BaseModel, ctx: NodeContext) -> Outcome:
        if node.kind == "gate":
            return self._answer_gate(node, act, state, ctx)
        try:
            return await node.run_with_timeout(state, ctx)
        except TimeoutError:
            raise NodeError(
                f"run {self.loop.run_id!r}, node {act.node!r}: timed out after {node.timeout}s "
                f"(attempt {ctx.attempt}); raise the node's timeout or fix what hangs, then "
                "resume the run. Sync code (a plain def node or tool) cannot be stopped: its "
                "thread may still be running, and the process will not wait for it at exit.",
                run_id=self.loop.run_id, node=act.node) from None

    def _answer_gate(self, node: Any, act: Activation, state: BaseModel, ctx: NodeContext) -> Outcome:
        if act.id in self.expired:
            request = self.loop.frontier.waits.get(act.id, {})
            expired_at = self.loop.now if self.loop.now is not None else time.time()
            ctx.record.update(expired_at=expired_at, deadline_at=request.get("deadline_at"))
            return Outcome(labels=("expired",))
        answer = self.claimed.pop(act.id)
        ctx.record.update(answer=answer.value.model_dump(mode="json"), by=answer.by,
                          answered_at=answer.at)
        return node.answered(state, answer.value, ctx.run_id)  # its update, and its route when it has one

    def _context(self, act: Activation, attempt: int, from_children: dict[str, int]) -> NodeContext:
        loop = self.loop
        node = loop.graph.nodes[act.node]
        ctx = NodeContext(run_id=loop.run_id, node=act.node, activation=act.id, deps=self.deps,
                          attempt=attempt, emit=self._emitter(act))
        if node.kind == "guard" and act.parent in loop.graph.loop_bodies.get(act.node, ()):
            ctx.loop_count = loop.frontier.loop_counts.get(act.node, 0)
        if node.kind == "map" or node.keeps_turns:  # map items; an LLM node's tool turns
            adapter = loop.item_adapter(node.into) if node.kind == "map" else _ANY
            ctx.commit_item = self._item_committer(act, node, adapter, from_children)
            done = loop.frontier.items.get(act.id, {})
            ctx.done_items = {i: adapter.validate_python(r) for i, r in done.items()}
        from waypoint.engine._child import child_runner  # _child imports this module

        # subgraphs, and graphs offered as tools
        ctx.run_child = counting_children(child_runner(loop, act), from_children)
        return ctx

    def _emitter(self, act: Activation):
        bus, run_id = self.loop.bus, self.loop.run_id

        def emit(kind: str, data: dict[str, Any]) -> None:
            bus.publish(Event(kind, run_id, act.node, act.id, data=data))

        return emit

    def _item_committer(self, act: Activation, node: Any, adapter: TypeAdapter[Any],
                        from_children: dict[str, int]):
        async def commit_item(index: int, result: Any) -> Any:
            try:
                value = adapter.validate_python(result)
            except Exception as exc:
                raise NodeError(
                    f"run {self.loop.run_id!r}, map {act.node!r}: item {index} returned "
                    f"{result!r:.200}, which does not fit the items of field {node.into!r}: {exc}",
                    run_id=self.loop.run_id, node=act.node) from None
            future = asyncio.get_running_loop().create_future()
            plain = adapter.dump_python(value, mode="json")
            self.loop.queue.put_nowait(("item", act, index, plain, future))
            await future
            if node.keeps_turns:
                from_children.clear()  # the turn's usage, children's included, is kept now
            return value

        return commit_item

    def _limits(self, node: str):
        return _Limits(self.limit, self._node_limit(node))

    def _node_limit(self, name: str) -> asyncio.Semaphore | None:
        limit = self.loop.graph.nodes[name].concurrency
        if limit is None:
            return None
        if name not in self.node_limits:
            self.node_limits[name] = asyncio.Semaphore(limit)
        return self.node_limits[name]

    def _node_error(self, act: Activation, exc: BaseException) -> NodeError:
        error = NodeError(
            f"run {self.loop.run_id!r}, node {act.node!r} (activation {act.id}) raised "
            f"{type(exc).__name__}: {exc}. Fix the cause, then resume the run by its id; "
            "completed nodes will not run again.", run_id=self.loop.run_id, node=act.node)
        error.__cause__ = exc
        return error


def _child_wait(waiting: ChildPaused, prefix: str) -> dict[str, Any]:
    """The wait request of a child run stopped at gates, which the parent names `prefix + gate`."""
    assert isinstance(waiting, ChildWaiting)
    request = {"child": waiting.child_run_id, "gates": [prefix + g for g in waiting.gates],
               "child_seq": waiting.seq}
    if waiting.deadline_at is not None:
        request["deadline_at"] = waiting.deadline_at
    return request


def _items_wait(act: Activation, waiting: ItemsWaiting) -> dict[str, Any]:
    """A map's wait request: one child entry per waiting item, and all their gates.

    `deadline_at` is the earliest among the items', so the map comes due when one of them does.
    """
    items = [{"index": index, **_child_wait(paused, item_address(act.node, index) + "/")}
             for index, paused in sorted(waiting.items.items())]
    request: dict[str, Any] = {"items": items, "gates": [g for item in items for g in item["gates"]]}
    deadlines = [item["deadline_at"] for item in items if "deadline_at" in item]
    if deadlines:
        request["deadline_at"] = min(deadlines)
    return request


def _with_place(exc: WaypointError, run_id: str, act: Activation) -> WaypointError:
    exc.run_id = exc.run_id or run_id
    exc.node = exc.node or act.node
    return exc


class _Limits:
    """Acquire the global, then the per-node semaphore (either may be absent)."""

    def __init__(self, *sems: asyncio.Semaphore | None) -> None:
        self.sems = [s for s in sems if s is not None]

    async def __aenter__(self) -> None:
        for sem in self.sems:
            await sem.acquire()

    async def __aexit__(self, *exc: object) -> None:
        for sem in reversed(self.sems):
            sem.release()
