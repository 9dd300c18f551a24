"""`waypoint serve` as people start it: a real subprocess, answered over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from tests.test_web_api import GOOD, settled
from tests.web_server import wait_until_serving

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_a_gate_and_stops_cleanly_on_sigterm_with_a_stream_open(tmp_path: Path):
    port = free_port()
    db = tmp_path / "runs.db"
    command = [sys.executable, "-m", "waypoint.cli", "serve", "--db", str(db), "--port", str(port),
               "tests/web_graphs.py:review_graph"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WAYPOINT_TOKEN": "", "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/" in banner and "graphs: review" in banner and str(db) in banner
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_serving(client)  # the banner comes just before uvicorn binds
            started = client.post("/api/runs", json={"graph": "review", "input": {"title": "cli"}})
            run_id = started.json()["run_id"]
            assert settled(client, run_id)["status"] == "waiting"
            assert client.post(f"/api/runs/{run_id}/resume", json={"answer": GOOD}).status_code == 202
            assert settled(client, run_id)["status"] == "done"
            assert started.json()["graph_ref"].endswith("web_graphs.py:review_graph")  # for `waypoint resume`
            other = client.post("/api/runs", json={"graph": "review", "input": {"title": "open"}}).json()
            assert settled(client, other["run_id"])["status"] == "waiting"
            with client.stream("GET", f"/api/runs/{other['run_id']}/events") as response:
                next(response.iter_lines())  # the stream is open and waits for the run to move
                proc.send_signal(signal.SIGTERM)
                # uvicorn shuts down (streams closed, runs interrupted, store closed), then lets
                # SIGTERM end the process, as a shell expects (exit status 143)
                assert proc.wait(30) == -signal.SIGTERM
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


GRAPH_FILE = '''
from pydantic import BaseModel
from waypoint import END, START, GraphBuilder, NodeContext

class Greeting(BaseModel):
    name: str
    text: str = ""

g = GraphBuilder(Greeting, name="greet")

@g.node
def greet(state: Greeting, ctx: NodeContext) -> dict:
    return {"text": ctx.deps["salutation"] + ", " + state.name}

g.edge(START, "greet")
g.edge("greet", END)
graph = g.compile()
'''


def test_serve_gives_runs_the_deps_named_by_deps(tmp_path: Path):
    (tmp_path / "flows.py").write_text(GRAPH_FILE)
    (tmp_path / "deps.py").write_text("def make_deps():\n    return {'salutation': 'Hello'}\n")
    port = free_port()
    command = [sys.executable, "-m", "waypoint.cli", "serve", "--db", str(tmp_path / "runs.db"), "--port",
               str(port), "--deps", f"{tmp_path / 'deps.py'}:make_deps", f"{tmp_path / 'flows.py'}:graph"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WAYPOINT_TOKEN": "", "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stderr is not None
        assert "graphs: greet" in proc.stderr.readline()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until_serving(client)  # the banner comes just before uvicorn binds
            started = client.post("/api/runs", json={"graph": "greet", "input": {"name": "Ana"}})
            run_id = started.json()["run_id"]
            assert settled(client, run_id)["status"] == "done"
            assert client.get(f"/api/runs/{run_id}/state").json()["state"]["text"] == "Hello, Ana"
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_deps_reference_that_does_not_load_is_a_usage_error(tmp_path: Path):
    (tmp_path / "flows.py").write_text(GRAPH_FILE)
    (tmp_path / "deps.py").write_text("deps = {'salutation': 'Hi'}\n")
    command = [sys.executable, "-m", "waypoint.cli", "serve", "--db", str(tmp_path / "runs.db"), "--port",
               str(free_port()),
               "--deps", f"{tmp_path / 'deps.py'}:missing", f"{tmp_path / 'flows.py'}:graph"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "WAYPOINT_TOKEN": "", "PYTHONPATH": str(ROOT)})
    assert out.returncode != 0 and "defines no 'missing'" in out.stderr and "Traceback" not in out.stderr
