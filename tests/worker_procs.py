"""Real `waypoint worker` processes for the worker tests, and what they synchronise on.

    proc = WorkerProc.start(db, "chain", tmp, "--concurrency", "2", "--until-idle")
    proc.expect("claimed r1")            # a line of its log (stdout), within a minute
    proc.terminate(); assert proc.wait() == 0

Nothing here decides an outcome by the clock: tests wait for a log line or a file
(`wait_for_file`), and the time limits only turn a hang into a failure that shows
the worker's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "tests" / "worker_flows.py"
LIMIT = 60.0  # seconds before a wait is a failure (a hang), never a decision


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYPOINT_DB", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["WAYPOINT_TEST_DIR"] = str(tmp)
    return env


class WorkerProc:
    """One `waypoint worker` process; its stdout lines are collected as they come."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.lines: list[str] = []
        self.closed = False
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, db: str, graphs: str, tmp: Path, *options: str) -> WorkerProc:
        refs = [f"{FLOWS}:{name}" for name in graphs.split(",")]
        argv = [sys.executable, "-m", "waypoint.cli", "worker", *refs, "--db", db, *options]
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=environment(tmp), start_new_session=True)
        return cls(popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()
        self.popen.stdout.close()
        with self._seen:
            self.closed = True
            self._seen.notify_all()

    def expect(self, text: str, limit: float = LIMIT) -> str:
        """The first line (logged so far or to come) that contains `text`."""
        deadline = time.monotonic() + limit
        with self._seen:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    how = "exited without logging" if self.closed else "never logged"
                    raise AssertionError(f"worker {self.pid} {how} {text!r}:\n{self.log}")
                self._seen.wait(left)

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, limit: float = LIMIT) -> int:
        try:
            code = self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker {self.pid} did not exit within {limit}s:\n{self.log}") from None
        self._reader.join(limit)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(LIMIT)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def wait_for_file(path: Path, limit: float = LIMIT) -> str:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)
    return path.read_text()


def executions(tmp: Path) -> Counter[tuple[str, str]]:
    """How many times each (run, node) executed, from the lines the nodes append."""
    path = tmp / "executions"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter((run, node) for run, node, _pid in (line.split() for line in lines))


def executors(tmp: Path) -> dict[tuple[str, str], list[int]]:
    """Which processes executed each (run, node), in order."""
    found: dict[tuple[str, str], list[int]] = {}
    for line in (tmp / "executions").read_text().splitlines():
        run, node, pid = line.split()
        found.setdefault((run, node), []).append(int(pid))
    return found
