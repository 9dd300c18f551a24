"""The web load bench's quick mode runs end to end (bench/web_load.py), so that it never rots.

No latency is asserted (this machine's speed is not the point): every request must be
answered and every answered run's end must reach its event stream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
pytest.importorskip("uvicorn", reason='waypoint serve needs the web extra: pip install -e ".[web]"')


def test_quick_web_load_answers_every_request(tmp_path):
    out = tmp_path / "web.json"
    done = subprocess.run([sys.executable, "-m", "bench.web_load", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["failures"] == 0, result["failure_examples"]
    assert result["answer_to_sse_end"]["n"] == result["resume_post"]["n"] > 0
    assert result["server_cpu_ms_per_answer"] > 0
