"""Forks: which nodes can run at the same time, and what that means for joins, guards and writes.

A fork is one completion that activates several targets together: START or a
node with several static edges, a route with several targets, or a router that
returns several labels. Following each branch of a fork tells which nodes two
branches reach (a join merges whatever reaches it into one branch):

- a join that no fork ever sends two branches never waits for anything;
- a loop guard that two branches reach at once shares its count between them,
  so its cap no longer bounds the loop;
- two nodes on sibling branches must not both write a last-value field.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from waypoint.graphs._checks import Spec, fans_out
from waypoint.graphs.graph import END, START

Branch = tuple[int, str]  # (index in the fork's targets, the node the branch starts at or merged in)


@dataclass(frozen=True)
class Fork:
    source: str
    targets: tuple[str, ...]


def forks(spec: Spec, *, assume_fan_out: bool) -> list[Fork]:
    found = []
    for name in [START, *spec.nodes]:
        for group in spec.groups(name, assume_fan_out=assume_fan_out):
            targets = tuple(t for t in group if t != END)
            if len(targets) > 1:
                found.append(Fork(name, targets))
    return found


def branches(spec: Spec, fork: Fork) -> dict[str, set[Branch]]:
    """For each node, the branches of `fork` that reach it after one firing of the fork.

    A branch that comes back to the fork's source fires it again as itself: the
    new activations descend from that branch, not from a fresh fork.
    """
    reached: dict[str, set[Branch]] = defaultdict(set)
    queue: deque[str] = deque()
    for i, t in enumerate(fork.targets):
        reached[t].add((i, t))
        queue.append(t)
    while queue:
        name = queue.popleft()
        if name == END or name not in spec.nodes:
            continue
        out = {(-1, name)} if spec.nodes[name].join else reached[name]
        for succ in spec.successors(name):
            if not out <= reached[succ]:
                reached[succ] |= out
                queue.append(succ)
    return reached


def check_forks(spec: Spec) -> tuple[list[str], list[str]]:
    """(problems, warnings) about joins and loop guards."""
    problems: list[str] = []
    warnings: list[str] = []
    # A router without a return annotation may return several labels: the bound counts
    # that fan-out (graphs/_bound.py), so the guard check must assume it as well.
    lenient = [(f, branches(spec, f)) for f in forks(spec, assume_fan_out=True)]
    for name, node in spec.nodes.items():
        if node.join:
            _check_join(spec, name, lenient, problems, warnings)
        if node.counts_loops:
            problems += _check_guard(spec, name, lenient)
    return problems, warnings


def _check_join(spec: Spec, join: str, lenient: list[Any], problems: list[str], warnings: list[str]) -> None:
    preds = sorted(spec.digraph.predecessors(join))
    if not preds:
        return  # unreachable: said elsewhere
    fed = [f for f, reached in lenient if len(reached.get(join, ())) > 1]
    if fed and len(preds) == 1:
        warnings.append(
            f"join {join!r} has a single incoming edge (from {preds[0]!r}): it waits for every "
            f"activation of {preds[0]!r} that fork {_where(fed[0].source)} starts; if it should "
            f"merge the branches of {_where(fed[0].source)}, give it an edge from each branch.")
    elif not fed and len(preds) == 1:
        problems.append(
            f"join {join!r} has a single incoming edge (from {preds[0]!r}) and no fork upstream "
            "sends it two branches, so it never waits for anything; give it an edge from each "
            f"branch it should wait for, or make it a plain node (g.node(...) without join=True).")
    elif not fed:
        problems.append(
            f"join {join!r} waits for {_names(preds)}, but no fork starts them together: they are "
            "alternatives (routes a router chooses between), so only one ever arrives; start them "
            "at once (g.edge(source, [...]) or a route with several targets), or make "
            f"{join!r} a plain node.")


def _check_guard(spec: Spec, guard: str, lenient: list[Any]) -> list[str]:
    for fork, reached in lenient:
        arriving = sorted(reached.get(guard, ()))
        if len(arriving) > 1:
            ways = [f"via {name!r}" if i >= 0 else f"via join {name!r}" for i, name in arriving]
            return [
                f"loop guard {guard!r} can be reached by {len(arriving)} branches at once (from "
                f"fork {_where(fork.source)}, {', '.join(ways)}); they would share its iteration "
                f"count, so max_iterations would not bound the loop; {_unsaid(spec, fork)}"
                f"{merge_advice(spec, guard, reached)}, or give each branch its own loop guard."]
    return []


def merge_advice(spec: Spec, target: str, reached: dict[str, set[Branch]]) -> str:
    """How to merge the branches of a fork (`reached`) arriving at `target`: the calls to write."""
    preds = sorted(p for p in spec.digraph.predecessors(target) if reached.get(p))
    merge = f"{target}_merge"
    sources = repr(preds[0]) if len(preds) == 1 else "[" + ", ".join(map(repr, preds)) + "]"
    return (f"merge the branches with a join before {target!r}: g.join({merge!r}), "
            f"g.edge({sources}, {merge!r}) and g.edge({merge!r}, {target!r}) in place of the "
            f"edges or routes from {_names(preds)} to {target!r}")


def _unsaid(spec: Spec, fork: Fork) -> str:
    """Advice for a fork that exists only because a router's annotation does not rule it out."""
    node = spec.nodes.get(fork.source)
    if node is None or fans_out(node) is not None:
        return ""
    return (f"router {fork.source!r} has no return annotation, so it may return several labels "
            "at once; annotate it (-> Literal[...]) if it returns one label, or ")


