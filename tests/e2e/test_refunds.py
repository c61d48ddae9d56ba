"""Staff refunds through the API: partial and whole, audited, reversed in the ledger (demo gateway)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.domain import ledger as rules
from app.services import ledger, tenancy
from tests.market import Clock, booking_body, make_market, next_day_at


@pytest.fixture
def clock(app):
    app.state.clock = Clock()
    return app.state.clock


async def _completed_booking(client, market, clock) -> dict:
    worker = market.workers[0]
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)
    clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    done = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 180},
                             headers=worker.headers)
    assert done.status_code == 200 and done.json()["payment"]["status"] == "captured"
    return done.json()


async def _balances(db, slug):
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, slug)
        return {b.code: b.balance_cents for b in await ledger.balances(s, cooperative_id=coop.id)}


async def test_partial_then_whole_refund_reverses_the_capture(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    booking = await _completed_booking(client, market, clock)
    member = rules.member_activity(market.workers[0].member_id)
    before = await _balances(db, market.slug)
    resp = await client.post(f"/bookings/{booking['id']}/refund", json={"amount_cents": 5400, "reason": "half done"},
                             headers=market.staff.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    half = await _balances(db, market.slug)
    assert half[rules.VAT_COLLECTED] == before[rules.VAT_COLLECTED] + 900  # half the VAT given back
    assert half[member] > before[member]  # the member's credit shrinks (credit balances are negative)
    assert sum(half.values()) == 0
    too_much = await client.post(f"/bookings/{booking['id']}/refund", json={"amount_cents": 5401, "reason": "more"},
                                 headers=market.staff.headers)
    assert too_much.status_code == 422 and too_much.json()["error"]["code"] == "refund_exceeds_payment"
    rest = await client.post(f"/bookings/{booking['id']}/refund", json={"amount_cents": 5400, "reason": "rest"},
                             headers=market.staff.headers)
    assert rest.json()["status"] == "refunded"
    after = await _balances(db, market.slug)
    assert after[rules.VAT_COLLECTED] == 0 and after.get(rules.COOP_CONTRIBUTION, 0) == 0
    assert sum(after.values()) == 0
    events = (await client.get("/audit/events", params={"action": "payment.refunded"},
                               headers=market.staff.headers)).json()
    assert sorted(e["data"]["amount_cents"] for e in events) == [5400, 5400]


async def test_refunds_are_for_staff_of_the_booking_cooperative_and_captured_payments(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    booking = await _completed_booking(client, market, clock)
    body = {"amount_cents": 100, "reason": "goodwill"}
    for headers in (market.client.headers, market.workers[0].headers):
        assert (await client.post(f"/bookings/{booking['id']}/refund", json=body, headers=headers)).status_code == 403
    other = await make_market(client, db, settings, workers=0)
    resp = await client.post(f"/bookings/{booking['id']}/refund", json=body, headers=other.staff.headers)
    assert resp.status_code == 404
    pending = await client.post("/bookings", json=booking_body(market, starts_at=next_day_at(10, 4)),
                                headers=market.client.headers)
    assert pending.status_code == 201, pending.text
    resp = await client.post(f"/bookings/{pending.json()['id']}/refund", json=body, headers=market.staff.headers)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_captured"
    bad = await client.post(f"/bookings/{booking['id']}/refund", json={"amount_cents": 0, "reason": "x"},
                            headers=market.staff.headers)
    assert bad.status_code == 422


async def test_a_refund_retried_with_its_key_refunds_once(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    booking = await _completed_booking(client, market, clock)
    headers = {**market.staff.headers, "Idempotency-Key": "refund-1"}
    body = {"amount_cents": 1000, "reason": "late arrival"}
    a = await client.post(f"/bookings/{booking['id']}/refund", json=body, headers=headers)
    b = await client.post(f"/bookings/{booking['id']}/refund", json=body, headers=headers)
    assert a.status_code == b.status_code == 200
    balances = await _balances(db, market.slug)
    async with db.sessionmaker() as s:
        from sqlalchemy import func, select

        from app.models import Refund
        assert (await s.execute(select(func.count()).select_from(Refund))).scalar_one() == 1
    assert sum(balances.values()) == 0
