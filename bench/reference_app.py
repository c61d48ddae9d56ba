"""A throwaway app that sets the yardsticks for the benchmark (bench/run.py).

It is written with FastAPI on purpose, the same version and the same uvicorn as coopgig, in its
plainest idiom: a path parameter parsed by FastAPI, a pydantic body, a pydantic response model.
So a reference endpoint costs "the framework + (at most) one database round trip", and the gap
between it and a coopgig endpoint is what coopgig itself adds: its middleware, its dependencies
(session, authentication), SQLAlchemy, its business logic and its extra round trips. (With plain
Starlette the gap would also include FastAPI's own cost, which we cannot remove from our app.)

    GET  /ref/constant   a constant JSON document, no database
    GET  /ref/pk/{id}    one raw asyncpg primary-key SELECT on `bench_ref` (10,000 rows)
    POST /ref/insert     one raw asyncpg one-row INSERT into `bench_ref_insert`

The database access is raw asyncpg through one pool per worker process (no ORM, no explicit
transaction: each statement is a single round trip in autocommit). The tables are made and filled
once by `prepare()` (bench/run.py calls it before starting the server), not by the workers.

Environment: REF_DATABASE_URL (a plain libpq/asyncpg DSN, `postgresql://...`), REF_POOL_MIN_SIZE and
REF_POOL_MAX_SIZE (default 10 and 20, the same as coopgig's pool_size 10 + max_overflow 10).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

PK_ROWS = 10_000
# Deterministic ids, so the load generator can make a valid one without a list: row i (1-based)
# has the id PK_ID_FORMAT % i. They are well-formed UUID texts (version 4 bits, variant 10).
PK_ID_FORMAT = "00000000-0000-4000-8000-%012x"
PK_PATH_PREFIX = "/ref/pk/"


def pk_id(i: int) -> str:
    return PK_ID_FORMAT % i


async def prepare(dsn: str, rows: int = PK_ROWS) -> None:
    """(Re)create and fill the reference tables. Run once, before the server starts."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""
            DROP TABLE IF EXISTS bench_ref;
            DROP TABLE IF EXISTS bench_ref_insert;
            CREATE TABLE bench_ref (id uuid PRIMARY KEY, payload text NOT NULL);
            CREATE TABLE bench_ref_insert (
                id uuid PRIMARY KEY,
                payload text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now()
            );
        """)
        # A payload about the size of a user row, so the response is not trivially small.
        await conn.copy_records_to_table(
            "bench_ref", columns=["id", "payload"],
            records=[(uuid.UUID(pk_id(i)), f"row {i}: " + "x" * 120) for i in range(1, rows + 1)])
        await conn.execute("ANALYZE bench_ref")
    finally:
        await conn.close()


class RefRow(BaseModel):
    id: uuid.UUID
    payload: str


class RefInsert(BaseModel):
    payload: str = Field(min_length=1, max_length=1000)


class RefCreated(BaseModel):
    id: uuid.UUID


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["REF_DATABASE_URL"]
    app.state.pool = await asyncpg.create_pool(
        dsn,
        min_size=int(os.environ.get("REF_POOL_MIN_SIZE", "10")),
        max_size=int(os.environ.get("REF_POOL_MAX_SIZE", "20")),
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="coopgig benchmark references", lifespan=lifespan)

_CONSTANT = {"status": "ok", "service": "reference"}


@app.get("/ref/constant")
async def constant() -> dict[str, str]:
    return _CONSTANT


@app.get("/ref/pk/{row_id}", response_model=RefRow)
async def by_pk(row_id: uuid.UUID, request: Request) -> RefRow:
    row = await request.app.state.pool.fetchrow("SELECT id, payload FROM bench_ref WHERE id = $1", row_id)
    if row is None:
        raise HTTPException(404, "no such row")
    return RefRow(id=row["id"], payload=row["payload"])


@app.post("/ref/insert", status_code=201, response_model=RefCreated)
async def insert(body: RefInsert, request: Request) -> RefCreated:
    new_id = uuid.uuid4()
    await request.app.state.pool.execute(
        "INSERT INTO bench_ref_insert (id, payload) VALUES ($1, $2)", new_id, body.payload)
    return RefCreated(id=new_id)
