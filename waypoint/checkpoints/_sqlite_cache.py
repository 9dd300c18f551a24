"""SQLiteStore's cache of node results: the `cache` table (schema version 3), read and written.

    value = cache_get(raw, key, time.time())                     # one read, in the store's thread
    cache_put(raw, now, key, value, ttl)                         # a job of a write batch

Expiry is a timestamp on this process's clock (`expires_at`, NULL: never). A put also
drops up to 100 expired entries, so the table does not grow with dead keys.
"""

from __future__ import annotations

import sqlite3


def cache_get(raw: sqlite3.Connection, key: str, now: float) -> bytes | None:
    row = raw.execute("SELECT value FROM cache WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                      (key, now)).fetchone()
    return None if row is None else bytes(row[0])


def cache_put(raw: sqlite3.Connection, now: float, key: str, value: bytes, ttl: float | None) -> None:
    raw.execute("DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE expires_at <= ? LIMIT 100)",
                (now,))
    raw.execute("INSERT OR REPLACE INTO cache (key, value, stored_at, expires_at) VALUES (?, ?, ?, ?)",
                (key, value, now, None if ttl is None else now + ttl))
