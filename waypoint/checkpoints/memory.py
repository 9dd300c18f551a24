"""MemoryStore: the Store protocol in memory, for tests and throwaway runs.

    store = MemoryStore()
    result = run_sync(graph, input, store=store)

Same semantics as SQLiteStore (leases, fencing by owner and seq, snapshots),
nothing survives the process. Records are kept encoded, exactly as a durable
store would hand them back, so tests exercise the same decoding path.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from waypoint.checkpoints.records import (
    RunInfo, RunStatus, Snapshot, Step, decode_snapshot, decode_step, encode,
)
from waypoint.errors import LeaseError, RunNotFoundError, RunStateError


class MemoryStore:
    def __init__(self) -> None:
        self._runs: dict[str, RunInfo] = {}
        self._steps: dict[str, list[tuple[int, bytes]]] = {}
        self._snapshots: dict[str, list[tuple[int, bytes]]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_run(self, info: RunInfo) -> None:
        if info.run_id in self._runs:
            raise RunStateError(f"run {info.run_id!r} already exists; pick another run id.",
                                run_id=info.run_id)
        self._runs[info.run_id] = info
        self._steps[info.run_id] = []
        self._snapshots[info.run_id] = []

    async def get_run(self, run_id: str) -> RunInfo:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunNotFoundError(
                f"no run {run_id!r} in this store; list runs with `waypoint runs` or "
                "check the database path.", run_id=run_id) from None

    async def list_runs(self, *, status: RunStatus | None = None, graph: str | None = None,
                        limit: int = 100) -> list[RunInfo]:
        runs = [r for r in self._runs.values()
                if (status is None or r.status == status) and (graph is None or r.graph == graph)]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)[:limit]

    async def claim(self, run_id: str, owner: str, ttl: float) -> RunInfo:
        info = await self.get_run(run_id)
        now = time.time()
        if info.lease_owner not in (None, owner) and info.lease_expiry >= now:
            raise LeaseError(
                f"run {run_id!r} is being executed by {info.lease_owner} (lease until "
                f"{time.ctime(info.lease_expiry)}); wait for it to finish or for its lease to "
                "expire.", run_id=run_id)
        return self._put(info, lease_owner=owner, lease_expiry=now + ttl, status="running")

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        info = self._fenced(await self.get_run(run_id), owner)
        self._put(info, lease_expiry=time.time() + ttl)

    async def release(self, run_id: str, owner: str, status: RunStatus, *,
                      error: str | None = None, waiting: list[str] | None = None) -> None:
        info = self._fenced(await self.get_run(run_id), owner)
        self._put(info, lease_owner=None, lease_expiry=0.0, status=status, error=error,
                  waiting=list(waiting or []))

    async def append(self, run_id: str, owner: str, steps: list[Step],
                     snapshot: Snapshot | None = None) -> None:
        await asyncio.sleep(0)  # a real store yields here too; keeps scheduling honest
        info = self._fenced(await self.get_run(run_id), owner)
        if steps and steps[0].seq != info.last_seq + 1:
            raise LeaseError(
                f"run {run_id!r}: step {steps[0].seq} does not follow step {info.last_seq}; "
                "another process wrote to this run.", run_id=run_id, seq=steps[0].seq)
        self._steps[run_id].extend((s.seq, encode(s)) for s in steps)
        if snapshot is not None:
            self._snapshots[run_id].append((snapshot.seq, encode(snapshot)))
        self._put(info, last_seq=steps[-1].seq if steps else info.last_seq)

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        await self.get_run(run_id)
        snapshot = await self.snapshot_at(run_id, 2**62)
        return snapshot, await self.history(run_id, after=snapshot.seq if snapshot else 0)

    async def history(self, run_id: str, *, after: int = 0, upto: int | None = None) -> list[Step]:
        await self.get_run(run_id)
        return [decode_step(data, run_id=run_id, seq=seq) for seq, data in self._steps[run_id]
                if seq > after and (upto is None or seq <= upto)]

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        await self.get_run(run_id)
        found = [(s, data) for s, data in self._snapshots[run_id] if s <= seq]
        if not found:
            return None
        s, data = found[-1]
        return decode_snapshot(data, run_id=run_id, seq=s)

    def _fenced(self, info: RunInfo, owner: str) -> RunInfo:
        if info.lease_owner != owner:
            raise LeaseError(
                f"run {info.run_id!r} is no longer leased to {owner} (holder: "
                f"{info.lease_owner}); this process must stop executing it.", run_id=info.run_id)
        return info

    def _put(self, info: RunInfo, **changes: object) -> RunInfo:
        info = msgspec.structs.replace(info, updated_at=time.time(), **changes)
        self._runs[info.run_id] = info
        return info
