"""Engine correctness bugs found by the audit of issue 10 (items 2, 3, 4, 5, 8, 14), one test each or more."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from pydantic import BaseModel

import waypoint as wp

# -- item 2: a sync node that hangs forever must not keep the process alive -----------------

HANGING = textwrap.dedent("""
    import sys, threading
    from pydantic import BaseModel
    import waypoint as wp

    class S(BaseModel):
        n: int = 0

    g = wp.GraphBuilder(S, name="hangs")

    def stuck(state: S) -> dict:
        threading.Event().wait()          # blocks forever: only a daemon thread lets us exit
        return {}

    g.node(stuck, name="stuck", writes=[], timeout=0.2)
    g.node(lambda s: {"n": 1}, name="other", writes=["n"])
    g.edge(wp.START, ["stuck", "other"])
    g.edge("stuck", wp.END)
    g.edge("other", wp.END)
    try:
        wp.run_sync(g.compile(), store=wp.SQLiteStore(sys.argv[1]))
    except wp.NodeError as exc:
        print("status: failed")
        print("error:", exc)
""")


def test_a_sync_node_stuck_forever_does_not_keep_the_process_alive(tmp_path):
    script = tmp_path / "hangs.py"
    script.write_text(HANGING)
    # The timeout only guards the test: before the fix the process never exits.
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "runs.db")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "status: failed" in done.stdout
    assert "timed out after 0.2s" in done.stdout and "may still be running" in done.stdout
