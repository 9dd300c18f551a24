"""`python -m bench.postgres --quick` runs in CI, so the PostgreSQL bench never rots, and what it counts
holds: a lone run's node costs one commit (1.2 WAL fsyncs per node of a 10-node chain, its creation
and release included), and concurrent runs share commits (group commit)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_quick_bench_runs_and_a_durable_node_costs_one_commit():
    why = pg_server.missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("psycopg", reason='the bench needs psycopg: pip install -e ".[postgres]"')
    done = subprocess.run([sys.executable, "-m", "bench.postgres", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = {(table, cells[0]): cells[1:] for table, block in enumerate(done.stdout.split("\n\n"))
            for cells in (re.split(r"\s*\|\s*", line.strip("| ")) for line in block.splitlines())
            if cells[0].startswith("waypoint + PostgresStore")}
    one_at_a_time, together = rows[1, "waypoint + PostgresStore"], rows[2, "waypoint + PostgresStore"]
    assert float(one_at_a_time[2]) <= 1.3, f"WAL fsyncs per node of a lone run: {one_at_a_time[2]}"
    assert float(together[2]) <= 0.5, f"WAL fsyncs per node of 10 runs at once: {together[2]}"
    assert "io10 (20 runs)" in done.stdout, done.stdout
