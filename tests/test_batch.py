"""run_batch: many inputs through one graph, a bounded number at a time, resumable as a whole."""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, MemoryStore, SQLiteStore
from waypoint.engine.batch import item_run_id, run_batch

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "batch_worker.py"


class Item(BaseModel):
    name: str
    shout: str = ""


class Ok(BaseModel):
    ok: bool = True


def shouting(calls: list[str], fail: set[str] = frozenset(), hold=None):
    g = GraphBuilder(Item, name="shouting")

    async def shout(state: Item) -> dict:
        calls.append(state.name)
        if hold is not None:
            await hold(state.name)
        if state.name in fail:
            raise ValueError(f"cannot shout {state.name}")
        return {"shout": state.name.upper()}

    g.node(shout)
    g.edge(START, "shout")
    g.edge("shout", END)
    return g.compile()


@pytest.mark.asyncio
async def test_results_come_back_in_input_order_with_derived_run_ids():
    store = MemoryStore()
    batch = await run_batch(shouting([]), [{"name": n} for n in "abc"], batch_id="b1", store=store,
                            concurrency=2)
    assert [s.shout for s in batch.states] == ["A", "B", "C"]
    assert batch.done == [0, 1, 2] and batch.failed == batch.waiting == []
    assert (await store.get_run("b1/1")).status == "done" and batch.run_id(1) == item_run_id("b1", 1)


@pytest.mark.asyncio
async def test_at_most_concurrency_items_run_at_once():
    in_flight, most, finished = [0], [0], [0]
    go = asyncio.Semaphore(0)

    async def hold(name: str) -> None:
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await go.acquire()
        in_flight[0] -= 1
        finished[0] += 1

    async def until(condition) -> None:  # let the loop run; pytest's timeout is the bound
        while not condition():
            await asyncio.sleep(0)

    task = asyncio.create_task(run_batch(shouting([], hold=hold), [{"name": str(i)} for i in range(7)],
                                         batch_id="bounded", store=MemoryStore(), concurrency=3))
    await until(lambda: in_flight[0] == 3)
    for released in range(1, 8):
        go.release()  # one item may finish: its worker takes the next one, if any is left
        await until(lambda released=released: finished[0] == released
                    and in_flight[0] == min(3, 7 - released))
    batch = await task
    assert most[0] == 3 and len(batch.done) == 7


@pytest.mark.asyncio
async def test_a_failed_item_does_not_stop_the_others_and_a_rerun_resumes_only_it(tmp_path):
    calls: list[str] = []
    inputs = {"x": {"name": "x"}, "y": {"name": "y"}, "z": {"name": "z"}}
    async with SQLiteStore(tmp_path / "runs.db") as store:
        first = await run_batch(shouting(calls, fail={"y"}), inputs, batch_id="keyed", store=store)
        assert first.done == ["x", "z"] and first.failed == ["y"]
        assert "cannot shout y" in str(first.results["y"].error)
        again = await run_batch(shouting(calls), inputs, batch_id="keyed", store=store)  # y fixed
    assert [s.shout for s in again.states] == ["X", "Y", "Z"]
    assert sorted(calls) == ["x", "y", "y", "z"]  # only the failed item ran again


@pytest.mark.asyncio
async def test_items_that_cannot_start_are_reported_and_the_rest_run():
    batch = await run_batch(shouting([]), [{"name": "ok"}, {"nom": "typo"}], batch_id="inputs",
                            store=MemoryStore())
    assert batch.done == [0] and batch.failed == [1]
    assert "nom" in str(batch.errors[1]) and batch.states[1] is None


