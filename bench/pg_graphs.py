"""The graphs `bench.postgres` gives its worker processes (`waypoint worker bench.pg_graphs:chain10`).

chain10: ten nodes that add one to a counter (the engine and the store, nothing else);
io10: ten nodes that each await 50 ms first, as a node waiting on an LLM or an API would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.wp import Counter, _add_chain, chain_graph
from waypoint import END, GraphBuilder

NODES = 10
IO_SECONDS = 0.05


async def _io_step(state: Counter) -> dict[str, Any]:
    await asyncio.sleep(IO_SECONDS)
    return {"n": state.n + 1}


def io_graph(n: int = NODES) -> Any:
    g = GraphBuilder(Counter, name=f"io{n}")
    g.edge(_add_chain(g, n, _io_step), END)
    return g.compile()


chain10 = chain_graph(NODES)
io10 = io_graph()
