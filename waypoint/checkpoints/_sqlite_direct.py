"""Commits at synchronous=NORMAL on the event loop's own thread.

    direct = DirectWriter.open("runs.db")
    results = direct.commit(jobs)    # None: another process holds the write lock
    if direct.checkpoint_due():      # run `PRAGMA wal_checkpoint(PASSIVE)` elsewhere
        ...

At NORMAL a commit does not fsync, so it costs about 20-30 us: less than the
hop into the connection's thread and back (chain N=1000 per node 0.156 -> 0.115 ms,
see docs/performance.md, fix C). The connection has a busy timeout of 0: when
another process holds the write lock, `commit` returns None at once and the
store sends the batch through the hop, which waits with its busy timeout
without blocking the loop. Automatic checkpoints are off here, because one
copies pages and fsyncs the database file (up to several ms); the store runs a
passive checkpoint in the connection's thread every CHECKPOINT_EVERY commits instead.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from waypoint.checkpoints import _sqlite_tx as tx

__all__ = ["CHECKPOINT_EVERY", "DirectWriter"]

CHECKPOINT_EVERY = 200  # commits; SQLite's own default is every 1000 WAL pages


class DirectWriter:
    """A plain sqlite3 connection used only from the event loop's thread, for writes."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.since_checkpoint = 0

    @classmethod
    def open(cls, target: str) -> DirectWriter:
        raw = sqlite3.connect(target, isolation_level=None, timeout=0, check_same_thread=False)
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA wal_autocheckpoint=0")
        return cls(raw)

    def commit(self, jobs: list[tx.Job]) -> list[tuple[bool, Any]] | None:
        """`write_batch` here and now; None if the write lock is busy (nothing was written)."""
        try:
            results = tx.write_batch(self.raw, jobs)  # rolls back itself on any error
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                return None
            raise
        self.since_checkpoint += 1
        return results

    def checkpoint_due(self) -> bool:
        """True once every CHECKPOINT_EVERY commits (and then counts again)."""
        if self.since_checkpoint < CHECKPOINT_EVERY:
            return False
        self.since_checkpoint = 0
        return True

    def close(self) -> None:
        self.raw.close()
