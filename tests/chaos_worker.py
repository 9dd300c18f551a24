"""One worker process of the chaos suite: `waypoint worker` over tests/chaos_flows.py, logging its claims.

    python tests/chaos_worker.py URL QUEUE CONCURRENCY TTL      ($WAYPOINT_CHAOS_DIR: where to log)

It is what `waypoint worker` runs (engine.worker.Worker on a PostgresStore), with
each line of the worker's log appended to `$WAYPOINT_CHAOS_DIR/claims` as
`time_ns pid line` (O_APPEND, one write a line), so the test knows which owner
held which run when, to the nanosecond of this host's clock. It prints "ready"
once its store is open, and drains on SIGTERM. $WAYPOINT_FAULT arms a fault point
(waypoint/_faults.py): the process SIGKILLs itself there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos_flows import GRAPHS  # noqa: E402
from waypoint.checkpoints.postgres import PostgresStore  # noqa: E402
from waypoint.engine.worker import Worker  # noqa: E402


def log(line: str) -> None:
    fd = os.open(Path(os.environ["WAYPOINT_CHAOS_DIR"]) / "claims", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, f"{time.time_ns()} {os.getpid()} {' '.join(line.split())}\n".encode())
    finally:
        os.close(fd)


async def main(url: str, queue: str, concurrency: int, ttl: float) -> None:
    async with PostgresStore(url, timeout=2.0, connect_timeout=2) as store:
        worker = Worker(GRAPHS, store=store, queue=queue, concurrency=concurrency, ttl=ttl, poll=0.2,
                        grace=5.0, tick=None, log=log)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.drain)
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
