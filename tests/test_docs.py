"""Docs that run: every python snippet in README.md and docs/*.md is executed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import types
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets():
    for doc in DOCS:
        for i, match in enumerate(FENCE.finditer(doc.read_text())):
            yield pytest.param(match.group(1), id=f"{doc.name}-{i}")


@pytest.mark.parametrize("source", list(snippets()))
def test_snippet_runs(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("snippet")  # a real module, so pydantic can resolve annotations
    monkeypatch.setitem(sys.modules, "snippet", module)
    exec(compile(source, "<snippet>", "exec"), module.__dict__)


def test_readme_has_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```bash\n(.*?)^```", setup, re.S | re.M)
    assert len(commands) == 2
    assert "python -m pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].split("&&")[-1].strip() in ci


def test_without_graphviz_the_drawing_tests_skip_naming_the_install_command(tmp_path):
    """README calls Graphviz optional: on a machine without `dot` its test command still passes."""
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty PATH: no `dot` (the tests need no other binary)
    files = [str(ROOT / "tests" / name) for name in ("test_docs_diagrams.py", "test_render.py")]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("apt-get install graphviz" in line for line in skipped), skipped


def test_the_distribution_has_a_name_of_its_own():
    """`pip install waypoint` gets an unrelated PyPI package: ours is waypoint-workflows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "waypoint-workflows"
    assert metadata.version("waypoint-workflows") == project["version"]  # installed by README's commands
    setup = (ROOT / "README.md").read_text().split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    assert "`waypoint-workflows`" in setup and "`pip install waypoint` would install an unrelated" in setup
