"""`waypoint submit` and `waypoint worker`: queue runs, and execute queued runs.

    waypoint submit flows.py:graph --input '{"topic": "tides"}' --queue default [--priority 5]
    waypoint worker flows.py:graph other.py:graph --db postgresql://... --queue default --concurrency 8

`submit` records the run with status "queued" (`waypoint.submit`) and returns;
a worker (`waypoint.engine.worker.Worker`) claims and executes it. SIGTERM or
Ctrl-C drains the worker: it claims nothing more, lets its runs finish for
--grace seconds, hands the rest back to the queue, and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any, NamedTuple

import click

from waypoint._cli.common import Db, command, opened
from waypoint._cli.output import Out


async def submit_run(graph: Any, ref: str, input_: Any, db: Db, queue: str, run_id: str | None,
                     priority: int, out: Out) -> None:
    from waypoint.engine.queue import submit

    async with opened(db) as store:
        info = await submit(graph, input_, store=store, queue=queue, run_id=run_id, priority=priority,
                            graph_ref=ref)
    out.line(f"run_id: {info.run_id}")
    out.line(f"status: {info.status} (queue {info.queue}, priority {info.priority})")
    out.line(f"show:   {command('show', info.run_id, db=db)}")


class WorkerSettings(NamedTuple):
    """`waypoint worker`'s options, as `Worker` names them."""

    queue: str
    concurrency: int
    ttl: float
    poll: float
    grace: float
    tick: float | None
    until_idle: bool
    once: bool = False


def serve_worker(graphs: list[Any], db: Db, settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM/Ctrl-C (drained: exit 0) or, with --until-idle, until idle."""
    return asyncio.run(_serve(graphs, db, settings))


async def _serve(graphs: list[Any], db: Db, settings: WorkerSettings) -> int:
    from waypoint.engine.worker import Worker

    async with opened(db) as store:
        worker = Worker(graphs, store=store, queue=settings.queue, concurrency=settings.concurrency,
                        ttl=settings.ttl, poll=settings.poll, grace=settings.grace, tick=settings.tick,
                        log=_say)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _drain, worker, sig)
        _say(f"worker started: queue {settings.queue!r}, graphs {sorted(worker.graphs)}, concurrency "
             f"{settings.concurrency}, ttl {settings.ttl:g}s, db {db.shown}")
        try:
            stats = await worker.run(until_idle=settings.until_idle, once=settings.once)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    ended = ", ".join(f"{status} {n}" for status, n in sorted(stats.ended.items())) or "none"
    _say(f"worker stopped: claimed {stats.claimed}; ended {ended}; lost {stats.lost}; handed back "
         f"{stats.requeued}; woken by notify {stats.notified}; deadline sweeps {stats.ticks}")
    return 0


def _drain(worker: Any, sig: signal.Signals) -> None:
    again = " again: handing back what runs now" if worker.draining else ""
    _say(f"{sig.name}{again}: draining (no new claims)")
    worker.drain()


def _say(line: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stdout)
    sys.stdout.flush()
