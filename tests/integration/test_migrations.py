"""The migrations are the schema (STYLE.md 11): upgrade builds every table, downgrade removes them all,
upgrade works again, and the result matches the models. Each test uses its own throwaway database."""
from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import app.models  # noqa: F401  (registers every table)
from app import migrate
from app.models import SQLModel
from tests.conftest import DATABASE_URL

FOUNDATION_TABLES = {"cooperative", "app_user", "member", "refresh_token", "audit_event", "service"}
MODEL_TABLES = {t.name for t in SQLModel.metadata.sorted_tables}


async def _upgrade(url: str, revision: str = "head") -> None:
    # env.py runs its own event loop: never on this one.
    await asyncio.to_thread(migrate.upgrade, url, revision)


async def _downgrade(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(migrate.downgrade, url, revision)


async def _schema_diff(url: str) -> list:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn):
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(context, SQLModel.metadata)
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _asyncpg_dsn(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


@pytest.fixture
async def scratch_pg_url() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    import asyncpg

    name = f"coopgig_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(DATABASE_URL, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _pg_tables(url: str) -> set[str]:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url, make_url(url).database))
    try:
        rows = await conn.fetch("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
        return {r["table_name"] for r in rows}
    finally:
        await conn.close()


async def _pg_version_rows(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url, make_url(url).database))
    try:
        return [r["version_num"] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_upgrade_downgrade_upgrade(scratch_pg_url):
    assert await _pg_tables(scratch_pg_url) == set()

    await _upgrade(scratch_pg_url)
    tables = await _pg_tables(scratch_pg_url)
    assert FOUNDATION_TABLES <= tables
    assert MODEL_TABLES | {"alembic_version"} == tables
    assert len(await _pg_version_rows(scratch_pg_url)) == 1

    await _downgrade(scratch_pg_url)
    assert await _pg_tables(scratch_pg_url) == {"alembic_version"}
    assert await _pg_version_rows(scratch_pg_url) == []

    await _upgrade(scratch_pg_url)
    assert await _pg_tables(scratch_pg_url) == MODEL_TABLES | {"alembic_version"}


# Declared by the models (the schema on SQLite) but replaced on PostgreSQL by a lock-free trigger check
# (revision 0009, see its docstring): (table, column) of each foreign key, and only these two.
PG_REPLACED_FOREIGN_KEYS = {("ledger_entry", "account_id"), ("ledger_entry", "cooperative_id")}


def _replaced_on_postgres(diff) -> bool:
    if diff[0] != "add_fk":
        return False
    fk = diff[1]
    return {(fk.parent.name, c.name) for c in fk.columns} <= PG_REPLACED_FOREIGN_KEYS


@pytest.mark.postgres
async def test_postgres_migrations_match_the_models(scratch_pg_url):
    await _upgrade(scratch_pg_url)
    diff = await _schema_diff(scratch_pg_url)
    replaced = [d for d in diff if _replaced_on_postgres(d)]
    assert len(replaced) == len(PG_REPLACED_FOREIGN_KEYS)
    assert [d for d in diff if not _replaced_on_postgres(d)] == []


@pytest.mark.postgres
async def test_postgres_upgrade_twice_is_a_no_op(scratch_pg_url):
    await _upgrade(scratch_pg_url)
    first = await _pg_version_rows(scratch_pg_url)
    await _upgrade(scratch_pg_url)
    assert await _pg_version_rows(scratch_pg_url) == first


# ---- SQLite -------------------------------------------------------------------------------------


def _sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master "
                            "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return {r[0] for r in rows}


def _sqlite_version_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


async def test_sqlite_upgrade_downgrade_upgrade(tmp_path):
    path = tmp_path / "migrations.db"
    url = f"sqlite+aiosqlite:///{path}"

    await _upgrade(url)
    tables = _sqlite_tables(path)
    assert FOUNDATION_TABLES <= tables
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert len(_sqlite_version_rows(path)) == 1

    await _downgrade(url)
    assert _sqlite_tables(path) == {"alembic_version"}
    assert _sqlite_version_rows(path) == []

    await _upgrade(url)
    assert _sqlite_tables(path) == MODEL_TABLES | {"alembic_version"}


async def test_sqlite_migrations_match_the_models(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'diff.db'}"
    await _upgrade(url)
    assert await _schema_diff(url) == []


def test_migrations_run_from_a_sync_caller_too(tmp_path):
    path = tmp_path / "sync.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    assert FOUNDATION_TABLES <= _sqlite_tables(path)
