"""Damaged and hostile records planted in a real SQLite file, read back through the engine.

Every damaged record is a typed error (CorruptRecordError / SchemaVersionError)
that names the run and the step, through `resume`, `state_at`, `history` and
`waypoint show`; the other runs in the file are unaffected and listing works.
Hostile payloads (a pickle whose `__reduce__` would create a marker file,
msgpack extension types) are never executed: a typed error or inert data.
"""

from __future__ import annotations

import os
import pickle
import random
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import msgspec
import pytest

import waypoint as wp
from waypoint.checkpoints.records import Snapshot, Step, decode_snapshot, decode_step
from waypoint.errors import CorruptRecordError, SchemaVersionError

sys.path.insert(0, str(Path(__file__).parent))
import fault_harness as harness  # noqa: E402

pytestmark = pytest.mark.asyncio
GRAPH = harness.gated_graph()
ANSWER = {"approved": True, "comment": "fine"}


async def make_runs(db: Path) -> None:
    """victim and bystander wait at gate approve (steps a, b, wait); finished is done."""
    async with wp.SQLiteStore(db) as store:
        for run_id in ("victim", "bystander", "finished"):
            result = await (await wp.start(GRAPH, store=store, run_id=run_id)).result()
            assert result.status == "waiting"
        for _gate in ("approve", "review"):
            result = await (await wp.resume(GRAPH, "finished", ANSWER, store=store)).result()
        assert result.status == "done"


def row(db: Path, table: str, run_id: str, seq: int) -> bytes:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(f"SELECT payload FROM {table} WHERE run_id = ? AND seq = ?",
                            (run_id, seq)).fetchone()[0]


def plant(db: Path, table: str, run_id: str, seq: int, payload: bytes | None) -> None:
    """Overwrite one record's payload (None deletes the record)."""
    with closing(sqlite3.connect(db)) as conn, conn:
        if payload is None:
            conn.execute(f"DELETE FROM {table} WHERE run_id = ? AND seq = ?", (run_id, seq))
        else:
            conn.execute(f"UPDATE {table} SET payload = ? WHERE run_id = ? AND seq = ?",
                         (payload, run_id, seq))


def garbage(seed: int, size: int = 64) -> bytes:
    rng = random.Random(seed)
    return b"\xc1" + bytes(rng.randrange(256) for _ in range(size))  # 0xc1: never valid msgpack


def step_with(db: Path, seq: int, **changes) -> bytes:
    step = decode_step(row(db, "steps", "victim", seq), run_id="victim", seq=seq)
    return msgspec.msgpack.encode(msgspec.structs.replace(step, **changes))


def snapshot_with(db: Path, **changes) -> bytes:
    snap = decode_snapshot(row(db, "snapshots", "victim", 0), run_id="victim", seq=0)
    return msgspec.msgpack.encode(msgspec.structs.replace(snap, **changes))


def as_plain_map(data: bytes, **changes) -> bytes:
    return msgspec.msgpack.encode({**msgspec.msgpack.decode(data), **changes})


