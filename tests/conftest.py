"""Shared fixtures: a database made by the migrations, isolated tests, the app and an HTTP client.

The whole suite runs on PostgreSQL when DATABASE_URL points at it, else on a temporary SQLite file.
Each test starts from empty tables (truncated after every test that used the database), so tests
may commit for real and race each other across connections.
"""
from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app import migrate
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.models import SQLModel

# The localstripe fixtures (`localstripe`, `localstripe_url`), for the tests on Stripe's code path.
pytest_plugins = ["tests.stripe_harness"]

_TMP = Path(tempfile.mkdtemp(prefix="coopgig-tests-"))
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{_TMP / 'test.db'}"
IS_POSTGRES = DATABASE_URL.startswith("postgresql")


def pytest_report_header(config: pytest.Config) -> str:
    if IS_POSTGRES:
        return f"database: PostgreSQL ({DATABASE_URL})"
    return f"database: SQLite, temporary file {DATABASE_URL.split('///', 1)[1]} (set DATABASE_URL for PostgreSQL)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def make_settings(**overrides) -> Settings:
    values = dict(environment="test", database_url=DATABASE_URL, password_hash_profile="CHEAPEST",
                  log_json=False, log_level="WARNING", db_pool_size=20, db_max_overflow=20)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


async def _reset_schema(url: str) -> None:
    """Start the session from nothing, so `alembic upgrade head` builds the whole schema."""
    if not url.startswith("postgresql"):
        return
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def migrated_url() -> str:
    # Sync fixture on purpose: alembic's env.py runs its own event loop.
    asyncio.run(_reset_schema(DATABASE_URL))
    migrate.upgrade(DATABASE_URL)
    return DATABASE_URL


@pytest.fixture(scope="session")
async def database(migrated_url: str, settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings)
    yield db
    await db.dispose()


async def truncate_all(db: Database) -> None:
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    async with db.engine.begin() as conn:
        if IS_POSTGRES:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                await conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    """The test database, emptied after the test."""
    try:
        yield database
    finally:
        await truncate_all(database)


@pytest.fixture
async def session(db: Database):
    async with db.sessionmaker() as s:
        yield s


@pytest.fixture
def app(db: Database, settings: Settings):
    return create_app(settings, database=db)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as c:
        yield c


@pytest.fixture
async def root_client(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client at the root, for /healthz, /readyz, /metrics."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
