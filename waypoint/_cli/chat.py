"""`waypoint chat`: a conversation with a graph, in a terminal or through a pipe.

    waypoint chat examples/chat.py:graph --thread trip --db chat.db
    printf 'Lisbon?\\n/history\\n/quit\\n' | waypoint chat examples/chat.py:graph --thread trip

Each line read is a message, and its reply is printed; `/history`, `/rewind N`,
`/retry`, `/help` and `/quit` (or the end of input) are commands, and `//text`
sends `/text`. Each turn opens the store, sends and closes it, so the thread
lives only in the database: another terminal or process can carry it on
between turns. A turn that is refused or fails is printed on stderr and the
session goes on; the exit code is then 1 (Ctrl-C: 130, the turn interrupted,
`/retry` finishes it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import click

from waypoint._cli.answers import check_input
from waypoint._cli.common import Db, UsageProblem, dumps, opened, run_async
from waypoint.errors import GraphError, WaypointError

HELP = """commands:
  /history [N] the turns so far (or the last N): step, who, when, message and reply
  /rewind N    go back to before turn N; the thread goes on from there
  /retry       finish a turn that failed or was cut short
  /quit        leave (so does the end of input); the thread stays in the database
  //text       send a message that starts with '/'"""


@dataclass(frozen=True)
class ChatOptions:
    thread: str
    by: str
    gate: str | None = None
    reply: str = "reply"
    input: Any = None


@dataclass
class Session:
    """One `waypoint chat`: the graph, where its thread lives, and whether a turn went wrong."""

    graph: Any
    ref: str
    db: Db
    options: ChatOptions
    failed: bool = False

    def conversation(self, store: Any) -> Any:
        from waypoint import Conversation

        o = self.options
        return Conversation(self.graph, o.thread, store=store, gate=o.gate, reply=o.reply,
                            input=o.input, graph_ref=self.ref)

    def call(self, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        """Run `work(conversation)` in a loop of its own, with the store open only meanwhile."""
        async def main() -> Any:
            async with opened(self.db) as store:
                return await work(self.conversation(store))

        try:
            return run_async(main())
        except WaypointError as exc:
            self.failed = True
            click.echo(f"error: {exc}", err=True)
            return None


def chat_session(graph: Any, ref: str, db: Db, options: ChatOptions) -> None:
    """Read lines until /quit or the end of input; exit 1 if a turn went wrong."""
    session = Session(graph, ref, db, options)
    try:
        session.conversation(None)
    except (GraphError, WaypointError) as exc:  # not a conversation's graph, or a bad thread id
        raise UsageProblem(str(exc)) from None
    check_input(graph, options.input)
    tty = sys.stdin.isatty()
    _greet(session, tty)
    while (line := _read(tty)) is not None:
        if line.strip() and not _handle(session, line.strip()):
            break
    if session.failed:
        raise click.exceptions.Exit(1)


def _greet(session: Session, tty: bool) -> None:
    async def where(chat: Any) -> tuple[Any, int]:
        last = await chat.history(last=1)  # its number is the count: one replay, not one a turn
        return await chat.current_run(), last[0].number if last else 0

    info, turns = session.call(where) or (None, 0)
    if tty:
        held = f"{turns} turn{'' if turns == 1 else 's'} so far" if info is not None else "a new thread"
        click.echo(f"thread {session.options.thread}: {held}; /help for commands, /quit to leave")
    if info is not None and info.status not in ("waiting", "done"):
        click.echo(f"note: the last turn did not finish (run {info.run_id} is {info.status}); "
                   "/retry finishes it, /rewind N drops it", err=True)


def _read(tty: bool) -> str | None:
    if tty:
        try:
            return input("you> ")
        except EOFError:
            return None
    line = sys.stdin.readline()
    return line.rstrip("\r\n") if line else None


def _handle(session: Session, line: str) -> bool:
    """Do what one line asks; False to end the session."""
    if line.startswith("//") or not line.startswith("/"):
        message = line[1:] if line.startswith("//") else line
        by = session.options.by
        _show_reply(session.call(lambda chat: chat.send(message, by=by)))
        return True
    command, _, argument = line.partition(" ")
    if command in ("/quit", "/exit"):
        return False
    if command == "/help":
        click.echo(HELP)
    elif command == "/history":
        _history(session, argument.strip())
    elif command == "/rewind":
        _rewind(session, argument.strip())
    elif command == "/retry":
        _show_reply(session.call(lambda chat: chat.retry()))
    else:
        session.failed = True
        click.echo(f"error: unknown command {command}; /help lists them (send a line starting with "
                   "'/' as '//...')", err=True)
    return True


def _history(session: Session, argument: str) -> None:
    if argument and not argument.isdigit():
        session.failed = True
        click.echo(f"error: /history takes how many of the last turns to show (e.g. /history 5), or "
                   f"nothing for all; got {argument!r}", err=True)
        return
    last = int(argument) if argument else None
    for turn in session.call(lambda chat: chat.history(last=last)) or []:
        _show_turn(turn)


def _rewind(session: Session, argument: str) -> None:
    if not argument.isdigit():
        session.failed = True
        click.echo(f"error: /rewind takes a turn number, as /history shows them (e.g. /rewind 2); "
                   f"got {argument or 'nothing'!r}", err=True)
        return
    turn, by = int(argument), session.options.by
    run_id = session.call(lambda chat: chat.rewind(turn, by=by))
    if run_id is not None:
        click.echo(f"rewound: the thread goes on from before turn {turn} (as run {run_id})")


def _show_reply(reply: Any) -> None:
    if reply is not None:
        click.echo(reply if isinstance(reply, str) else dumps(reply))


def _show_turn(turn: Any) -> None:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(turn.at))
    click.echo(f"turn {turn.number}  step {turn.seq}  {turn.by or 'someone unnamed'}  {when}")
    click.echo(f"  > {turn.message}")
    if turn.replied_seq is None:
        click.echo("  (no reply: the turn did not finish; /retry finishes it)")
        return
    reply = turn.reply if isinstance(turn.reply, str) else dumps(turn.reply)
    for row in reply.splitlines() or [""]:
        click.echo(f"  {row}")
