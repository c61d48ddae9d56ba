"""Database.lazy_session(): closed (its connection back in the pool) when a step used it, and
costs nothing when none did. Both databases."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from app.db import Database
from tests.conftest import make_settings


@pytest.fixture
async def one_connection(migrated_url) -> Database:
    """A Database whose engine has ONE connection and no overflow: a session left open would
    starve the next one."""
    db = Database(make_settings(database_url=migrated_url, db_pool_size=1, db_max_overflow=0))
    yield db
    await db.dispose()


async def test_a_used_session_gives_its_connection_back(one_connection):
    db = one_connection

    async def rounds() -> None:
        for _ in range(3):  # with one connection, the second round would wait for the first's forever
            async with db.lazy_session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1
                assert session.in_transaction()

    await asyncio.wait_for(rounds(), timeout=10)
    if not db.settings.is_sqlite:
        assert db.engine.pool.checkedout() == 0


async def test_a_session_that_failed_half_way_gives_its_connection_back(one_connection):
    db = one_connection
    with pytest.raises(RuntimeError):
        async with db.lazy_session() as session:
            await session.execute(text("SELECT 1"))
            raise RuntimeError("a step failed")

    async def again() -> int:
        async with db.lazy_session() as session:
            return (await session.execute(text("SELECT 2"))).scalar()

    assert await asyncio.wait_for(again(), timeout=10) == 2


async def test_an_unused_session_never_connects(one_connection):
    db = one_connection
    async with db.lazy_session() as session:
        assert not session.in_transaction()
    if not db.settings.is_sqlite:
        assert db.engine.pool.checkedout() == 0 and db.engine.pool.checkedin() == 0  # never even opened
