"""The checks every Store must pass: run them on your own store.

    from waypoint.testing.store_conformance import check_store

    @pytest.mark.asyncio
    async def test_my_store_conforms(tmp_path):
        await check_store(lambda: MyStore(tmp_path / f"{uuid.uuid4().hex}.db"), plant=my_plant)

`make_store()` returns a new, empty store on each call (opened here, closed
after each check). `plant(store, run_id, seq, payload)`, if given, overwrites
the stored bytes of one step, as a damaged disk would; without it the
corruption check is skipped. `twin(store)`, if given, returns another store
object on the same database as `store` (`lambda s: MyStore(s.path)`): the checks
across store objects (`NEEDS_TWIN`) need it and are skipped without it. For one
pytest case per check, parametrize over `CHECKS` and call
`run_check(name, make_store, plant=..., twin=...)`.

`signals` (wake-ups and locks, `protocol.Signals`) are optional: a store without
them passes those checks, and its workers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from msgspec import structs

from waypoint.checkpoints.protocol import Signals, Store, signals_of
from waypoint.checkpoints.records import RECORD_VERSION, RunInfo, Snapshot, Step
from waypoint.errors import (
    CorruptRecordError,
    LeaseError,
    RunMovedError,
    RunNotFoundError,
    RunStateError,
    SchemaVersionError,
)

__all__ = ["CHECKS", "NEEDS_PLANT", "NEEDS_TWIN", "check_store", "plant_memory", "plant_sqlite", "run_check"]

Plant = Callable[[Any, str, int, bytes], Awaitable[None]]
MakeStore = Callable[[], "Store | Awaitable[Store]"]
Twin = Callable[[Any], "Store | Awaitable[Store]"]
E = TypeVar("E", bound=Exception)


async def check_store(make_store: MakeStore, *, plant: Plant | None = None, twin: Twin | None = None) -> None:
    """Run every check on a fresh store; the first failure raises AssertionError naming it."""
    for name in CHECKS:
        if (name in NEEDS_PLANT and plant is None) or (name in NEEDS_TWIN and twin is None):
            continue
        try:
            await run_check(name, make_store, plant=plant, twin=twin)
        except Exception as exc:
            raise AssertionError(f"store check {name!r} failed: {type(exc).__name__}: {exc}") from exc


async def run_check(name: str, make_store: MakeStore, *, plant: Plant | None = None,
                    twin: Twin | None = None) -> None:
    """Run the check `name` (a key of CHECKS) on a fresh store, opened and closed around it
    (with its twin, for the checks of NEEDS_TWIN: without `twin` they are skipped)."""
    store = make_store()
    if inspect.isawaitable(store):
        store = await store
    await store.open()
    try:
        if name not in NEEDS_TWIN:
            await CHECKS[name](store, plant)
        elif twin is not None:
            other = twin(store)
            if inspect.isawaitable(other):
                other = await other
            await other.open()
            try:
                await TWIN_CHECKS[name](store, other)
            finally:
                await other.close()
    finally:
        await store.close()


async def plant_memory(store: Any, run_id: str, seq: int, payload: bytes) -> None:
    """A `plant` for MemoryStore: replace the encoded bytes it keeps for one step."""
    store._steps[run_id][seq] = payload


async def plant_sqlite(store: Any, run_id: str, seq: int, payload: bytes) -> None:
    """A `plant` for SQLiteStore: rewrite one step's payload through a separate connection."""
    with contextlib.closing(sqlite3.connect(store.path, timeout=10)) as conn, conn:
        conn.execute("UPDATE steps SET payload = ? WHERE run_id = ? AND seq = ?", (payload, run_id, seq))


def info(run_id: str, *, graph: str = "g", created_at: float | None = None, **more: Any) -> RunInfo:
    now = time.time() if created_at is None else created_at
    fields = {"graph_hash": "h1", "status": "running", "created_at": now, "updated_at": now, **more}
    return RunInfo(run_id=run_id, graph=graph, **fields)


def step(seq: int, node: str = "n", **more: Any) -> Step:
    return Step(seq=seq, kind="done", node=node, activation=f"{node}#{seq}", at=1000.0 + seq,
                delta={"n": seq}, **more)


def run_ids(runs: list[RunInfo]) -> list[str]:
    return [r.run_id for r in runs]


