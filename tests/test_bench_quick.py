"""The benchmark's quick mode runs end to end, so that `bench/` never rots.

No timing is asserted: this machine's speed is not the point. Without
LangGraph installed only the waypoint side runs (its columns read "—").
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from bench import table
from bench.run import SIZES

ROOT = Path(__file__).parent.parent
HAS_LANGGRAPH = importlib.util.find_spec("langgraph") is not None


def test_quick_mode_prints_the_table(tmp_path):
    out = tmp_path / "medians.json"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--reps", "1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("| (")]
    assert {line[3] for line in lines} == set("1234567")  # every workload has its rows
    assert "machine:" in done.stdout and ("PASS" in done.stdout or "GAP" in done.stdout)
    medians = json.loads(out.read_text())
    assert medians["wp|FULL|chain10.per_node_ms"] > 0
    assert medians["wp|NORMAL|loop30.bytes"] > 0
    assert ("lg|FULL|chain10.per_node_ms" in medians) is HAS_LANGGRAPH


def test_table_without_langgraph_says_so():
    size = SIZES["quick"]
    medians = {("wp", "FULL", "chain10.per_node_ms"): 0.2, ("wp", "-", "import.ms"): 150.0}
    text = table.render(medians, size, langgraph=False)
    assert "| (1) chain N=10: time per node | — | 0.200 ms | — |" in text
    assert "waypoint <200 ms | PASS |" in text
    assert "LangGraph is not installed" in text
