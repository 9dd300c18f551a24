"""A graph edited after a run started: what changed, and the ways on.

    change = await graph_change(graph, store, info)
    if change is not None:
        click.echo(change.explain(db), err=True)

A run stores only the hash of its graph's structure, not the structure, so what
changed is told from the run's own records: the nodes its log names that the
graph no longer has, and the state fields its first snapshot holds that the
graph no longer declares (or declares anew). A node added to the graph that the
run never reached cannot be named; the hash still tells that something changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from waypoint._cli.common import Db, command


@dataclass(frozen=True)
class GraphChange:
    run_id: str
    graph: str
    hashes: tuple[str, str]           # (the run's, the graph's now)
    removed_nodes: list[str]          # named by the run's log, gone from the graph
    removed_fields: list[str]         # in the run's state, gone from the state model
    added_fields: list[str]           # declared now, absent from the run's state
    fork_at: int | None               # the last step before the first one the graph cannot place

    def what(self) -> str:
        """One sentence: the run, the hashes, and what changed as far as the run can tell."""
        parts = [f"nodes the run used that the graph no longer has: {', '.join(self.removed_nodes)}"
                 if self.removed_nodes else "no node the run used was removed (nodes were added, "
                 "or edges, routes or kinds changed)"]
        if self.removed_fields:
            parts.append(f"state fields removed: {', '.join(self.removed_fields)}")
        if self.added_fields:
            parts.append(f"state fields added: {', '.join(self.added_fields)}")
        return (f"run {self.run_id!r} started with a different structure of graph {self.graph!r} "
                f"(hash {self.hashes[0]}, now {self.hashes[1]}): {'; '.join(parts)}")

    def ways_on(self, db: Db) -> list[str]:
        """The commands that get past the change, safest first."""
        ways = ["put the graph file back as it was when the run started (or pass --graph "
                "MODULE_OR_FILE:GRAPH naming a copy of it)"]
        if self.fork_at is not None:
            ways.append(f"start a new run from before the change reached it: "
                        f"`{command('fork', self.run_id, '--at', str(self.fork_at), db=db)}`")
        ways.append("if the change is safe for this run: "
                    f"`{command('resume', self.run_id, '--allow-graph-change', db=db)}`")
        return ways

    def explain(self, db: Db) -> str:
        return self.what() + ". Ways on: " + "; or ".join(self.ways_on(db)) + "."


async def graph_change(graph: Any, store: Any, info: Any) -> GraphChange | None:
    """What changed in `graph` since run `info` started; None when its structure is the same."""
    from waypoint import history

    if info.graph_hash == graph.structure_hash:
        return None
    steps = await history(info.run_id, store=store)
    snapshot = await store.snapshot_at(info.run_id, 0)  # the state and the work the run started with
    fields = set(graph.schema.fields)
    old_fields = set(snapshot.state) if snapshot is not None else fields
    started = [a[1] for a in snapshot.frontier.get("pending", ())] if snapshot is not None else []
    removed, fork_at = _unplaced(graph, [(0, started), *((s.seq, [s.node, *s.children]) for s in steps)])
    if fork_at is not None and not await _replays(graph, store, info.run_id, fork_at):
        fork_at = None  # something else does not fit (a field's type): no step to offer
    return GraphChange(info.run_id, info.graph, (info.graph_hash, graph.structure_hash), removed,
                       sorted(old_fields - fields), sorted(fields - old_fields), fork_at)


def _unplaced(graph: Any, named: list[tuple[int, list[str]]]) -> tuple[list[str], int | None]:
    """The nodes of (seq, names) the graph lacks, and the last seq before the first naming one."""
    removed: list[str] = []
    first_bad: int | None = None
    for seq, names in named:
        missing = [n for n in names if _top(n) not in graph.nodes]
        removed += [n for n in missing if n not in removed]
        if missing and first_bad is None:
            first_bad = seq
    if first_bad is None:
        return removed, named[-1][0]
    return removed, (first_bad - 1 if first_bad > 0 else None)


async def _replays(graph: Any, store: Any, run_id: str, seq: int) -> bool:
    from waypoint.engine.views import replay

    try:
        await replay(graph, run_id, seq, store=store)
    except Exception:  # whatever the changed graph cannot read: the step is no way on
        return False
    return True

def _top(node: str) -> str:
    """`sub/child` and `book[1]` are placed by their top-level node `sub`, `book`."""
    return node.split("/", 1)[0].split("[", 1)[0]

