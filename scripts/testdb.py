"""Find a local PostgreSQL and make a fresh test database on it; print its URL (nothing if none).

Used by scripts/test.sh when DATABASE_URL is not set.
"""
from __future__ import annotations

import asyncio
import os
import sys

HOST = os.environ.get("PGHOST", "127.0.0.1")
PORT = int(os.environ.get("PGPORT", "5432"))
USER = os.environ.get("PGUSER", "postgres")
NAME = os.environ.get("COOPGIG_TEST_DB", "coopgig_test")


async def main() -> int:
    import asyncpg

    try:
        conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database="postgres", timeout=3)
    except Exception:
        return 1
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await conn.close()
    print(f"postgresql+asyncpg://{USER}@{HOST}:{PORT}/{NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
