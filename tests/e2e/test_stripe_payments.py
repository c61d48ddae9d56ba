"""Payments through the cooperative on Stripe's code path, against localstripe (a Stripe-compatible
server started by tests/stripe_harness.py): authorize, confirm like the mobile SDK, signed webhooks,
capture, ledger, refunds, disputes, the guarantee fund, idempotency."""
from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from app.domain import ledger as rules
from app.main import create_app
from app.models import Booking, LedgerTransaction
from app.payments.stripe_events import build_event, sign
from app.services import ledger, tenancy
from tests.conftest import make_settings
from tests.market import Clock, booking_body, make_market, next_day_at, set_coop_settings
from tests.stripe_harness import TEST_API_KEY, confirm_payment_intent, list_payment_intents

SECRET = "whsec_coopgig_tests"


@pytest.fixture
def stripe_settings(localstripe_url):
    return make_settings(stripe_api_key=TEST_API_KEY, stripe_api_base=localstripe_url, stripe_webhook_secret=SECRET)


@pytest.fixture
async def client(db, stripe_settings):
    """The API client of an app whose payments go through (local) Stripe."""
    app = create_app(stripe_settings, database=db)
    app.state.clock = Clock()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as c:
        c.app = app
        yield c
    await app.state.gateway.aclose()


async def deliver(client, event_type: str, obj: dict, *, event_id: str | None = None) -> httpx.Response:
    body = build_event(event_type, obj, event_id=event_id)
    return await client.post("/payments/stripe/webhook", content=body,
                             headers={"Stripe-Signature": sign(body, SECRET), "Content-Type": "application/json"})


async def offered_booking(client, market, url, **kwargs) -> dict:
    """Book, confirm the payment as the client's app would, and let Stripe's event arrive."""
    # Book a slot two days after the app's clock (tests move it forward to start the work).
    kwargs.setdefault("starts_at", client.app.state.clock().replace(hour=10, minute=0, second=0, microsecond=0)
                      + timedelta(days=2))
    resp = await client.post("/bookings", json=booking_body(market, **kwargs), headers=market.client.headers)
    assert resp.status_code == 201, resp.text
    booking = resp.json()
    assert booking["status"] == "pending_payment" and booking["payment"]["provider"] == "stripe"
    assert booking["payment"]["client_secret"]
    intent = await confirm_payment_intent(url, booking["payment"]["payment_intent_id"],
                                          booking["payment"]["client_secret"])
    assert intent["status"] == "requires_capture"
    event = await deliver(client, "payment_intent.amount_capturable_updated",
                          {"id": booking["payment"]["payment_intent_id"], "object": "payment_intent"})
    assert event.status_code == 200 and event.json()["outcome"].startswith("authorized")
    return (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()


async def completed_booking(client, market, url, minutes: int = 180) -> dict:
    booking = await offered_booking(client, market, url)
    assert booking["status"] == "offered"
    worker = market.workers[0]
    assert (await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)).status_code == 200
    client.app.state.clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    done = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": minutes},
                             headers=worker.headers)
    assert done.status_code == 200, done.text
    return done.json()


async def balances(db, slug) -> dict[str, int]:
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, slug)
        return {b.code: b.balance_cents for b in await ledger.balances(s, cooperative_id=coop.id) if b.balance_cents}


async def ledger_transactions(db) -> int:
    async with db.sessionmaker() as s:
        return (await s.execute(select(func.count()).select_from(LedgerTransaction))).scalar_one()


