"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder.

    server = PgServer.start()              # missing() first: why it cannot start here
    url = server.new_database()            # a fresh database from a migrated template
    server.stop("immediate"); server.restart()
    server.destroy()

Debian's `postgresql` package puts initdb and pg_ctl in /usr/lib/postgresql/<v>/bin
(not on PATH); `pg_config --bindir` or that glob finds them. PostgreSQL refuses to
run as root, so as root every command runs through `runuser -u postgres`, in a
folder that user owns. fsync=off: a test server need not survive power loss (it still
survives `pg_ctl stop -m immediate`: synchronous_commit stays on).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL = "apt-get install postgresql"
TEMPLATE = "waypoint_template"


def bindir() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def missing() -> str | None:
    """Why no test server can be started here (with the command that fixes it), or None."""
    if bindir() is None:
        return f"PostgreSQL's initdb/pg_ctl not found; install them with `{INSTALL}`"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root needs `runuser` (util-linux) to start PostgreSQL as user postgres"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(*, fsync: bool = False) -> Iterator[PgServer]:
    """A started server with its template database, destroyed on exit; skips the test without one.

        with pg_server.running() as server:
            url = server.new_database()
    """
    import pytest

    pytest.importorskip("psycopg", reason='PostgresStore needs psycopg: pip install -e ".[postgres]"')
    pytest.importorskip("psycopg_pool", reason='PostgresStore needs psycopg-pool: pip install -e ".[postgres]"')
    why = missing()
    if why:
        pytest.skip(why)
    server = PgServer.start(fsync=fsync)
    try:
        server.prepare_template()
        yield server
    finally:
        server.destroy()


class PgServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, root: Path, port: int, fsync: bool = False) -> None:
        self.root, self.port, self.bin, self.fsync = root, port, bindir(), fsync
        self.data = root / "data"

    @classmethod
    def start(cls, *, fsync: bool = False) -> PgServer:
        """initdb and start; fsync=True for measurements at PostgreSQL's durable default."""
        root = Path(tempfile.mkdtemp(prefix="waypoint-pg-"))
        server = cls(root, free_port(), fsync)
        if os.geteuid() == 0:  # initdb refuses root: hand the folder to postgres
            shutil.chown(root, "postgres", "postgres")
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--no-sync")
        server.restart()
        return server

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def restart(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c fsync={'on' if self.fsync else 'off'} "
                   f"-c full_page_writes={'on' if self.fsync else 'off'} "
                   f"-c unix_socket_directories={self.root} -c max_connections=200")
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"))

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def prepare_template(self) -> None:
        """A database holding waypoint's schema, copied by every `new_database()`."""
        import asyncio

        from waypoint.checkpoints.postgres import PostgresStore

        self.admin(f"CREATE DATABASE {TEMPLATE}")  # a constant name
        async def migrate() -> None:
            async with PostgresStore(self.url(TEMPLATE)):  # opening creates the schema
                pass

        asyncio.run(migrate())

    def new_database(self, template: str = TEMPLATE) -> str:
        """The URL of a new database: waypoint's schema in place, unless template='template0'."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")  # our own names
        return self.url(name)

    def admin(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser on its own connection; its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = (self.root / "server.log")
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): "
                               f"{done.stderr.strip()} {done.stdout.strip()[-500:]}\n{tail}")
