"""Executing one activation: context, limits, retries, timeouts, gates, maps, subgraphs.

    runner = NodeRunner(graph, run_id, bus, send=queue.put_nowait, deps=deps, now=now,
                        done_items=frontier.items.get, child_runs=children.runner)
    task = asyncio.create_task(runner.execute(act, state, seq, go, loop_count=None))

Inputs are explicit: the activation, the state it sees, the step it starts after,
and what waits gave it (`waits.Go`: a gate's answer or expiry, the answers for
its child runs). Its one output is exactly one message (`_messages.py`) sent per
activation: `Done`, `Failed`, or `Waiting` for a subgraph that stopped at a gate
inside it or a map some of whose items did; a map's items and an LLM node's
turns are sent as `ItemDone` before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter

from waypoint.checkpoints.protocol import Store
from waypoint.engine._budget import counting_children, unkept
from waypoint.engine._cached import NodeCache
from waypoint.engine._frontier import Activation
from waypoint.engine._lease import new_owner
from waypoint.engine._messages import Done, Finished, ItemDone, Message, Waiting
from waypoint.engine._recovery import failure_message
from waypoint.engine.events import Event, EventBus
from waypoint.engine.limits import slots_of, store_slot
from waypoint.engine.waits import ChildWaiting, Go, child_wait, items_wait
from waypoint.errors import NodeError, WaypointError
from waypoint.graphs.graph import Graph
from waypoint.nodes.address import child_prefix
from waypoint.nodes.base import Node, Outcome
from waypoint.nodes.composite import ChildPaused, ItemsWaiting
from waypoint.nodes.context import EmitFn, NodeContext, add_usage
from waypoint.nodes.gate import GateNode

_ANY: TypeAdapter[Any] = TypeAdapter(Any)  # what an LLM node commits per tool turn is plain data


class NodeRunner:
    """Runs activations of one run's nodes; reports each through `send`, never touching the loop."""

    def __init__(self, graph: Graph[Any], run_id: str, bus: EventBus, *, send: Callable[[Message], None],
                 deps: Any, max_concurrency: int | None, now: float | None,
                 done_items: Callable[[str], dict[int, Any] | None],
                 child_runs: Callable[[Activation, Go], Any], store: Store | None = None) -> None:
        self.graph, self.run_id, self.bus, self.send = graph, run_id, bus, send
        self.cache = NodeCache(graph, store, run_id, bus)  # for nodes with cache=
        self.store = store  # for Limit(processes=True): slots held in the store
        self.attempts: dict[str, int] = {}  # act id -> its attempt, for nodes with an error route
        self.deps, self.now = deps, now
        self.done_items = done_items  # act id -> its committed items (map items, LLM turns)
        self.child_runs = child_runs  # (act, go) -> the ctx.run_child of that activation
        self.limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self.node_limits: dict[str, asyncio.Semaphore] = {}
        self.lost: dict[str, dict[str, int]] = {}  # act id -> what its failed attempts spent

    async def execute(self, act: Activation, state: BaseModel, started_seq: int, go: Go,
                      loop_count: int | None = None) -> None:
        send = self.send
        lost = self.lost.setdefault(act.id, {})
        try:
            if self.graph.nodes[act.node].cache is not None:
                send(Done(act, await self._cached(act, state, started_seq, go, loop_count)))
                return
            limits = self._limits(act)
            if limits is None:  # the common case: no semaphore, no context manager to enter
                done = await self._attempts(act, state, started_seq, go, loop_count)
            else:
                async with limits:
                    done = await self._attempts(act, state, started_seq, go, loop_count)
            send(Done(act, done))
        except ChildWaiting as waiting:
            send(Waiting(act, child_wait(waiting, child_prefix(act.node))))
        except ItemsWaiting as waiting:
            send(Waiting(act, items_wait(act.node, waiting)))
        except WaypointError as exc:
            send(self._failed(act, _with_place(exc, self.run_id, act), lost, started_seq))
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise  # the run is being stopped: the activation stays pending, resumable
        except BaseException as exc:
            send(self._failed(act, self._node_error(act, exc), lost, started_seq))
        finally:
            self.lost.pop(act.id, None)
            self.attempts.pop(act.id, None)

    async def _cached(self, act: Activation, state: BaseModel, started_seq: int, go: Go,
                      loop_count: int | None) -> Finished:
        """A node with `cache=`: its stored result, or a live run (under its limits) then stored."""
        node, cache = self.graph.nodes[act.node], self.cache
        key = cache.key(node, state)
        hit = await cache.lookup(node, key, act, started_seq)
        if hit is None:  # a miss: another run of this process may be computing it now
            hit = await cache.follow(node, key, act, started_seq)
        if hit is not None:
            return hit
        entry = None
        try:
            async with _Limits(*self._limits_of(act)):
                done = await self._attempts(act, state, started_seq, go, loop_count)
            entry = await cache.keep(node, key, done)
        finally:
            cache.land(key, entry)  # to the runs waiting for this result (None: they compute it)
        return done

    def _failed(self, act: Activation, error: WaypointError, lost: dict[str, int],
                started_seq: int) -> Message:
        """The run fails, or a node with `on_error=` completes on its error route (`_recovery`)."""
        node = self.graph.nodes[act.node]
        return failure_message(node, act, error, self.attempts.get(act.id, 1), lost, started_seq)

    async def _attempts(self, act: Activation, state: BaseModel, started_seq: int, go: Go,
                        loop_count: int | None) -> Finished:
        """Run `act` until an attempt succeeds or may not be retried.

        What failed attempts spent and nothing else keeps (`_budget.unkept`) is summed in
        `self.lost[act.id]`: the step that ends the activation, done or fail, carries it.
        """
        node, lost = self.graph.nodes[act.node], self.lost[act.id]
        attempt = 1
        while True:
            if node.on_error is not None:
                self.attempts[act.id] = attempt  # what its error route records
            from_children: dict[str, int] = {}
            ctx = self._context(act, attempt, go, loop_count, from_children)
            try:
                outcome = await self._run(node, act, state, ctx, go)
                if attempt > 1:
                    ctx.record["attempt"] = attempt
                if lost:
                    add_usage(ctx.record.setdefault("usage", {}), lost)
                return Finished(outcome, ctx.record, started_seq)
            except (ChildPaused, ItemsWaiting):
                raise
            except BaseException as exc:
                turns = self.done_items(act.id) if node.keeps_turns else None
                add_usage(lost, unkept(ctx.record.get("usage"), turns, from_children))
                if not isinstance(exc, Exception) or isinstance(exc, WaypointError):
                    raise
                if not node.retry.should_retry(exc, attempt):
                    raise
                delay = node.retry.delay(attempt)
                self.bus.publish(Event("node_retried", self.run_id, act.node, act.id,
                                       data={"attempt": attempt, "error": repr(exc), "delay": delay}))
                await asyncio.sleep(delay)
                attempt += 1

    async def _run(self, node: Node, act: Activation, state: BaseModel, ctx: NodeContext, go: Go) -> Outcome:
        if node.pauses:  # only a GateNode pauses: a class flag, no isinstance on the hot path
            return self._answer_gate(cast(GateNode, node), state, ctx, go)
        if node.timeout is None:  # one coroutine less per activation; a TimeoutError is the node's own
            return await node.run(state, ctx)
        try:
            return await node.run_with_timeout(state, ctx)
        except TimeoutError:
            raise NodeError(
                f"run {self.run_id!r}, node {act.node!r}: timed out after {node.timeout}s "
                f"(attempt {ctx.attempt}); raise the node's timeout or fix what hangs, then "
                "resume the run. Sync code (a plain def node or tool) cannot be stopped: its "
                "thread may still be running, and the process will not wait for it at exit.",
                run_id=self.run_id, node=act.node) from None

    def _answer_gate(self, node: GateNode, state: BaseModel, ctx: NodeContext, go: Go) -> Outcome:
        """A gate completes with its answer, or, past its deadline, on its "expired" route."""
        if go.answer is None:
            assert go.expired is not None, "a gate runs only answered or expired (waits.at_launch)"
            expired_at = self.now if self.now is not None else time.time()
            ctx.record.update(expired_at=expired_at, deadline_at=go.expired.get("deadline_at"))
            return Outcome(labels=("expired",))
        answer = go.answer
        ctx.record.update(answer=answer.value.model_dump(mode="json"), by=answer.by,
                          answered_at=answer.at)
        return node.answered(state, answer.value, ctx.run_id)  # its update, and its route when it has one

    def _context(self, act: Activation, attempt: int, go: Go, loop_count: int | None,
                 from_children: dict[str, int]) -> NodeContext:
        node = self.graph.nodes[act.node]
        ctx = NodeContext(run_id=self.run_id, node=act.node, activation=act.id, deps=self.deps,
                          attempt=attempt, emit=self._emitter(act))
        if loop_count is not None:
            ctx.loop_count = loop_count
        if node.labels:
            ctx.routes = self.graph.routes.get(act.node, ())
        if node.item_field is not None or node.keeps_turns:  # map items; an LLM node's tool turns
            adapter = _ANY if node.item_field is None else self._item_adapter(node.item_field)
            ctx.commit_item = self._item_committer(act, node, adapter, from_children)
            done = self.done_items(act.id) or {}
            ctx.done_items = {i: adapter.validate_python(r) for i, r in done.items()}
        # subgraphs, and graphs offered as tools
        ctx.run_child = counting_children(self.child_runs(act, go), from_children)
        return ctx

    def _item_adapter(self, field_name: str) -> TypeAdapter[Any]:
        annotation = self.graph.schema.fields[field_name].annotation
        args = typing.get_args(annotation)
        return TypeAdapter(args[0] if typing.get_origin(annotation) is list and args else Any)

    def _emitter(self, act: Activation) -> EmitFn:
        bus, run_id = self.bus, self.run_id

        def emit(kind: str, data: dict[str, Any]) -> None:
            bus.publish(Event(kind, run_id, act.node, act.id, data=data))

        return emit

    def _item_committer(self, act: Activation, node: Node, adapter: TypeAdapter[Any],
                        from_children: dict[str, int]) -> Callable[[int, Any], Awaitable[Any]]:
        async def commit_item(index: int, result: Any) -> Any:
            try:
                value = adapter.validate_python(result)
            except Exception as exc:
                raise NodeError(
                    f"run {self.run_id!r}, map {act.node!r}: item {index} returned "
                    f"{result!r:.200}, which does not fit the items of field {node.item_field!r}: {exc}",
                    run_id=self.run_id, node=act.node) from None
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.send(ItemDone(act, index, adapter.dump_python(value, mode="json"), future))
            await future
            if node.keeps_turns:
                from_children.clear()  # the turn's usage, children's included, is kept now
            return value

        return commit_item

    def _limits(self, act: Activation) -> _Limits | None:
        limits = self._limits_of(act)
        return _Limits(*limits) if any(limit is not None for limit in limits) else None

    def _limits_of(self, act: Activation) -> tuple[Any, ...]:
        """The run's global limit, the node's own (per run), its shared `Limit` (per process),
        and with `processes=True` that limit's slot in the store (engine/limits.py)."""
        shared = self.graph.nodes[act.node].limit
        if shared is None:
            return self.limit, self._node_limit(act.node)
        held = None
        if shared.processes:
            def lost() -> None:
                self.bus.publish(Event("limit_slot_lost", self.run_id, act.node, act.id,
                                       data={"limit": shared.name}))

            held = store_slot(shared, self.store, f"{new_owner()}:{self.run_id}:{act.id}", lost)
        return self.limit, self._node_limit(act.node), slots_of(shared), held

    def _node_limit(self, name: str) -> asyncio.Semaphore | None:
        limit = self.graph.nodes[name].concurrency
        if limit is None:
            return None
        if name not in self.node_limits:
            self.node_limits[name] = asyncio.Semaphore(limit)
        return self.node_limits[name]

    def _node_error(self, act: Activation, exc: BaseException) -> NodeError:
        error = NodeError(
            f"run {self.run_id!r}, node {act.node!r} (activation {act.id}) raised "
            f"{type(exc).__name__}: {exc}. Fix the cause, then resume the run by its id; "
            "completed nodes will not run again.", run_id=self.run_id, node=act.node)
        error.__cause__ = exc
        return error


def _with_place(exc: WaypointError, run_id: str, act: Activation) -> WaypointError:
    exc.run_id = exc.run_id or run_id
    exc.node = exc.node or act.node
    return exc


class _Limits:
    """Enter the global, then the per-node semaphore, then the shared slots and the store's slot
    (any may be absent); leave them in reverse, also when entering one was cancelled."""

    def __init__(self, *limits: contextlib.AbstractAsyncContextManager[Any] | None) -> None:
        self.limits = [limit for limit in limits if limit is not None]
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> None:
        try:
            for limit in self.limits:
                await self.stack.enter_async_context(limit)
        except BaseException:
            await self.stack.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()
