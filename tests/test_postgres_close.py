"""PostgresStore.close() is idempotent even when two closes race (issue 12's typing found it).

Uses the throwaway server of tests/test_postgres_store.py (its `pg` and `url` fixtures).
"""

from __future__ import annotations

import asyncio

import pytest
from tests import test_postgres_store as pg_tests
from waypoint.testing.store_conformance import info

pg, url = pg_tests.pg, pg_tests.url  # the fixtures, shared by name
PostgresStore = pg_tests.PostgresStore


@pytest.mark.asyncio
async def test_two_closes_at_once_both_return_and_the_store_opens_again(url):
    store = PostgresStore(url)
    await store.create_run(info("r"))
    # Both wait for the one writer to stop; the second used to find the pool gone (None.close()).
    await asyncio.gather(store.close(), store.close())
    assert (await store.get_run("r")).run_id == "r"  # the next call opens it again
    await store.close()
