"""Shared fixtures: stores of each kind, on real files where they are files."""

from __future__ import annotations

import pytest

from waypoint import MemoryStore, SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    """Every engine test runs against both stores: the protocol is the contract."""
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "runs.db")


@pytest.fixture
def sqlite_store(tmp_path):
    return SQLiteStore(tmp_path / "runs.db")
