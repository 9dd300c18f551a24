"""Defining graphs: `GraphBuilder`, then `compile()`.

    g = GraphBuilder(State, name="essay")

    @g.node
    def draft(state: State) -> dict:
        return {"text": "..."}

    @g.router(routes={"good": "publish", "bad": "draft"})
    def judge(state: State) -> Literal["good", "bad"]: ...

    g.gate("approve", Approval, prompt="Publish?", into="approval")
    g.loop_guard("enough", max_iterations=3, until=lambda s: s.ok,
                 routes={"continue": "draft", "done": "publish"})
    g.edge(START, "draft")
    g.edge("draft", ["check", "cite"])      # fan out: one edge to each target
    g.edge(["check", "cite"], "merge")      # fan in: one edge from each source
    graph = g.compile()          # raises GraphError listing every problem found
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel

from waypoint.errors import GraphError
from waypoint.graphs._infer import literal_labels, returned_keys
from waypoint.graphs.graph import Graph
from waypoint.nodes import arity, is_async, tool
from waypoint.nodes.base import NO_RETRY, Node, RetryPolicy
from waypoint.nodes.composite import MapNode, SubgraphNode
from waypoint.nodes.failure import ERROR
from waypoint.nodes.function import FunctionNode, RouterNode
from waypoint.nodes.gate import GateNode
from waypoint.nodes.guard import GUARD_LABELS, LoopGuard
from waypoint.nodes.tool_node import ToolNode

S = TypeVar("S", bound=BaseModel)
Targets = str | Sequence[str]


def _targets(value: Targets) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _names(value: Any, argument: str, source: Any, target: Any) -> tuple[str, ...]:
    """`edge()`'s source or target as node names; anything else is a GraphError naming the argument."""
    listed = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    names = (value,) if isinstance(value, str) else tuple(value) if listed else None
    if names and all(isinstance(n, str) for n in names):
        return names
    bad = [n for n in names if not isinstance(n, str)] if names else value
    raise GraphError(
        f"g.edge({source!r}, {target!r}): the {argument} must be a node name or a non-empty list of node "
        f"names, got {bad!r}; write e.g. g.edge('a', 'b'), g.edge('a', ['b', 'c']) or "
        "g.edge(['b', 'c'], 'join')."
    )


def _check_gate_routes(name: str, routes: Mapping[str, Targets] | None, route: Any) -> None:
    """routes= and route= go together, and "expired" is escalate='s label."""
    if (routes is None) != (route is None):
        raise GraphError(
            f"gate {name!r}: routes= and route= go together; give both, e.g. routes={{'publish': END, "
            "'revise': 'draft'}, route=lambda state, answer: 'publish' if answer.approved else 'revise', "
            "or neither (the gate then follows its edges).")
    if routes is not None and "expired" in routes:
        raise GraphError(f"gate {name!r}: 'expired' is the route of an unanswered gate past its deadline; "
                         "give it with deadline= and escalate=, not in routes=.")


