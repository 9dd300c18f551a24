"""Nodes made of other work: map over a list, and a compiled graph as a node.

    builder.map("summarise", summarise_one, over="docs", into="summaries",
                max_concurrency=4)
    builder.subgraph("research", research_graph,
                     input=lambda s: {"topic": s.topic},
                     output=lambda sub: {"findings": sub.findings})

A map runs `fn(item[, ctx])` once per item of `state.<over>`, at most
`max_concurrency` at a time, and writes the results in input order to `into`.
Each item's result is committed as it finishes, so a crash mid-map redoes only
the items that had not finished. A subgraph runs as a child run inside the same
store; its history stays with the parent, and a gate inside it pauses the parent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar

from waypoint.errors import NodeError
from waypoint.nodes._call import call
from waypoint.nodes.base import Node, Outcome
from waypoint.nodes.context import NodeContext


@dataclass(frozen=True)
class MapNode(Node):
    kind: ClassVar[str] = "map"
    fn: Callable[..., Any] | None = None
    over: str = ""
    into: str = ""
    max_concurrency: int = 8
    max_items: int | None = None  # declared bound, used by the execution bound
    wants_ctx: bool = False
    is_async: bool = False

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        items = list(getattr(state, self.over))
        if self.max_items is not None and len(items) > self.max_items:
            raise NodeError(
                f"run {ctx.run_id!r}, map {self.name!r}: state.{self.over} has {len(items)} items, "
                f"more than its declared max_items={self.max_items}; raise the limit or trim the "
                "list, then resume.", run_id=ctx.run_id, node=self.name)
        results: dict[int, Any] = dict(ctx.done_items)
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(index: int, item: Any) -> None:
            async with gate:
                item_ctx = replace(ctx, activation=f"{ctx.activation}[{index}]", record={})
                args = (item, item_ctx) if self.wants_ctx else (item,)
                result = await call(self.fn, args, run_async=self.is_async)
                results[index] = await ctx.commit_item(index, result)

        try:
            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    if index not in results:
                        group.create_task(one(index, item))
        except BaseExceptionGroup as failed:  # the first item's error, as a plain node raises it
            raise failed.exceptions[0] from None
        return Outcome(update={self.into: [results[i] for i in range(len(items))]})


@dataclass(frozen=True)
class SubgraphNode(Node):
    kind: ClassVar[str] = "subgraph"
    graph: Any = None  # a compiled waypoint Graph
    input: Callable[[Any], Any] | None = None
    output: Callable[[Any], Any] | None = None

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        child_input = self.input(state) if self.input else self._shared(state, self.graph)
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
