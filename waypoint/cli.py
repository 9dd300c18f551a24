"""The `waypoint` command: run, resume, list, show and draw durable runs.

    waypoint run examples/approval.py:graph --input '{"topic": "tides"}'
    waypoint resume RUN_ID --gate approve --input '{"approved": true}' [--set '{"draft": "x"}']
    waypoint submit examples/approval.py:graph --input '{"topic": "tides"}' --queue default
    waypoint worker examples/approval.py:graph --queue default --concurrency 8
    waypoint runs --status waiting
    waypoint show RUN_ID [--state-at SEQ] [--json]
    waypoint render examples/approval.py:graph --run RUN_ID -o approval.svg
    waypoint fork RUN_ID --at 3 [--set '{"draft": "shorter"}']
    waypoint cancel RUN_ID --reason "customer withdrew"
    waypoint tick
    waypoint copy --from runs.db --to postgresql://db.internal/waypoint
    waypoint check examples/approval.py:graph [--json]
    waypoint chat examples/chat.py:graph --thread trip     (a conversation; /history, /rewind N)
    waypoint serve --db runs.db examples/approval.py:graph      (the API, live events, the inbox)

Runs live in a SQLite file or a PostgreSQL database: --db PATH or --db postgresql://URL,
else $WAYPOINT_DB, else ./waypoint.db.
Exit codes: 0 done or waiting at a gate, 1 the run failed or the engine refused,
2 bad usage or input, 130/143 stopped by Ctrl-C/SIGTERM (the run is left
"interrupted", resumable). The parts live in `waypoint._cli`; this module only
wires them into click, and imports nothing heavy until a command runs.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import click

from waypoint import __version__
from waypoint._cli.common import (
    JSON,
    Commands,
    UsageProblem,
    command,
    existing_db,
    read_run,
    resolve_db,
    run_async,
)
from waypoint._cli.runs import Answer, Edit, Flags, cancel_run, fork_run, marks_of, resume_run, start_run

DB_HELP = ("SQLite file, or postgresql:// URL, of the runs "
           "[default: $WAYPOINT_DB or ./waypoint.db]")
REF = "MODULE_OR_FILE:GRAPH"


def db_option(fn: Any) -> Any:
    return click.option("--db", metavar="PATH|URL", help=DB_HELP)(fn)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="waypoint %(version)s")
def cli() -> None:
    """Durable agent workflows: run a graph, answer its gates, inspect and draw its runs."""


@cli.command()
@click.argument("graph_ref", metavar=REF)
@click.option("--input", "input_", type=JSON, metavar="JSON",
              help="The initial state, as JSON (or @file.json, or - for stdin).")
@db_option
@click.option("--run-id", metavar="ID", help="Use this run id instead of a generated one.")
def run(graph_ref: str, input_: Any, db: str | None, run_id: str | None) -> None:
    """Start a run of a graph and follow it until it finishes, fails or waits at a gate.

    GRAPH names a compiled Graph, a GraphBuilder, or a function of no arguments
    returning one, in a module (pkg.flows:graph) or a file (flows.py:graph).
    """
    from waypoint._cli.answers import check_input
    from waypoint._cli.loading import load_graph

    graph, canonical = load_graph(graph_ref)
    check_input(graph, input_)
    run_async(start_run(graph, canonical, input_, resolve_db(db), run_id))


@cli.command()
@click.argument("graph_ref", metavar=REF)
@click.option("--input", "input_", type=JSON, metavar="JSON",
              help="The initial state, as JSON (or @file.json, or - for stdin).")
@click.option("--queue", default="default", show_default=True, help="The queue workers claim it from.")
@click.option("--priority", default=0, show_default=True, type=int, help="Higher is claimed first.")
@click.option("--run-id", metavar="ID", help="Use this id; submitting it again changes nothing.")
@db_option
def submit(graph_ref: str, input_: Any, queue: str, priority: int, run_id: str | None,
           db: str | None) -> None:
    """Queue a run of a graph for a worker, and return at once (idempotent by --run-id)."""
    from waypoint._cli.answers import check_input
    from waypoint._cli.loading import load_graph
    from waypoint._cli.output import Out
    from waypoint._cli.worker import submit_run

    graph, canonical = load_graph(graph_ref)
    check_input(graph, input_)
    run_async(submit_run(graph, canonical, input_, resolve_db(db), queue, run_id, priority, Out()))


@cli.command()
@click.argument("graph_ref", metavar=REF)
@click.option("--inputs", "source", required=True, metavar="FILE",
              help="JSON Lines (one input a line) or a JSON array; - for stdin.")
@click.option("--batch-id", required=True, metavar="ID",
              help="Item i runs as ID/i; the same ID carries an unfinished batch on.")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(min=1),
              help="Runs executed at once.")
@db_option
def batch(graph_ref: str, source: str, batch_id: str, concurrency: int, db: str | None) -> None:
    """Run many inputs through a graph, a few at a time; run it again to carry it on.

    Finished items are not run again; failed or interrupted ones resume from their
    last committed step. Exit 1 when an item failed.
    """
    from waypoint._cli.batch import batch_run
    from waypoint._cli.loading import load_graph

    graph, canonical = load_graph(graph_ref)
    raise click.exceptions.Exit(run_async(batch_run(graph, canonical, source, resolve_db(db), batch_id,
                                                    concurrency)))


@cli.command()
@click.argument("graph_refs", nargs=-1, required=True, metavar=f"{REF}...")
@db_option
@click.option("--queue", default="default", show_default=True, help="The queue to claim runs from.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(min=1),
              help="Runs executed at once.")
@click.option("--ttl", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a run's lease lasts (renewed every ttl/3); a dead worker's runs are "
              "claimed again once it lapses.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Longest sleep between claims (PostgreSQL wakes workers at once on new work).")
@click.option("--grace", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="On SIGTERM, seconds runs get to finish before they go back to the queue.")
@click.option("--tick", default=30.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between deadline sweeps (one worker at a time); 0: none.")
@click.option("--until-idle", is_flag=True, help="Exit once nothing is claimable and nothing runs.")
@click.option("--once", is_flag=True, help="Claim one batch (up to --concurrency runs), execute it, exit.")
def worker(graph_refs: tuple[str, ...], db: str | None, queue: str, concurrency: int, ttl: float,
           poll: float, grace: float, tick: float, until_idle: bool, once: bool) -> None:
    """Claim queued runs of these graphs and execute them, until SIGTERM or Ctrl-C.

    Runs come from `waypoint submit`, `waypoint resume --enqueue` and workers that
    stopped; a dead worker's runs are claimed again once their lease lapses. On
    SIGTERM the worker claims nothing more, lets its runs finish for --grace
    seconds, hands the rest back to the queue, and exits 0.
    """
    from waypoint._cli.worker import WorkerSettings, serve_worker

    graphs = [_load(ref) for ref in graph_refs]
    settings = WorkerSettings(queue, concurrency, ttl, poll, grace, tick or None, until_idle, once)
    raise click.exceptions.Exit(serve_worker(graphs, resolve_db(db), settings))


@cli.command()
@click.argument("run_id")
@click.option("--input", "input_", type=JSON, metavar="JSON",
              help="The answer to the waiting gate, as JSON (or @file.json, or - for stdin).")
@click.option("--gate", metavar="NAME", help="The gate to answer (needed when several wait).")
@click.option("--by", metavar="WHO", help="Who answers, logged with the answer [default: your user name].")
@db_option
@click.option("--graph", "graph_ref", metavar=REF, help="Load the graph from here instead of "
              "the reference stored with the run.")
@click.option("--allow-graph-change", is_flag=True, help="Resume even though the graph's "
              "structure changed since the run started (when the change is safe for this run).")
@click.option("--force", is_flag=True, help="Resume a run that was cancelled on purpose.")
@click.option("--set", "update", type=JSON, metavar="JSON", help="Change fields of the state "
              "first, as a JSON object (recorded as an edit by --by).")
@click.option("--seen-seq", type=click.IntRange(min=0), metavar="N", help="Apply the answer only "
              "if the run is still at step N, where `waypoint show` read the question: refused, "
              "writing nothing, if someone answered first.")
@click.option("--enqueue", is_flag=True, help="Execute nothing here: record the answer and leave "
              "the run queued for a worker (`waypoint worker`).")
def resume(run_id: str, input_: Any, gate: str | None, by: str | None, db: str | None,
           graph_ref: str | None, allow_graph_change: bool, force: bool, update: Any,
           seen_seq: int | None, enqueue: bool) -> None:
    """Continue a run: answer its waiting gate, or re-run what failed or was interrupted."""
    from waypoint._cli.answers import check_set
    from waypoint._cli.loading import graph_of_run

    if gate is not None and input_ is None:
        raise click.UsageError("--gate needs the answer: --input JSON.")
    where = existing_db(db)
    info, graph, ref = graph_of_run(where, run_id, graph_ref)
    check_set(graph, update)
    if info.status == "cancelled" and not force:
        raise click.ClickException(
            f"run {run_id!r} was cancelled on purpose ({info.error or 'cancelled'}); resume it "
            f"anyway with `{command('resume', run_id, '--force', db=where)}`, or start over from a "
            f"step with `{command('fork', run_id, '--at', '0', db=where)}`.")
    answer = Answer(input_, gate, by or _user())
    flags = Flags(allow_graph_change, force, update, seen_seq)
    if enqueue:
        from waypoint._cli.runs import enqueue_run

        return run_async(enqueue_run(info, graph, answer, where, flags))
    run_async(resume_run(info, graph, ref, answer, where, flags))


@cli.command()
@db_option
@click.option("--status", type=click.Choice(["queued", "running", "waiting", "done", "failed", "interrupted",
                                             "cancelled"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--all", "children", is_flag=True, help="Include the child runs of subgraphs.")
def runs(db: str | None, status: str | None, limit: int, children: bool) -> None:
    """List runs, newest first."""
    from waypoint._cli.inspect import list_runs
    from waypoint._cli.output import Out

    run_async(list_runs(existing_db(db), status, limit, children, Out()))


@cli.command()
@click.argument("run_id")
@db_option
@click.option("--state-at", "seq", type=click.IntRange(min=0), metavar="SEQ",
              help="Show the state as it was right after step SEQ.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON document.")
@click.option("--graph", "graph_ref", metavar=REF, help="Load the graph from here instead of "
              "the reference stored with the run.")
def show(run_id: str, db: str | None, seq: int | None, as_json: bool, graph_ref: str | None) -> None:
    """Show a run: status, waiting gates, state and the ordered history of its steps."""
    from waypoint._cli.inspect import graph_for, show_run
    from waypoint._cli.output import Out

    where = existing_db(db)
    info = run_async(read_run(where, run_id))
    graph, problem = graph_for(info, graph_ref)  # imported outside the loop: it may run itself
    run_async(show_run(where, info, graph, problem, graph_ref, seq, as_json, Out()))


@cli.command()
@click.argument("graph_ref", metavar=REF, required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Write to FILE; .dot, .svg, .png or .mmd (Mermaid) picks the format.")
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot",
              show_default=True, help="Text format printed to stdout when there is no -o.")
@click.option("--run", "run_id", metavar="RUN_ID", help="Draw this run's status, visits and path.")
@db_option
def render(graph_ref: str | None, output: str | None, fmt: str, run_id: str | None,
           db: str | None) -> None:
    """Draw a graph, optionally with a run on it (the run's graph if GRAPH is omitted)."""
    if run_id is None:
        if graph_ref is None:
            raise click.UsageError(f"give the graph ({REF}), a run (--run RUN_ID), or both.")
        return _draw(_load(graph_ref), output, fmt, {})
    from waypoint._cli.loading import graph_of_run

    where = existing_db(db)
    info, graph, _ = graph_of_run(where, run_id, graph_ref)
    marks = run_async(marks_of(info, graph, where))
    _draw(graph, output, fmt, {"status": marks.status, "visits": marks.visits, "path": marks.path})


def _draw(graph: Any, output: str | None, fmt: str, options: dict[str, Any]) -> None:
    from waypoint.graphs.render import render_to_file

    try:
        if output is None:
            click.echo(graph.render(fmt, **options), nl=False)
        else:
            render_to_file(graph, output, **options)
            click.echo(f"wrote {output}", err=True)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


@cli.command()
@click.argument("graph_ref", metavar=REF)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
def check(graph_ref: str, as_json: bool) -> None:
    """Analyse a graph without running it: each problem with its fix, warnings, and the bound.

    GRAPH may be a GraphBuilder, a compiled Graph or a function returning one.
    Exit 0 when it compiles, 1 when it has problems, 2 when GRAPH does not load.
    """
    from waypoint._cli.check import check_command
    from waypoint._cli.output import Out

    code = check_command(graph_ref, as_json, Out())
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@click.argument("run_id")
@click.option("--at", "seq", type=click.IntRange(min=0), metavar="SEQ",
              help="Fork right after this step [default: the run's last step].")
@click.option("--run-id", "new_id", metavar="ID", help="Use this id for the new run.")
@click.option("--set", "update", type=JSON, metavar="JSON", help="Change fields of the state "
              "first, as a JSON object: --set '{\"draft\": \"shorter\"}' (recorded as an edit).")
@click.option("--by", metavar="WHO", help="Who made the --set edit [default: your user name].")
@db_option
@click.option("--graph", "graph_ref", metavar=REF, help="Load the graph from here instead of "
              "the reference stored with the run.")
def fork(run_id: str, seq: int | None, new_id: str | None, update: Any, by: str | None,
         db: str | None, graph_ref: str | None) -> None:
    """Start a new run from RUN_ID's state and pending work right after step SEQ.

    The original run is untouched; see its steps with `waypoint show RUN_ID`.
    """
    from waypoint._cli.answers import check_set
    from waypoint._cli.loading import graph_of_run

    where = existing_db(db)
    info, graph, ref = graph_of_run(where, run_id, graph_ref)
    check_set(graph, update)
    edit = None if update is None else Edit(update, by or _user())
    run_async(fork_run(info, graph, ref, seq, new_id, where, edit))


@cli.command()
@click.argument("run_id")
@db_option
@click.option("--reason", metavar="TEXT", help="Why, recorded in the run's log.")
@click.option("--by", metavar="WHO", help="Who cancels, recorded [default: your user name].")
def cancel(run_id: str, db: str | None, reason: str | None, by: str | None) -> None:
    """Cancel a run on purpose: it stops for good (`resume --force` still can continue it).

    A run stopped by Ctrl-C or SIGTERM is "interrupted", not cancelled: resume it as it is.
    """
    run_async(cancel_run(run_id, existing_db(db), reason, by or _user()))


@cli.command()
@db_option
def tick(db: str | None) -> None:
    """Escalate every waiting gate whose deadline has passed (run it from cron).

    Each due run is resumed with the graph stored with it and takes its gate's
    escalation route. Exit 1 when a due run could not be resumed.
    """
    from waypoint._cli.ops import tick_runs
    from waypoint._cli.output import Out

    if not run_async(tick_runs(existing_db(db), Out())):
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("graph_refs", nargs=-1, metavar=f"{REF}...")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; other than loopback needs --token or --users.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="WAYPOINT_TOKEN", metavar="TOKEN",
              help="A shared token: `Authorization: Bearer TOKEN`, or typed in the login form "
              "[$WAYPOINT_TOKEN].")
