"""Persistence: the Store protocol, SQLiteStore (aiosqlite), MemoryStore, record types."""

from typing import TYPE_CHECKING, Any

from waypoint.checkpoints.memory import MemoryStore
from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot, Step

if TYPE_CHECKING:
    from waypoint.checkpoints.sqlite import SQLiteStore

__all__ = ["MemoryStore", "RunInfo", "RunStatus", "SQLiteStore", "Snapshot", "Step", "Store"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":  # aiosqlite is imported only when a SQLite store is used
        from waypoint.checkpoints.sqlite import SQLiteStore

        return SQLiteStore
    if name == "PostgresStore":  # psycopg is an extra: imported only when this store is used
        from waypoint.checkpoints.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