async def test_book_authorize_accept_complete_capture_post_refund(client, db, stripe_settings, localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    worker = market.workers[0]
    done = await completed_booking(client, market, localstripe_url, minutes=150)
    assert done["status"] == "completed" and done["payment"]["status"] == "capture_requested"
    assert await balances(db, market.slug) == {}  # nothing is posted before Stripe confirms the capture
    pi = done["payment"]["payment_intent_id"]
    intents = {i["id"]: i for i in await list_payment_intents(localstripe_url)}
    assert intents[pi]["status"] == "succeeded"

    resp = await deliver(client, "payment_intent.succeeded", {"id": pi, "object": "payment_intent"})
    assert resp.status_code == 200 and resp.json()["outcome"] == "captured: posted to the ledger"
    lines = {line["code"]: line["amount_cents"] for line in done["breakdown"]["lines"]}
    after = await balances(db, market.slug)
    budget = lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"]
    assert after == {
        rules.PROCESSOR_CLEARING: done["price_cents"] - lines["payment_processing"],
        rules.VAT_COLLECTED: -lines["vat"],
        rules.COOP_CONTRIBUTION: -lines["coop_contribution"],
        rules.member_activity(worker.member_id): -budget,
    }  # processing fee: booked, then recharged to the member who bears it (net 0)
    assert sum(after.values()) == 0

    refund = await client.post(f"/bookings/{done['id']}/refund",
                               json={"amount_cents": done["price_cents"], "reason": "work not up to standard"},
                               headers=market.staff.headers)
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "refunded"
    reversed_ = await balances(db, market.slug)
    assert rules.VAT_COLLECTED not in reversed_ and rules.COOP_CONTRIBUTION not in reversed_
    assert sum(reversed_.values()) == 0
    # Stripe's own charge.refunded event for that refund changes nothing more.
    txs = await ledger_transactions(db)
    charge = intents[pi]["latest_charge"] if isinstance(intents[pi].get("latest_charge"), str) else None
    refunds = await client.app.state.gateway._refunds.list_async({"payment_intent": pi})
    resp = await deliver(client, "charge.refunded", {
        "id": charge or "ch_x", "object": "charge", "payment_intent": pi,
        "refunds": {"data": [{"id": r.id, "amount": r.amount, "status": "succeeded"} for r in refunds.data]}})
    assert resp.status_code == 200 and resp.json()["outcome"] == "refunds synced (0 new)"
    assert await ledger_transactions(db) == txs


async def test_webhooks_need_a_valid_signature(client, db, stripe_settings):
    body = build_event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent"})
    for headers in ({}, {"Stripe-Signature": "t=1,v1=deadbeef"},
                    {"Stripe-Signature": sign(body, "whsec_someone_else")}):
        resp = await client.post("/payments/stripe/webhook", content=body, headers=headers)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_signature"
    tampered = body.replace(b"pi_x", b"pi_y")
    resp = await client.post("/payments/stripe/webhook", content=tampered,
                             headers={"Stripe-Signature": sign(body, SECRET)})
    assert resp.status_code == 400


async def test_an_event_for_an_unknown_intent_is_acknowledged(client, db, stripe_settings):
    resp = await deliver(client, "payment_intent.succeeded", {"id": "pi_nobody_knows", "object": "payment_intent"})
    assert resp.status_code == 200 and resp.json()["outcome"] == "unknown payment intent"
    for odd in ({"object": "payment_intent"}, {"id": 42, "object": "payment_intent"}, {"object": "charge"}):
        resp = await deliver(client, "payment_intent.succeeded", odd)
        assert resp.status_code == 200 and resp.json()["outcome"].startswith("ignored")
    body = b'{"id": "evt_1", "type": "x", "data": []}'
    resp = await client.post("/payments/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, SECRET)})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_signature"  # not a Stripe event


async def test_redelivered_and_reordered_events_converge(client, db, stripe_settings, localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    pi = {"id": done["payment"]["payment_intent_id"], "object": "payment_intent"}
    succeeded_id = f"evt_{uuid.uuid4().hex}"
    # Five deliveries of one event (two of them at the same time) post once.
    results = [await deliver(client, "payment_intent.succeeded", pi, event_id=succeeded_id) for _ in range(3)]
    results += await asyncio.gather(*(deliver(client, "payment_intent.succeeded", pi, event_id=succeeded_id)
                                      for _ in range(2)))
    assert all(r.status_code == 200 for r in results)
    assert [r.json()["outcome"] for r in results].count("captured: posted to the ledger") == 1
    once = await balances(db, market.slug)
    # An old authorization event arriving after the capture changes nothing (the intent is re-read).
    late = await deliver(client, "payment_intent.amount_capturable_updated", pi)
    assert late.status_code == 200 and await balances(db, market.slug) == once
    booking = (await client.get(f"/bookings/{done['id']}", headers=market.client.headers)).json()
    assert booking["status"] == "completed" and booking["payment"]["status"] == "captured"


async def test_reverse_order_delivery_ends_like_in_order_delivery(client, db, stripe_settings, localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    pi = {"id": booking["payment"]["payment_intent_id"], "object": "payment_intent"}
    await confirm_payment_intent(localstripe_url, pi["id"], booking["payment"]["client_secret"])
    # The failure of an earlier attempt arrives after the authorization: the intent says it is held.
    for event_type in ("payment_intent.amount_capturable_updated", "payment_intent.payment_failed"):
        assert (await deliver(client, event_type, pi)).status_code == 200
    in_order = (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()
    other = (await client.post("/bookings", json=booking_body(market, starts_at=next_day_at(15)),
                               headers=market.client.headers)).json()
    pi2 = {"id": other["payment"]["payment_intent_id"], "object": "payment_intent"}
    await confirm_payment_intent(localstripe_url, pi2["id"], other["payment"]["client_secret"])
    for event_type in ("payment_intent.payment_failed", "payment_intent.amount_capturable_updated"):
        assert (await deliver(client, event_type, pi2)).status_code == 200
    reversed_ = (await client.get(f"/bookings/{other['id']}", headers=market.client.headers)).json()
    assert in_order["status"] == reversed_["status"] == "offered"
    assert in_order["payment"]["status"] == reversed_["payment"]["status"] == "authorized"


async def test_one_key_one_booking_one_payment_intent(client, db, stripe_settings, localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=2)
    before = len(await list_payment_intents(localstripe_url))
    headers = {**market.client.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await client.post("/bookings", json=booking_body(market), headers=headers)
    second = await client.post("/bookings", json=booking_body(market), headers=headers)
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    assert len(await list_payment_intents(localstripe_url)) == before + 1
    other_body = await client.post("/bookings", json=booking_body(market, minutes=60), headers=headers)
    assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "idempotency_key_reused"
    racing_headers = {**market.client.headers, "Idempotency-Key": f"k-{uuid.uuid4()}"}
    racing = await asyncio.gather(*(client.post("/bookings", json=booking_body(market, starts_at=next_day_at(15)),
                                                headers=racing_headers) for _ in range(2)))
    assert len({r.json()["id"] for r in racing if r.status_code == 201}) == 1
    assert len(await list_payment_intents(localstripe_url)) == before + 2
    async with db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Booking))).scalar_one() == 2


async def test_a_failed_capture_after_the_work_is_covered_by_the_guarantee_fund(client, db, stripe_settings,
                                                                                 localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    worker = market.workers[0]
    # The client never confirmed a card, yet the work was done (e.g. the card was withdrawn).
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    async with db.sessionmaker() as s:
        await s.execute(update(Booking).where(Booking.id == uuid.UUID(booking["id"])).values(
            status="completed", worker_member_id=uuid.UUID(worker.member_id), payment_status="capture_requested",
            actual_minutes=180, final_price_cents=booking["price_cents"]))
        await s.commit()
    resp = await deliver(client, "payment_intent.payment_failed",
                         {"id": booking["payment"]["payment_intent_id"], "object": "payment_intent"})
    assert resp.json()["outcome"] == "capture failed: member covered by the guarantee fund"
    lines = {line["code"]: line["amount_cents"] for line in booking["breakdown"]["lines"]}
    budget = lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"]
    assert await balances(db, market.slug) == {rules.GUARANTEE_FUND: budget,
                                               rules.member_activity(worker.member_id): -budget}
    events = (await client.get("/audit/events", params={"action": "payment.guarantee_used"},
                               headers=market.staff.headers)).json()
    assert len(events) == 1


async def test_a_lost_dispute_is_borne_by_the_guarantee_fund_or_reversed(client, db, stripe_settings,
                                                                         localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    pi = done["payment"]["payment_intent_id"]
    await deliver(client, "payment_intent.succeeded", {"id": pi, "object": "payment_intent"})
    captured = await balances(db, market.slug)
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": pi, "amount": done["price_cents"],
               "reason": "fraudulent", "status": "needs_response"}
    assert (await deliver(client, "charge.dispute.created", dispute)).status_code == 200
    assert (await client.get(f"/bookings/{done['id']}", headers=market.client.headers)).json()["status"] == "disputed"
    closed = await deliver(client, "charge.dispute.closed", {**dispute, "status": "lost"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["outcome"] == "dispute lost: borne by the guarantee fund"
    after = await balances(db, market.slug)
    member = rules.member_activity(market.workers[0].member_id)
    assert after[member] == captured[member]  # the member keeps their pay
    assert after[rules.GUARANTEE_FUND] == done["price_cents"] and sum(after.values()) == 0
    assert (await client.get(f"/bookings/{done['id']}", headers=market.client.headers)).json()["status"] == "refunded"

    await set_coop_settings(db, market.slug, guarantee_fund_enabled=False)
    second = await completed_booking(client, market, localstripe_url)
    pi2 = second["payment"]["payment_intent_id"]
    await deliver(client, "payment_intent.succeeded", {"id": pi2, "object": "payment_intent"})
    dispute2 = {**dispute, "id": "dp_2", "payment_intent": pi2, "amount": second["price_cents"]}
    await deliver(client, "charge.dispute.created", dispute2)
    await deliver(client, "charge.dispute.closed", {**dispute2, "status": "lost"})
    final = await balances(db, market.slug)
    assert final[rules.GUARANTEE_FUND] == done["price_cents"] and sum(final.values()) == 0


async def test_the_clients_app_can_sync_its_payment_without_waiting_for_the_webhook(client, db, stripe_settings,
                                                                                      localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    url = f"/bookings/{booking['id']}/payment/sync"
    before = await client.post(url, headers=market.client.headers)
    assert before.status_code == 200 and before.json()["status"] == "pending_payment"  # not confirmed yet
    await confirm_payment_intent(localstripe_url, booking["payment"]["payment_intent_id"],
                                 booking["payment"]["client_secret"])
    after = await client.post(url, headers=market.client.headers)
    assert after.json()["status"] == "offered" and after.json()["payment"]["status"] == "authorized"
    assert (await client.post(url, headers=market.workers[0].headers)).status_code == 403
    other = await make_market(client, db, stripe_settings, workers=0)
    assert (await client.post(url, headers=other.client.headers)).status_code == 404


async def test_a_capture_whose_webhook_never_came_is_reconciled_by_the_sweeper(client, db, stripe_settings,
                                                                              localstripe_url):
    from app import background

    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    assert done["payment"]["status"] == "capture_requested"
    assert await background.reconcile_unconfirmed_captures(client.app) == 0  # too recent: the webhook may come
    client.app.state.clock.advance(timedelta(minutes=11))
    assert await background.reconcile_unconfirmed_captures(client.app) == 1
    after = (await client.get(f"/bookings/{done['id']}", headers=market.client.headers)).json()
    assert after["payment"]["status"] == "captured"
    assert sum((await balances(db, market.slug)).values()) == 0 and await balances(db, market.slug)
    # The webhook arriving late afterwards changes nothing.
    txs = await ledger_transactions(db)
    late = await deliver(client, "payment_intent.succeeded", {"id": done["payment"]["payment_intent_id"],
                                                              "object": "payment_intent"})
    assert late.json()["outcome"] == "captured (already posted)" and await ledger_transactions(db) == txs


class _LockProbe:
    """Wraps the gateway's intent read: while Stripe "answers", tries to lock the booking from
    another connection (NOWAIT) and records whether it could."""

    def __init__(self, db, gateway) -> None:
        self.db, self.inner, self.free = db, gateway.retrieve_intent, []

    async def __call__(self, payment_intent_id: str):
        async with self.db.engine.connect() as other:
            try:
                await other.execute(select(Booking.id).where(Booking.payment_intent_id == payment_intent_id)
                                    .with_for_update(nowait=True))
                self.free.append(True)
            except Exception:  # LockNotAvailable: the booking is locked during the call
                self.free.append(False)
            await other.rollback()
        return await self.inner(payment_intent_id)


@pytest.mark.postgres
async def test_the_processor_is_read_with_no_booking_locked(client, db, stripe_settings, localstripe_url):
    """A slow processor must not hold the booking's lock (webhooks, acceptances and the sweeper wait
    on it): the client's sync and the sweeper read Stripe first, then lock and apply."""
    from app import background

    market = await make_market(client, db, stripe_settings, workers=1)
    probe = client.app.state.gateway.retrieve_intent = _LockProbe(db, client.app.state.gateway)
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    await confirm_payment_intent(localstripe_url, booking["payment"]["payment_intent_id"],
                                 booking["payment"]["client_secret"])
    synced = await client.post(f"/bookings/{booking['id']}/payment/sync", headers=market.client.headers)
    assert synced.json()["status"] == "offered"  # applied
    done = await completed_booking(client, market, localstripe_url)
    client.app.state.clock.advance(timedelta(minutes=11))
    assert await background.reconcile_unconfirmed_captures(client.app) == 1
    after = (await client.get(f"/bookings/{done['id']}", headers=market.client.headers)).json()
    assert after["payment"]["status"] == "captured"
    assert probe.free and all(probe.free), probe.free
