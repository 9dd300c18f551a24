"""MemoryStore: the Store protocol in dicts, for tests and throwaway runs.

    store = MemoryStore()
    async with store:
        await store.create_run(info, owner=owner, ttl=30.0, snapshot=first)
        await store.append(info.run_id, owner, [step], snapshot)

It is also the reference semantics: the checks and error messages below are
shared with `SQLiteStore`, so both stores refuse the same things in the same
words. Records are kept encoded, exactly as a durable store keeps them, so a
step that cannot round-trip fails here too and nothing shares mutable data with
the caller.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

from msgspec import structs

from waypoint.checkpoints.records import (
    RunInfo, RunStatus, Snapshot, Step, decode_snapshot, decode_step, encode,
)
from waypoint.errors import LeaseError, RunMovedError, RunNotFoundError, RunStateError, WaypointError

__all__ = ["MemoryStore"]


class _Append(NamedTuple):
    """One validated, encoded `append` call: what a store writes, or refuses."""

    run_id: str
    owner: str
    first: int | None  # seq of the first step; None for a snapshot-only append
    last: int | None
    snap_seq: int  # 0 when there is no snapshot: any log satisfies "last_seq >= 0"
    step_rows: list[tuple[str, int, str, str, bytes]]  # run_id, seq, kind, node, payload
    snap_blob: bytes | None


def _prepare(run_id: str, owner: str, steps: list[Step], snapshot: Snapshot | None) -> _Append:
    """Validate and encode an append before it joins a batch, so a caller's bug fails that caller only."""
    seqs = [s.seq for s in steps]
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        raise ValueError(f"run {run_id!r}: steps must have consecutive seqs, got {seqs}")
    if snapshot is not None and seqs and snapshot.seq > seqs[-1]:
        raise ValueError(f"run {run_id!r}: snapshot at seq {snapshot.seq} is after the last step {seqs[-1]}")
    rows = [(run_id, s.seq, s.kind, s.node, encode(s)) for s in steps]
    return _Append(run_id, owner, seqs[0] if seqs else None, seqs[-1] if seqs else None,
                   snapshot.seq if snapshot is not None else 0, rows,
                   encode(snapshot) if snapshot is not None else None)


def _first_snapshot(info: RunInfo, snapshot: Snapshot | None) -> bytes | None:
    """The encoded snapshot `create_run` writes with the row, checked before anything is written."""
    if snapshot is None:
        return None
    if snapshot.seq > info.last_seq:
        raise ValueError(f"run {info.run_id!r}: its first snapshot is at seq {snapshot.seq}, after "
                         f"the run's last step {info.last_seq}; create it with last_seq="
                         f"{snapshot.seq} or snapshot it at or before {info.last_seq}")
    return encode(snapshot)


def _not_found(run_id: str) -> RunNotFoundError:
    return RunNotFoundError(f"no run {run_id!r} in this store; check the run id and that this "
                            "is the store the run was started with", run_id=run_id)


def _held(run_id: str, holder: str | None, expiry: float, now: float) -> LeaseError:
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expiry))
    return LeaseError(f"run {run_id!r} is being executed by {holder} (lease until {until}, "
                      f"{expiry - now:.1f}s from now); wait for it to finish, or resume it once "
                      "the lease has expired if that process is gone", run_id=run_id)