# name -> (how to damage the file, expected error, seq it names, does store.history() see it)
DAMAGE = {
    "garbage step": (lambda db: plant(db, "steps", "victim", 2, garbage(1)), CorruptRecordError, 2, True),
    "truncated step": (lambda db: plant(db, "steps", "victim", 2, row(db, "steps", "victim", 2)[:9]),
                       CorruptRecordError, 2, True),
    "step of wrong types": (lambda db: plant(db, "steps", "victim", 2, as_plain_map(
        row(db, "steps", "victim", 2), seq="two", children={"not": "a list"})), CorruptRecordError, 2, True),
    "delta of wrong type": (lambda db: plant(db, "steps", "victim", 2, step_with(
        db, 2, delta={"n": "not a number"})), CorruptRecordError, 2, False),
    "delta of unknown field": (lambda db: plant(db, "steps", "victim", 2, step_with(
        db, 2, delta={"no_such_field": 1})), CorruptRecordError, 2, False),
    "step from the future": (lambda db: plant(db, "steps", "victim", 2, step_with(db, 2, v=99)),
                             SchemaVersionError, 2, True),
    "missing snapshot": (lambda db: plant(db, "snapshots", "victim", 0, None), CorruptRecordError, None, False),
    "garbage snapshot": (lambda db: plant(db, "snapshots", "victim", 0, garbage(2)), CorruptRecordError, 0, False),
    "snapshot from the future": (lambda db: plant(db, "snapshots", "victim", 0, snapshot_with(db, v=99)),
                                 SchemaVersionError, 0, False),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_a_damaged_record_is_a_typed_error_naming_run_and_step_and_harms_no_other_run(tmp_path, damage):
    db = tmp_path / "runs.db"
    await make_runs(db)
    spoil, expected, seq, history_sees_it = DAMAGE[damage]
    spoil(db)
    victim_rows = {t: [r for r in rows if r[0] == "victim"] for t, rows in harness.dump(db).items()}

    async with wp.SQLiteStore(db) as store:
        with pytest.raises(expected) as err:
            await (await wp.resume(GRAPH, "victim", ANSWER, store=store)).result()
        assert err.value.run_id == "victim" and err.value.seq == seq, (err.value.run_id, err.value.seq)
        assert "'victim'" in str(err.value)
        if seq is not None:
            assert f"seq {seq}" in str(err.value) or f"step {seq}" in str(err.value), str(err.value)
        with pytest.raises(expected):
            await wp.state_at(GRAPH, "victim", store=store)
        if history_sees_it:
            with pytest.raises(expected, match="'victim'"):
                await wp.history("victim", store=store)
        # The others: a waiting run finishes, a finished run reads back, listing works.
        assert (await (await wp.resume(GRAPH, "bystander", ANSWER, store=store)).result()).status == "waiting"
        assert (await wp.state_at(GRAPH, "finished", store=store)).n == 112
        assert {r.run_id for r in await store.list_runs()} == {"victim", "bystander", "finished"}
        assert (await store.get_run("victim")).status == "failed"  # says so, and stays resumable
    after = {t: [r for r in rows if r[0] == "victim"] for t, rows in harness.dump(db).items()}
    assert after["steps"] == victim_rows["steps"] and after["snapshots"] == victim_rows["snapshots"]

    listing = harness.cli("runs", "--db", str(db))
    assert listing.returncode == 0 and all(r in listing.stdout for r in ("victim", "bystander", "finished"))
    shown = harness.cli("show", "victim", "--db", str(db), "--graph", harness.GATED_REF)
    assert shown.returncode == 1, shown.stderr
    assert shown.stderr.startswith("Error: run 'victim'"), shown.stderr  # what, where, then how to fix
    harness.record(f"corruption[{damage}]", records_planted=1, error=expected.__name__)


async def test_a_snapshot_whose_state_does_not_fit_names_the_snapshot(tmp_path):
    db = tmp_path / "runs.db"
    await make_runs(db)
    plant(db, "snapshots", "victim", 0, snapshot_with(db, state={"n": "not a number"}))
    async with wp.SQLiteStore(db) as store:
        with pytest.raises(CorruptRecordError, match="'victim'") as err:
            await wp.state_at(GRAPH, "victim", store=store)
    assert err.value.run_id == "victim"
    assert err.value.seq == 0 and "snapshot" in str(err.value), (err.value.seq, str(err.value)[:80])


async def test_listing_survives_one_damaged_run_row(tmp_path):
    db = tmp_path / "runs.db"
    await make_runs(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE runs SET info = ? WHERE run_id = 'victim'", (garbage(3),))
    async with wp.SQLiteStore(db) as store:
        with pytest.raises(CorruptRecordError, match="'victim'"):
            await store.get_run("victim")  # the damaged run itself: a typed error naming it
        assert (await store.get_run("bystander")).status == "waiting"
        runs = {r.run_id: r for r in await store.list_runs()}
        assert set(runs) == {"victim", "bystander", "finished"}
        assert runs["bystander"].status == "waiting" and runs["finished"].status == "done"
        damaged = runs["victim"]  # still listed, from its columns, and flagged
        assert damaged.graph_hash == "" and "'victim'" in damaged.error and "backup" in damaged.error
        assert [r.run_id for r in await store.list_runs(status="waiting")] == ["bystander", "victim"]
    listing = harness.cli("runs", "--db", str(db))
    assert listing.returncode == 0, listing.stderr
    (line,) = [row for row in listing.stdout.splitlines() if row.startswith("victim ")]
    assert "damaged" in line and "run 'victim': its row cannot be decoded" in listing.stdout
    assert all(r in listing.stdout for r in ("bystander", "finished"))


# -- hostile payloads -------------------------------------------------------------------------
class Boom:
    """Unpickling this runs `touch MARKER`: proof that something executed stored data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def armed(marker: Path) -> bytes:
    return pickle.dumps(Boom(marker))


def ext(payload: bytes, code: int = 1) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, payload)


# name -> plant(db, evil) ; evil is the armed pickle
HOSTILE = {
    "pickle as step": lambda db, evil: plant(db, "steps", "victim", 2, evil),
    "pickle as snapshot": lambda db, evil: plant(db, "snapshots", "victim", 0, evil),
    "pickle in a str field": lambda db, evil: plant(db, "steps", "victim", 2, step_with(db, 2, delta={"note": evil})),
    "pickle in an int field": lambda db, evil: plant(db, "steps", "victim", 2, step_with(db, 2, delta={"n": evil})),
    "pickle in a gate request": lambda db, evil: plant(db, "steps", "victim", 3, step_with(
        db, 3, extra={"prompt": evil, "payload": evil, "schema": {"x": evil}})),
    "ext as step": lambda db, evil: plant(db, "steps", "victim", 2, msgspec.msgpack.encode(ext(evil))),
    "ext in a delta": lambda db, evil: plant(db, "steps", "victim", 2, step_with(
        db, 2, delta={"approval": ext(evil), "note": ext(evil, 42)})),
    "ext in snapshot state": lambda db, evil: plant(db, "snapshots", "victim", 0, snapshot_with(
        db, state={"n": 0, "note": ext(evil, -1)})),
    "ext in a frontier": lambda db, evil: plant(db, "snapshots", "victim", 0, snapshot_with(
        db, frontier={"pending": ext(evil)})),
}


async def test_the_planted_pickle_is_armed(tmp_path):
    """The payload really executes when unpickled, so the tests below mean something."""
    marker = tmp_path / "armed"
    pickle.loads(armed(marker))
    assert marker.exists()


@pytest.mark.parametrize("hostile", list(HOSTILE))
async def test_hostile_payloads_are_never_executed(tmp_path, hostile):
    db, marker = tmp_path / "runs.db", tmp_path / "pwned"
    await make_runs(db)
    HOSTILE[hostile](db, armed(marker))
    outcomes = []

    async def attempt(coro) -> None:
        try:
            value = await coro
            outcomes.append(("ok", value))
        except (CorruptRecordError, SchemaVersionError) as exc:
            assert exc.run_id == "victim"
            outcomes.append(("typed", exc))

    async with wp.SQLiteStore(db) as store:
        await attempt(wp.history("victim", store=store))
        await attempt(wp.state_at(GRAPH, "victim", store=store))
        await attempt(wp.pending_gates(GRAPH, "victim", store=store))
        await attempt(wp.approval_log("victim", store=store))
        await attempt(_resumed(store))
    for kind, value in outcomes:  # what loads is plain data: no object of a type named in the data
        if kind == "ok":
            assert _inert(value), (hostile, value)
    for args in (["show", "victim", "--db", str(db), "--graph", harness.GATED_REF],
                 ["runs", "--db", str(db)]):
        assert harness.cli(*args).returncode in (0, 1)  # and no traceback (harness.cli checks)
    assert harness.cli("show", "victim", "--json", "--db", str(db)).returncode in (0, 1)
    assert not marker.exists(), f"{hostile}: stored data was executed"
    assert any(kind == "typed" for kind, _ in outcomes) or hostile == "pickle in a gate request"
    harness.record(f"hostile[{hostile}]", records_planted=1, typed_errors=sum(k == "typed" for k, _ in outcomes),
                   inert_loads=sum(k == "ok" for k, _ in outcomes), marker_created=False)


async def test_show_json_of_a_step_holding_an_ext_type_is_a_clear_error(tmp_path):
    db, marker = tmp_path / "runs.db", tmp_path / "pwned"
    await make_runs(db)
    HOSTILE["ext in a delta"](db, armed(marker))
    shown = harness.cli("show", "victim", "--json", "--db", str(db))  # asserts: no traceback
    assert shown.returncode == 1 and "run 'victim'" in shown.stderr, shown.stderr[-500:]
    assert "extension type" in shown.stderr
    assert not marker.exists()


async def _resumed(store):
    return await (await wp.resume(GRAPH, "victim", ANSWER, store=store)).result()


INERT = (str, bytes, int, float, bool, type(None), msgspec.msgpack.Ext)


def _inert(value) -> bool:
    """Plain data all the way down (pydantic models and records of ours hold only plain data)."""
    if isinstance(value, INERT):
        return True
    if isinstance(value, dict):
        return all(_inert(k) and _inert(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_inert(v) for v in value)
    if isinstance(value, (Step, Snapshot)):
        return _inert(msgspec.structs.asdict(value))
    if hasattr(value, "model_dump"):
        return _inert(value.model_dump())
    if hasattr(value, "__dataclass_fields__"):
        return _inert(vars(value))
    return False
