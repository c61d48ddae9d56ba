"""Marketplace fixtures: a cooperative with a service, worker-members ready to work, and a client.

Worker profiles (service area) are written straight to the database so these tests do not depend
on the profile endpoints; offerings and availability go through the API.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.models import Cooperative, Member
from tests.factories import Account, make_cooperative, make_user

LYON = (45.7640, 4.8357)


def next_day_at(hour: int, days: int = 2) -> datetime:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days)
    return base.replace(hour=hour)


class Clock:
    """The app's clock, moved by tests (expiry, notice periods, start windows)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class Market:
    slug: str
    service_id: str
    staff: Account
    client: Account
    workers: list[Account] = field(default_factory=list)


async def set_coop_settings(db, slug: str, **values) -> None:
    async with db.sessionmaker() as s:
        coop = (await s.execute(Cooperative.__table__.select().where(Cooperative.slug == slug))).first()
        merged = {**(coop.settings or {}), **values}
        await s.execute(update(Cooperative).where(Cooperative.slug == slug).values(settings=merged))
        await s.commit()


async def place_worker(db, member_id: str, *, lat: float, lon: float, radius_km: float = 15.0, **extra) -> None:
    async with db.sessionmaker() as s:
        await s.execute(update(Member).where(Member.id == uuid.UUID(member_id))
                        .values(lat=lat, lon=lon, radius_km=radius_km, **extra))
        await s.commit()


async def add_worker(client: httpx.AsyncClient, db, settings, market: Market, *, rate: int = 3000,
                     offset_km: float = 1.0, radius_km: float = 15.0,
                     windows: list[tuple[datetime, datetime]] | None = None, name: str | None = None) -> Account:
    worker = await make_user(client, db, settings, cooperative=market.slug, role="worker", display_name=name)
    await place_worker(db, worker.member_id, lat=LYON[0] + offset_km / 111.32, lon=LYON[1], radius_km=radius_km)
    resp = await client.put("/members/me/offerings", json=[{"service_id": market.service_id, "hourly_rate_cents": rate}],
                            headers=worker.headers)
    assert resp.status_code == 200, resp.text
    windows = windows or [(next_day_at(0, 1), next_day_at(0, 6))]
    resp = await client.put("/members/me/availability", headers=worker.headers, json=[
        {"starts_at": a.isoformat(), "ends_at": b.isoformat()} for a, b in windows])
    assert resp.status_code == 200, resp.text
    market.workers.append(worker)
    return worker


async def make_market(client: httpx.AsyncClient, db, settings, *, workers: int = 3, vat_rate_bps: int = 2000,
                      slug: str | None = None) -> Market:
    slug = await make_cooperative(db, slug)
    staff = await make_user(client, db, settings, cooperative=slug, role="staff")
    resp = await client.post("/services", json={"name": "Home cleaning", "vat_rate_bps": vat_rate_bps},
                             headers=staff.headers)
    assert resp.status_code == 201, resp.text
    buyer = await make_user(client, db, settings, cooperative=slug, role="client")
    market = Market(slug, resp.json()["id"], staff, buyer)
    for i in range(workers):
        await add_worker(client, db, settings, market, rate=3000 + 100 * i, offset_km=1.0 + i)
    return market


def booking_body(market: Market, *, starts_at: datetime | None = None, minutes: int = 180,
                 worker_id: str | None = None, max_price_cents: int | None = None) -> dict:
    body = {"service_id": market.service_id, "starts_at": (starts_at or next_day_at(10)).isoformat(),
            "duration_minutes": minutes, "location": {"lat": LYON[0], "lon": LYON[1]},
            "address": "1 place Bellecour, Lyon"}
    if worker_id:
        body["worker_id"] = worker_id
    if max_price_cents:
        body["max_price_cents"] = max_price_cents
    return body
