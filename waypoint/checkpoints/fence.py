"""The fence every store applies, in the same words: what an append or a claim must not do.

    job = prepare(run_id, owner, steps, snapshot)        # validated and encoded, before any batch
    problem = refusal(job, holder, last_seq)             # None, or the error to raise
    raise held(run_id, holder, expiry, now)              # a live lease: who has it and until when

    job = imported(info, steps, snapshots)               # a whole run, checked and encoded (import_run)

`MemoryStore` is the reference semantics; `SQLiteStore` and `PostgresStore`
refuse the same things with the same errors because they build them here. A
store of your own (see `waypoint.testing.check_store`) may use it too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple, overload

from msgspec import structs

from waypoint.checkpoints.records import RunInfo, Snapshot, Step, encode
from waypoint.errors import LeaseError, RunMovedError, RunNotFoundError, WaypointError

__all__ = ["Append", "Import", "first_snapshot", "held", "imported", "lost", "moved", "not_found", "prepare",
           "refusal"]


class Append(NamedTuple):
    """One validated, encoded `append` call: what a store writes, or refuses."""

    run_id: str
    owner: str
    first: int | None  # seq of the first step; None for a snapshot-only append
    last: int | None
    snap_seq: int  # 0 when there is no snapshot: any log satisfies "last_seq >= 0"
    step_rows: Sequence[tuple[str, int, str, str, bytes]]  # run_id, seq, kind, node, payload
    snap_blob: bytes | None


def prepare(run_id: str, owner: str, steps: list[Step], snapshot: Snapshot | None) -> Append:
    """Validate and encode an append before it joins a batch, so a caller's bug fails that caller only."""
    seqs = [s.seq for s in steps]
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        raise ValueError(f"run {run_id!r}: steps must have consecutive seqs, got {seqs}")
    if snapshot is not None and seqs and snapshot.seq > seqs[-1]:
        raise ValueError(f"run {run_id!r}: snapshot at seq {snapshot.seq} is after the last step {seqs[-1]}")
    rows = [(run_id, s.seq, s.kind, s.node, encode(s)) for s in steps]
    return Append(run_id, owner, seqs[0] if seqs else None, seqs[-1] if seqs else None,
                   snapshot.seq if snapshot is not None else 0, rows,
                   encode(snapshot) if snapshot is not None else None)


class Import(NamedTuple):
    """One validated, encoded `import_run` call: a whole run, as another store held it."""

    info: RunInfo  # as given, leased to nobody; last_seq covers its steps
    step_rows: Sequence[tuple[str, int, str, str, bytes]]  # run_id, seq, kind, node, payload
    snap_rows: Sequence[tuple[int, bytes]]  # seq, payload, in seq order

    @property
    def run_id(self) -> str:  # what a store's error names, as for an Append
        return self.info.run_id


def imported(info: RunInfo, steps: list[Step], snapshots: list[Snapshot]) -> Import:
    """Check and encode a whole run for `import_run`, before anything is written.

    Steps must be consecutive from seq 1 or more, and neither a step nor a snapshot may
    lie after `info.last_seq`; the row drops the lease (a copied run is executed nowhere).
    """
    job = prepare(info.run_id, "", steps, None)
    if job.first is not None and job.first < 1:
        raise ValueError(f"run {info.run_id!r}: steps start at seq {job.first}; a log starts at 1 or later")
    late = [s.seq for s in steps[-1:] if s.seq > info.last_seq]
    late += [s.seq for s in snapshots if not 0 <= s.seq <= info.last_seq]
    if late:
        raise ValueError(f"run {info.run_id!r}: seq {late[0]} is outside the run's log (0..{info.last_seq}, "
                         "its last_seq); import the run row as the source store holds it")
    seqs = sorted(s.seq for s in snapshots)
    if len(set(seqs)) != len(seqs):
        raise ValueError(f"run {info.run_id!r}: two snapshots at one seq ({seqs}); give each seq once")
    unleased = structs.replace(info, lease_owner=None, lease_expiry=0.0)
    return Import(unleased, job.step_rows,
                  [(s.seq, encode(s)) for s in sorted(snapshots, key=lambda s: s.seq)])


@overload
def first_snapshot(info: RunInfo, snapshot: Snapshot) -> bytes: ...
@overload
def first_snapshot(info: RunInfo, snapshot: None) -> None: ...
def first_snapshot(info: RunInfo, snapshot: Snapshot | None) -> bytes | None:
    """The encoded snapshot `create_run` writes with the row, checked before anything is written."""
    if snapshot is None:
        return None
    if snapshot.seq > info.last_seq:
        raise ValueError(f"run {info.run_id!r}: its first snapshot is at seq {snapshot.seq}, after "
                         f"the run's last step {info.last_seq}; create it with last_seq="
                         f"{snapshot.seq} or snapshot it at or before {info.last_seq}")
    return encode(snapshot)


def not_found(run_id: str) -> RunNotFoundError:
    return RunNotFoundError(f"no run {run_id!r} in this store; check the run id and that this "
                            "is the store the run was started with", run_id=run_id)


def held(run_id: str, holder: str | None, expiry: float, now: float) -> LeaseError:
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expiry))
    return LeaseError(f"run {run_id!r} is being executed by {holder} (lease until {until}, "
                      f"{expiry - now:.1f}s from now); wait for it to finish, or resume it once "
                      "the lease has expired if that process is gone", run_id=run_id)


def moved(run_id: str, last_seq: int, status: str, expect_seq: int | None,
           expect_status: str | None) -> RunMovedError | None:
    """The refusal of a compare-and-set claim whose caller saw another run, or None."""
    seq_moved = expect_seq is not None and last_seq != expect_seq
    status_moved = expect_status is not None and status != expect_status
    if not (seq_moved or status_moved):
        return None
    seen = ", ".join(part for part in (
        f"log end seq {expect_seq} -> {last_seq}" if seq_moved else "",
        f"status {expect_status!r} -> {status!r}" if status_moved else "") if part)
    return RunMovedError(f"run {run_id!r} moved on since it was read ({seen}); nothing was "
                         "written: read the run again and decide anew", run_id=run_id, seq=last_seq)


def lost(run_id: str, owner: str, holder: str | None, what: str) -> LeaseError:
    now_held = f"it is now held by {holder}" if holder else "it was released"
    return LeaseError(f"run {run_id!r}: cannot {what}: {owner} no longer holds the lease "
                      f"({now_held}); stop executing this run here and resume it to continue",
                      run_id=run_id)


def refusal(job: Append, holder: str | None, last_seq: int) -> WaypointError | None:
    """Why the store must not write `job` given the run's current lease and log end, or None."""
    if holder != job.owner:
        return lost(job.run_id, job.owner, holder, "append")
    if job.first is not None and job.first != last_seq + 1:
        return LeaseError(f"run {job.run_id!r}: {job.owner} appended from seq {job.first} but the "
                          f"log ends at seq {last_seq}; another writer appended in between, so "
                          "stop executing this run here and resume it to continue",
                          run_id=job.run_id, seq=job.first)
    if job.first is None and job.snap_seq > last_seq:
        return LeaseError(f"run {job.run_id!r}: snapshot at seq {job.snap_seq} is beyond the log's "
                          f"end at seq {last_seq}; resume the run to continue",
                          run_id=job.run_id, seq=job.snap_seq)
    return None