@click.option("--users", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="NAME:HASH lines of people who log in (hashes from --hash-password).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also accept this Host header (a name the server is reached by).")
@click.option("--enqueue", is_flag=True, help="Execute nothing here: queue started and answered "
              "runs for `waypoint worker`.")
@click.option("--hash-password", is_flag=True, help="Print a NAME:HASH line for --users and exit.")
@click.option("--deps", metavar="MODULE_OR_FILE:ATTR", help="The runs' ctx.deps: a dict, or a function "
              "of no arguments returning one (called once, at startup).")
def serve(graph_refs: tuple[str, ...], db: str | None, host: str, port: int, token: str | None,
          users: Path | None, allow_hosts: tuple[str, ...], enqueue: bool, hash_password: bool,
          deps: str | None) -> None:
    """Serve the JSON API, live run events and the pages where people answer gates.

    Binds 127.0.0.1:8000 by default; open http://127.0.0.1:8000/ for the inbox.
    """
    from waypoint._cli.loading import load_graph
    from waypoint._cli.serve import ServeSettings, check_bind, hash_password_prompt
    from waypoint._cli.serve import serve as serve_forever

    if hash_password:
        hash_password_prompt()
        return
    if not graph_refs:
        raise click.UsageError("name the graphs to serve, e.g. "
                               "waypoint serve --db runs.db examples/approval.py:graph")
    settings = ServeSettings(host, port, token, users, allow_hosts, enqueue, deps)
    check_bind(settings)
    serve_forever([load_graph(ref) for ref in graph_refs], resolve_db(db), settings)


