"""The node kinds' common shape: `Node`, `Outcome`, `RetryPolicy`, and the kind registry.

A node is an immutable description plus `run(state, ctx) -> Outcome`. The
engine decides when to run it and what to do with the outcome; the node only
computes its update and, for routers and guards, the labels it routes to.

Each kind is one class, registered under its own name, that answers every
question the rest of waypoint asks about it (nothing else branches on a kind
string): what it writes, its child graphs, its compile checks, its share of the
execution bound, how it is drawn, whether it pauses for an answer, how it runs
and what replay restores. A new kind is one module:

    @register
    @dataclass(frozen=True)
    class Shout(Node):
        kind: ClassVar[str] = "shout"
        into: str = ""

        async def run(self, state, ctx):
            return Outcome(update={self.into: state.text.upper()})

    g.add(Shout(name="shout", into="loud", writes=frozenset({"loud"})))
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from waypoint.errors import NodeError
from waypoint.nodes.cache import Cache
from waypoint.nodes.context import NodeContext
from waypoint.nodes.limit import Limit

N = TypeVar("N", bound="Node")


@dataclass(frozen=True)
class Outcome:
    """What one activation produced."""

    update: Any = None  # dict, pydantic model or None: the partial state update
    labels: tuple[str, ...] | None = None  # routes taken; None = follow the static edges


@dataclass(frozen=True)
class RetryPolicy:
    """How a failing node is retried: `RetryPolicy(attempts=3, backoff=0.5)`.

    The delay before attempt n+1 is `backoff * 2**(n-1)`, capped at `max_backoff`,
    with full jitter when `jitter` is set. Only exceptions in `retry_on` retry.
    """

    attempts: int = 1
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(0, base) if self.jitter else base

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.attempts and isinstance(exc, self.retry_on)


NO_RETRY = RetryPolicy()


KINDS: dict[str, type[Node]] = {}  # kind name -> its class; filled by `register`


def register(cls: type[N]) -> type[N]:
    """Class decorator: record a node kind under its own `kind` name, which must be new."""
    taken = KINDS.get(cls.kind)
    if taken is not None and taken.__qualname__ != cls.__qualname__:  # a module reloaded is no clash
        raise TypeError(f"node kind {cls.kind!r} of {cls.__qualname__} is already the kind of "
                        f"{taken.__qualname__}; give the class its own kind name")
    KINDS[cls.kind] = cls
    return cls


class Checks(Protocol):
    """What compile() hands a node's `check`: one method per kind of check, each giving
    the problems it found (graphs/_checks_fields.py's NodeChecks is the one)."""

    def function(self, name: str, node: Any) -> list[str]: ...
    def gate(self, name: str, node: Any) -> list[str]: ...
    def map(self, name: str, node: Any) -> list[str]: ...
    def subgraph(self, name: str, node: Any) -> list[str]: ...
    def llm(self, name: str, node: Any) -> list[str]: ...
    def tool(self, name: str, node: Any) -> list[str]: ...
    def guard(self, name: str, node: Any) -> list[str]: ...


@dataclass(frozen=True)
class Node:
    """Base of all node kinds. `writes` is None when the builder could not tell."""

    kind: ClassVar[str] = "node"  # the class's own name; shown in messages and `describe`
    structure_kind: ClassVar[str] = ""  # what the structure hash records; "" = `kind` (see Graph)
    noun: ClassVar[str] = "node"  # how messages name it: "router 'triage'"
    drawing: ClassVar[str] = "box"  # a style both renderers know (graphs/_dot.py, _mermaid.py)
    pauses: ClassVar[bool] = False  # waits for an answer before it runs: `request`, `answered`
    counts_loops: ClassVar[bool] = False  # reads ctx.loop_count; replay restores the count
    may_fan_out: ClassVar[bool] = False  # may take several labels at once (see graphs fans_out)
    decides: ClassVar[bool] = False  # its labels are its own choice: tests drive them (testing/)
    writes_label: ClassVar[bool] = False  # its `into` receives the label it chose (LLM routers)
    keeps_turns: ClassVar[bool] = False  # commits progress inside an activation (ctx.commit_item)
    name: str
    writes: frozenset[str] | None = None
    join: bool = False
    timeout: float | None = None
    retry: RetryPolicy = NO_RETRY
    concurrency: int | None = None  # at most this many activations of this node at once
    labels: tuple[str, ...] = field(default=())  # routes this node can take (routers, guards)
    on_error: str | None = None  # where its failure after retries goes: the "error" route (nodes/failure.py)
    error_into: str | None = None  # the field that then receives a NodeFailure
    cache: Cache | None = None  # its result cached across runs in the store (nodes/cache.py)
    limit: Limit | None = None  # a concurrency limit shared by all runs in the process (nodes/limit.py)

    async def run(self, state: Any, ctx: NodeContext) -> Outcome:
        raise NotImplementedError

    async def run_with_timeout(self, state: Any, ctx: NodeContext) -> Outcome:
        if self.timeout is None:
            return await self.run(state, ctx)
        async with asyncio.timeout(self.timeout):
            return await self.run(state, ctx)

    # -- what the engine, analysis, rendering and testing ask ------------------------
    @property
    def item_field(self) -> str | None:
        """The field a map commits its items' results to, one by one; None for other kinds."""
        return None

    @property
    def inner_graph(self) -> Any:
        """The graph drawn inside (a subgraph) or beside (a map's worker) this node, or None."""
        return None

    @property
    def edges_beside_routes(self) -> bool:
        """May it have static edges as well as routes? (A gate: edges when answered, a route when expired.)"""
        return False

    @property
    def optional_labels(self) -> tuple[str, ...]:
        """Labels it may return that need no route (an LLM node's "tripped": without it, the run fails)."""
        return ()

    def child_graphs(self) -> tuple[Any, ...]:
        """Every graph this node may run as a child run (gates inside are addressed through it)."""
        return ()

    def implied_writes(self, fields: frozenset[str]) -> frozenset[str]:
        """What it writes when `writes` is None, given the state's `fields` (a subgraph's shared ones)."""
        return frozenset()

    def check(self, checks: Checks, name: str) -> list[str]:
        """compile()'s problems with this node: `checks` (graphs/_checks_fields.py) has one
        method per kind of check, so a kind picks the ones that apply to it."""
        return []

    def inner_work(self, name: str) -> tuple[int | None, str]:
        """Executions one activation makes inside it (map items, a child's steps) for the
        execution bound: (count, "") or (None, why there is no bound)."""
        return 0, ""

    def caption(self) -> list[str]:
        """Lines drawn under the node's name."""
        return []

    def details(self) -> str:
        """What `testing.strategies.describe` adds about the node, e.g. " max_items=3"."""
        return ""

    def chosen(self, result: Any, run_id: str) -> tuple[str, ...]:
        """The labels a routing function returned (one, or a list to fan out), or a NodeError
        naming the labels it may return. Not retried: the same code returns the same label."""
        many = isinstance(result, (list, tuple, set, frozenset)) and self.may_fan_out
        labels = tuple(result) if many else (result,)
        bad = [label for label in labels if label not in self.labels]
        if bad:
            raise NodeError(
                f"run {run_id!r}, {self.noun} {self.name!r} returned {bad[0]!r}, which is not one of its "
                f"routes {list(self.labels)}; return one of those or add a route for it "
                f"(routes={{{bad[0]!r}: ...}}).", run_id=run_id, node=self.name)
        return labels