@pytest.mark.asyncio
async def test_an_item_waiting_at_a_gate_is_reported_and_stays_waiting_on_rerun():
    g = GraphBuilder(Item, name="gated")
    g.gate("check", Ok)
    g.edge(START, "check")
    g.edge("check", END)
    store = MemoryStore()
    graph = g.compile()
    first = await run_batch(graph, [{"name": "a"}], batch_id="g", store=store)
    again = await run_batch(graph, [{"name": "a"}], batch_id="g", store=store)
    assert first.waiting == again.waiting == [0]


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"batch_id": ""}])
def test_bad_arguments_are_refused_before_anything_runs(bad):
    arguments = {"batch_id": "b", "store": MemoryStore(), "concurrency": 2, **bad}
    with pytest.raises(ValueError, match="run_batch"):
        asyncio.run(run_batch(shouting([]), [{"name": "a"}], **arguments))


def test_a_batch_killed_midway_is_carried_on_by_running_it_again(tmp_path):
    """A real process runs the batch one item at a time and is SIGKILLed inside item 'crash';
    running the batch again finishes it, and no item that was done runs again."""
    db, log = tmp_path / "runs.db", tmp_path / "calls.log"
    killed = subprocess.run([sys.executable, str(WORKER), str(db), str(log), "crash"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = log.read_text().splitlines()
    assert before == ["started a", "finished a", "started b", "finished b", "started c", "finished c",
                      "started crash"]
    again = subprocess.run([sys.executable, str(WORKER), str(db), str(log)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "A,B,C,CRASH,D,E"
    after = log.read_text().splitlines()[len(before):]
    assert after == ["started crash", "finished crash", "started d", "finished d", "started e", "finished e"]


GRAPH_FILE = '''
from pathlib import Path
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder

HERE = Path(__file__).parent


class Item(BaseModel):
    name: str
    shout: str = ""


def shout(state: Item) -> dict:
    with open(HERE / "calls.log", "a") as log:
        log.write(state.name + "\\n")
    if state.name == "b" and not (HERE / "fixed").exists():
        raise ValueError("b is not ready")
    return {"shout": state.name.upper()}


g = GraphBuilder(Item, name="cli_batch")
g.node(shout)
g.edge(START, "shout")
g.edge("shout", END)
graph = g.compile()
'''


def test_waypoint_batch_runs_a_file_of_inputs_and_is_carried_on_by_running_it_again(tmp_path):
    (tmp_path / "flows.py").write_text(GRAPH_FILE)
    (tmp_path / "items.jsonl").write_text('{"name": "a"}\n\n{"name": "b"}\n{"name": "c"}\n')
    argv = [sys.executable, "-m", "waypoint.cli", "batch", "flows.py:graph", "--inputs", "items.jsonl",
            "--batch-id", "night", "--concurrency", "2", "--db", str(tmp_path / "runs.db")]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert first.returncode == 1, first.stderr
    assert "2 done, 0 waiting, 1 failed of 3" in first.stdout
    assert "night/1" in first.stdout and "b is not ready" in first.stdout
    again_line = next(line for line in first.stdout.splitlines() if "run the batch again" in line)
    assert again_line.endswith(f"waypoint batch {tmp_path / 'flows.py'}:graph --inputs {tmp_path / 'items.jsonl'} "
                               f"--batch-id night --db {tmp_path / 'runs.db'}")  # as printed, from anywhere
    (tmp_path / "fixed").touch()
    printed = shlex.split(again_line.split(": ", 1)[1])  # run as printed, from another directory
    second = subprocess.run([sys.executable, "-m", "waypoint.cli", *printed[1:]], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "3 done, 0 waiting, 0 failed of 3" in second.stdout
    assert sorted((tmp_path / "calls.log").read_text().split()) == ["a", "b", "b", "c"]  # only b again


def test_waypoint_batch_names_the_line_that_is_not_json(tmp_path):
    (tmp_path / "flows.py").write_text(GRAPH_FILE)
    (tmp_path / "items.jsonl").write_text('{"name": "a"}\n{name: b}\n')
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", "batch", "flows.py:graph", "--inputs",
                           "items.jsonl", "--batch-id", "x", "--db", str(tmp_path / "runs.db")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "--inputs items.jsonl, line 2: not JSON" in done.stderr
    assert not (tmp_path / "calls.log").exists()
