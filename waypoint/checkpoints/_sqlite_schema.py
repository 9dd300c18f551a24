"""SQLiteStore's schema: its tables, the migrations between versions, and how a step is keyed.

    setup(raw, "PRAGMA synchronous=FULL", "runs.db")   # PRAGMAs, then create or migrate
    key = step_key(num, seq)                           # where step `seq` of run `num` lives

Version 2 (issue 13) keys `steps` and `snapshots` by one integer, `num << 32 | seq`,
where `num` is the run's own INTEGER PRIMARY KEY in `runs`. Both become plain
rowid tables clustered by that key, so:
- an append writes ONE b-tree (no second index to keep), and a run's log is one
  contiguous key range, whose end `SELECT max(key)` finds in one seek: the fence
  reads the log's end there instead of writing `runs.last_seq` on every commit;
- a row keeps up to about 4 KB on its leaf page (a `WITHOUT ROWID` row spills
  whatever passes about 1 KB into an overflow page of its own, mostly empty).
`run_id` and `seq` stay as plain columns, so the file reads as it always did.
"""

from __future__ import annotations

import sqlite3
import time

from waypoint.errors import SchemaVersionError

__all__ = ["SCHEMA_VERSION", "SEQ_LIMIT", "setup", "step_key"]

SEQ_BITS = 32
SEQ_LIMIT = 1 << SEQ_BITS  # seqs of one run are below this; run numbers below 2**31
_RUNS = ("CREATE TABLE runs (num INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, graph TEXT NOT NULL, "
         "status TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
         "last_seq INTEGER NOT NULL, lease_owner TEXT, lease_expiry REAL NOT NULL, "
         "lease_ttl REAL NOT NULL, error TEXT, waiting BLOB NOT NULL, info BLOB NOT NULL)")
_RUN_FIELDS = ("run_id, graph, status, created_at, updated_at, last_seq, lease_owner, lease_expiry, "
               "lease_ttl, error, waiting, info")


def step_key(num: int, seq: int) -> int:
    """The integer key of step (or snapshot) `seq` of the run numbered `num`."""
    return (num << SEQ_BITS) | seq


def _v1(raw: sqlite3.Connection) -> None:
    # `info` keeps the RunInfo as created; columns hold what changes and what is filtered
    # on. A new RunInfo field with a default then needs no migration.
    raw.execute(_RUNS.replace("num INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE",
                              "run_id TEXT PRIMARY KEY"))
    raw.execute("CREATE INDEX runs_status ON runs (status)")
    raw.execute("CREATE INDEX runs_created_at ON runs (created_at)")
    raw.execute("CREATE TABLE steps (run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, "
                "node TEXT NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")
    raw.execute("CREATE TABLE snapshots (run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                "payload BLOB NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")


def _v2(raw: sqlite3.Connection) -> None:
    # The run's rowid becomes a declared `num` (VACUUM may renumber an undeclared rowid),
    # and its steps and snapshots are re-keyed by it; see the module docstring.
    for table in ("runs", "steps", "snapshots"):
        raw.execute(f"ALTER TABLE {table} RENAME TO old_{table}")  # constant names
    raw.execute("DROP INDEX runs_status")
    raw.execute("DROP INDEX runs_created_at")
    raw.execute(_RUNS)
    raw.execute(f"INSERT INTO runs (num, {_RUN_FIELDS}) SELECT rowid, {_RUN_FIELDS} FROM old_runs")
    raw.execute("CREATE INDEX runs_status ON runs (status)")
    raw.execute("CREATE INDEX runs_created_at ON runs (created_at)")
    raw.execute("CREATE TABLE steps (key INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                "kind TEXT NOT NULL, node TEXT NOT NULL, payload BLOB NOT NULL)")
    raw.execute("INSERT INTO steps SELECT (r.num << 32) | s.seq, s.run_id, s.seq, s.kind, s.node, "
                "s.payload FROM old_steps s JOIN runs r USING (run_id) ORDER BY 1")
    raw.execute("CREATE TABLE snapshots (key INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
                "seq INTEGER NOT NULL, payload BLOB NOT NULL)")
    raw.execute("INSERT INTO snapshots SELECT (r.num << 32) | s.seq, s.run_id, s.seq, s.payload "
                "FROM old_snapshots s JOIN runs r USING (run_id) ORDER BY 1")
    for table in ("runs", "steps", "snapshots"):
        raw.execute(f"DROP TABLE old_{table}")


def _v3(raw: sqlite3.Connection) -> None:
    # The cache of node results (`cache=` on a node; `_sqlite_cache`): key -> value until expires_at.
    raw.execute("CREATE TABLE cache (key TEXT PRIMARY KEY, value BLOB NOT NULL, stored_at REAL NOT NULL, "
                "expires_at REAL) WITHOUT ROWID")
    raw.execute("CREATE INDEX cache_expires_at ON cache (expires_at) WHERE expires_at IS NOT NULL")


def _v4(raw: sqlite3.Connection) -> None:
    # The slots of limits shared by processes (`Limit(..., processes=True)`; `_sqlite_slots`).
    raw.execute("CREATE TABLE slots (name TEXT NOT NULL, slot INTEGER NOT NULL, holder TEXT NOT NULL, "
                "expires_at REAL NOT NULL, PRIMARY KEY (name, slot)) WITHOUT ROWID")


MIGRATIONS = {1: _v1, 2: _v2, 3: _v3, 4: _v4}  # MIGRATIONS[n] takes a file from schema version n - 1 to n
SCHEMA_VERSION = max(MIGRATIONS)


def setup(raw: sqlite3.Connection, pragma_synchronous: str, path: str, busy_timeout: float = 5.0) -> None:
    """Set the PRAGMAs, then create or migrate the schema (writing nothing if it is current).

    Processes opening a fresh file at the same moment race to switch it to WAL and
    create the schema; SQLite can refuse the loser at once ("database is locked")
    without waiting in its busy handler, so the whole setup is retried until
    `busy_timeout` has passed. Every step of it is idempotent.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return _setup_once(raw, pragma_synchronous, path)
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _setup_once(raw: sqlite3.Connection, pragma_synchronous: str, path: str) -> None:
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(pragma_synchronous)  # one of two constant strings, never input
    if _user_version(raw, path) == SCHEMA_VERSION:
        return  # nothing to write, so a read-only file opens too
    raw.execute("BEGIN IMMEDIATE")
    try:  # re-read under the write lock: another process may have migrated meanwhile
        for version in range(_user_version(raw, path) + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](raw)
            raw.execute(f"PRAGMA user_version = {version:d}")  # PRAGMA takes no parameters; our int
        raw.execute("COMMIT")
    except BaseException:
        raw.execute("ROLLBACK")
        raise


def _user_version(raw: sqlite3.Connection, path: str) -> int:
    version = int(raw.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{path} has schema version {version}, written by a newer waypoint; "
                                 f"this one reads up to version {SCHEMA_VERSION}. Upgrade waypoint "
                                 "to open it (files are never downgraded)")
    return version
