"""A batch run in a child process by tests/test_batch.py: item "crash" SIGKILLs the process once.

    python tests/batch_worker.py DB LOG [crash]

Each item's node writes `started <item>` and `finished <item>` lines to LOG (flushed and
fsynced), so the test can tell which items ran again after the crash.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, SQLiteStore
from waypoint.engine.batch import run_batch


class Item(BaseModel):
    name: str
    shout: str = ""


def note(log: str, line: str) -> None:
    with open(log, "a") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


def build(log: str, crash: bool):
    g = GraphBuilder(Item, name="shouting")

    def shout(state: Item) -> dict:
        note(log, f"started {state.name}")
        if crash and state.name == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        note(log, f"finished {state.name}")
        return {"shout": state.name.upper()}

    g.node(shout)
    g.edge(START, "shout")
    g.edge("shout", END)
    return g.compile()


NAMES = ["a", "b", "c", "crash", "d", "e"]


async def main(db: str, log: str, crash: bool) -> None:
    store = SQLiteStore(db)
    batch = await run_batch(build(log, crash), [{"name": n} for n in NAMES], batch_id="nightly",
                            store=store, concurrency=1)
    print(",".join(s.shout for s in batch.states))
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], len(sys.argv) > 3))
