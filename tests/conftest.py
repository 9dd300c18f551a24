"""Shared fixtures: stores of each kind, on real files where they are files."""

from __future__ import annotations

import pytest_asyncio

import waypoint
from waypoint import MemoryStore


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