@cli.command()
@click.argument("graph_ref", metavar=REF)
@click.option("--thread", required=True, metavar="ID",
              help="The thread: its first message starts it, later ones (from any process) carry it on.")
@db_option
@click.option("--by", metavar="WHO",
              help="Who sends the messages, logged with each [default: your user name].")
@click.option("--gate", metavar="NAME",
              help="The gate that takes the messages [default: the graph's only gate].")
@click.option("--reply", "reply_field", default="reply", show_default=True, metavar="FIELD",
              help="The state field that holds the reply.")
@click.option("--input", "input_", type=JSON, metavar="JSON",
              help="The thread's first state, as JSON, used when the thread starts.")
def chat(graph_ref: str, thread: str, db: str | None, by: str | None, gate: str | None, reply_field: str,
         input_: Any) -> None:
    """Hold a conversation with a graph: each line read is a message, each reply is printed.

    Commands: /history, /rewind N, /retry, /help, /quit (or the end of input). Works
    piped: printf 'hi\\n/history\\n' | waypoint chat flows.py:graph --thread t1.
    """
    from waypoint._cli.chat import ChatOptions, chat_session
    from waypoint._cli.loading import load_graph

    graph, canonical = load_graph(graph_ref)
    options = ChatOptions(thread, by or _user(), gate, reply_field, input_)
    chat_session(graph, canonical, resolve_db(db), options)


