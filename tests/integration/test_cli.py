"""The `coopgig` console script (API.md "Command line"), run as a real subprocess on a temporary
SQLite file."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.db import Database
from app.demo import DEMO_PASSWORD, PEOPLE, SERVICES
from app.main import create_app
from app.models import Cooperative, SQLModel, User
from tests.conftest import make_settings

COOPGIG = Path(sys.executable).parent / "coopgig"
STAFF_PASSWORD = "tidy-otter-lamp-47"


@dataclass
class Cli:
    url: str
    cwd: Path

    async def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "ENVIRONMENT", "JWT_SECRET", "STRIPE_WEBHOOK_SECRET")}
        env.update(DATABASE_URL=self.url, ENVIRONMENT="development", PASSWORD_HASH_PROFILE="CHEAPEST",
                   LOG_LEVEL="WARNING")
        # cwd is a scratch folder so no .env file of a developer's checkout is read.
        return await asyncio.to_thread(subprocess.run, [str(COOPGIG), *args], env=env, cwd=self.cwd,
                                       capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli(tmp_path) -> Cli:
    assert COOPGIG.exists(), f"console script not installed at {COOPGIG}"
    return Cli(url=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", cwd=tmp_path)


@pytest.fixture
async def cli_db(cli) -> AsyncIterator[Database]:
    database = Database(make_settings(database_url=cli.url))
    yield database
    await database.dispose()


@pytest.fixture
async def cli_api(cli_db) -> AsyncIterator[httpx.AsyncClient]:
    """The API served from the database the CLI wrote to."""
    app = create_app(cli_db.settings, database=cli_db)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as c:
        yield c


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, \
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


async def _sign_in(api: httpx.AsyncClient, email: str, password: str) -> dict:
    resp = await api.post("/auth/token", data={"username": email, "password": password})
    assert resp.status_code == 200, resp.text
    me = await api.get("/me", headers={"Authorization": f"Bearer {resp.json()['access_token']}"})
    assert me.status_code == 200, me.text
    return me.json()


async def test_help_lists_the_commands(cli):
    out = _ok(await cli.run("--help"))
    for command in ("serve", "demo", "cooperative", "user", "migrate"):
        assert command in out


async def test_cooperative_then_staff_user_who_can_sign_in(cli, cli_db, cli_api):
    out = _ok(await cli.run("cooperative", "create", "lyon-velo", "--name", "Lyon Vélo"))
    assert "lyon-velo" in out

    out = _ok(await cli.run("user", "create", "--cooperative", "lyon-velo", "--email", "Ops@Lyon-Velo.org",
                            "--password", STAFF_PASSWORD, "--role", "staff", "--display-name", "Ops"))
    assert "ops@lyon-velo.org" in out and STAFF_PASSWORD not in out

    async with cli_db.sessionmaker() as s:
        coop = (await s.execute(select(Cooperative).where(Cooperative.slug == "lyon-velo"))).scalar_one()
        assert coop.name == "Lyon Vélo" and coop.currency == "EUR"
        user = (await s.execute(select(User).where(User.email == "ops@lyon-velo.org"))).scalar_one()
        assert user.role == "staff" and user.cooperative_id == coop.id
        assert STAFF_PASSWORD not in user.password_hash

    me = await _sign_in(cli_api, "ops@lyon-velo.org", STAFF_PASSWORD)
    assert me["role"] == "staff" and me["cooperative"] == "lyon-velo" and me["display_name"] == "Ops"


async def test_user_create_for_the_other_privileged_roles(cli, cli_api):
    _ok(await cli.run("cooperative", "create", "acme", "--name", "Acme"))
    for role in ("board", "admin"):
        _ok(await cli.run("user", "create", "--cooperative", "acme", "--email", f"{role}@acme.org",
                          "--password", STAFF_PASSWORD, "--role", role))
        assert (await _sign_in(cli_api, f"{role}@acme.org", STAFF_PASSWORD))["role"] == role


async def test_duplicate_cooperative_fails_with_a_clear_message(cli, cli_db):
    _ok(await cli.run("cooperative", "create", "acme", "--name", "Acme"))
    result = await cli.run("cooperative", "create", "acme", "--name", "Acme again")
    assert result.returncode != 0
    assert "slug_taken" in result.stderr and "acme" in result.stderr
    assert "Traceback" not in result.stderr
    async with cli_db.sessionmaker() as s:
        names = list((await s.execute(select(Cooperative.name))).scalars())
    assert names == ["Acme"]


async def test_user_create_errors_exit_non_zero(cli, cli_db):
    _ok(await cli.run("cooperative", "create", "acme", "--name", "Acme"))
    cases = [  # (cooperative, password, role) -> what stderr says
        (("nowhere", STAFF_PASSWORD, "staff"), "unknown_cooperative"),
        (("acme", "short", "staff"), "weak_password"),
        (("acme", STAFF_PASSWORD, "superuser"), "role must be one of"),
    ]
    for (coop, password, role), message in cases:
        result = await cli.run("user", "create", "--cooperative", coop, "--email", "a@acme.org",
                               "--password", password, "--role", role)
        assert result.returncode != 0, result.stdout
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    _ok(await cli.run("user", "create", "--cooperative", "acme", "--email", "a@acme.org",
                      "--password", STAFF_PASSWORD, "--role", "staff"))
    again = await cli.run("user", "create", "--cooperative", "acme", "--email", "A@acme.org",
                          "--password", STAFF_PASSWORD, "--role", "board")
    assert again.returncode != 0 and "email_taken" in again.stderr
    async with cli_db.sessionmaker() as s:
        assert list((await s.execute(select(User.email))).scalars()) == ["a@acme.org"]


async def _row_counts(database: Database) -> dict[str, int]:
    async with database.sessionmaker() as s:
        return {t.name: (await s.execute(select(func.count()).select_from(t))).scalar_one()
                for t in SQLModel.metadata.sorted_tables}


async def test_demo_is_idempotent_and_prints_the_logins(cli, cli_db, cli_api):
    first = _ok(await cli.run("demo"))
    counts = await _row_counts(cli_db)
    second = _ok(await cli.run("demo"))
    assert await _row_counts(cli_db) == counts  # the second run added nothing, anywhere

    for out in (first, second):
        for _, email, _ in PEOPLE:
            assert email in out
        assert DEMO_PASSWORD in out
    assert counts["cooperative"] == 1
    assert counts["service"] == len(SERVICES)
    assert counts["app_user"] >= len(PEOPLE)
    assert counts["member"] >= sum(1 for role, _, _ in PEOPLE if role == "worker")

    for role, email, _ in PEOPLE:
        me = await _sign_in(cli_api, email, DEMO_PASSWORD)
        assert me["role"] == role and me["cooperative"] == "demo"
    services = await cli_api.get("/services", params={"cooperative": "demo"})
    assert sorted(s["name"] for s in services.json()) == sorted(service[0] for service in SERVICES)


async def test_migrate_command_builds_the_schema(cli):
    # (every other command migrates first too, so running it on an up-to-date database is covered there)
    assert "latest revision" in _ok(await cli.run("migrate"))
    with sqlite3.connect(cli.url.split("///", 1)[1]) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "cooperative", "app_user", "member", "service"} <= tables
