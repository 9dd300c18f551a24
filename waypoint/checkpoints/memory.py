"""MemoryStore: the Store protocol in dicts, for tests and throwaway runs.

    store = MemoryStore()
    async with store:
        await store.create_run(info, owner=owner, ttl=30.0, snapshot=first)
        await store.append(info.run_id, owner, [step], snapshot)

It is also the reference semantics: its checks and error messages (`fence.py`) are
shared with `SQLiteStore` and `PostgresStore`, so every store refuses the same
things in the same words. Records are kept encoded, exactly as a durable store keeps them, so a
step that cannot round-trip fails here too and nothing shares mutable data with
the caller.
"""

from __future__ import annotations

import asyncio
import time

from msgspec import structs

from waypoint.checkpoints.fence import (
    first_snapshot,
    held,
    imported,
    lost,
    moved,
    not_found,
    prepare,
    refusal,
)
from waypoint.checkpoints.records import (
    RunInfo,
    RunStatus,
    Snapshot,
    Step,
    claimable,
    decode_snapshot,
    decode_step,
)
from waypoint.checkpoints.signals import LocalSignals
from waypoint.errors import RunStateError

__all__ = ["MemoryStore"]


class MemoryStore:
    """The Store protocol in process memory; lost when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, RunInfo] = {}
        self._ttl: dict[str, float] = {}  # the lease length, so that an append extends it
        self._steps: dict[str, dict[int, bytes]] = {}
        self._snaps: dict[str, dict[int, bytes]] = {}
        self._cache: dict[str, tuple[bytes, float | None]] = {}  # key -> value, expiry (None: never)
        self._slots: dict[tuple[str, int], tuple[str, float]] = {}  # (limit, slot) -> holder, expiry
        self.signals = LocalSignals(f"memory:{id(self)}")  # wake-ups and locks: protocol.Signals

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
        blob = first_snapshot(info, snapshot)
        if info.run_id in self._runs:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                                run_id=info.run_id)
        if owner is not None:
            info = structs.replace(info, status="running", lease_owner=owner,
                                   lease_expiry=time.time() + ttl)
            self._ttl[info.run_id] = ttl
        self._runs[info.run_id] = info
        self._steps[info.run_id] = {}
        self._snaps[info.run_id] = {snapshot.seq: blob} if snapshot is not None and blob is not None else {}

    async def import_run(self, info: RunInfo, steps: list[Step], snapshots: list[Snapshot]) -> None:
        job = imported(info, steps, snapshots)
        if info.run_id in self._runs:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id",
                                run_id=info.run_id)
        self._runs[info.run_id] = job.info
        self._steps[info.run_id] = {row[1]: row[4] for row in job.step_rows}
        self._snaps[info.run_id] = dict(job.snap_rows)

    async def get_run(self, run_id: str) -> RunInfo:
        try:
            return self._runs[run_id]
        except KeyError:
            raise not_found(run_id) from None

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        runs = [r for r in reversed(self._runs.values())
                if (status is None or r.status == status) and (graph is None or r.graph == graph)]
        runs.sort(key=lambda r: r.created_at, reverse=True)  # stable: ties stay newest-inserted first
        return runs[:limit]

    async def claim(self, run_id: str, owner: str, ttl: float, *, expect_seq: int | None = None,
                    expect_status: RunStatus | None = None) -> RunInfo:
        info, now = await self.get_run(run_id), time.time()
        refusal = moved(run_id, info.last_seq, info.status, expect_seq, expect_status)
        if refusal is not None:
            raise refusal
        if info.lease_owner not in (None, owner) and info.lease_expiry >= now:
            raise held(run_id, info.lease_owner, info.lease_expiry, now)
        self._ttl[run_id] = ttl
        return self._update(info, status="running", lease_owner=owner, lease_expiry=now + ttl,
                            updated_at=now)

    async def claim_next(self, queue: str, owner: str, ttl: float, *,
                         graphs: list[str] | None = None) -> RunInfo | None:
        now = time.time()
        ready = [r for r in self._runs.values() if r.queue == queue
                 and (graphs is None or r.graph in graphs) and claimable(r.status, r.lease_expiry, now)]
        if not ready:
            return None
        best = min(ready, key=lambda r: (-r.priority, r.created_at))
        return await self.claim(best.run_id, owner, ttl)  # no await before it: atomic in one loop

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        info = await self.get_run(run_id)
        if info.lease_owner != owner:
            raise lost(run_id, owner, info.lease_owner, "renew the lease")
        self._ttl[run_id] = ttl
        self._update(info, lease_expiry=time.time() + ttl)

    async def release(self, run_id: str, owner: str, status: RunStatus, *, error: str | None = None,
                      waiting: list[str] | None = None) -> None:
        info = await self.get_run(run_id)
        if info.lease_owner != owner:
            raise lost(run_id, owner, info.lease_owner, f"set status {status!r}")
        self._update(info, status=status, error=error, waiting=list(waiting or []),
                     lease_owner=None, lease_expiry=0.0, updated_at=time.time())

    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        job = prepare(run_id, owner, steps, snapshot)
        await asyncio.sleep(0)  # a durable store yields here; so does this one, to keep tests honest
        info, now = await self.get_run(run_id), time.time()
        problem = refusal(job, info.lease_owner, info.last_seq)
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

    async def cache_get(self, key: str) -> bytes | None:
        value, expiry = self._cache.get(key, (None, None))
        return value if expiry is None or expiry > time.time() else None

    async def cache_put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._cache[key] = (bytes(value), None if ttl is None else time.time() + ttl)

    async def claim_slot(self, name: str, size: int, holder: str, ttl: float) -> int | None:
        now = time.time()
        for slot in range(size):  # no await in here: atomic in one event loop
            taken = self._slots.get((name, slot))
            if taken is None or taken[1] <= now:
                self._slots[name, slot] = (holder, now + ttl)
                return slot
        return None

    async def renew_slot(self, name: str, slot: int, holder: str, ttl: float) -> bool:
        taken = self._slots.get((name, slot))
        if taken is None or taken[0] != holder:
            return False
        self._slots[name, slot] = (holder, time.time() + ttl)
        return True

    async def release_slot(self, name: str, slot: int, holder: str) -> None:
        if self._slots.get((name, slot), ("", 0.0))[0] == holder:
            del self._slots[name, slot]

    def _update(self, info: RunInfo, **changes: object) -> RunInfo:
        self._runs[info.run_id] = new = structs.replace(info, **changes)
        return new
