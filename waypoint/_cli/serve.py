"""`waypoint serve`: the JSON API, live events and pages over a database of runs.

    waypoint serve --db runs.db examples/approval.py:graph                 # http://127.0.0.1:8000/
    waypoint serve --db runs.db flows.py:a flows.py:b --port 9000
    WAYPOINT_TOKEN=s3cret waypoint serve --host 0.0.0.0 --db runs.db flows.py:graph
    waypoint serve --host 0.0.0.0 --users users.txt --db runs.db flows.py:graph
    waypoint serve --hash-password          # prints a line for users.txt: NAME:scrypt$...
    waypoint serve --db runs.db --deps myapp/deps.py:make_deps flows.py:graph   # ctx.deps of its runs

Loopback (127.0.0.1) by default, where no authentication is needed and requests act
as the OS user who started the server; any other address is refused unless a token
(--token or $WAYPOINT_TOKEN) or a users file (`name:hash` lines, hashes from
--hash-password) is given. Runs started or answered here execute in this process
(or, with --enqueue, are queued for `waypoint worker`), with `--deps` as their
`ctx.deps` (a dict, or a function of no arguments returning one, called once at
startup); Ctrl-C or SIGTERM leaves them interrupted, resumable as they are.
"""

from __future__ import annotations

import getpass
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from waypoint._cli.common import Db, UsageProblem

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    token: str | None
    users: Path | None
    allow_hosts: tuple[str, ...]
    enqueue: bool
    deps: str | None = None  # MODULE_OR_FILE:ATTR of a dict, or of a function returning one


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_users(path: Path) -> dict[str, str]:
    """`name:hash` lines (blank lines and # comments skipped) as a dict; UsageProblem if malformed."""
    from waypoint.web.security import check_hash

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageProblem(f"--users {path}: cannot read it ({exc.strerror}).") from None
    users: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, hashed = line.strip().partition(":")
        try:
            if not sep or not name:
                raise ValueError("expected NAME:HASH")
            check_hash(hashed, name)
        except ValueError as exc:
            raise UsageProblem(f"--users {path} line {number}: {exc}") from None
        users[name] = hashed
    if not users:
        raise UsageProblem(f"--users {path}: no users in it; add NAME:HASH lines "
                           "(make a hash with `waypoint serve --hash-password`).")
    return users


def load_deps(ref: str) -> Any:
    """`--deps MODULE_OR_FILE:ATTR`: the object there, called if it is a function of no
    arguments (so clients are made once, at startup); a UsageProblem naming what failed."""
    import importlib
    import runpy

    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise UsageProblem(f"--deps {ref!r} is not MODULE_OR_FILE:ATTR (e.g. myapp/deps.py:deps "
                           "or myapp.deps:make_deps).")
    try:
        if target.endswith(".py") or "/" in target:
            if not Path(target).is_file():
                raise UsageProblem(f"--deps {ref!r}: there is no file {target}.")
            namespace = runpy.run_path(target)
        else:
            namespace = vars(importlib.import_module(target))
        if attr not in namespace:
            raise UsageProblem(f"--deps {ref!r}: {target} defines no {attr!r}.")
        value = namespace[attr]
        return value() if callable(value) and not isinstance(value, type) else value
    except UsageProblem:
        raise
    except Exception as exc:
        raise UsageProblem(f"--deps {ref!r}: loading it raised {type(exc).__name__}: {exc}") from None


def allowed_hosts(settings: ServeSettings) -> list[str]:
    """The Host headers to accept: on loopback the loopback names (DNS rebinding guard);
    elsewhere only --allow-host names, or any ("*") when none are given (authentication guards it)."""
    named = list(settings.allow_hosts)
    if not is_loopback(settings.host):
        return [*named, *(f"{h}:{settings.port}" for h in named)] if named else ["*"]
    names = [*LOOPBACK_NAMES, *named]
    return [*names, *(f"{h}:{settings.port}" for h in names)]


def check_bind(settings: ServeSettings) -> None:
    if not is_loopback(settings.host) and settings.token is None and settings.users is None:
        raise UsageProblem(
            f"refusing to serve on {settings.host} without authentication: anyone who can reach "
            "it could answer gates and start runs. Give a token (--token, or $WAYPOINT_TOKEN) or a "
            "users file (--users FILE, hashes from `waypoint serve --hash-password`), or keep the "
            "default --host 127.0.0.1.")


def serve(graphs: list[tuple[Any, str]], db: Db, settings: ServeSettings) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn's own handling: a graceful shutdown)."""
    import uvicorn

    from waypoint.web.app import create_app
    from waypoint.web.security import Auth

    check_bind(settings)
    users = read_users(settings.users) if settings.users else {}
    auth = Auth(token=settings.token, users=users) if settings.token or users else Auth()
    if settings.deps and settings.enqueue:
        raise UsageProblem("--deps with --enqueue: this server executes no run; give the deps to "
                           "the workers that do.")
    deps = load_deps(settings.deps) if settings.deps else None
    app = create_app(db.store(), [g for g, _ in graphs], refs={g.name: ref for g, ref in graphs},
                     auth=auth, allowed_hosts=allowed_hosts(settings), enqueue=settings.enqueue,
                     owns_store=True, deps=deps)
    who = ("a token" if settings.token else "") + (" and " if settings.token and users else "") + (
        f"{len(users)} user(s)" if users else "")
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(f"waypoint serve: http://{shown}:{settings.port}/  graphs: "
               f"{', '.join(g.name for g, _ in graphs)}  db: {db.shown}  "
               f"auth: {who or 'none (loopback only; acting as ' + _me() + ')'}", err=True)
    # keep-alive longer than clients' own idle expiry (httpx: 5 s), so that the server never
    # closes a connection just as a client sends a POST on it (which clients do not retry)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=3, timeout_keep_alive=30, lifespan="on")
    uvicorn.Server(config).run()


def hash_password_prompt() -> None:
    from waypoint.web.security import hash_password

    name = click.prompt("user name")
    password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    click.echo(f"{name}:{hash_password(password)}")


def _me() -> str:
    from waypoint.web.security import local_user

    return local_user() or getpass.getuser()
