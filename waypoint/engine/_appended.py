"""Snapshots of append-only fields: a length and a base, not another copy of the list.

    bases = Bases.at_load(schema, snapshot, state)      # where each field was last held whole
    plain, appended = bases.split(schema, state, seq)   # what a snapshot at `seq` stores
    plain = await restore(store, run_id, snapshot)      # the whole state again, on load

A loop appending to a list would otherwise store the list again in every
snapshot: quadratic bytes. A field whose reducer is `append`, with no validator
that could rewrite the merged list, is stored whole only now and then; other
snapshots record `appended[field] = [base_seq, length]`: the list is the one in
the snapshot at `base_seq` followed by the items of the steps after it, up to
the snapshot's own seq (they are in the log anyway), and its length checks it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import APPENDED_VERSION, Snapshot
from waypoint.errors import CorruptRecordError
from waypoint.graphs.state import StateSchema

WHOLE_EVERY = 4  # stored whole again once the steps since its base exceed 4x its length (+64)


class Bases:
    """For each append-only field, the seq of the last snapshot holding it whole."""

    def __init__(self, seqs: dict[str, int]) -> None:
        self.seqs = seqs

    @classmethod
    def at_load(cls, schema: StateSchema, snapshot: Snapshot, state: BaseModel) -> Bases:
        seqs = {name: base for name, (base, _length) in snapshot.appended.items()}
        for name in schema.appendable:
            if name not in seqs and isinstance(getattr(state, name), list):
                seqs[name] = snapshot.seq
        return cls(seqs)

    def split(self, schema: StateSchema, state: BaseModel,
              seq: int) -> tuple[dict[str, Any], dict[str, list[int]]]:
        """The snapshot's `state` and `appended` at `seq`: long lists by reference, the rest whole."""
        appended: dict[str, list[int]] = {}
        for name in schema.appendable:
            value, base = getattr(state, name), self.seqs.get(name)
            if not isinstance(value, list):
                self.seqs.pop(name, None)
            elif base is None or seq - base > WHOLE_EVERY * len(value) + 64:
                self.seqs[name] = seq  # held whole here: later snapshots refer to this one
            else:
                appended[name] = [base, len(value)]
        return schema.encode_state(state, exclude=appended.keys()), appended


def snapshot(seq: int, state: dict[str, Any], frontier: dict[str, Any],
             appended: dict[str, list[int]]) -> Snapshot:
    """A Snapshot record; one with references is written as version 2 (older readers refuse it)."""
    if appended:
        return Snapshot(seq=seq, state=state, frontier=frontier, appended=appended, v=APPENDED_VERSION)
    return Snapshot(seq=seq, state=state, frontier=frontier)


async def restore(store: Store, run_id: str, snap: Snapshot) -> dict[str, Any]:
    """`snap.state` with its append-only fields rebuilt from their base snapshots and the log."""
    plain = dict(snap.state)
    for name, (base, length) in snap.appended.items():
        whole = await store.snapshot_at(run_id, base)
        if whole is None or whole.seq != base or not isinstance(whole.state.get(name), list):
            raise _broken(run_id, snap, name, f"its base snapshot at seq {base} does not hold it")
        items = list(whole.state[name])
        for step in await store.history(run_id, after=base, upto=snap.seq):
            if step.kind in ("done", "edit") and name in step.delta:
                items.extend(step.delta[name])
        if len(items) != length:
            raise _broken(run_id, snap, name, f"the log gives {len(items)} items, the snapshot says {length}")
        plain[name] = items
    return plain


def _broken(run_id: str, snap: Snapshot, name: str, why: str) -> CorruptRecordError:
    return CorruptRecordError(
        f"run {run_id!r}: snapshot at seq {snap.seq} cannot rebuild field {name!r} ({why}); the "
        "store file was damaged or steps were deleted. Fork the run from an earlier step, or "
        "restore the database from a backup.", run_id=run_id, seq=snap.seq)
