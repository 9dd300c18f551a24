"""PostgresStore.close() is idempotent even when two closes race (issue 12's typing found it).

Uses the session's throwaway server (the `pg` and `url` fixtures of tests/conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest
from waypoint.testing.store_conformance import info

pytest.importorskip("psycopg_pool", reason='PostgresStore needs psycopg-pool: pip install -e ".[postgres]"')
from waypoint.checkpoints.postgres import PostgresStore  # noqa: E402


@pytest.mark.asyncio
async def test_two_closes_at_once_both_return_and_the_store_opens_again(url):
    store = PostgresStore(url)
    await store.create_run(info("r"))
    # Both wait for the one writer to stop; the second used to find the pool gone (None.close()).
    await asyncio.gather(store.close(), store.close())
    assert (await store.get_run("r")).run_id == "r"  # the next call opens it again
    await store.close()
