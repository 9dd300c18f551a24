"""Shared fixtures: stores of each kind, on real files where they are files; the `needs_dot` marker.

    @pytest.mark.needs_dot          # runs Graphviz's `dot`: skipped, naming the install command,
    def test_svg(): ...             # on a machine without it (README calls Graphviz optional)

    def test_page(has_dot): ...     # for tests that do less without `dot` instead of skipping
"""

from __future__ import annotations

import shutil

import pytest
import pytest_asyncio

import waypoint
from waypoint import MemoryStore

NO_DOT = ("needs Graphviz's `dot` binary, which is not on PATH: apt-get install graphviz "
          "(macOS: brew install graphviz); .ci/run installs it")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs_dot: runs Graphviz's `dot` binary; skipped, naming the install command, without it")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Checked per test, not at import: a test may hide `dot` with monkeypatch.setenv("PATH", ...).
    if item.get_closest_marker("needs_dot") is not None and shutil.which("dot") is None:
        pytest.skip(NO_DOT)


@pytest.fixture(scope="session")
def pg():
    """One throwaway PostgreSQL server for the whole session (tests/pg_server.py); skipped, naming
    the install command, where it cannot start. `pg.new_database()` is a fresh migrated database."""
    from tests import pg_server

    with pg_server.running() as server:
        yield server


@pytest.fixture
def url(pg) -> str:
    """A fresh database of its own on the session's PostgreSQL server."""
    return pg.new_database()


@pytest.fixture(scope="session")
def has_dot() -> bool:
    """Whether Graphviz's `dot` is on PATH, for tests that draw less without it."""
    return shutil.which("dot") is not None


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    """Every engine test runs against both stores: the protocol is the contract."""
    store = MemoryStore() if request.param == "memory" else waypoint.SQLiteStore(tmp_path / "runs.db")
    yield store
    await store.close()


@pytest_asyncio.fixture
async def sqlite_store(tmp_path):
    store = waypoint.SQLiteStore(tmp_path / "runs.db")
    yield store
    await store.close()
