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

    A renewal the store cannot make within ttl/3 (a database restarting, a network cut)
    is tried again at the next beat while another beat still fits before the lease could
    lapse; when none does, the execution is told its lease is lost about ttl/3 BEFORE it
    can lapse in the store, so it has stopped by the time another process may claim the
    run (fencing keeps it from writing in any case).
    """
    renewed = time.monotonic()  # the lease runs at least ttl from here: it was claimed before
    while True:
        await asyncio.sleep(ttl / 3)
        sent = time.monotonic()
        try:
            await asyncio.wait_for(store.renew(run_id, owner, ttl), timeout=ttl / 3)
        except LeaseError as exc:
            on_lost(exc)
            return
        except (TimeoutError, StoreError) as exc:
            if time.monotonic() + ttl / 3 < renewed + ttl:
                continue  # another beat fits before the lease can lapse
            reason = str(exc) or "no answer within ttl/3"
            on_lost(LeaseError(f"run {run_id!r}: {owner} could not renew its lease ({reason}); it "
                               f"stops executing the run before the lease ({ttl:g}s) can lapse and "
                               "another process claim it", run_id=run_id))
            return
        renewed = sent