def seqs(steps: list[Step]) -> list[int]:
    return [s.seq for s in steps]


async def leased(store: Store, run_id: str, owner: str = "w1", ttl: float = 60.0, **more: Any) -> None:
    await store.create_run(info(run_id, **more))
    await store.claim(run_id, owner, ttl)


async def raises(error: type[E], awaitable: Awaitable[Any], *words: str) -> E:
    """Await and require `error`, whose message contains every one of `words`."""
    try:
        await awaitable
    except error as exc:
        missing = [w for w in words if w not in str(exc)]
        assert not missing, f"{type(exc).__name__} message {str(exc)!r} does not mention {missing}"
        return exc
    raise AssertionError(f"expected {error.__name__}")


async def check_create_and_get(store: Store, plant: Plant | None) -> None:
    full = info("r1", graph_ref="m:g", parent_run_id="p", forked_from="p@3", last_seq=3,
                error="boom", waiting=["approve", "review"])
    await store.create_run(full)
    assert await store.get_run("r1") == full
    await raises(RunStateError, store.create_run(info("r1", graph="other")), "r1")
    assert await store.get_run("r1") == full, "a refused duplicate create changed the run"


async def check_create_leased_with_first_snapshot(store: Store, plant: Plant | None) -> None:
    # What start() and fork() write, as one atomic write: the row, its lease, its first snapshot.
    first = Snapshot(seq=2, state={"n": 2}, frontier={"ready": ["a"]})
    before = time.time()
    await store.create_run(info("r", status="waiting", last_seq=2, forked_from="src@2"), owner="w1",
                           ttl=60, snapshot=first)
    run = await store.get_run("r")
    assert (run.status, run.lease_owner, run.last_seq, run.forked_from) == ("running", "w1", 2, "src@2")
    assert before + 59 <= run.lease_expiry <= time.time() + 61
    assert await store.load("r") == (first, []) and await store.snapshot_at("r", 2) == first
    await raises(LeaseError, store.claim("r", "w2", 60), "'r'", "is being executed by", "w1")
    await raises(RunStateError, store.create_run(info("r"), owner="w2", ttl=60,
                                                 snapshot=Snapshot(seq=0, state={"n": 0})), "'r'")
    assert (await store.get_run("r")).lease_owner == "w1", "a refused duplicate create took the lease"
    assert await store.load("r") == (first, []), "a refused duplicate create wrote its snapshot"
    await store.append("r", "w1", [step(3)])  # fenced by the lease it was created with
    await store.release("r", "w1", "done")
    try:
        await store.create_run(info("late", last_seq=1), owner="w1", ttl=60,
                               snapshot=Snapshot(seq=2, state={}))
    except ValueError as exc:
        assert "'late'" in str(exc), str(exc)
    else:
        raise AssertionError("a first snapshot beyond the run's last_seq was accepted")
    await raises(RunNotFoundError, store.get_run("late"), "late")  # refused whole: no row either


async def check_unknown_run(store: Store, plant: Plant | None) -> None:
    calls = [store.get_run("nope"), store.claim("nope", "w", 1), store.renew("nope", "w", 1),
             store.release("nope", "w", "done"), store.append("nope", "w", [step(1)]),
             store.load("nope"), store.history("nope"), store.snapshot_at("nope", 1)]
    for call in calls:
        exc = await raises(RunNotFoundError, call, "nope")
        assert exc.run_id == "nope"


async def check_list_runs(store: Store, plant: Plant | None) -> None:
    for i in range(6):
        await store.create_run(info(f"r{i}", graph="ab"[i % 2], created_at=1000.0 + i))
    await store.claim("r4", "w", 60)
    await store.release("r4", "w", "done")
    assert run_ids(await store.list_runs()) == ["r5", "r4", "r3", "r2", "r1", "r0"], "not newest first"
    assert run_ids(await store.list_runs(graph="a")) == ["r4", "r2", "r0"]
    assert run_ids(await store.list_runs(status="done")) == ["r4"]
    assert run_ids(await store.list_runs(status="running", graph="a")) == ["r2", "r0"]
    assert run_ids(await store.list_runs(limit=2)) == ["r5", "r4"]
    assert await store.list_runs(status="waiting") == []


