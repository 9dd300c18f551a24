"""The SQLite store's connection thread: one hop per transaction, a daemon, no private API."""

import asyncio
import sqlite3
import subprocess
import sys
import threading

import pytest

from waypoint.checkpoints._sqlite_thread import ConnectionThread


@pytest.mark.asyncio
async def test_calls_run_in_order_in_the_thread_that_owns_the_connection(tmp_path):
    conn = await ConnectionThread.open(str(tmp_path / "x.db"), uri=False, timeout=5.0)
    await conn.run(lambda raw: raw.execute("CREATE TABLE t (v)"))
    writes = [conn.run(lambda raw, v=v: raw.execute("INSERT INTO t VALUES (?)", (v,))) for v in range(50)]
    await asyncio.gather(*writes)
    assert await conn.run(lambda raw: [v for (v,) in raw.execute("SELECT v FROM t")]) == list(range(50))
    assert await conn.run(lambda raw: threading.current_thread().name) == "waypoint-sqlite"
    await conn.close()


@pytest.mark.asyncio
async def test_an_error_in_the_thread_is_raised_to_the_caller_and_the_thread_goes_on(tmp_path):
    conn = await ConnectionThread.open(str(tmp_path / "x.db"), uri=False, timeout=5.0)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await conn.run(lambda raw: raw.execute("SELECT * FROM missing"))
    assert await conn.run(lambda raw: raw.execute("SELECT 1").fetchone()) == (1,)
    await conn.close()


@pytest.mark.asyncio
async def test_a_file_that_cannot_be_opened_is_a_store_error_naming_it(tmp_path):
    from waypoint import SQLiteStore, StoreError

    target = f"file:{tmp_path / 'absent.db'}?mode=ro"
    with pytest.raises(StoreError, match="absent.db"):
        await SQLiteStore(target).get_run("r")


def test_a_store_never_closed_does_not_keep_the_interpreter_from_exiting(tmp_path):
    code = (
        "import asyncio, sys, threading\n"
        "from waypoint import SQLiteStore\n"
        "from waypoint.checkpoints import RunInfo\n"
        "store = SQLiteStore(sys.argv[1])\n"
        "info = RunInfo(run_id='r', graph='g', graph_hash='h', status='running', created_at=0.0, updated_at=0.0)\n"
        "asyncio.run(store.create_run(info))\n"  # opened implicitly, never closed
        "print([t.daemon for t in threading.enumerate() if t.name == 'waypoint-sqlite'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs.db")], capture_output=True,
                         text=True, timeout=60)  # a non-daemon thread would hang here, not fail
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True]"
    db = sqlite3.connect(tmp_path / "runs.db")
    assert db.execute("SELECT run_id FROM runs").fetchall() == [("r",)]  # committed before exit
    db.close()


def test_the_sqlite_store_uses_no_private_api_of_another_library():
    code = ("import sys, waypoint.checkpoints.sqlite\n"
            "print('aiosqlite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # it owns its thread: nothing of aiosqlite's internals
