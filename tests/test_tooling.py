"""The tools that keep the code as issue 12 reshaped it: ruff (with a complexity bound) and mypy.

Both are configured in pyproject.toml and installed by the `test` extra; .ci/run also runs
them first, so a finding fails CI before the long suite starts.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> list[str]:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' (or pip install {name})")
    return [sys.executable, "-m", name]


def test_ruff_finds_nothing_in_waypoint():
    done = subprocess.run([*tool("ruff"), "check", "--no-cache", "waypoint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stdout[-3000:]


def test_mypy_finds_nothing_in_waypoint(tmp_path):
    done = subprocess.run([*tool("mypy"), "--cache-dir", str(tmp_path), "waypoint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stdout[-3000:]
