"""The SQLite schema, its version (PRAGMA user_version) and its migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from waypoint.errors import SchemaVersionError

_V1 = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        graph TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        parent_run_id TEXT,
        info BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at)",
    """CREATE TABLE IF NOT EXISTS steps (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        node TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
]

MIGRATIONS: list[list[str]] = [_V1]  # MIGRATIONS[i] takes the schema from version i to i + 1
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(raw: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION; a newer file is refused, never downgraded."""
    if _version(raw, path) == SCHEMA_VERSION:
        return
    raw.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may migrate
    try:
        for step in range(_version(raw, path), SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                raw.execute(statement)
            raw.execute(f"PRAGMA user_version = {step + 1}")  # an int of ours, not input
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise


def _version(raw: sqlite3.Connection, path: Path) -> int:
    version = raw.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has schema version {version}; this waypoint reads up to "
            f"{SCHEMA_VERSION}. Upgrade waypoint to open it.")
    return version
