"""Test factories: cooperatives, users of every role, and their bearer headers, through the real API."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import httpx

from app.config import Settings
from app.db import Database
from app.services import tenancy

PASSWORD = "correct-horse-battery-9"
_seq = itertools.count(1)


@dataclass
class Account:
    id: str
    email: str
    role: str
    cooperative: str
    headers: dict[str, str]
    member_id: str | None = None
    refresh_token: str | None = None


async def make_cooperative(db: Database, slug: str | None = None, *, name: str | None = None) -> str:
    slug = slug or f"coop-{next(_seq)}"
    async with db.sessionmaker() as s:
        await tenancy.create_cooperative(s, slug=slug, name=name or slug.title())
    return slug


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    resp = await client.post("/auth/token", data={"username": email, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def make_user(client: httpx.AsyncClient, db: Database, settings: Settings, *, cooperative: str,
                    role: str = "client", email: str | None = None, display_name: str | None = None) -> Account:
    """Clients and workers register through the API; staff/board/admin are made as the CLI does."""
    email = email or f"{role}{next(_seq)}@{cooperative}.example.org"
    display_name = display_name or email.split("@")[0]
    member_id = None
    if role in ("client", "worker"):
        resp = await client.post("/auth/register", json={
            "email": email, "password": PASSWORD, "display_name": display_name, "role": role,
            "cooperative": cooperative})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        user_id, member_id = body["id"], body.get("member_id")
    else:
        async with db.sessionmaker() as s:
            user, _, _ = await tenancy.create_user(s, settings, cooperative_slug=cooperative, email=email,
                                                   password=PASSWORD, display_name=display_name, role=role)
        user_id = str(user.id)
    tokens = await login(client, email)
    return Account(id=user_id, email=email, role=role, cooperative=cooperative,
                   headers={"Authorization": f"Bearer {tokens['access_token']}"},
                   member_id=member_id, refresh_token=tokens["refresh_token"])


async def make_people(client: httpx.AsyncClient, db: Database, settings: Settings,
                      roles: list[tuple[str, str]]) -> tuple[str, dict[str, Account]]:
    """A new cooperative and one account per (name, role)."""
    slug = await make_cooperative(db)
    return slug, {name: await make_user(client, db, settings, cooperative=slug, role=role) for name, role in roles}


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    """The contract's error shape with this status and code."""
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
