"""What `run`, `resume`, `fork`, `cancel` and `render --run` do once click has parsed them.

    run_async(start_run(graph, ref, input_, db, run_id))      # follows it, then reports

Each receives a graph already imported (outside the event loop: a graph file may
run itself at import) and opens the database itself. A followed run that is
stopped by Ctrl-C or SIGTERM is interrupted (resumable as it is), never cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import click

from waypoint._cli.common import Db, UsageProblem, command, opened
from waypoint.errors import WaypointError


class Answer(NamedTuple):
    value: Any  # the parsed --input, or None
    gate: str | None
    by: str


class Edit(NamedTuple):
    update: dict[str, Any]  # --set: fields of the state to change
    by: str


class Flags(NamedTuple):  # resume's keyword arguments, as the library names them
    allow_graph_change: bool
    force: bool
    update: dict[str, Any] | None = None  # --set
    seen_seq: int | None = None  # --seen-seq


async def start_run(graph: Any, ref: str, input_: Any, db: Db, run_id: str | None) -> None:
    from waypoint import start
    from waypoint._cli.live import report
    from waypoint._cli.output import Out

    out = Out()
    async with opened(db) as store:
        try:
            handle = await start(graph, input_, store=store, run_id=run_id, graph_ref=ref)
        except WaypointError as exc:  # nothing was created: the input is what is wrong
            raise UsageProblem(str(exc)) from None
        header(out, handle.run_id, graph, ref, db)
        await report(await follow_run(handle, graph, out, db), graph, store, db, out)


async def resume_run(info: Any, graph: Any, ref: str, answer: Answer, db: Db, flags: Flags) -> None:
    from waypoint import resume
    from waypoint._cli.changes import graph_change
    from waypoint._cli.live import finished_run, report
    from waypoint._cli.output import Out
    from waypoint.errors import GraphChangedError

    out = Out()
    async with opened(db) as store:
        if info.status == "done":
            raise click.ClickException(await finished_run(store, info, db))
        try:
            handle = await resume(graph, info.run_id, answer.value, gate=answer.gate, by=answer.by,
                                  store=store, **flags._asdict())
        except GraphChangedError:
            change = await graph_change(graph, store, info)
            raise click.ClickException(change.explain(db) if change else "the graph changed") from None
        header(out, info.run_id, graph, ref, db)
        await report(await follow_run(handle, graph, out, db), graph, store, db, out)


async def enqueue_run(info: Any, graph: Any, answer: Answer, db: Db, flags: Flags) -> None:
    """`resume --enqueue`: the answer recorded, the run left queued for a worker."""
    from waypoint import resume
    from waypoint._cli.changes import graph_change
    from waypoint._cli.output import Out
    from waypoint.errors import GraphChangedError

    async with opened(db) as store:
        try:
            queued = await resume(graph, info.run_id, answer.value, gate=answer.gate, by=answer.by,
                                  store=store, enqueue=True, **flags._asdict())
        except GraphChangedError:
            change = await graph_change(graph, store, info)
            raise click.ClickException(change.explain(db) if change else "the graph changed") from None
    out = Out()
    out.line(f"run_id: {queued.run_id}")
    out.line(f"status: {queued.status} (queue {queued.queue}): a worker of that queue executes it")
    out.line(f"show:   {command('show', queued.run_id, db=db)}")


async def fork_run(info: Any, graph: Any, ref: str, seq: int | None, new_id: str | None, db: Db,
                   edit: Edit | None = None) -> None:
    from waypoint import fork
    from waypoint._cli.live import report
    from waypoint._cli.output import Out

    out = Out()
    async with opened(db) as store:
        at = info.last_seq if seq is None else seq
        update, by = (None, None) if edit is None else edit
        handle = await fork(graph, info.run_id, at=at, store=store, run_id=new_id, update=update, by=by)
        header(out, handle.run_id, graph, ref, db)
        out.line(f"forked: from {info.run_id} after step {at}")
        await report(await follow_run(handle, graph, out, db), graph, store, db, out)


async def cancel_run(run_id: str, db: Db, reason: str | None, by: str) -> None:
    from waypoint import cancel
    from waypoint._cli.output import STATUS_STYLES, Out

    async with opened(db) as store:
        info = await cancel(run_id, store=store, reason=reason, by=by)
    Out().line(f"{run_id}  ", (info.status, STATUS_STYLES.get(info.status)),
               f"  resume anyway with: {command('resume', run_id, '--force', db=db)}")


async def marks_of(info: Any, graph: Any, db: Db) -> Any:
    from waypoint._cli.changes import graph_change
    from waypoint.engine.marks import run_marks

    async with opened(db) as store:
        change = await graph_change(graph, store, info)
        try:
            marks = await run_marks(graph, info.run_id, store=store)
        except Exception:  # the log names what this graph lacks: its marks cannot be placed
            if change is None:
                raise
            raise click.ClickException(
                f"cannot draw run {info.run_id!r} on this graph: {change.what()}. Draw the graph "
                f"without --run, or the run on the graph it started with (--graph "
                f"MODULE_OR_FILE:GRAPH naming a copy of it).") from None
        if change is not None:
            click.echo(f"warning: {change.what()}; the marks may not fit this drawing.", err=True)
        return marks


async def follow_run(handle: Any, graph: Any, out: Any, db: Db) -> Any:
    from waypoint._cli.live import follow, resume_command

    try:
        return await follow(handle, graph, out)
    except BaseException:  # Ctrl-C or SIGTERM (a cancellation here), or a display bug: stop cleanly
        await asyncio.shield(handle.interrupt())  # not cancel(): stopping here decides nothing
        click.echo(f"interrupted: run {handle.run_id} is saved and stays resumable: "
                   f"{resume_command(handle.run_id, None, None, db)}", err=True)
        raise


def header(out: Any, run_id: str, graph: Any, ref: str, db: Db) -> None:
    out.line(f"run_id: {run_id}")
    out.line(f"graph:  {graph.name} ({ref})")
    out.line(f"db:     {db.shown}")
