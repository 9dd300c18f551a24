"""Engine CPU per node against plain asyncio: the `MemoryStore` chain and its reference.

    python -m bench.engine_cpu                 # N=1000, median of 7, both figures and the ratio
    python -m bench.engine_cpu --n 300 --reps 15

The reference is what the engine cannot avoid: a chain of plain asyncio tasks,
each running the same node function on a pydantic state and reporting its
one-field update through a queue to a driver, which applies it (a pydantic
`model_copy`) and starts the next task. Waypoint's figure is bench row (6), the
same chain run by `waypoint.start` on a `MemoryStore`. Issue 13's target: at
most 4x the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
from typing import Any

from bench.common import clock
from bench.wp import Counter, _step, chain_graph, nostore


async def plain_chain(n: int) -> dict[str, float]:
    """n plain asyncio tasks in a chain, each applying the update `_step` returns."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    state = Counter()

    async def node(state: Counter) -> None:
        queue.put_nowait(await _step(state))

    started = clock()
    for _ in range(n):
        task = asyncio.create_task(node(state))
        state = state.model_copy(update=await queue.get())
        await task
    elapsed = clock() - started
    assert state.n == n
    return {"per_node_ms": elapsed / n * 1e3}


def measure(n: int, reps: int) -> dict[str, float]:
    """Medians of `reps` alternating runs of each side, in microseconds per node."""
    chain_graph(n)  # compiled once, as bench.run does
    asyncio.run(nostore(n))  # warm up: lazily imported modules, caches
    plain: list[float] = []
    engine: list[float] = []
    for _ in range(reps):
        for side, into in ((plain_chain, plain), (nostore, engine)):
            gc.collect()
            into.append(asyncio.run(side(n))["per_node_ms"] * 1e3)
    ref, wp = statistics.median(plain), statistics.median(engine)
    return {"plain_us": ref, "waypoint_us": wp, "ratio": wp / ref}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="nodes in the chain")
    parser.add_argument("--reps", type=int, default=7, help="repetitions (median)")
    args = parser.parse_args(argv)
    result = measure(args.n, args.reps)
    print(f"chain N={args.n}, median of {args.reps}: plain asyncio {result['plain_us']:.1f} us/node, "
          f"waypoint MemoryStore {result['waypoint_us']:.1f} us/node, ratio {result['ratio']:.2f}x "
          "(target <= 4x)")


if __name__ == "__main__":
    main()
