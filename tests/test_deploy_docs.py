"""docs/deploy.md says what works: its command lines parse, its unit file and manifest hold together.

The python blocks run in tests/test_docs.py; these check the shell, systemd and
Kubernetes blocks, which cannot run here, as far as they can be checked offline.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from waypoint.cli import cli

DOC = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC, re.S | re.M)


def waypoint_lines() -> list[list[str]]:
    """Every `waypoint ...` command of the page's shell, ini and yaml blocks, as argv."""
    found = []
    units = [line for text in blocks("ini") for line in text.splitlines() if line.startswith("ExecStart=")]
    for text in [*blocks("bash"), *units]:
        for line in text.splitlines():
            line = line.removeprefix("ExecStart=").split("  #", 1)[0].strip()
            argv = shlex.split(line) if "waypoint " in line else []
            if argv and argv[0].endswith("waypoint") and argv[1:2] != ["-c"]:
                found.append(argv[1:])
    manifest = yaml_manifest()
    found.append(manifest["spec"]["template"]["spec"]["containers"][0]["args"][1:])
    return found


def yaml_manifest() -> dict:
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml")
    (manifest,) = blocks("yaml")
    return yaml.safe_load(manifest)


@pytest.mark.parametrize("argv", waypoint_lines(), ids=lambda argv: " ".join(argv)[:60])
def test_every_command_line_parses_with_the_options_it_names(argv):
    command = cli.get_command(click.Context(cli), argv[0])
    assert command is not None, f"docs/deploy.md runs `waypoint {argv[0]}`, which does not exist"
    command.make_context(argv[0], [a for a in argv[1:] if a != "RUN_ID"] + (
        ["RUN_ID"] if "RUN_ID" in argv else []))  # raises on an option it does not have


def grace_of(argv: list[str]) -> float:
    return float(argv[argv.index("--grace") + 1]) if "--grace" in argv else 30.0


def test_supervisors_wait_longer_than_the_drain():
    unit = blocks("ini")[0]
    stop = float(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    exec_argv = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    assert stop > grace_of(exec_argv), "systemd would SIGKILL the worker before its drain ends"
    pod = yaml_manifest()["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace_of(pod["containers"][0]["args"])


def test_the_unit_file_has_no_inline_comments():
    """systemd reads `Key=value  # note` as part of the value."""
    unit = blocks("ini")[0]
    assert not [line for line in unit.splitlines() if "=" in line and "#" in line.split("=", 1)[1]]
