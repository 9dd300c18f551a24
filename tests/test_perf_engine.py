"""Issue 13, the engine side: behaviour of the fast paths (not their timings).

Snapshots hold append-only lists by reference (engine/_appended.py) and rebuild
them from the log; the lean per-step copy of the state is a model copy.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Annotated, Any

import msgspec
import pytest
from pydantic import BaseModel, PrivateAttr
from waypoint import END, START, GraphBuilder, SQLiteStore, append, fork, resume, start, state_at
from waypoint.checkpoints.records import Snapshot, decode_snapshot, encode
from waypoint.errors import CorruptRecordError
from waypoint.graphs.state import StateSchema

M = 200


class Log(BaseModel):
    items: Annotated[list[str], append] = []
    n: int = 0


class Ok(BaseModel):
    ok: bool


def loop_graph(m: int, gate: bool = False) -> Any:
    g = GraphBuilder(Log, name="loop")

    async def body(state: Log) -> dict[str, Any]:
        return {"items": [f"{len(state.items):04d}" + "x" * 1000], "n": state.n + 1}

    g.node(body, name="body", writes=["items", "n"])
    g.loop_guard("guard", max_iterations=m, routes={"continue": "body", "exhausted": "stop" if gate else END})
    if gate:
        g.gate("stop", Ok)
        g.edge("stop", END)
    g.edge(START, "guard")
    g.edge("body", "guard")
    return g.compile()


async def _snapshots(store: SQLiteStore, run_id: str, last: int) -> list[Snapshot]:
    found: dict[int, Snapshot] = {}
    for seq in range(last + 1):
        snap = await store.snapshot_at(run_id, seq)
        if snap is not None:
            found[snap.seq] = snap
    return [found[s] for s in sorted(found)]


@pytest.mark.asyncio
async def test_a_growing_list_is_snapshotted_by_reference_and_restored_whole(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    graph = loop_graph(M, gate=True)
    result = await (await start(graph, None, store=store)).result()
    assert result.status == "waiting" and len(result.state.items) == M
    snaps = await _snapshots(store, result.run_id, (await store.get_run(result.run_id)).last_seq)
    later = snaps[1:]
    assert later, "a 200 KB loop takes snapshots"
    assert all("items" not in s.state and s.appended["items"][0] == 0 for s in later)
    assert all(s.v == 2 and s.appended["items"][1] == s.state["n"] for s in later)
    assert max(len(encode(s)) for s in later) < 1000, "no snapshot copies the list"
    await store.close()

    store = SQLiteStore(tmp_path / "runs.db")  # a fresh load rebuilds the list from the log
    done = await (await resume(graph, result.run_id, {"ok": True}, store=store)).result()
    assert done.status == "done" and done.state == result.state
    middle = later[len(later) // 2]
    as_of = await state_at(graph, result.run_id, middle.seq + 1, store=store)
    assert len(as_of.items) == middle.appended["items"][1]
    assert as_of.items == result.state.items[:len(as_of.items)]
    forked = await fork(graph, result.run_id, at=middle.seq + 1, store=store)
    assert (await forked.result()).state.items[:len(as_of.items)] == as_of.items
    await store.close()


@pytest.mark.asyncio
async def test_a_snapshot_whose_length_disagrees_with_the_log_is_corrupt(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    graph = loop_graph(M, gate=True)
    result = await (await start(graph, None, store=store)).result()
    last = (await store.get_run(result.run_id)).last_seq
    snap = (await _snapshots(store, result.run_id, last))[-1]
    wrong = msgspec.structs.replace(snap, appended={"items": [0, snap.appended["items"][1] + 1]})
    await store.close()
    with closing(sqlite3.connect(tmp_path / "runs.db")) as conn, conn:
        conn.execute("UPDATE snapshots SET payload = ? WHERE run_id = ? AND seq = ?",
                     (encode(wrong), result.run_id, snap.seq))
    store = SQLiteStore(tmp_path / "runs.db")
    with pytest.raises(CorruptRecordError, match=rf"seq {snap.seq} cannot rebuild field 'items'.*log gives"):
        await (await resume(graph, result.run_id, {"ok": True}, store=store)).result()
    await store.close()


def test_an_old_snapshot_is_read_and_a_plain_one_is_written_as_before() -> None:
    old = msgspec.msgpack.encode({"seq": 3, "state": {"items": ["a"], "n": 1}})  # as version 1 wrote it
    snap = decode_snapshot(old, run_id="r", seq=3)
    assert snap.appended == {} and snap.v == 1 and snap.state["items"] == ["a"]
    assert encode(Snapshot(seq=3, state={"items": ["a"], "n": 1}, frontier={})) == old


def test_a_list_some_validator_may_rewrite_is_snapshotted_whole() -> None:
    from pydantic import field_validator, model_validator

    class Checked(BaseModel):
        items: Annotated[list[str], append] = []

        @field_validator("items")
        @classmethod
        def dedupe(cls, v: list[str]) -> list[str]:
            return sorted(set(v))

    class Whole(BaseModel):
        items: Annotated[list[str], append] = []

        @model_validator(mode="after")
        def fine(self) -> Whole:
            return self

    assert StateSchema(Log).appendable == {"items"}
    assert StateSchema(Checked).appendable == frozenset() == StateSchema(Whole).appendable


def test_the_per_step_copy_is_a_model_copy() -> None:
    class Private(BaseModel):
        n: int = 0
        _seen: int = PrivateAttr(default=7)

    for model in (Log, Private):
        schema, state = StateSchema(model), model()
        new = schema.apply(state, {"n": 2})
        expected = state.model_copy(update={"n": 2})
        assert new == expected and new.model_fields_set == expected.model_fields_set == {"n"}
        assert state.n == 0 and new.__dict__ is not state.__dict__
