"""Persistence: the Store protocol, SQLiteStore, PostgresStore, MemoryStore, record types.

    from waypoint.checkpoints import SQLiteStore, Step

SQLiteStore and PostgresStore load on first use (`waypoint._lazy`): the SQLite
connection thread and psycopg (an extra) cost nothing until a store is opened.
"""

from typing import TYPE_CHECKING

from waypoint._lazy import lazy
from waypoint.checkpoints.memory import MemoryStore
from waypoint.checkpoints.protocol import Store
from waypoint.checkpoints.records import RunInfo, RunStatus, Snapshot, Step

if TYPE_CHECKING:
    from waypoint.checkpoints.postgres import PostgresStore
    from waypoint.checkpoints.sqlite import SQLiteStore

__all__ = ["MemoryStore", "PostgresStore", "RunInfo", "RunStatus", "SQLiteStore", "Snapshot", "Step", "Store"]

__getattr__, __dir__ = lazy(__name__, {"SQLiteStore": ".sqlite", "PostgresStore": ".postgres"})
