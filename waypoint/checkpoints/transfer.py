"""Copy runs from one store to another, exactly: `waypoint copy --from runs.db --to postgresql://...`.

    async for copied in copy_runs(SQLiteStore("runs.db"), PostgresStore(url)):
        print(copied.outcome, copied.run_id, copied.detail)

Any store to any store, through the Store protocol only: each run is read from
the source (its row, its steps and every snapshot, up to the `last_seq` its row
was read at) and written into the destination by `import_run`, one atomic write,
so a copy cut short leaves each run there whole or absent. Records arrive as
they were (same seqs, same bytes: encoding is deterministic) and the source is
only read.

Leases are not copied: a copied run is executed nowhere. A run that was
`running` at the source (a live process's, or a dead one's) arrives as
`interrupted`: no worker claims it by itself, and `waypoint resume` carries it
on at the destination once it no longer runs at the source. Copying again is
safe: a run already at the destination with the same steps (or with more, after
them: it went on there) is left as it is; one whose log differs is reported as
a conflict and never overwritten.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Literal

from msgspec import structs

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, Snapshot, Step
from waypoint.errors import RunNotFoundError, RunStateError, WaypointError

__all__ = ["Copied", "copy_run", "copy_runs"]

Outcome = Literal[
    "copied",  # written into the destination
    "present",  # already there with the same steps (or those and more): left as it is
    "conflict",  # there with another log: not overwritten, `detail` says how they differ
    "unreadable",  # the source could not read it (a damaged row or record): `detail` says why
    "missing",  # no such run at the source (a run id given that it does not hold)
]
BATCH = 16  # runs read and written at once: the destination group-commits their imports
ALL = 2**31 - 1


@dataclass(frozen=True)
class Copied:
    """What became of one run."""

    run_id: str
    outcome: Outcome
    status: str = ""  # its status at the destination
    steps: int = 0  # steps in the source's log
    snapshots: int = 0
    was_running: bool = False  # running at the source: copied as "interrupted"
    detail: str = ""


async def copy_runs(source: Store, dest: Store, *,
                    run_ids: Iterable[str] | None = None) -> AsyncIterator[Copied]:
    """Copy every run of `source` (or those of `run_ids`), oldest first, into `dest`."""
    await source.open()
    await dest.open()
    if run_ids is None:
        run_ids = [r.run_id for r in reversed(await source.list_runs(limit=ALL))]
    ids = list(run_ids)
    for start in range(0, len(ids), BATCH):
        for copied in await asyncio.gather(*(copy_run(source, dest, r) for r in ids[start:start + BATCH])):
            yield copied


async def copy_run(source: Store, dest: Store, run_id: str) -> Copied:
    """Copy one run (see the module's docstring) and say what became of it."""
    try:
        info, steps, snapshots = await _read(source, run_id)
    except RunNotFoundError:
        return Copied(run_id, "missing", detail=f"no run {run_id!r} at the source; check the run id")
    except WaypointError as exc:
        return Copied(run_id, "unreadable", detail=str(exc))
    was_running = info.status == "running"
    if was_running:
        info = structs.replace(info, status="interrupted")
    there = await _existing(dest, run_id)
    if there is None:
        try:
            await dest.import_run(info, steps, snapshots)
            return Copied(run_id, "copied", info.status, len(steps), len(snapshots), was_running)
        except RunStateError:  # imported meanwhile by another copy: compare with that
            there = await dest.get_run(run_id)
    return await _compare(dest, there, info, steps, was_running)


async def _read(store: Store, run_id: str) -> tuple[RunInfo, list[Step], list[Snapshot]]:
    """The run as of one reading of its row: steps and snapshots up to its `last_seq`."""
    info = await store.get_run(run_id)
    steps = await store.history(run_id, upto=info.last_seq)
    snapshots: list[Snapshot] = []
    seq = info.last_seq
    while seq >= 0 and (snap := await store.snapshot_at(run_id, seq)) is not None:
        snapshots.append(snap)
        seq = snap.seq - 1
    return info, steps, snapshots[::-1]


async def _existing(store: Store, run_id: str) -> RunInfo | None:
    try:
        return await store.get_run(run_id)
    except RunNotFoundError:
        return None


async def _compare(dest: Store, there: RunInfo, info: RunInfo, steps: list[Step],
                   was_running: bool) -> Copied:
    """A run the destination already holds: the same run (left as it is), or a conflict."""
    theirs = await dest.history(there.run_id)
    same = (there.graph_hash == info.graph_hash and there.created_at == info.created_at
            and theirs[:len(steps)] == steps)
    if same:
        more = len(theirs) - len(steps)
        detail = f"already there; it went on there by {more} step(s)" if more else "already there"
        return Copied(there.run_id, "present", there.status, len(steps), 0, was_running, detail)
    return Copied(there.run_id, "conflict", there.status, len(steps), 0, was_running,
                  _difference(there, theirs, info, steps))


def _difference(there: RunInfo, theirs: list[Step], info: RunInfo, steps: list[Step]) -> str:
    if there.graph_hash != info.graph_hash or there.created_at != info.created_at:
        what = f"another run under this id (graph {there.graph!r}, created at {there.created_at})"
    elif steps[:len(theirs)] == theirs:
        what = (f"an earlier copy of it: {len(theirs)} of the source's {len(steps)} steps (the run went on "
                "at the source after it was copied)")
    else:
        at = next(i for i, (a, b) in enumerate(zip(theirs, steps, strict=False)) if a != b)
        what = (f"a log that differs from the source's at seq {steps[at].seq} ({len(theirs)} steps there, "
                f"{len(steps)} at the source)")
    return (f"the destination holds {what}; not overwritten. To keep both, fork one under a new id "
            f"(waypoint fork {there.run_id} --run-id NEW) or copy into another database")