def effective_writes(spec: Spec, name: str) -> frozenset[str]:
    """Fields a node writes: declared or inferred, or for a subgraph the fields it shares."""
    node = spec.nodes[name]
    if node.writes is not None:
        return node.writes
    return node.implied_writes(frozenset(spec.fields))


def parallel_writes(spec: Spec) -> list[str]:
    """Two nodes on sibling branches of a fork, neither after the other, writing one last-value field.

    Only nodes that write a last-value field are compared, so a wide fan-out whose
    branches append to reducer fields costs one walk per branch, not one per pair.
    """
    last_value = {f for f, s in spec.schema.fields.items() if s.reducer is None}
    writes = {n: effective_writes(spec, n) & last_value for n in spec.nodes}
    writers = {n for n, fields in writes.items() if fields}
    all_forks = forks(spec, assume_fan_out=False) if writers else []
    if not all_forks:  # nothing runs side by side, or nothing could clash
        return []
    below = _descendants(spec)
    found: dict[tuple[str, str], set[str]] = {}
    for fork in all_forks:
        sides = [({t} | below(t)) - {END} for t in fork.targets]
        busy = [(side, side & writers) for side in sides if side & writers]
        for i, (left, left_writers) in enumerate(busy):
            for right, right_writers in busy[i + 1:]:
                for a in left_writers - right:
                    for b in right_writers - left:
                        shared = _clash(a, b, writes, below)
                        if shared:
                            found.setdefault(tuple(sorted((a, b))), set()).update(shared)
    return [
        f"nodes {a!r} and {b!r} can run at the same time and both write last-value field(s) "
        f"{sorted(fields)}; give the field a reducer (Annotated[..., append]) or let one node write it."
        for (a, b), fields in sorted(found.items())
    ] + _twice_at_once(spec, writes)


def _clash(a: str, b: str, writes: dict[str, frozenset[str]], below: Any) -> frozenset[str]:
    """The last-value fields both write, when neither node comes after the other."""
    shared = writes[a] & writes[b]
    return shared if shared and a not in below(b) and b not in below(a) else frozenset()


def _descendants(spec: Spec) -> Any:
    """`below(node)`: the nodes reachable from it, computed once per node asked about."""
    import functools

    import networkx as nx

    return functools.cache(lambda name: nx.descendants(spec.digraph, name) if name in spec.digraph else set())


def _twice_at_once(spec: Spec, writes: dict[str, frozenset[str]]) -> list[str]:
    """A node that two branches of one fork reach runs twice, maybe at once: the same conflict."""
    problems = {}
    for fork in forks(spec, assume_fan_out=False):
        reached = branches(spec, fork)
        for name, arriving in reached.items():
            node = spec.nodes.get(name)
            if node is None or node.join or len(arriving) < 2 or not writes[name] or name in problems:
                continue
            ways = ", ".join(f"via {n!r}" if i >= 0 else f"via join {n!r}" for i, n in sorted(arriving))
            problems[name] = (
                f"node {name!r} can run twice at the same time (fork {_where(fork.source)} reaches it "
                f"{ways}) and writes last-value field(s) {sorted(writes[name])}; give the field a reducer "
                f"(Annotated[..., append]) or {merge_advice(spec, name, reached)}.")
    return [problems[n] for n in sorted(problems)]


def _names(names: list[str]) -> str:
    quoted = [repr(n) for n in dict.fromkeys(names)]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _where(name: str) -> str:
    return "START" if name == START else repr(name)
