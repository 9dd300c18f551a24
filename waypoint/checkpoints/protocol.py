"""The Store protocol: what the engine needs from persistence, and nothing SQLite-specific.

    store = SQLiteStore("runs.db")          # or MemoryStore()
    async with store:
        await store.create_run(info, owner="host:pid:uuid", ttl=30.0, snapshot=first)
        await store.append(run_id, owner, steps, snapshot=None)
        snapshot, tail = await store.load(run_id)
        await store.claim(run_id, owner, ttl=30.0)   # to execute it again later

Leases, sequence numbers and group commit are part of the protocol so that a
networked store (PostgreSQL) is one more implementation passing the same
conformance suite (`waypoint.testing.store_conformance`):

- `create_run` with `owner` and `snapshot` writes the run row, its lease and
  its first snapshot in ONE atomic write: a crash leaves no run, or a run that
  can be resumed, never a row without its snapshot.
- `claim` takes the run's lease if it is free, expired, or already ours;
  otherwise it raises `LeaseError`. With `expect_seq` (and `expect_status`) it
  is a compare-and-set on what the caller saw: it also requires the log to
  still end at `expect_seq` (and the status to be unchanged), else it raises
  `RunMovedError` and writes nothing. Of any number of concurrent claims that
  saw the same run, at most one succeeds: this is how an answer applies only
  to the wait it was validated against.
- `claim_next` is what a worker polls: it picks and claims the next queued or
  abandoned run of a queue in one atomic write.
- `append` is fenced: it writes only if `owner` still holds the lease and the
  first step's seq is `last_seq + 1`; otherwise `LeaseError` and nothing is
  written. Concurrent appends (of one run or many) may be committed together in
  one transaction (group commit); each call returns once its steps are durable.
- `import_run` writes a whole run as another store holds it (`waypoint copy`):
  row, steps and snapshots in one atomic write, leased to nobody.

Optional: a store may also offer `signals` (the `Signals` protocol below, found
by `signals_of(store)`): wake-ups when a run becomes queued and a lock held by
one process at a time, both shared by every store object on one database. The
three stores do (`checkpoints/signals.py`); a store without them is polled by
workers, and the deadline sweep runs unlocked there (safe, since each re-queue is
a compare-and-set claim; only the work is repeated). The conformance suite
checks them where present.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol, runtime_checkable

from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot, Step

Wakeup = Literal[
    "notified",  # a run of the queue was queued: claim now
    "polled",  # the time is up: claim anyway (a wake-up may be missed, polling never is)
    "listening",  # a connection for wake-ups was (re)opened: claim now, anything before it was missed
]


@runtime_checkable
class Signals(Protocol):
    """Wake-ups and locks between the processes sharing a store: `store.signals`, optional.

        await store.signals.notify("default")            # a run of the queue was just queued
        why = await store.signals.wait("default", 5.0)   # a Wakeup, within `timeout` seconds
        async with store.signals.try_lock("waypoint tick") as mine:
            if mine: ...                                 # no other holder, in any process
    """

    @property
    def wakes_other_processes(self) -> bool:
        """Whether a run queued by another process wakes `wait` here (False: this process only)."""

    async def notify(self, queue: str) -> None:
        """Called after a run of `queue` became queued in this store: wake its waiters (every store
        object on this database in this process, and other processes if `wakes_other_processes`)."""

    async def wait(self, queue: str, timeout: float) -> Wakeup:
        """Wait up to `timeout` seconds for a run of `queue` to be queued; say why it returned.
        "listening" may come at once, when the channel was (re)opened. A channel that fails
        raises StoreError: poll meanwhile, the next call opens it again."""

    def try_lock(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold lock `name` for the block if nobody (any store object, any process) holds it:
        yields True, or False at once. A holder that dies frees it."""

    async def close(self) -> None:
        """Drop connections held for waiting (the next `wait` opens them again)."""


