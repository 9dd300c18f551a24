"""What every command shares: the database, JSON options, errors and exit codes.

Exit codes: 0 when the run finished or is waiting at a gate; 1 when the run
failed or the engine refused (any `WaypointError`, printed as one line); 2 for
bad usage or input (click's own errors, JSON that does not parse, a graph that
does not load, input that does not fit the state, a database that is not there).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from waypoint.errors import RunNotFoundError, WaypointError

T = TypeVar("T")
DEFAULT_DB = "waypoint.db"
ENV_DB = "WAYPOINT_DB"


class UsageProblem(click.ClickException):
    """Bad input on the command line: printed as `Error: ...`, exit 2."""

    exit_code = 2


class Commands(click.Group):
    """A group that turns any WaypointError into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WaypointError as exc:
            raise click.ClickException(str(exc)) from None


URL_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class Db:
    """Where the runs live: an absolute SQLite file path, or a PostgreSQL URL.

        Db.of("runs.db").store()                       # SQLiteStore(/abs/runs.db)
        Db.of("postgresql://u@host/runs").store()      # PostgresStore(url)
    """

    location: str  # absolute when a file: the commands we print repeat it, so they work anywhere

    @classmethod
    def of(cls, text: str) -> Db:
        if text.startswith(URL_SCHEMES):
            return cls(text)
        return cls(str(Path(text).expanduser().resolve()))

    @property
    def is_url(self) -> bool:
        return self.location.startswith(URL_SCHEMES)

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def shown(self) -> str:
        """For messages and printed commands: a URL without its password (libpq finds it in
        $PGPASSWORD or ~/.pgpass), a file as its absolute path."""
        if not self.is_url:
            return self.location
        from waypoint.checkpoints.postgres import safe_url

        return safe_url(self.location)

    def store(self) -> Any:
        """The store this location names, not yet opened: the one place the CLI picks one."""
        if not self.is_url:
            from waypoint import SQLiteStore

            return SQLiteStore(self.path)
        try:
            from waypoint.checkpoints.postgres import PostgresStore
        except ImportError as exc:
            raise UsageProblem(f"--db {self.location.split('://')[0]}://...: {exc}") from None
        return PostgresStore(self.location)


def resolve_db(option: str | None) -> Db:
    """--db, else $WAYPOINT_DB, else ./waypoint.db."""
    return Db.of(option or os.environ.get(ENV_DB) or DEFAULT_DB)


def existing_db(option: str | None) -> Db:
    """The database of commands that only read or continue runs: a file must exist (a
    server is asked when the store opens, and says itself when it cannot be reached)."""
    db = resolve_db(option)
    if not db.is_url and not db.path.is_file():
        raise UsageProblem(
            f"no waypoint database at {db.path}; start a run with `waypoint run` first, or "
            f"point at the right file with --db PATH (or a postgresql:// URL) or ${ENV_DB}."
        )
    return db


@asynccontextmanager
async def opened(db: Db) -> AsyncIterator[Any]:
    store = db.store()
    await store.open()
    try:
        yield store
    except RunNotFoundError as exc:  # the store cannot say which database it is: we can
        raise RunNotFoundError(
            f"no run {exc.run_id!r} in {db.shown}; list the runs there with "
            f"`{command('runs', db=db)}`, or point at the database the run was started with "
            f"(--db PATH or URL, or ${ENV_DB}).", run_id=exc.run_id) from None
    finally:
        await store.close()


async def read_run(db: Db, run_id: str) -> Any:
    """The stored row (`RunInfo`) of `run_id`."""
    from waypoint import get_run

    async with opened(db) as store:
        return await get_run(run_id, store=store)


def command(verb: str, run_id: str | None = None, *options: str, db: Db | None = None) -> str:
    """A `waypoint` command line that works as printed, from any directory.

        command("resume", "-17", "--gate", "ok", db=db)  # waypoint resume --gate ok --db /abs/x.db -- -17

    A run id that starts with '-' would be read as an option, so it goes last, after `--`.
    """
    tail = [*options, *(["--db", db.shown] if db is not None else [])]
    if run_id is None:
        return shlex.join(["waypoint", verb, *tail])
    if run_id.startswith("-"):
        return shlex.join(["waypoint", verb, *tail, "--", run_id])
    return shlex.join(["waypoint", verb, run_id, *tail])


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; Ctrl-C exits 130 and SIGTERM 143, as a shell expects.

    Both cancel the coroutine, so a followed run is interrupted the same way
    (in-flight nodes stopped, lease released, resumable; see `cli._follow`).
    """
    try:
        return asyncio.run(_terminable(coro))
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None


async def _terminable(coro: Coroutine[Any, Any, T]) -> T:
    """`coro`, cancelled by SIGTERM as asyncio.run cancels it on Ctrl-C."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    terminated: list[bool] = []

    def on_sigterm() -> None:
        terminated.append(True)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: default action
        return await coro
    try:
        return await coro
    except asyncio.CancelledError:
        if terminated:
            raise click.exceptions.Exit(128 + signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:  # click 8.1, which pyproject allows, has no type argument on ParamType at runtime
    _ParamType = click.ParamType


class JsonParam(_ParamType):
    """A JSON value given inline, as `@file.json`, or as `-` for stdin."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        text = self._text(value, param, ctx)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.fail(
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} of "
                f"{clip(text, 60)!r}. Quote the whole value for the shell, e.g. "
                "--input '{\"topic\": \"tides\"}'.", param, ctx,
            )
        except RecursionError:
            self.fail(f"JSON nested too deeply to read ({clip(text, 60)!r}); "
                      "flatten the value or pass fewer levels of lists and objects.", param, ctx)

    def _text(self, value: str, param: Any, ctx: Any) -> str:
        if value == "-":
            return sys.stdin.read()
        if value.startswith("@"):
            try:
                return Path(value[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                self.fail(f"cannot read {value[1:]!r}: {exc.strerror}", param, ctx)
        return value


JSON = JsonParam()


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON for people: unicode as is, anything odd as its str()."""
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."

