"""The sweeper that runs inside the service: offers expire without anyone asking, and payment
steps left pending by an outage are finished later."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import update

from app.main import create_app
from app.models import Booking
from app.payments.demo import DemoPaymentGateway
from tests.conftest import make_settings
from tests.market import Clock, booking_body, make_market


async def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_running_service_expires_offers_by_itself(db, settings):
    app = create_app(make_settings(background_interval_seconds=0.05), database=db)
    app.state.clock = clock = Clock()
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            market = await make_market(client, db, settings, workers=1)
            booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
            assert booking["status"] == "offered"
            clock.advance(timedelta(minutes=31))

            async def expired() -> bool:
                got = await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)
                return got.json()["status"] == "expired"

            assert await _wait_for(expired)
            final = (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()
            assert final["payment"]["status"] == "released"


class CountingGateway(DemoPaymentGateway):
    def __init__(self) -> None:
        self.releases: list[str] = []

    async def release(self, *, payment_intent_id: str, idempotency_key: str) -> None:
        self.releases.append(idempotency_key)


async def test_a_payment_step_left_pending_is_finished_later(db, settings):
    app = create_app(make_settings(background_interval_seconds=0.05), database=db)
    app.state.clock = clock = Clock()
    app.state.gateway = gateway = CountingGateway()
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            market = await make_market(client, db, settings, workers=1)
            booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
            # As if the process died between cancelling and telling the processor.
            async with db.sessionmaker() as s:
                await s.execute(update(Booking).where(Booking.id == uuid.UUID(booking["id"]))
                                .values(status="cancelled", payment_status="release_pending"))
                await s.commit()
            await asyncio.sleep(0.3)
            assert gateway.releases == []  # a step this recent may still be under way: left alone
            clock.advance(timedelta(minutes=2))

            async def released() -> bool:
                got = await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)
                return got.json()["payment"]["status"] == "released"

            assert await _wait_for(released)
            assert gateway.releases == [f"booking:{booking['id']}:release"]
