"""`--db postgresql://...`: every command that takes a file takes a PostgreSQL URL too.

Real processes against the session's throwaway server (tests/pg_server.py, the `pg` and `url`
fixtures of tests/conftest.py); skipped, with the install command, where PostgreSQL is missing.
"""

from __future__ import annotations

import pytest
from tests.test_cli import EXAMPLE, resume_command, wp

INSTALL = 'pip install -e ".[postgres]"'
pytest.importorskip("psycopg", reason=f"--db postgresql:// needs psycopg: {INSTALL}")
pytest.importorskip("psycopg_pool", reason=f"--db postgresql:// needs psycopg-pool: {INSTALL}")



def run_id_of(output: str) -> str:
    return next(x.split(": ", 1)[1] for x in output.splitlines() if x.startswith("run_id: "))


def test_run_resume_and_every_reading_command_on_a_url(url, tmp_path):  # noqa: F811
    done = wp("run", EXAMPLE, "--input", '{"topic": "tides"}', "--db", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stdout)
    assert f"db:     {url}" in done.stdout
    assert not list(tmp_path.iterdir())  # no SQLite file was made beside it
    listed = wp("runs", "--status", "waiting", "--db", url)
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr
    shown = wp("show", run_id, "--db", url)
    assert "status: waiting at approve" in shown.stdout, shown.stderr
    drawn = wp("render", "--run", run_id, "--format", "mermaid", "--db", url)
    assert drawn.returncode == 0 and "approve" in drawn.stdout, drawn.stderr
    argv = resume_command(done.stdout)  # the printed command names the URL: it works as printed
    assert argv[-2:] == ["--db", url]
    resumed = wp(*argv)
    assert resumed.returncode == 0 and "status: done" in resumed.stdout, resumed.stderr
    forked = wp("fork", run_id, "--at", "0", "--run-id", "again", "--db", url)
    assert forked.returncode == 0, forked.stderr
    assert wp("cancel", "again", "--reason", "test", "--db", url).returncode == 0
    assert "cancelled" in wp("show", "again", "--db", url).stdout
    assert wp("tick", "--db", url).returncode == 0


def test_an_unknown_run_names_the_database_without_its_password(pg):  # noqa: F811
    secret = pg.new_database().replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    done = wp("show", "nope", "--db", secret)
    assert done.returncode == 1
    assert "no run 'nope' in postgresql://postgres@" in done.stderr
    assert "s3cret" not in done.stderr