async def check_claim_renew_release(store: Store, plant: Plant | None) -> None:
    await store.create_run(info("r", status="waiting"))
    before = time.time()
    claimed = await store.claim("r", "w1", 60)
    assert (claimed.lease_owner, claimed.status) == ("w1", "running")
    assert before + 59 <= claimed.lease_expiry <= time.time() + 61
    assert (await store.claim("r", "w1", 60)).lease_owner == "w1", "re-claiming our own lease failed"
    exc = await raises(LeaseError, store.claim("r", "w2", 60), "'r'", "is being executed by", "w1")
    assert exc.run_id == "r"
    await raises(LeaseError, store.renew("r", "w2", 60), "w2")
    await raises(LeaseError, store.release("r", "w2", "done"), "w2")
    await store.renew("r", "w1", 600)
    assert (await store.get_run("r")).lease_expiry >= before + 599
    await store.release("r", "w1", "waiting", waiting=["approve"])
    run = await store.get_run("r")
    assert (run.status, run.waiting, run.lease_owner, run.lease_expiry) == ("waiting", ["approve"], None, 0)
    await raises(LeaseError, store.release("r", "w1", "done"), "w1")
    await raises(LeaseError, store.append("r", "w1", [step(1)]), "w1")
    await store.claim("r", "w2", 60)
    await store.release("r", "w2", "failed", error="node x failed")
    run = await store.get_run("r")
    assert (run.status, run.error, run.waiting) == ("failed", "node x failed", [])


