"""Who executes a run: lease owners, heartbeats, and leases left by dead processes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable

from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus
from waypoint.errors import LeaseError, RunMovedError, StoreError

LEASE_TTL = 30.0


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

    A renewal the store cannot make (a database restarting, a network blip) is tried
    again at the next beat; once a whole ttl has passed without one, the lease may have
    lapsed and been taken, so the execution is told it is lost: it stops, and fencing
    keeps it from writing in any case.
    """
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            await store.renew(run_id, owner, ttl)
        except LeaseError as exc:
            on_lost(exc)
            return
        except StoreError as exc:
            if time.monotonic() - renewed < ttl:
                continue
            on_lost(LeaseError(f"run {run_id!r}: {owner} could not renew its lease for {ttl:g}s "
                               f"({exc}); it stops executing the run, which another process may "
                               "have claimed since", run_id=run_id))
            return
        renewed = time.monotonic()