def _with_options(node: Node, options: dict[str, Any]) -> Node:
    """`node` with node options set (`g.add(node, on_error=..., cache=..., limit=...)`)."""
    known = {f.name for f in dataclasses.fields(node)} - {"name", "writes", "labels", "join"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise GraphError(f"g.add({node.name!r}, ...): {', '.join(unknown)} not option(s) of a "
                         f"{node.kind} node; it takes {', '.join(sorted(known))}.")
    if isinstance(options.get("retry"), int):
        options["retry"] = RetryPolicy(attempts=options["retry"])
    return dataclasses.replace(node, **options)


class GraphBuilder(Generic[S]):
    """Collects nodes and edges; `compile()` validates them into an immutable Graph."""

    def __init__(self, state: type[S], *, name: str | None = None) -> None:
        if not (isinstance(state, type) and issubclass(state, BaseModel)):
            raise GraphError(
                f"GraphBuilder(state=...) needs a pydantic BaseModel subclass, got {state!r}; "
                "declare the state as `class State(BaseModel): ...`."
            )
        self.state = state
        self.name = name or state.__name__
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.routes: dict[str, dict[str, tuple[str, ...]]] = {}
        self.duplicates: list[str] = []

    # -- nodes ---------------------------------------------------------------
    def add(self, node: Node, routes: Mapping[str, Targets] | None = None, **options: Any) -> Node:
        """Add any node object (the other methods build one and call this).

        `options` are node options set on it, as `g.node` takes them: `g.add(llm(...),
        on_error="fallback", cache=Cache(ttl=600), limit=Limit("openai", 4))`.
        """
        if options:
            node = _with_options(node, options)
        if node.name in self.nodes:
            self.duplicates.append(node.name)
        return self._put(node, routes)

    def _put(self, node: Node, routes: Mapping[str, Targets] | None) -> Node:
        """Record `node` and its routes; `on_error=` adds its "error" route, and `error_into=`
        the field it writes then (nodes/failure.py)."""
        if node.on_error is not None:
            routes = {**(routes or self.routes.get(node.name, {})), ERROR: node.on_error}
        if node.error_into is not None and node.writes is not None:
            node = dataclasses.replace(node, writes=node.writes | {node.error_into})
        self.nodes[node.name] = node
        if routes is not None:
            self.routes[node.name] = {label: _targets(t) for label, t in routes.items()}
        return node

    def node(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Add a function node; usable as `@g.node`, `@g.node(name=...)` or `g.node(fn)`.

        Options: name, writes (field names; inferred from returned dict literals),
        retry (RetryPolicy), timeout (seconds), join (wait for all started branches),
        concurrency (max simultaneous activations of this node, per run); and, for any
        kind of node (also through `g.add(node, ...)`): on_error (the fallback node its
        failure after retries goes to, with error_into naming a `NodeFailure` field),
        cache (`Cache(ttl=...)`: its result kept in the store, shared by runs), limit
        (`Limit(name, size)`: a concurrency limit shared by every run of the process).
        """
        if fn is None:
            return lambda f: self.node(f, **options)
        self.add(FunctionNode(**self._function_fields(fn, options)))
        return fn

    def router(
        self, fn: Callable[..., Any] | None = None, /, *, routes: Mapping[str, Targets], **options: Any
    ) -> Any:
        """Add a router: `fn(state)` returns a label of `routes` (or a list of labels)."""
        if fn is None:
            return lambda f: self.router(f, routes=routes, **options)
        fields = self._function_fields(fn, options)
        fields["labels"] = literal_labels(fn) or tuple(routes)
        fields["writes"] = frozenset()
        self.add(RouterNode(**fields), routes)
        return fn

    def tool_node(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        into: str | None = None,
        args: Mapping[str, str] | Callable[[Any], dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        """Add a tool node: `fn`'s parameters are read from the state and validated first.

        See `waypoint.nodes.tool_node`. Options as for `node` (retry, timeout, concurrency).
        """
        spec = tool(fn, name=name)
        if isinstance(options.get("retry"), int):
            options["retry"] = RetryPolicy(attempts=options["retry"])
        writes = frozenset({into}) if into else None
        self.add(ToolNode(name=spec.name, tool=spec, args=args, into=into, writes=writes, **options))

    def join(self, name: Any = None, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Add a join: runs once every branch started towards it has arrived or ended.

            g.join("merge")                  # waits, then passes on; writes nothing
            g.join("merge", combine)         # runs combine(state) when it fires

            @g.join                          # the same as a decorator, named after the function
            def merge(state: S) -> dict: ...

            @g.join("merge")                 # or @g.join(name="merge"), @g.join(retry=2)
            def combine(state: S) -> dict: ...

        Options as for `node` (writes, retry, timeout, concurrency).
        """
        if callable(name):  # @g.join
            return self.node(name, join=True, **options)
        if name is None:  # @g.join(...) with options only
            return lambda f: self.join(f, **options)
        if not isinstance(name, str):
            raise GraphError(f"g.join({name!r}): a join's name is a string; write g.join('merge'), "
                             "g.join('merge', fn) or put @g.join above a function.")
        if fn is not None:
            return self.node(fn, name=name, join=True, **options)
        self.add(FunctionNode(name=name, join=True, writes=frozenset()))
        return lambda f: self._join_body(name, f, options)

    def _join_body(self, name: str, fn: Callable[..., Any], options: dict[str, Any]) -> Any:
        """`@g.join("merge")`: the join `g.join("merge")` just added gets `fn` as its body."""
        fields = self._function_fields(fn, {**options, "name": name})
        self._put(FunctionNode(**fields, join=True), None)  # replaces it: not a duplicate name
        return fn

    def gate(
        self,
        name: str,
        answer: type[BaseModel],
        *,
        prompt: str | Callable[[Any], str] = "",
        payload: Callable[[Any], Any] | None = None,
        into: str | None = None,
        on_answer: Callable[[Any, Any], Any] | None = None,
        deadline: float | None = None,
        escalate: Targets | None = None,
        routes: Mapping[str, Targets] | None = None,
        route: Callable[[Any, Any], str] | None = None,
    ) -> None:
        """Add a human gate that waits for an answer validated against `answer`.

        With `routes` and `route(state, answer)`, an answered gate goes where the
        label `route` returns leads, as a router would (its labels are those of a
        `-> Literal[...]` annotation, or every route); otherwise it follows its
        edges. With `deadline` (seconds) and `escalate` (node name or names), a
        gate still unanswered when its deadline has passed takes the escalation
        route ("expired") instead; this is checked whenever the run is resumed
        and by `waypoint tick`.
        """
        if (deadline is None) != (escalate is None):
            raise GraphError(
                f"gate {name!r}: deadline= and escalate= go together; give both "
                "(e.g. deadline=3600, escalate='manager') or neither."
            )
        _check_gate_routes(name, routes, route)
        routes = {**(routes or {}), **({"expired": escalate} if escalate is not None else {})}
        labels = (*((route and literal_labels(route)) or tuple(routes)), *(("expired",) if escalate else ()))
        writes = frozenset({into}) if into else (frozenset() if on_answer is None else None)
        node = GateNode(
            name=name, answer=answer, prompt=prompt, payload=payload, into=into,
            on_answer=on_answer, writes=writes, deadline=deadline, route=route,
            labels=tuple(dict.fromkeys(labels)),
        )
        self.add(node, routes or None)

    def loop_guard(
        self,
        name: str,
        *,
        max_iterations: int,
        routes: Mapping[str, Targets],
        until: Callable[[Any], bool] | None = None,
    ) -> None:
        """Add a loop guard: routes `continue` up to `max_iterations` times, then `exhausted`.

        `done` is taken as soon as `until(state)` holds. Without an `exhausted`
        route, exhaustion follows the `done` route (which, without `until`, is
        the only way out).
        """
        routes = dict(routes)
        if "exhausted" not in routes and "done" in routes:
            routes["exhausted"] = routes["done"] if until is not None else routes.pop("done")
        labels = GUARD_LABELS if until is not None else ("continue", "exhausted")
        guard = LoopGuard(
            name=name, max_iterations=max_iterations, until=until, labels=labels,
            writes=frozenset(),
        )
        self.add(guard, routes)

    def map(
        self,
        name: str,
        worker: Callable[..., Any] | Graph[Any],
        *,
        over: str,
        into: str,
        input: Callable[[Any], Any] | None = None,
        output: Callable[[Any], Any] | None = None,
        max_concurrency: int = 8,
        max_items: int | None = None,
        **options: Any,
    ) -> None:
        """Run `worker` for each item of `state.<over>`; results go to `into` in order.

            g.map("shout", str.upper, over="names", into="loud")
            g.map("delegate", worker_graph, over="plan.workstreams", into="reports",
                  output=lambda final: final.report, max_items=5)

        `over` is a field or a dotted path into one. A function is called as
        `worker(item[, ctx])`. A compiled graph runs each item as a durable child
        run: the item is its input (a model is dumped, a dict taken as it is,
        anything else needs `input=lambda item: {...}`), and its final state is
        the result unless `output=lambda final: ...` picks one.
        """
        graph = worker if isinstance(worker, (Graph, GraphBuilder)) else None
        fn = None if graph is not None else cast(Callable[..., Any], worker)
        self.add(
            MapNode(
                name=name, fn=fn, graph=graph, input=input, output=output, over=over, into=into,
                max_concurrency=max_concurrency, max_items=max_items,
                wants_ctx=fn is not None and arity(fn) >= 2, is_async=fn is not None and is_async(fn),
                writes=frozenset({into}), **options,
            )
        )

    def subgraph(
        self,
        name: str,
        graph: Graph[Any],
        *,
        input: Callable[[Any], Any] | None = None,
        output: Callable[[Any], Any] | None = None,
        **options: Any,
    ) -> None:
        """Run a compiled graph as one node; by default fields of the same name flow in and out."""
        self.add(SubgraphNode(name=name, graph=graph, input=input, output=output, **options))

    # -- edges ---------------------------------------------------------------
    def edge(self, source: Targets, target: Targets) -> None:
        """Static edge(s): every completion of a source activates each target once.

            g.edge("a", "b")              # one edge
            g.edge("a", ["b", "c"])       # fan out: a -> b, a -> c
            g.edge(["b", "c"], "merge")   # fan in: b -> merge, c -> merge (make merge a join
                                          # to run it once, after both)

        Either side may be a list (or tuple) of node names: one edge per (source, target) pair.
        """
        sources = _names(source, "source", source, target)
        targets = _names(target, "target", source, target)
        self.edges += [(s, t) for s in sources for t in targets]

    def compile(self) -> Graph[S]:
        """Validate and freeze into a `Graph[S]`; raises GraphError listing every problem with its fix."""
        from waypoint.graphs.validate import build

        graph: Graph[S] = build(self)
        _ = graph.structure_hash  # computed once here, not inside the first resume
        return graph

    # -- helpers -------------------------------------------------------------
    @staticmethod
    def _function_fields(fn: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
        name = options.pop("name", None) or getattr(fn, "__name__", None)
        if not name or name == "<lambda>":
            raise GraphError("a lambda node needs a name: g.node(fn, name='...').")
        writes = options.pop("writes", None)
        writes = frozenset(writes) if writes is not None else returned_keys(fn)
        retry = options.pop("retry", None) or NO_RETRY
        if isinstance(retry, int):
            retry = RetryPolicy(attempts=retry)
        return dict(
            name=name, fn=fn, writes=writes, retry=retry, wants_ctx=arity(fn) >= 2,
            is_async=is_async(fn), **options,
        )
