"""SQLiteStore's shared limit slots: the `slots` table (schema version 4), jobs of a write batch.

    slot = claim_slot(raw, now, name, size, holder, ttl)    # inside the batch's BEGIN IMMEDIATE

The batch holds the file's write lock, so reading the held slots and taking a free
one is atomic across processes. Expiry is on the writing process's clock.
"""

from __future__ import annotations

import sqlite3


def claim_slot(raw: sqlite3.Connection, now: float, name: str, size: int, holder: str,
               ttl: float) -> int | None:
    held = {slot for (slot,) in raw.execute("SELECT slot FROM slots WHERE name = ? AND expires_at > ?",
                                            (name, now))}
    free = next((slot for slot in range(size) if slot not in held), None)
    if free is not None:
        raw.execute("INSERT OR REPLACE INTO slots (name, slot, holder, expires_at) VALUES (?, ?, ?, ?)",
                    (name, free, holder, now + ttl))
    return free


def renew_slot(raw: sqlite3.Connection, now: float, name: str, slot: int, holder: str, ttl: float) -> bool:
    done = raw.execute("UPDATE slots SET expires_at = ? WHERE name = ? AND slot = ? AND holder = ?",
                       (now + ttl, name, slot, holder))
    return done.rowcount == 1


def release_slot(raw: sqlite3.Connection, now: float, name: str, slot: int, holder: str) -> None:
    raw.execute("DELETE FROM slots WHERE name = ? AND slot = ? AND holder = ?", (name, slot, holder))
