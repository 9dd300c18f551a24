"""What both sides share: temporary directories, file sizes, PRAGMA checks, clocks."""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

Sync = Literal["FULL", "NORMAL"]
SYNC_VALUES = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}  # PRAGMA synchronous reads back a number
ROOT = Path(__file__).resolve().parent.parent
PAD = "x" * 1020  # with a 4-digit counter, the 1 KiB item of the loop workload


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh temporary directory per repetition, removed afterwards; gc runs first."""
    gc.collect()
    path = Path(tempfile.mkdtemp(prefix="wpbench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def db_bytes(folder: Path) -> int:
    """Every file in the folder: the database and, if still there, its -wal and -shm files."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def check_synchronous(value: int, wanted: Sync, who: str) -> None:
    """Fail loudly when a connection does not run at the setting the column claims."""
    if value != SYNC_VALUES[wanted]:
        raise RuntimeError(f"{who}: PRAGMA synchronous reads back {value}, expected {wanted} "
                           f"({SYNC_VALUES[wanted]}); the comparison would not be at equal settings")


def median(values: list[float]) -> float:
    return statistics.median(values)


def clock() -> float:
    return time.perf_counter()


def child_env() -> dict[str, str]:
    """The environment of measured processes: bytecode caches allowed, as after `pip install`."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_bytecode() -> None:
    """Write the .pyc files of waypoint and bench (an editable install has none until first use)."""
    import compileall

    import waypoint

    for package in (Path(waypoint.__file__).parent, ROOT / "bench"):
        compileall.compile_dir(package, quiet=1)


def wall(argv: list[str], *, cwd: Path = ROOT) -> tuple[float, str]:
    """Whole-process wall time of a command (seconds) and its stdout; fails on a non-zero exit."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def waypoint_cli() -> list[str]:
    """The installed `waypoint` console script, next to this interpreter."""
    script = Path(sys.executable).with_name("waypoint")
    return [str(script)] if script.exists() else python("-m", "waypoint.cli")
