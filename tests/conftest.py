"""Shared fixtures: stores of each kind, on real files where they are files."""

from __future__ import annotations

import pytest

import waypoint
from waypoint import MemoryStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    """Every engine test runs against both stores: the protocol is the contract."""
    if request.param == "memory":
        return MemoryStore()
    return waypoint.SQLiteStore(tmp_path / "runs.db")


@pytest.fixture
def sqlite_store(tmp_path):
    return waypoint.SQLiteStore(tmp_path / "runs.db")
