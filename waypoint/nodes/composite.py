"""Nodes made of other work: map over a list, and a compiled graph as a node.

    builder.map("summarise", summarise_one, over="docs", into="summaries",
                max_concurrency=4)
    builder.map("delegate", worker_graph, over="plan.workstreams", into="reports",
                output=lambda final: final.report, max_items=5)
    builder.subgraph("research", research_graph,
                     input=lambda s: {"topic": s.topic},
                     output=lambda sub: {"findings": sub.findings})

A map runs `fn(item[, ctx])` once per item of `state.<over>` (`over` may be a
dotted path, `plan.workstreams`), at most `max_concurrency` at a time, and
writes the results in input order to `into`. Each item's result is committed as
it finishes, so a crash mid-map redoes only the items that had not finished.
A map over a compiled graph runs each item as a child run of it, keyed
`item<index>`: the item is the child's input (a model's `model_dump()`, a dict
as it is, anything else through `input=`), and its final state is the result
(or `output(final)`). A gate inside such a child makes that item wait while
the others go on; once they are done, the map waits at `<map>[<index>]/<gate>`
for each waiting item (`book[1]/confirm`: see `nodes/address.py`). A subgraph runs as a child run
inside the same store; its history stays with the parent, and a gate inside it
pauses the parent as `<subgraph>/<gate>`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import BaseModel

from waypoint.errors import NodeError
from waypoint.nodes._call import call
from waypoint.nodes.base import Checks, Node, Outcome, register
from waypoint.nodes.context import NodeContext


class ChildPaused(Exception):
    """Raised through `ctx.run_child` when the child run stopped at a gate (the engine's
    `ChildWaiting` is one): the node, or the map item, that started it waits with it."""


class ItemsWaiting(Exception):
    """A map whose other items are done (and committed) while these wait: index -> pause."""

    def __init__(self, items: dict[int, ChildPaused]) -> None:
        self.items = items
        super().__init__(f"map items {sorted(items)} wait at gates inside their child runs")


@register
@dataclass(frozen=True)
class MapNode(Node):
    kind: ClassVar[str] = "map"
    noun: ClassVar[str] = "map"
    drawing: ClassVar[str] = "map"
    fn: Callable[..., Any] | None = None
    graph: Any = None  # a compiled waypoint Graph run once per item, instead of fn
    input: Callable[[Any], Any] | None = None  # item -> the child's input (graph workers)
    output: Callable[[Any], Any] | None = None  # child's final state -> result (graph workers)
    over: str = ""  # a field name, or a dotted path into one: "plan.workstreams"
    into: str = ""
    max_concurrency: int = 8
    max_items: int | None = None  # declared bound, used by the execution bound
    wants_ctx: bool = False
    is_async: bool = False

    @property
    def item_field(self) -> str | None:
        return self.into

    @property
    def inner_graph(self) -> Any:
        return self.graph

    def child_graphs(self) -> tuple[Any, ...]:
        return (self.graph,) if self.graph is not None else ()

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.map(name, self)

    def inner_work(self, name: str) -> tuple[int | None, str]:
        if self.max_items is None:
            return None, f"map {name!r} has no max_items; pass max_items= to bound its items."
        if self.graph is None:
            return self.max_items, ""
        inner = getattr(self.graph, "max_steps", None)
        if inner is None:
            return None, f"map {name!r} runs a worker graph without a bound of its own."
        return self.max_items * (1 + inner), ""  # per item: its item step and the child's steps

    def caption(self) -> list[str]:
        return [f"over {self.over} → {self.into}", f"≤ {self.max_concurrency} at once"]

    def details(self) -> str:
        return f" max_items={self.max_items}"

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        items = list(self._items(state, ctx))
        if self.max_items is not None and len(items) > self.max_items:
            raise NodeError(
                f"run {ctx.run_id!r}, map {self.name!r}: state.{self.over} has {len(items)} items, "
                f"more than its declared max_items={self.max_items}; raise the limit or trim the "
                "list, then resume.", run_id=ctx.run_id, node=self.name)
        results: dict[int, Any] = dict(ctx.done_items)
        waiting: dict[int, ChildPaused] = {}
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(index: int, item: Any) -> None:
            async with gate:
                try:
                    result = await self._one(index, item, ctx)
                except ChildPaused as paused:  # this item waits; its siblings go on
                    waiting[index] = paused
                    return
                assert ctx.commit_item is not None  # the engine gives every map activation one
                results[index] = await ctx.commit_item(index, result)
                ctx.emit("map_progress", {"done": len(results), "total": len(items)})  # the CLI's bar

        ctx.emit("map_progress", {"done": len(results), "total": len(items)})
        try:
            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    if index not in results:
                        group.create_task(one(index, item))
        except BaseExceptionGroup as failed:  # the first item's error, as a plain node raises it
            raise failed.exceptions[0] from None
        if waiting:
            raise ItemsWaiting(waiting)
        return Outcome(update={self.into: [results[i] for i in range(len(items))]})

    async def _one(self, index: int, item: Any, ctx: NodeContext) -> Any:
        if self.graph is None:
            item_ctx = replace(ctx, activation=f"{ctx.activation}[{index}]", record={})
            args = (item, item_ctx) if self.wants_ctx else (item,)
            assert self.fn is not None  # map() sets fn when it is given no graph
            return await call(self.fn, args, run_async=self.is_async)
        assert ctx.run_child is not None  # the engine gives every activation one
        final = await ctx.run_child(self.graph, self._child_input(index, item, ctx),
                                    key=f"item{index}", usage=ctx.record.setdefault("usage", {}))
        return self.output(final) if self.output else final

    def _child_input(self, index: int, item: Any, ctx: NodeContext) -> Any:
        if self.input is not None:
            return self.input(item)
        if isinstance(item, BaseModel):
            return item.model_dump()
        if isinstance(item, Mapping):
            return dict(item)
        raise NodeError(
            f"run {ctx.run_id!r}, map {self.name!r}: item {index} of state.{self.over} is a "
            f"{type(item).__name__}, not a model or a dict, so it cannot be the input of worker "
            f"graph {self.graph.name!r}; pass input=lambda item: {{...}} (a dict of "
            f"{self.graph.state_type.__name__}'s fields).", run_id=ctx.run_id, node=self.name)

    def _items(self, state: Any, ctx: NodeContext) -> Any:
        """`state.<over>`, following a dotted path through models and dicts."""
        value, parts = state, self.over.split(".")
        for i, part in enumerate(parts):
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part)
            if value is None:
                raise NodeError(
                    f"run {ctx.run_id!r}, map {self.name!r}: state.{'.'.join(parts[:i + 1])} is None, "
                    f"so there is no list at state.{self.over} to go over; set it before the map "
                    "runs (or give it a default), then resume.", run_id=ctx.run_id, node=self.name)
        return value


@register
@dataclass(frozen=True)
class SubgraphNode(Node):
    kind: ClassVar[str] = "subgraph"
    noun: ClassVar[str] = "subgraph"
    graph: Any = None  # a compiled waypoint Graph
    input: Callable[[Any], Any] | None = None
    output: Callable[[Any], Any] | None = None

    @property
    def inner_graph(self) -> Any:
        return self.graph

    def child_graphs(self) -> tuple[Any, ...]:
        return (self.graph,) if self.graph is not None else ()

    def implied_writes(self, fields: frozenset[str]) -> frozenset[str]:
        """Without `output`, the fields both states share flow back: those are written."""
        schema = getattr(self.graph, "schema", None)  # a compiled Graph's; compile() rejects others
        if self.output is not None or schema is None:
            return frozenset()
        return fields & frozenset(schema.fields)

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.subgraph(name, self)

    def inner_work(self, name: str) -> tuple[int | None, str]:
        inner = getattr(self.graph, "max_steps", None)
        if inner is None:
            return None, f"subgraph {name!r} runs a graph without a bound of its own."
        return inner, ""

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        child_input = self.input(state) if self.input else self._shared(state, self.graph)
        assert ctx.run_child is not None  # the engine gives every activation one
        final = await ctx.run_child(self.graph, child_input,
                                    usage=ctx.record.setdefault("usage", {}))
        update = self.output(final) if self.output else self._shared(final, None, state)
        return Outcome(update=update)

    @staticmethod
    def _shared(source: Any, target_graph: Any, target_state: Any = None) -> dict[str, Any]:
        """Fields with the same name on both sides: the default mapping in and out."""
        target_fields = (
            target_graph.state_type.model_fields if target_graph else type(target_state).model_fields
        )
        return {k: getattr(source, k) for k in type(source).model_fields if k in target_fields}
