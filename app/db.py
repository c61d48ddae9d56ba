"""Async engine and sessions for PostgreSQL (asyncpg) and the embedded SQLite (aiosqlite).

One `Database` per process; one session = one unit of work, committed once by the use case.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, event, literal_column, make_url, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as _AsyncpgDialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

from app.config import Settings


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite has no time zones: stored naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: coopgig stores timezone-aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Marks the engine of `Database.autocommit` on SQLite, where the BEGIN IMMEDIATE hook must skip it.
AUTOCOMMIT_OPTION = "coopgig_autocommit"


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling defers BEGIN and never takes the write lock up front,
    # so two writers can both read then both write. We emit BEGIN IMMEDIATE ourselves: on SQLite
    # every unit of work is serialized, which is what makes checks like "no overlapping booking"
    # safe there (PostgreSQL uses constraints and row locks instead).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - driver hook
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # pragma: no cover - driver hook
        if conn.get_execution_options().get(AUTOCOMMIT_OPTION):
            return  # Database.autocommit: one statement, no transaction, no write lock
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
    )


class Database:
    """The engine and session factory of one process.

    `autocommit` is the same engine (and pool) for single statements that need no transaction, such
    as the authentication read every request makes: no BEGIN/ROLLBACK round trips (on PostgreSQL a
    lone statement is its own transaction), no write lock on SQLite.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # (SQLite's driver connection is already in autocommit mode, see _configure_sqlite: skipping
        # the BEGIN IMMEDIATE hook is enough there.)
        options = {AUTOCOMMIT_OPTION: True} if settings.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        self.autocommit = self.engine.execution_options(**options)
        self._driver_pool: asyncpg.Pool | None = None
        self._driver_pool_lock = asyncio.Lock()

    @asynccontextmanager
    async def lazy_session(self) -> AsyncIterator[AsyncSession]:
        """A session on `autocommit` (statements on their own, no transaction) for a route that may
        not need one: it connects only if a step uses it, and is closed only then (closing an unused
        session still costs a greenlet switch; GET /matches on PostgreSQL reads nothing through it)."""
        session = self.sessionmaker(bind=self.autocommit)
        try:
            yield session
        finally:
            if session.in_transaction():
                await session.close()

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL only: an asyncpg connection in autocommit, for the hot paths that run a
        `PgStatement` (or plain `$n` SQL) without SQLAlchemy's per-call work.

        It comes from a pool of its own (`DB_DRIVER_POOL_SIZE` per process, opened on first use):
        asyncpg's pool hands a connection over in ~20 µs where SQLAlchemy's checkout and its
        AsyncConnection take ~60 µs, on every request of the hot paths. Its connections decode
        json/jsonb as the engine's do (`_driver_codecs`). On release a transaction left open is
        rolled back (asyncpg does that before any reset) and a closed connection replaced; nothing
        else is reset (`RESET ALL` would cost a round trip per request): code on these connections
        never changes session settings.
        """
        pool = self._driver_pool or await self._open_driver_pool()
        # As SQLAlchemy's pool: wait at most 30 s for a free connection, then fail (never hang).
        async with pool.acquire(timeout=30) as driver:
            yield driver

    async def _open_driver_pool(self) -> asyncpg.Pool:
        async with self._driver_pool_lock:
            if self._driver_pool is None:
                url = make_url(self.settings.database_url).set(drivername="postgresql")
                self._driver_pool = await asyncpg.create_pool(
                    url.render_as_string(hide_password=False), min_size=0,
                    max_size=self.settings.db_driver_pool_size, init=_driver_codecs, reset=_no_reset)
            return self._driver_pool

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def dispose(self) -> None:
        if self._driver_pool is not None:
            pool, self._driver_pool = self._driver_pool, None
            await pool.close()
        await self.engine.dispose()


async def _driver_codecs(driver: asyncpg.Connection) -> None:
    """json and jsonb as SQLAlchemy's asyncpg dialect sets them on its connections (binary format,
    decoded with json.loads, encoded from str), so a `PgStatement` reads and writes the same values
    on either kind of connection."""
    await driver.set_type_codec("json", encoder=str.encode, decoder=lambda b: json.loads(b.decode()),
                                schema="pg_catalog", format="binary")
    await driver.set_type_codec("jsonb", encoder=lambda s: b"\x01" + s.encode(),
                                decoder=lambda b: json.loads(b[1:].decode()), schema="pg_catalog", format="binary")


async def _no_reset(_: asyncpg.Connection) -> None:
    """The driver pool's reset (see Database.driver)."""


async def driver_of(session: AsyncSession) -> asyncpg.Connection:
    """PostgreSQL: the asyncpg connection under a session (in its transaction, if it has one), for a
    `PgStatement` or plain `$n` SQL run as part of that session's work."""
    return (await (await session.connection()).get_raw_connection()).driver_connection


_ASYNCPG = _AsyncpgDialect()


def literal_in(column: Any, values: tuple[str, ...]) -> Any:
    """`column IN ('a', 'b')` with the (code-defined, never user-given) values in the SQL text: a
    fixed statement, no expanding parameters."""
    return column.in_([literal_column(f"'{v}'") for v in values])


class PgStatement:
    """A Core statement compiled ONCE to asyncpg's SQL (`$1, $2, ...`), for the hot paths that run it
    on `Database.driver()`: no per-call cache lookup, execution context or result processing.

    The statement is still written with SQLAlchemy (columns, tables and types checked, one source
    of truth with the models); only its execution is raw. So: values are passed as asyncpg takes
    them (UUID, aware datetime, str, int: no type decorators run), results are asyncpg Records
    (jsonb decoded as json.loads does, on the driver pool as on the engine's connections), and the statement
    must have no expanding `IN` parameter (write fixed lists in the SQL: `literal_in`).
    """

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=_ASYNCPG)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("PgStatement: expanding parameters are not supported")
        self.sql = compiled.string
        # Each position: a named parameter the caller gives, or a literal bound in the statement.
        self._slots = tuple((name, compiled.binds[name].required, compiled.binds[name].effective_value)
                            for name in compiled.positiontup)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] if required else fixed for name, required, fixed in self._slots]

    async def fetchrow(self, driver: asyncpg.Connection, values: Mapping[str, Any]) -> asyncpg.Record | None:
        return await driver.fetchrow(self.sql, *self.args(values))
