"""The webhook's hot path: `payment_intent.succeeded` for a completed booking waiting for its capture.

On PostgreSQL it is one statement after the intent is read (app/services/payments.py `_capture_fast`);
these tests check it posts exactly what the general path posts, and that every way it can be
overtaken (the booking changed after it was read, the event recorded meanwhile, an account opened
meanwhile) ends in the general path's answer, never in a 500 or a double posting. On SQLite they run
the general path, which must give the same results.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select, update

from app.domain import ledger as rules
from app.models import Booking, LedgerTransaction, StripeEvent
from app.services import payments
from tests.conftest import IS_POSTGRES
from tests.e2e.test_stripe_payments import (  # noqa: F401  (fixtures)
    balances,
    client,
    completed_booking,
    deliver,
    ledger_transactions,
    stripe_settings,
)
from tests.market import make_market


def _spy_fast(monkeypatch) -> list[bool]:
    results: list[bool] = []
    original = payments._capture_fast

    async def spy(*args, **kwargs):
        results.append(await original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(payments, "_capture_fast", spy)
    return results


def _before_intent_read(monkeypatch, client, action) -> None:
    """Run `action()` right after the webhook read the booking, before it reads the intent."""
    gateway = client.app.state.gateway
    original = gateway.retrieve_intent
    done = []

    async def retrieve(pi_id):
        if not done:
            done.append(True)
            await action()
        return await original(pi_id)

    monkeypatch.setattr(gateway, "retrieve_intent", retrieve)


def _expected_capture_balances(done: dict, member_id: str) -> dict[str, int]:
    lines = {line["code"]: line["amount_cents"] for line in done["breakdown"]["lines"]}
    budget = lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"]
    return {
        rules.PROCESSOR_CLEARING: done["price_cents"] - lines["payment_processing"],
        rules.VAT_COLLECTED: -lines["vat"],
        rules.COOP_CONTRIBUTION: -lines["coop_contribution"],
        rules.member_activity(member_id): -budget,
    }


async def test_the_hot_path_posts_the_capture_once_in_one_statement(client, db, stripe_settings, localstripe_url,
                                                                     monkeypatch):
    fast = _spy_fast(monkeypatch)
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    pi = {"id": done["payment"]["payment_intent_id"], "object": "payment_intent"}
    event_id = f"evt_{uuid.uuid4().hex}"
    resp = await deliver(client, "payment_intent.succeeded", pi, event_id=event_id)
    assert resp.status_code == 200 and resp.json()["outcome"] == "captured: posted to the ledger"
    assert fast == ([True] if IS_POSTGRES else [])
    assert await balances(db, market.slug) == _expected_capture_balances(done, market.workers[0].member_id)
    async with db.sessionmaker() as s:
        booking = await s.get(Booking, uuid.UUID(done["id"]))
        assert (booking.payment_status, booking.captured_cents, booking.status) == (
            "captured", done["price_cents"], "completed")
        event = await s.get(StripeEvent, event_id)
        assert (event.type, event.payment_intent_id, event.outcome) == (
            "payment_intent.succeeded", pi["id"], "captured: posted to the ledger")
        txs = list((await s.execute(select(LedgerTransaction.reference, LedgerTransaction.kind)
                                    .order_by(LedgerTransaction.reference))).all())
    assert txs == sorted([(f"capture:{pi['id']}", "capture"), (f"contribution:{pi['id']}", "contribution"),
                          (f"processing_recharge:{pi['id']}", "processing_recharge")])
    # Redelivered: answered from the first read, no intent read, nothing posted.
    again = await deliver(client, "payment_intent.succeeded", pi, event_id=event_id)
    assert again.json()["outcome"] == "duplicate" and len(fast) == (1 if IS_POSTGRES else 0)
    # Another event about the same (captured) intent: nothing more posted.
    other = await deliver(client, "payment_intent.succeeded", pi)
    assert other.json()["outcome"] == "captured (already posted)"
    assert await ledger_transactions(db) == 3


async def test_a_booking_changed_after_the_first_read_takes_the_general_path(client, db, stripe_settings,
                                                                            localstripe_url, monkeypatch):
    fast = _spy_fast(monkeypatch)
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    pi = {"id": done["payment"]["payment_intent_id"], "object": "payment_intent"}

    async def captured_meanwhile():  # e.g. the client's app synced it, or the sweeper
        async with db.sessionmaker() as s:
            await s.execute(update(Booking).where(Booking.id == uuid.UUID(done["id"])).values(
                payment_status="captured", captured_cents=done["price_cents"]))
            await s.commit()

    _before_intent_read(monkeypatch, client, captured_meanwhile)
    resp = await deliver(client, "payment_intent.succeeded", pi)
    assert resp.status_code == 200 and resp.json()["outcome"] == "captured (already posted)"
    assert fast == ([False] if IS_POSTGRES else [])
    assert await ledger_transactions(db) == 0  # (the update above posted nothing: the general path neither)


async def test_an_event_recorded_after_the_first_read_is_a_duplicate(client, db, stripe_settings, localstripe_url,
                                                                     monkeypatch):
    fast = _spy_fast(monkeypatch)
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    pi = {"id": done["payment"]["payment_intent_id"], "object": "payment_intent"}
    event_id = f"evt_{uuid.uuid4().hex}"

    async def recorded_meanwhile():
        async with db.sessionmaker() as s:
            s.add(StripeEvent(id=event_id, type="payment_intent.succeeded", payment_intent_id=pi["id"],
                              outcome="intent requires_capture: nothing to do"))
            await s.commit()

    _before_intent_read(monkeypatch, client, recorded_meanwhile)
    resp = await deliver(client, "payment_intent.succeeded", pi, event_id=event_id)
    assert resp.status_code == 200 and resp.json()["outcome"] == "duplicate"
    assert fast == ([False] if IS_POSTGRES else [])
    assert await ledger_transactions(db) == 0
    async with db.sessionmaker() as s:
        booking = await s.get(Booking, uuid.UUID(done["id"]))
        assert booking.payment_status == "capture_requested"  # the statement was undone as a whole


async def test_captures_of_one_new_member_account_racing_each_other_post_both(client, db, stripe_settings,
                                                                              localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    first = await completed_booking(client, market, localstripe_url)
    second = await completed_booking(client, market, localstripe_url)
    results = await asyncio.gather(*(
        deliver(client, "payment_intent.succeeded", {"id": b["payment"]["payment_intent_id"],
                                                     "object": "payment_intent"}) for b in (first, second)))
    assert [r.json()["outcome"] for r in results] == ["captured: posted to the ledger"] * 2
    after = await balances(db, market.slug)
    one = _expected_capture_balances(first, market.workers[0].member_id)
    two = _expected_capture_balances(second, market.workers[0].member_id)
    assert after == {code: one[code] + two[code] for code in one} and sum(after.values()) == 0
    async with db.sessionmaker() as s:
        from app.models import LedgerAccount

        member_accounts = (await s.execute(select(func.count()).select_from(LedgerAccount).where(
            LedgerAccount.code == rules.member_activity(market.workers[0].member_id)))).scalar_one()
    assert member_accounts == 1


async def test_a_capture_of_another_amount_is_flagged_on_the_hot_path_too(client, db, stripe_settings,
                                                                         localstripe_url):
    market = await make_market(client, db, stripe_settings, workers=1)
    done = await completed_booking(client, market, localstripe_url)
    # The booking's price is lowered after the capture was requested (what a staff correction would do):
    # Stripe took the old amount, which the webhook must record and flag.
    async with db.sessionmaker() as s:
        booking = await s.get(Booking, uuid.UUID(done["id"]))
        captured = done["price_cents"]
        booking.price_excl_vat_cents -= 100
        await s.commit()
    resp = await deliver(client, "payment_intent.succeeded", {"id": done["payment"]["payment_intent_id"],
                                                              "object": "payment_intent"})
    assert resp.json()["outcome"] == "captured: posted to the ledger"
    async with db.sessionmaker() as s:
        booking = await s.get(Booking, uuid.UUID(done["id"]))
        assert booking.captured_cents == captured
        assert booking.payment_issue and booking.payment_issue.startswith(f"captured {captured} cents")
    assert sum((await balances(db, market.slug)).values()) == 0


@pytest.mark.parametrize("body", [b'{"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": 5}}',
                                  b'{"id": "evt_y", "type": "payment_intent.succeeded", "data": {}}'])
async def test_odd_events_are_acknowledged_not_500(client, db, stripe_settings, body):
    from app.payments.stripe_events import sign
    from tests.e2e.test_stripe_payments import SECRET

    resp = await client.post("/payments/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, SECRET)})
    assert resp.status_code == 200 and resp.json()["outcome"].startswith("ignored")
