"""Who executes a run: lease owners, heartbeats, and leases left by dead processes.

    beat = asyncio.create_task(heartbeat(store, run_id, owner, ttl, on_lost))
    beating(owner)          # the execution's Beat: its ttl, the child runs it executes now

One heartbeat per execution renews its run's lease and the leases of the child runs
(subgraphs, map items) that execution holds, all under the same owner: a child's
work may outlast any ttl, and its lease is renewed with its parent's, fenced by
owner in the store.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus
from waypoint.errors import LeaseError, RunMovedError, StoreError

LEASE_TTL = 30.0


def clock() -> float:
    """Seconds on a clock that goes on while the machine is suspended (CLOCK_BOOTTIME on Linux;
    the monotonic clock elsewhere): a lease lapses in the store meanwhile, so a heartbeat must
    see that time pass."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


@dataclass
class Beat:
    """What one execution's heartbeat keeps alive: its lease length, the child runs it executes
    now (their leases are renewed after the parent's, at each beat), and until when (on this
    process's `clock()`) its own lease is surely still its: renewed less than 2/3 ttl ago."""

    ttl: float
    sure_until: float = 0.0
    children: set[str] = field(default_factory=set)

    def sure(self) -> bool:
        """Whether no other owner can hold the run now (its lease cannot have lapsed): a paused
        process or a blocked event loop finds this False, and must ask the store."""
        return clock() < self.sure_until


_beats: dict[str, Beat] = {}  # lease owner -> the heartbeat of that execution, while it beats


def beating(owner: str) -> Beat | None:
    """The heartbeat of the execution holding leases as `owner` (None: none beats in this process)."""
    return _beats.get(owner)


def new_owner() -> str:
    """`host:pid:nonce`: unique per execution, and tells whether the holder still lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(owner: str | None) -> bool:
    """True if `owner` is a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


async def claim(store: Store, run_id: str, owner: str, ttl: float = LEASE_TTL, *,
                expect_seq: int | None = None, expect_status: RunStatus | None = None) -> RunInfo:
    """Take the run's lease; a lease held by a dead local process is taken over at once.

    With `expect_seq`/`expect_status`, a compare-and-set on what the caller saw
    (`RunMovedError` if the run moved on since).
    """
    try:
        return await store.claim(run_id, owner, ttl, expect_seq=expect_seq, expect_status=expect_status)
    except RunMovedError:
        raise
    except LeaseError:
        info = await store.get_run(run_id)
        holder = info.lease_owner
        if holder is None or not holder_is_dead(holder):
            raise
        # The holder was SIGKILLed: waiting out its lease would only delay recovery.
        await store.release(run_id, holder, info.status, waiting=info.waiting)
        return await store.claim(run_id, owner, ttl, expect_seq=expect_seq, expect_status=expect_status)


async def heartbeat(store: Store, run_id: str, owner: str, ttl: float,
                    on_lost: Callable[[LeaseError], object]) -> None:
    """Renew the lease every ttl/3 until cancelled; call `on_lost(exc)` once it is gone.

    The leases of the child runs this execution holds (`beating(owner).children`) are
    renewed after the run's own; a child's lease taken by another owner is the run lost.

    A renewal the store cannot make within ttl/3 (a database restarting, a network cut)
    is tried again at the next beat while another beat still fits before the lease could
    lapse; when none does, the execution is told its lease is lost about ttl/3 BEFORE it
    can lapse in the store, so it has stopped by the time another process may claim the
    run (fencing keeps it from writing in any case).
    """
    renewed = clock()  # the lease runs at least ttl from here: it was claimed before
    beat = _beats[owner] = Beat(ttl, sure_until=renewed + ttl * 2 / 3)
    try:
        await _beat(store, run_id, owner, beat, on_lost, renewed)
    finally:
        if _beats.get(owner) is beat:
            del _beats[owner]


async def _renew(store: Store, run_id: str, owner: str, beat: Beat) -> None:
    await store.renew(run_id, owner, beat.ttl)  # first: a lost parent renews no child
    children = sorted(beat.children)
    renewals = await asyncio.gather(*(store.renew(child, owner, beat.ttl) for child in children),
                                    return_exceptions=True)  # concurrent: one group commit
    for child, outcome in zip(children, renewals, strict=True):
        if isinstance(outcome, BaseException) and child in beat.children:  # ended meanwhile: released
            raise outcome


async def _beat(store: Store, run_id: str, owner: str, beat: Beat,
                on_lost: Callable[[LeaseError], object], renewed: float) -> None:
    ttl = beat.ttl
    while True:
        await asyncio.sleep(ttl / 3)
        sent = clock()
        try:
            await asyncio.wait_for(_renew(store, run_id, owner, beat), timeout=ttl / 3)
        except LeaseError as exc:
            on_lost(exc)
            return
        except (TimeoutError, StoreError) as exc:
            if clock() + ttl / 3 < renewed + ttl:
                continue  # another beat fits before the lease can lapse
            reason = str(exc) or "no answer within ttl/3"
            on_lost(LeaseError(f"run {run_id!r}: {owner} could not renew its lease ({reason}); it "
                               f"stops executing the run before the lease ({ttl:g}s) can lapse and "
                               "another process claim it", run_id=run_id))
            return
        renewed = sent
        beat.sure_until = sent + ttl * 2 / 3