def _moved(run_id: str, last_seq: int, status: str, expect_seq: int | None,
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


def _lost(run_id: str, owner: str, holder: str | None, what: str) -> LeaseError:
    now_held = f"it is now held by {holder}" if holder else "it was released"
    return LeaseError(f"run {run_id!r}: cannot {what}: {owner} no longer holds the lease "
                      f"({now_held}); stop executing this run here and resume it to continue",
                      run_id=run_id)


def _refusal(job: _Append, holder: str | None, last_seq: int) -> WaypointError | None:
    """Why the store must not write `job` given the run's current lease and log end, or None."""
    if holder != job.owner:
        return _lost(job.run_id, job.owner, holder, "append")
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


class MemoryStore:
    """The Store protocol in process memory; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, RunInfo] = {}
        self._ttl: dict[str, float] = {}  # the lease length, so that an append extends it
        self._steps: dict[str, dict[int, bytes]] = {}
        self._snaps: dict[str, dict[int, bytes]] = {}

    async def open(self) -> None:
        """Nothing to open; present for the protocol."""

    async def close(self) -> None:
        """Nothing to flush; the data stays for the next `open()`."""

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_run(self, info: RunInfo, *, owner: str | None = None, ttl: float = 0.0,
                         snapshot: Snapshot | None = None) -> None:
        blob = _first_snapshot(info, snapshot)
        if info.run_id in self._runs:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                                run_id=info.run_id)
        if owner is not None:
            info = structs.replace(info, status="running", lease_owner=owner,
                                   lease_expiry=time.time() + ttl)
            self._ttl[info.run_id] = ttl
        self._runs[info.run_id] = info
        self._steps[info.run_id] = {}
        self._snaps[info.run_id] = {} if blob is None else {snapshot.seq: blob}

    async def get_run(self, run_id: str) -> RunInfo:
        try:
            return self._runs[run_id]
        except KeyError:
            raise _not_found(run_id) from None

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        runs = [r for r in reversed(self._runs.values())
                if (status is None or r.status == status) and (graph is None or r.graph == graph)]
        runs.sort(key=lambda r: r.created_at, reverse=True)  # stable: ties stay newest-inserted first
        return runs[:limit]

    async def claim(self, run_id: str, owner: str, ttl: float, *, expect_seq: int | None = None,
                    expect_status: RunStatus | None = None) -> RunInfo:
        info, now = await self.get_run(run_id), time.time()
        refusal = _moved(run_id, info.last_seq, info.status, expect_seq, expect_status)
        if refusal is not None:
            raise refusal
        if info.lease_owner not in (None, owner) and info.lease_expiry >= now:
            raise _held(run_id, info.lease_owner, info.lease_expiry, now)
        self._ttl[run_id] = ttl
        return self._update(info, status="running", lease_owner=owner, lease_expiry=now + ttl,
                            updated_at=now)

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        info = await self.get_run(run_id)
        if info.lease_owner != owner:
            raise _lost(run_id, owner, info.lease_owner, "renew the lease")
        self._ttl[run_id] = ttl
        self._update(info, lease_expiry=time.time() + ttl)

    async def release(self, run_id: str, owner: str, status: RunStatus, *, error: str | None = None,
                      waiting: list[str] | None = None) -> None:
        info = await self.get_run(run_id)
        if info.lease_owner != owner:
            raise _lost(run_id, owner, info.lease_owner, f"set status {status!r}")
        self._update(info, status=status, error=error, waiting=list(waiting or []),
                     lease_owner=None, lease_expiry=0.0, updated_at=time.time())

    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        job = _prepare(run_id, owner, steps, snapshot)
        await asyncio.sleep(0)  # a durable store yields here; so does this one, to keep tests honest
        info, now = await self.get_run(run_id), time.time()
        problem = _refusal(job, info.lease_owner, info.last_seq)
        if problem is not None:
            raise problem
        self._steps[run_id].update((row[1], row[4]) for row in job.step_rows)
        if job.snap_blob is not None:
            self._snaps[run_id][job.snap_seq] = job.snap_blob
        self._update(info, last_seq=job.last if job.last is not None else info.last_seq,
                     updated_at=now, lease_expiry=max(info.lease_expiry, now + self._ttl.get(run_id, 0.0)))

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        await self.get_run(run_id)
        snaps = self._snaps[run_id]
        if not snaps:
            return None, await self.history(run_id)
        seq = max(snaps)
        return decode_snapshot(snaps[seq], run_id=run_id, seq=seq), await self.history(run_id, after=seq)

    async def history(self, run_id: str, *, after: int = 0, upto: int | None = None) -> list[Step]:
        await self.get_run(run_id)
        return [decode_step(blob, run_id=run_id, seq=seq) for seq, blob in self._steps[run_id].items()
                if seq > after and (upto is None or seq <= upto)]

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        await self.get_run(run_id)
        best = max((s for s in self._snaps[run_id] if s <= seq), default=None)
        return None if best is None else decode_snapshot(self._snaps[run_id][best], run_id=run_id, seq=best)

    def _update(self, info: RunInfo, **changes: object) -> RunInfo:
        self._runs[info.run_id] = new = structs.replace(info, **changes)
        return new