@runtime_checkable
class Store(Protocol):
    """Durable home of runs. All methods are coroutines unless noted."""

    async def open(self) -> None:
        """Open connections and create/migrate the schema. Idempotent."""

    async def close(self) -> None:
        """Flush pending commits and close. Idempotent."""

    async def create_run(self, info: RunInfo, *, owner: str | None = None, ttl: float = 0.0,
                         snapshot: Snapshot | None = None) -> None:
        """Insert a new run row. An existing run id raises `RunStateError` and writes nothing.

        With `owner`, the run starts leased to it for `ttl` seconds, status "running",
        as if claimed; with `snapshot` (at a seq no later than `info.last_seq`, else
        `ValueError`), its first snapshot is written too. All of it is one atomic write.
        """

    async def import_run(self, info: RunInfo, steps: list[Step], snapshots: list[Snapshot]) -> None:
        """Write a whole run read from another store (`waypoint copy`) in one atomic write.

        The row is `info` as given (status, times, waiting, error, last_seq) but leased to
        nobody, with these steps and snapshots, records unchanged. A "running" run then
        reads as one whose executor died: `claim_next` may take it. An existing run id
        raises `RunStateError`; steps that are not consecutive, or a step or snapshot
        after `info.last_seq`, raise `ValueError`. Either way nothing is written.
        """

    async def get_run(self, run_id: str) -> RunInfo:
        """The run's row; an unknown id raises `RunNotFoundError`."""

    async def list_runs(
        self, *, status: RunStatus | None = None, graph: str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs, newest first, optionally filtered.

        A run whose row is damaged is listed from what can be read, with `graph_hash`
        "" and `error` saying what is damaged (`get_run` on it raises
        `CorruptRecordError`): one bad row never hides the others.
        """

    async def claim(self, run_id: str, owner: str, ttl: float, *, expect_seq: int | None = None,
                    expect_status: RunStatus | None = None) -> RunInfo:
        """Take the lease for `ttl` seconds (free, expired or already ours) or raise `LeaseError`.

        With `expect_seq`/`expect_status`, only if the run's `last_seq`/`status` are still
        those; otherwise `RunMovedError` (checked before the lease), and nothing is written.
        """

    async def claim_next(self, queue: str, owner: str, ttl: float, *,
                         graphs: list[str] | None = None) -> RunInfo | None:
        """Claim one claimable run of `queue` (of `graphs`, if given) for `ttl` seconds, or None.

        Claimable: status "queued" (submitted, or answered with `resume(..., enqueue=True)`),
        or "running" under a lease that has expired (its worker died). Highest `priority`
        first, then oldest. Picking and claiming are one atomic write: of concurrent
        callers, each run goes to one (the claim is `claim`'s: status "running", leased).
        """

    async def renew(self, run_id: str, owner: str, ttl: float) -> None:
        """Extend our lease; `LeaseError` if we no longer hold it."""

    async def release(
        self,
        run_id: str,
        owner: str,
        status: RunStatus,
        *,
        error: str | None = None,
        waiting: list[str] | None = None,
    ) -> None:
        """Set the final status of this execution and drop the lease (fenced by owner)."""

    async def append(
        self,
        run_id: str,
        owner: str,
        steps: list[Step],
        snapshot: Snapshot | None = None,
    ) -> None:
        """Durably append steps (and a snapshot) if `owner` holds the lease; group-committed."""

    async def load(self, run_id: str) -> tuple[Snapshot | None, list[Step]]:
        """The latest snapshot and the steps after it: what the engine replays on resume."""

    async def history(
        self, run_id: str, *, after: int = 0, upto: int | None = None
    ) -> list[Step]:
        """Steps with `after < seq <= upto`, in order."""

    async def snapshot_at(self, run_id: str, seq: int) -> Snapshot | None:
        """The latest snapshot with `snapshot.seq <= seq`, if any."""

    async def cache_get(self, key: str) -> bytes | None:
        """The value `cache_put` stored under `key`, unless it expired (on the store's clock)."""

    async def cache_put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store `value` under `key` (replacing any), durably, for `ttl` seconds (None: no expiry).

        The cache of node results (`cache=` on a node): shared by every run and process
        using the store. Expired entries may be dropped at any later put.
        """

    async def claim_slot(self, name: str, size: int, holder: str, ttl: float) -> int | None:
        """Take a free slot of limit `name` (one of 0..size-1 with no holder, or an expired one)
        for `ttl` seconds on the store's clock, in one atomic write; None when all are held.

        The slots behind `Limit(..., processes=True)`: shared by every process using the store.
        """

    async def renew_slot(self, name: str, slot: int, holder: str, ttl: float) -> bool:
        """Extend our hold of `slot` for `ttl` seconds; False if it is no longer ours."""

    async def release_slot(self, name: str, slot: int, holder: str) -> None:
        """Give `slot` back, if `holder` still holds it."""


def signals_of(store: object) -> Signals | None:
    """`store.signals` if the store offers wake-ups and locks, else None (poll; sweep unlocked)."""
    signals = getattr(store, "signals", None)
    return signals if isinstance(signals, Signals) else None
