"""Database.driver(): the hot paths' own asyncpg pool (PostgreSQL)."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.db import Database
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def small(migrated_url) -> Database:
    """A Database of its own with a driver pool of 2, so every test below reuses its connections."""
    db = Database(make_settings(database_url=migrated_url, db_driver_pool_size=2))
    yield db
    await db.dispose()


async def _pids(db: Database, n: int) -> set[int]:
    async def one() -> int:
        async with db.driver() as driver:
            pid = await driver.fetchval("SELECT pg_backend_pid()")
            await asyncio.sleep(0.05)  # hold it, so the n calls need n connections
            return pid
    return set(await asyncio.gather(*(one() for _ in range(n))))


async def test_the_pool_is_bounded_and_its_connections_reused(small):
    first = await _pids(small, 6)
    assert len(first) == 2  # six concurrent users, two connections: the others waited their turn
    assert await _pids(small, 2) == first


async def test_a_connection_the_server_closed_is_replaced(small):
    pids = await _pids(small, 2)
    async with small.engine.connect() as admin:
        for pid in pids:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.2)  # the pool's connections see the end of their sockets
    after = await _pids(small, 2)
    assert after and not after & pids


async def test_a_transaction_left_open_is_rolled_back_on_release(small):
    async with small.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS driver_pool_probe (n int)"))
    try:
        async with small.driver() as driver:
            await driver.execute("BEGIN")
            await driver.execute("INSERT INTO driver_pool_probe VALUES (1)")
        # released with the transaction open: the next user gets a clean connection, the row is gone
        async with small.driver() as driver:
            assert await driver.fetchval("SELECT count(*) FROM driver_pool_probe") == 0
            assert not driver.is_in_transaction()
    finally:
        async with small.engine.begin() as conn:
            await conn.execute(text("DROP TABLE driver_pool_probe"))


async def test_json_and_jsonb_read_as_the_engine_reads_them(small):
    sql = """SELECT '{"a": [1, 2.5, "x"], "b": null}'::jsonb AS b, '{"c": true}'::json AS j"""
    async with small.driver() as driver:
        row = await driver.fetchrow(sql)
        # and a jsonb parameter is given as text, as SQLAlchemy's dialect expects
        echoed = await driver.fetchval("SELECT $1::jsonb", '{"k": 1}')
    async with small.engine.connect() as conn:
        engine_row = (await conn.execute(text(sql))).one()
    assert (row["b"], row["j"]) == tuple(engine_row) == ({"a": [1, 2.5, "x"], "b": None}, {"c": True})
    assert echoed == {"k": 1}


async def test_dispose_closes_the_pool(migrated_url):
    db = Database(make_settings(database_url=migrated_url, db_driver_pool_size=1))
    async with db.driver() as driver:
        pid = await driver.fetchval("SELECT pg_backend_pid()")
    await db.dispose()
    watcher = Database(make_settings(database_url=migrated_url))
    try:
        async with watcher.engine.connect() as conn:
            for _ in range(50):
                gone = (await conn.execute(text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"),
                                           {"pid": pid})).scalar_one()
                if gone:
                    break
                await asyncio.sleep(0.02)
    finally:
        await watcher.dispose()
    assert gone
