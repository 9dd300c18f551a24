"""Schemathesis fuzzes the JSON API from its own OpenAPI document, against a real uvicorn:
no input gives a 500, and every status and content type is one the document declares.

Bounded: a few examples per operation and a time budget of about 30 s (`--max-time`).
The event streams are left out: they are endless by design (tests/test_web_sse.py covers them).
Its stateful phase follows the document's links from a started run to its operations,
so fuzzed answers, forks and cancels reach real runs, not only 404s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_web_api import make_runs
from tests.web_graphs import review_graph
from tests.web_server import served

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


@pytest.mark.timeout(240)
def test_no_input_makes_the_api_fail(tmp_path: Path):
    if shutil.which("schemathesis") is None:
        pytest.skip("needs schemathesis: pip install -e '.[test]'")
    make_runs(tmp_path / "runs.db", 2)
    with served(tmp_path / "runs.db", [review_graph]) as server:
        done = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/api/openapi.json",
             "--checks", CHECKS, "--max-examples", "12", "--max-time", "30", "--seed", "15",
             "--exclude-path", "/api/runs/{run_id}/events", "--exclude-path", "/api/gates/events",
             "--generation-database", "none",
             "--no-color", "--workers", "1", "--request-timeout", "20"],
            capture_output=True, text=True, timeout=200, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1], report
