"""A process of a two-process fleet for tests/test_limits.py: N calls under one Limit(processes=True).

    python tests/limit_worker.py DB DIR TAG N

Each item first marks `arrived-TAG-i` (no limit), then its limited call creates
`holding-TAG-i`, records how many `holding-*` files exist (itself included) in
`count-TAG-i`, waits for `go-TAG-i`, and removes its holding file before returning.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import BaseModel

from waypoint import END, START, GraphBuilder, Limit, SQLiteStore, start

FLEET = Limit("fleet", 2, processes=True)


class S(BaseModel):
    i: int


def build(folder: Path, tag: str):
    g = GraphBuilder(S, name="fleet_calls")

    def arrive(state: S) -> None:
        (folder / f"arrived-{tag}-{state.i}").touch()

    async def call(state: S) -> None:
        holding = folder / f"holding-{tag}-{state.i}"
        holding.touch()
        (folder / f"count-{tag}-{state.i}").write_text(str(len(list(folder.glob("holding-*")))))
        while not (folder / f"go-{tag}-{state.i}").exists():
            await asyncio.sleep(0.01)
        holding.unlink()

    g.node(arrive, writes=[])
    g.node(call, writes=[], limit=FLEET)
    g.edge(START, "arrive")
    g.edge("arrive", "call")
    g.edge("call", END)
    return g.compile()


async def main(db: str, folder: str, tag: str, n: int) -> None:
    store = SQLiteStore(db)
    graph = build(Path(folder), tag)
    handles = [await start(graph, {"i": i}, store=store) for i in range(n)]
    results = [await handle.result() for handle in handles]
    assert all(r.status == "done" for r in results)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
