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
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine, TypeVar

import click

from waypoint.errors import WaypointError

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


@dataclass(frozen=True)
class Db:
    path: Path
    explicit: bool  # chosen by --db or $WAYPOINT_DB: commands we print repeat it


def resolve_db(option: str | None) -> Db:
    """--db, else $WAYPOINT_DB, else ./waypoint.db."""
    chosen = option or os.environ.get(ENV_DB)
    if chosen:
        return Db(Path(chosen).expanduser().resolve(), True)
    return Db(Path(DEFAULT_DB).resolve(), False)


def existing_db(option: str | None) -> Db:
    """The database of commands that only read or continue runs: it must exist."""
    db = resolve_db(option)
    if not db.path.is_file():
        raise UsageProblem(
            f"no waypoint database at {db.path}; start a run with `waypoint run` first, or "
            f"point at the right file with --db PATH or ${ENV_DB}."
        )
    return db


@asynccontextmanager
async def opened(db: Db) -> AsyncIterator[Any]:
    from waypoint import SQLiteStore

    store = SQLiteStore(db.path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None


class JsonParam(click.ParamType):
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
            return click.get_text_stream("stdin").read()
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

