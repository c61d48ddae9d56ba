"""Idempotency keys on money-moving POSTs: one booking and one payment per key, whatever the retries."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app.models import Booking
from app.payments.demo import DemoPaymentGateway
from tests.market import add_worker, booking_body, make_market, next_day_at


async def _bookings(db) -> int:
    async with db.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(Booking))).scalar_one()


async def test_same_key_same_body_returns_the_first_booking(client, db, settings):
    market = await make_market(client, db, settings, workers=2)
    headers = {**market.client.headers, "Idempotency-Key": "book-1"}
    first = await client.post("/bookings", json=booking_body(market), headers=headers)
    second = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert await _bookings(db) == 1
    other_key = await client.post("/bookings", json=booking_body(market, starts_at=next_day_at(15)),
                                  headers={**market.client.headers, "Idempotency-Key": "book-2"})
    assert other_key.status_code == 201 and other_key.json()["id"] != first.json()["id"]


async def test_same_key_other_body_is_422(client, db, settings):
    market = await make_market(client, db, settings, workers=1)
    headers = {**market.client.headers, "Idempotency-Key": "book-x"}
    assert (await client.post("/bookings", json=booking_body(market), headers=headers)).status_code == 201
    resp = await client.post("/bookings", json=booking_body(market, minutes=120), headers=headers)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "idempotency_key_reused"
    assert await _bookings(db) == 1


async def test_keys_belong_to_their_user(client, db, settings):
    market = await make_market(client, db, settings, workers=2)
    from tests.factories import make_user
    other = await make_user(client, db, settings, cooperative=market.slug, role="client")
    body = booking_body(market)
    a = await client.post("/bookings", json=body, headers={**market.client.headers, "Idempotency-Key": "k"})
    b = await client.post("/bookings", json=body, headers={**other.headers, "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


async def test_concurrent_requests_with_one_key_do_the_work_once(client, db, settings):
    market = await make_market(client, db, settings, workers=2)
    headers = {**market.client.headers, "Idempotency-Key": "double-tap"}
    results = await asyncio.gather(*(client.post("/bookings", json=booking_body(market), headers=headers)
                                     for _ in range(5)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} <= {"request_in_progress"}
    assert len({r.json()["id"] for r in results if r.status_code == 201}) == 1
    assert await _bookings(db) == 1


async def test_a_refusal_is_replayed_for_its_key(client, db, settings):
    market = await make_market(client, db, settings, workers=0)
    headers = {**market.client.headers, "Idempotency-Key": "too-early"}
    first = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert first.status_code == 409 and first.json()["error"]["code"] == "no_available_worker"
    await add_worker(client, db, settings, market)
    again = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert again.status_code == 409 and again.json() == first.json()
    fresh = await client.post("/bookings", json=booking_body(market),
                              headers={**market.client.headers, "Idempotency-Key": "after-worker"})
    assert fresh.status_code == 201


class FlakyGateway(DemoPaymentGateway):
    """Fails the first authorization, like a processor outage right after our first phase committed."""

    def __init__(self) -> None:
        self.calls = 0

    async def authorize(self, request):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("processor unreachable")
        return await super().authorize(request)


async def test_a_retry_after_a_failure_resumes_the_same_booking(client, db, settings, app):
    market = await make_market(client, db, settings, workers=1)
    app.state.gateway = FlakyGateway()
    headers = {**market.client.headers, "Idempotency-Key": "resume-me"}
    failed = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error"
    assert await _bookings(db) == 1  # phase 1 committed: the booking waits for its payment
    retried = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "offered" and retried.json()["payment"]["payment_intent_id"]
    assert await _bookings(db) == 1


async def test_complete_and_cancel_accept_keys_too(client, db, settings, app):
    from datetime import timedelta

    from tests.market import Clock
    app.state.clock = clock = Clock()
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)
    clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    headers = {**worker.headers, "Idempotency-Key": "done"}
    first = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 60}, headers=headers)
    again = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 60}, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    unkeyed = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 60},
                                headers=worker.headers)
    assert unkeyed.status_code == 409