async def check_claim_compare_and_set(store: Store, plant: Plant | None) -> None:
    """A claim naming what its caller saw succeeds only if the run is still that: of many
    concurrent claims that saw one waiting run, exactly one wins (answers are compare-and-set)."""
    await leased(store, "r", "w0")
    await store.append("r", "w0", [step(1), step(2)])
    await store.release("r", "w0", "waiting", waiting=["ask"])
    seen = await store.get_run("r")
    await raises(RunMovedError, store.claim("r", "w1", 60, expect_seq=1), "'r'", "moved on", "1 -> 2")
    await raises(RunMovedError, store.claim("r", "w1", 60, expect_status="failed"),
                 "'r'", "'failed' -> 'waiting'")
    assert await store.get_run("r") == seen, "a refused compare-and-set claim wrote something"
    owners = [f"w{i}" for i in range(1, 9)]
    results = await asyncio.gather(*(store.claim("r", o, 60, expect_seq=2, expect_status="waiting")
                                     for o in owners), return_exceptions=True)
    won = [o for o, r in zip(owners, results, strict=True) if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, f"{len(won)} of 8 concurrent compare-and-set claims won: {won}"
    assert all(isinstance(r, RunMovedError) for r in lost), f"losers raised {lost}"
    assert (await store.get_run("r")).lease_owner == won[0]
    # The winner goes on; a claim that saw the run before that is refused even once it waits again.
    await store.append("r", won[0], [step(3)])
    await store.release("r", won[0], "waiting", waiting=["ask"])
    await raises(RunMovedError, store.claim("r", "late", 60, expect_seq=2, expect_status="waiting"),
                 "2 -> 3")
    assert (await store.claim("r", "w9", 60, expect_seq=3, expect_status="waiting")).lease_owner == "w9"
    # Checked before the lease: a run moved on and held says so, not only that it is held.
    await raises(RunMovedError, store.claim("r", "w1", 60, expect_seq=2), "moved on")
    assert issubclass(RunMovedError, LeaseError)


async def check_expired_lease(store: Store, plant: Plant | None) -> None:
    await leased(store, "r", "w1", ttl=0.05)
    await asyncio.sleep(0.1)
    assert (await store.claim("r", "w2", 60)).lease_owner == "w2", "an expired lease was not taken over"
    await raises(LeaseError, store.append("r", "w1", [step(1)]), "w1")
    await raises(LeaseError, store.renew("r", "w1", 60), "w1")
    await raises(LeaseError, store.release("r", "w1", "done"), "w1")
    await store.append("r", "w2", [step(1)])
    assert [s.seq for s in await store.history("r")] == [1]


async def check_append_fenced(store: Store, plant: Plant | None) -> None:
    await store.create_run(info("free"))
    await raises(LeaseError, store.append("free", "w1", [step(1)]), "free", "w1")
    await leased(store, "r", "w1")
    await store.append("r", "w1", [step(1), step(2)])
    await raises(LeaseError, store.append("r", "intruder", [step(3)]), "intruder")
    await raises(LeaseError, store.append("r", "w1", [step(2)]), "2")  # replayed
    await raises(LeaseError, store.append("r", "w1", [step(4)]), "4")  # gap
    await raises(LeaseError, store.append("r", "intruder", [], Snapshot(seq=2, state={})))
    assert [s.seq for s in await store.history("r")] == [1, 2], "a refused append wrote steps"
    assert await store.snapshot_at("r", 2) is None, "a refused append wrote a snapshot"
    assert (await store.get_run("r")).last_seq == 2
    await store.append("r", "w1", [step(3)])
    assert (await store.get_run("r")).last_seq == 3


async def check_append_keeps_status(store: Store, plant: Plant | None) -> None:
    await leased(store, "r", "w1")
    await store.release("r", "w1", "waiting", waiting=["g"])
    await store.claim("r", "w1", 60)
    await store.append("r", "w1", [step(1)], Snapshot(seq=1, state={"n": 1}))
    run = await store.get_run("r")
    assert (run.status, run.last_seq, run.lease_owner) == ("running", 1, "w1")


async def check_forked_run_continues(store: Store, plant: Plant | None) -> None:
    await leased(store, "fork", "w1", last_seq=5, forked_from="src@5")
    await store.append("fork", "w1", [], Snapshot(seq=5, state={"n": 5}))
    await raises(LeaseError, store.append("fork", "w1", [step(1)]))
    await store.append("fork", "w1", [step(6)])
    snapshot, tail = await store.load("fork")
    assert snapshot == Snapshot(seq=5, state={"n": 5}) and [s.seq for s in tail] == [6]


async def check_load_snapshot_and_tail(store: Store, plant: Plant | None) -> None:
    await leased(store, "r")
    assert await store.load("r") == (None, [])
    await store.append("r", "w1", [], Snapshot(seq=0, state={"n": 0}, frontier={"ready": ["a"]}))
    await store.append("r", "w1", [step(1), step(2)])
    assert await store.load("r") == (Snapshot(seq=0, state={"n": 0}, frontier={"ready": ["a"]}),
                                     [step(1), step(2)])
    await store.append("r", "w1", [step(3)], Snapshot(seq=3, state={"n": 3}))
    await store.append("r", "w1", [step(4), step(5)])
    assert await store.load("r") == (Snapshot(seq=3, state={"n": 3}), [step(4), step(5)])


async def check_history_and_snapshot_at(store: Store, plant: Plant | None) -> None:
    await leased(store, "r")
    await store.append("r", "w1", [step(1), step(2)], Snapshot(seq=2, state={"at": 2}))
    await store.append("r", "w1", [step(3), step(4), step(5)], Snapshot(seq=5, state={"at": 5}))
    assert seqs(await store.history("r")) == [1, 2, 3, 4, 5]
    assert seqs(await store.history("r", after=2)) == [3, 4, 5]
    assert seqs(await store.history("r", upto=3)) == [1, 2, 3]
    assert seqs(await store.history("r", after=1, upto=4)) == [2, 3, 4]
    assert await store.history("r", after=5) == [] and await store.history("r", after=3, upto=3) == []
    assert await store.snapshot_at("r", 1) is None
    snapshots = [await store.snapshot_at("r", s) for s in (2, 4, 5, 99)]
    assert [s and s.state["at"] for s in snapshots] == [2, 2, 5, 5]


async def check_records_round_trip(store: Store, plant: Plant | None) -> None:
    await leased(store, "r")
    rich = Step(seq=1, kind="wait", node="gate", activation="gate#1", at=1.5,
                delta={"text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}, "big": 2**62},
                children=["a#2", "b#3"], extra={"request": {"prompt": "ok?"}})
    await store.append("r", "w1", [rich, Step(seq=2, kind="event", node="", activation="", at=2.0)])
    assert (await store.history("r"))[0] == rich


async def check_group_commit(store: Store, plant: Plant | None) -> None:
    runs = [f"run-{i:03d}" for i in range(100)]
    for run_id in runs:
        await leased(store, run_id, "w1")

    async def appender(run_id: str) -> None:
        for seq in range(1, 11):
            await store.append(run_id, "w1", [step(seq, node=run_id)])

    intruder = store.append(runs[0], "intruder", [step(1)])
    results = await asyncio.gather(intruder, *(appender(r) for r in runs), return_exceptions=True)
    assert isinstance(results[0], LeaseError), f"the intruder's append was not refused: {results[0]!r}"
    assert results[1:] == [None] * 100, [r for r in results[1:] if r is not None][:3]
    await store.close()
    await store.open()
    for run_id in runs:
        assert [(s.seq, s.node) for s in await store.history(run_id)] == [(i, run_id) for i in range(1, 11)]
        assert (await store.get_run(run_id)).last_seq == 10


async def check_corrupt_record(store: Store, plant: Plant | None) -> None:
    await leased(store, "r")
    await store.append("r", "w1", [step(1), step(2), step(3)])
    assert plant is not None, ("store check 'corrupt_record' needs plant=, a function that overwrites "
                               "one step's stored bytes (plant_memory, plant_sqlite); check_store skips it "
                               "without one")
    await plant(store, "r", 2, b"\xc1 not msgpack")
    for call in (store.load("r"), store.history("r", after=1)):
        exc = await raises(CorruptRecordError, call, "'r'", "2")
        assert (exc.run_id, exc.seq) == ("r", 2)
    assert [s.seq for s in await store.history("r", upto=1)] == [1], "an intact step became unreadable"


async def check_newer_record_version(store: Store, plant: Plant | None) -> None:
    await leased(store, "r")
    await store.append("r", "w1", [step(1), step(2, v=RECORD_VERSION + 1)])
    exc = await raises(SchemaVersionError, store.history("r"), "'r'", f"{RECORD_VERSION + 1}")
    assert (exc.run_id, exc.seq) == ("r", 2)


async def check_claim_next_order(store: Store, plant: Plant | None) -> None:
    for run_id, queue, priority, at in (("old", "q", 0, 1.0), ("new", "q", 0, 2.0), ("urgent", "q", 5, 3.0),
                                         ("other", "elsewhere", 9, 0.5)):
        await store.create_run(info(run_id, status="queued", queue=queue, priority=priority, created_at=at))
    await store.create_run(info("waits", status="waiting", queue="q", created_at=0.1))
    await store.create_run(info("no-graph", graph="h", status="queued", queue="q", created_at=0.2))
    got = [await store.claim_next("q", "w1", 60, graphs=["g"]) for _ in range(4)]
    assert [r.run_id if r else None for r in got] == ["urgent", "old", "new", None], \
        "claim_next: highest priority first, then oldest; only its queue's queued runs of `graphs`"
    assert got[0] is not None and (got[0].status, got[0].lease_owner, got[0].queue) == ("running", "w1", "q")
    assert (await store.get_run("urgent")).lease_owner == "w1"
    assert (await store.claim_next("q", "w2", 60)) is not None, "graphs=None claims any graph"
    assert (await store.claim_next("q", "w2", 60)) is None, "a waiting run is not claimable"
    await raises(LeaseError, store.append("old", "w2", [step(1)]), "w1")  # claimed: fenced as claim's


async def check_claim_next_takes_lapsed_leases(store: Store, plant: Plant | None) -> None:
    await store.create_run(info("r", queue="q"), owner="dead", ttl=0.05)
    assert await store.claim_next("q", "w2", 60) is None, "a live lease is not claimable"
    await asyncio.sleep(0.1)  # the lease lapses on the store's clock: nothing else to wait on
    claimed = await store.claim_next("q", "w2", 60)
    assert claimed is not None and claimed.lease_owner == "w2", "a lapsed lease was not taken over"
    await raises(LeaseError, store.append("r", "dead", [step(1)]), "dead")
    await store.release("r", "w2", "done")
    assert await store.claim_next("q", "w3", 60) is None, "a finished run is not claimable"


async def check_claim_next_each_run_once(store: Store, plant: Plant | None) -> None:
    for i in range(8):
        await store.create_run(info(f"r{i}", status="queued", created_at=float(i)))
    got = await asyncio.gather(*(store.claim_next("default", f"w{i}", 60) for i in range(12)))
    claimed = [r.run_id for r in got if r is not None]
    assert sorted(claimed) == [f"r{i}" for i in range(8)], f"concurrent claim_next gave {claimed}"
    for r in got:
        if r is not None:
            assert (await store.get_run(r.run_id)).lease_owner == r.lease_owner


async def check_import_run(store: Store, plant: Plant | None) -> None:
    """A whole run read from one store is written into another as it was, leased to nobody."""
    await store.create_run(info("src", last_seq=0, error="e", created_at=1000.0), owner="w1", ttl=60,
                           snapshot=Snapshot(seq=0, state={"n": 0}))
    await store.append("src", "w1", [step(1), step(2)], Snapshot(seq=2, state={"n": 2}))
    await store.append("src", "w1", [step(3)])
    await store.release("src", "w1", "waiting", error="e", waiting=["ask"])
    source, steps = await store.get_run("src"), await store.history("src")
    snapshots = [await store.snapshot_at("src", 0), await store.snapshot_at("src", 2)]
    copy = structs.replace(source, run_id="copy")
    await store.import_run(copy, steps, [s for s in snapshots if s is not None])
    assert await store.get_run("copy") == copy, "the imported row differs from the one given"
    assert await store.history("copy") == steps and await store.load("copy") == (snapshots[1], [step(3)])
    assert await store.snapshot_at("copy", 1) == snapshots[0]
    await raises(RunStateError, store.import_run(structs.replace(copy, status="done"), [], []), "'copy'")
    assert await store.get_run("copy") == copy, "a refused import changed the run"
    bad: list[tuple[list[Step], list[Snapshot]]] = [([step(1), step(3)], []), ([step(4)], []),
                                                    ([], [Snapshot(seq=9, state={})])]
    for bad_steps, bad_snaps in bad:
        with contextlib.suppress(ValueError):
            await store.import_run(structs.replace(copy, run_id="bad"), bad_steps, bad_snaps)
            raise AssertionError(f"import of steps {seqs(bad_steps)} into a log ending at 3 was accepted")
        await raises(RunNotFoundError, store.get_run("bad"), "bad")
    # A run that was executing where it came from arrives leased to nobody: claimable, and fenced.
    running = structs.replace(copy, run_id="was-running", status="running", lease_owner="elsewhere",
                              lease_expiry=time.time() + 600, queue="q")
    await store.import_run(running, steps, [])
    run = await store.get_run("was-running")
    assert (run.status, run.lease_owner, run.lease_expiry) == ("running", None, 0), run
    await raises(LeaseError, store.append("was-running", "elsewhere", [step(4)]), "elsewhere")
    claimed = await store.claim_next("q", "w2", 60)
    assert claimed is not None and claimed.run_id == "was-running"
    await store.append("was-running", "w2", [step(4)])
    assert seqs(await store.history("was-running")) == [1, 2, 3, 4]


async def check_cache(store: Store, plant: Plant | None) -> None:
    """The node-result cache: a put is read back (bytes as given), replaced by a later put of
    the key, gone once its TTL has passed, kept without one; keys are independent."""
    assert await store.cache_get("g:n:0") is None
    await store.cache_put("g:n:1", b"\x00first", ttl=3600)
    await store.cache_put("g:n:2", b"other")
    assert await store.cache_get("g:n:1") == b"\x00first"
    await store.cache_put("g:n:1", b"second", ttl=3600)
    assert (await store.cache_get("g:n:1"), await store.cache_get("g:n:2")) == (b"second", b"other")
    await store.cache_put("g:n:3", b"brief", ttl=0.05)
    await asyncio.sleep(0.2)  # past its TTL on any clock that moves forward
    assert await store.cache_get("g:n:3") is None
    await store.cache_put("g:n:4", b"later")  # a put after expiry may drop expired entries
    assert [await store.cache_get(k) for k in ("g:n:1", "g:n:2", "g:n:3", "g:n:4")] == [
        b"second", b"other", None, b"later"]
    await store.cache_put("g:n:3", b"again", ttl=3600)  # an expired key can be stored again
    assert await store.cache_get("g:n:3") == b"again"


async def check_limit_slots(store: Store, plant: Plant | None) -> None:
    """Slots of a shared limit: at most `size` held at once; only the holder renews or releases
    its slot; a released or expired slot is claimed again; limits are independent; claims at
    once never give one slot twice."""
    assert [await store.claim_slot("m", 2, h, 60) for h in ("h1", "h2", "h3")] == [0, 1, None]
    assert await store.claim_slot("other", 1, "h3", 60) == 0
    assert await store.renew_slot("m", 0, "h1", 60) is True
    assert await store.renew_slot("m", 0, "h2", 60) is False
    await store.release_slot("m", 0, "h2")  # not its slot: nothing happens
    assert await store.claim_slot("m", 2, "h3", 60) is None
    await store.release_slot("m", 0, "h1")
    assert await store.claim_slot("m", 2, "h3", 60) == 0
    assert await store.claim_slot("brief", 1, "h1", 0.05) == 0
    await asyncio.sleep(0.2)  # past its TTL on any clock that moves forward
    assert await store.claim_slot("brief", 1, "h2", 60) == 0  # expired: taken over
    assert await store.renew_slot("brief", 0, "h1", 60) is False
    got = await asyncio.gather(*(store.claim_slot("many", 3, f"c{i}", 60) for i in range(10)))
    granted = [slot for slot in got if slot is not None]
    assert len(granted) == len(set(granted)) and set(granted) <= {0, 1, 2} and granted
    while (slot := await store.claim_slot("many", 3, "late", 60)) is not None:  # the rest, one by one
        granted.append(slot)
    assert sorted(granted) == [0, 1, 2]


async def check_signals(store: Store, plant: Plant | None) -> None:
    """If the store offers `signals`: a waiter of a queue is woken when a run of that queue is
    queued and notified (not by another queue's); a lock has one holder at a time."""
    signals = signals_of(store)
    if signals is None:
        return  # optional: workers poll such a store
    async with signals.try_lock("conformance") as mine:
        async with signals.try_lock("conformance") as again, signals.try_lock("other") as other:
            assert (mine, again, other) == (True, False, True), "a held lock was taken twice"
    async with signals.try_lock("conformance") as later:
        assert later, "a released lock stayed held"
    await _wakes(store, signals, signals)


async def check_signals_across_objects(store: Store, twin: Store) -> None:
    """Two store objects on one database: a run queued through one wakes a waiter of the
    other; a lock held through one is refused to the other until released."""
    mine, theirs = signals_of(store), signals_of(twin)
    if mine is None or theirs is None:
        return
    async with mine.try_lock("conformance") as first:
        async with theirs.try_lock("conformance") as second:
            assert (first, second) == (True, False), "a lock was held through two store objects"
    async with theirs.try_lock("conformance") as again:
        assert again, "a lock released through one store object stayed held for the other"
    await _wakes(store, mine, theirs)
    assert await theirs.wait("q", 0.05) == "polled", "a wake-up was delivered twice"


async def _wakes(store: Store, queuer: Signals, waiter: Signals) -> None:
    for _ in range(3):  # "listening" first, when a channel opens: anything before it was missed
        if await waiter.wait("q", 0) != "listening":
            break
    waiting = asyncio.ensure_future(waiter.wait("q", 0.3))
    await asyncio.sleep(0)
    await store.create_run(info("s-other", status="queued", queue="other-queue"))
    await queuer.notify("other-queue")
    assert await waiting == "polled", "a run queued in another queue woke a waiter of 'q'"
    waiting = asyncio.ensure_future(waiter.wait("q", 30))
    await asyncio.sleep(0)
    await store.create_run(info("s-here", status="queued", queue="q"))
    await queuer.notify("q")
    assert await waiting == "notified", "a run queued in 'q' did not wake its waiter"


CHECKS: dict[str, Callable[..., Awaitable[None]]] = {
    fn.__name__.removeprefix("check_"): fn
    for fn in (check_create_and_get, check_create_leased_with_first_snapshot, check_unknown_run,
               check_list_runs, check_claim_renew_release, check_claim_compare_and_set,
               check_expired_lease, check_append_fenced, check_append_keeps_status,
               check_forked_run_continues, check_load_snapshot_and_tail, check_history_and_snapshot_at,
               check_records_round_trip, check_group_commit, check_corrupt_record,
               check_newer_record_version, check_claim_next_order, check_claim_next_takes_lapsed_leases,
               check_claim_next_each_run_once, check_import_run, check_cache,
               check_limit_slots, check_signals, check_signals_across_objects)
}
TWIN_CHECKS: dict[str, Callable[[Any, Any], Awaitable[None]]] = {
    "signals_across_objects": check_signals_across_objects}
NEEDS_PLANT = frozenset({"corrupt_record"})
NEEDS_TWIN = frozenset(TWIN_CHECKS)