@cli.command("copy")
@click.option("--from", "source", required=True, metavar="PATH|URL",
              help="The database to copy from (only read): a SQLite file or a postgresql:// URL.")
@click.option("--to", "dest", required=True, metavar="PATH|URL",
              help="The database to copy into (a new SQLite file is created).")
@click.option("--run", "run_ids", multiple=True, metavar="RUN_ID", help="Copy only this run (repeatable).")
def copy_(source: str, dest: str, run_ids: tuple[str, ...]) -> None:
    """Copy runs, exactly, from one database to another (SQLite or PostgreSQL, either way).

    A run already there with the same steps is skipped; one whose log differs is
    reported and not overwritten (exit 1). A run that was running at the source
    arrives interrupted: resume it at the destination once it has stopped there.
    """
    from waypoint._cli.common import Db
    from waypoint._cli.copy import copy_command
    from waypoint._cli.output import Out

    src, dst = existing_db(source), Db.of(dest)
    if src == dst:
        raise UsageProblem(f"--from and --to are the same database ({src.shown}); name another --to.")
    if not run_async(copy_command(src, dst, list(run_ids) or None, Out())):
        raise click.exceptions.Exit(1)


# -- helpers --------------------------------------------------------------------------
def _load(ref: str) -> Any:
    from waypoint._cli.loading import load_graph

    return load_graph(ref)[0]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (e.g. a bare container)
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    """The console script: `waypoint ...`."""
    cli.main(args=argv, prog_name="waypoint")


if __name__ == "__main__":
    main(sys.argv[1:])
