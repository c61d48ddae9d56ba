"""Payment events and money going back: Stripe webhooks (deduplicated, reconciled against the
intent's current state), staff refunds, disputes, and the guarantee fund.

A webhook's effect and the record that its event was processed commit in one transaction, so a
redelivered event changes nothing, and an event that failed half-way is simply processed again.

Webhooks never hold a row lock across the HTTP read of the intent: the booking is read first (no
lock, no transaction), then the intent at Stripe, then the state is applied. On PostgreSQL the common
case (`payment_intent.succeeded` for a completed booking waiting for its capture) is applied in ONE
statement, a compare-and-set on the booking's state as it was read before the HTTP call, with the
event record and the ledger postings (`_capture_fast`); anything else, or a booking that changed in
between, takes the general path, which locks the booking and re-reads the intent if the booking
changed since the first read (so late, repeated and reordered events still converge).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.domain import ledger as ledger_rules
from app.domain.errors import RefundExceedsPayment
from app.errors import Conflict, NotFound
from app.models import Booking, Cooperative, Refund, StripeEvent
from app.models.coop_settings import settings_of
from app.payments.port import IntentState, PaymentGateway
from app.services import audit, bookings, ledger
from app.services.bookings import SYSTEM

log = logging.getLogger("coopgig.payments")


def _object_of(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _intent_id_of(event: dict[str, Any]) -> str | None:
    obj = _object_of(event)
    if obj.get("object") == "payment_intent":
        value = obj.get("id")
    else:
        value = obj.get("payment_intent")
        value = value.get("id") if isinstance(value, dict) else value
    return value if isinstance(value, str) and value else None


_UNREAD = object()  # the intent was not read (yet)
_NO_INTENT_READ = frozenset({"charge.refunded", "charge.dispute.created", "charge.dispute.closed"})


@dataclass(slots=True)
class _BookingRead:
    """The booking as the webhook first reads it (no lock): what decides the capture, and its version.
    Its fields are the booking's column names, in the order the reads select them."""

    id: uuid.UUID
    cooperative_id: uuid.UUID
    status: str
    payment_status: str
    updated_at: datetime
    captured_cents: int
    refunded_cents: int
    payment_issue: str | None
    worker_member_id: uuid.UUID | None
    currency: str
    price_excl_vat_cents: int
    quote_terms: dict[str, Any]
    payment_intent_id: str


_BOOKING_READ_COLUMNS = tuple(f.name for f in fields(_BookingRead))


def _version(booking: Any) -> tuple:
    """What a webhook's effect may change on a booking: equal versions, same state."""
    return (booking.status, booking.payment_status, booking.updated_at, booking.captured_cents,
            booking.refunded_cents, booking.payment_issue)


# One round trip, outside any transaction: was the event processed, and the booking it concerns.
_PG_READ = (
    "SELECT EXISTS (SELECT 1 FROM stripe_event WHERE id = $2) AS seen, "
    + ", ".join(f"b.{c}" for c in _BOOKING_READ_COLUMNS)
    + " FROM (SELECT 1) AS one LEFT JOIN booking AS b ON b.payment_intent_id = $1"
)
_CORE_READ = select(*(getattr(Booking, c) for c in _BOOKING_READ_COLUMNS)).where(
    Booking.payment_intent_id == bindparam("pi"))
_CORE_SEEN = select(StripeEvent.id).where(StripeEvent.id == bindparam("event_id"))

# The capture in one statement: the booking's compare-and-set (its state as read before the HTTP call),
# the event's record (a plain insert: a redelivery fails it, and the general path answers
# "duplicate"), then the ledger postings, each only if the step before happened.
_PG_CAPTURE = (
    """WITH upd AS (
    UPDATE booking SET payment_status = 'captured', captured_cents = $5,
                       payment_issue = COALESCE($6, payment_issue)
    WHERE id = $1 AND status = $2 AND payment_status = $3 AND updated_at = $4
    RETURNING id),
ev AS (
    INSERT INTO stripe_event (id, type, payment_intent_id, outcome, received_at)
    SELECT $7, $8, $9, $10, $11 FROM upd
    RETURNING id),"""
    + ledger.pg_postings_ctes(first=12, gate="EXISTS (SELECT 1 FROM ev)")
    + """
SELECT (SELECT count(*) FROM ev) AS applied, (SELECT count(*) FROM ledger_en) AS entries"""
)
_CAPTURED = "captured: posted to the ledger"


async def handle_event(database: Database, gateway: PaymentGateway, *, event: dict[str, Any],
                       now: datetime) -> str:
    """Apply a verified Stripe event once; returns what was done (for the response and the logs)."""
    event_id, event_type = str(event.get("id") or ""), str(event.get("type") or "")
    if not event_id:
        return "ignored: no event id"
    pi_id = _intent_id_of(event)
    if pi_id is None:
        return await _general(database, gateway, event_id, event_type, event, None, now)
    if database.settings.is_sqlite:
        async with database.autocommit.connect() as conn:
            if (await conn.execute(_CORE_SEEN, {"event_id": event_id})).first() is not None:
                return "duplicate"
            row = (await conn.execute(_CORE_READ, {"pi": pi_id})).first()
        booking = _BookingRead(*row) if row is not None else None
    else:
        async with database.driver() as driver:
            row = await driver.fetchrow(_PG_READ, pi_id, event_id)
        if row["seen"]:
            return "duplicate"
        booking = _BookingRead(*row[1:]) if row["id"] is not None else None
    intent: IntentState | None | object = _UNREAD
    if booking is not None and event_type not in _NO_INTENT_READ:
        # Read at Stripe with no transaction open and no row locked.
        intent = await gateway.retrieve_intent(pi_id)
        if (not database.settings.is_sqlite and isinstance(intent, IntentState) and intent.status == "succeeded"
                and booking.status in ("completed", "cancelled") and booking.payment_status != "captured"):
            if await _capture_fast(database, booking, intent, event_id, event_type, now):
                return _CAPTURED
    return await _general(database, gateway, event_id, event_type, event, pi_id, now, intent=intent,
                          read=booking)


async def _capture_fast(database: Database, booking: _BookingRead, intent: IntentState, event_id: str,
                        event_type: str, now: datetime) -> bool:
    """The capture, its event record and its postings in one statement (PostgreSQL, autocommit: the
    statement is its own transaction, the ledger's deferred balance check runs at its end). False when
    the booking changed since it was read, or the event or a posting exists already: the caller then
    takes the general path, which sorts it out under the booking's lock."""
    plan = bookings.plan_capture(booking, processing_fee_cents=intent.processing_fee_cents,
                                 amount_cents=intent.amount_received_cents)
    args = [booking.id, booking.status, booking.payment_status, booking.updated_at, plan.amount_cents, plan.issue,
            event_id, event_type[:100], booking.payment_intent_id, _CAPTURED, now,
            *ledger.pg_postings_args(cooperative_id=booking.cooperative_id, postings=plan.postings,
                                     occurred_at=now)]
    try:
        async with database.driver() as driver:
            row = await driver.fetchrow(_PG_CAPTURE, *args)
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.TransactionRollbackError) as exc:
        log.info("webhook capture: general path", extra={"payment_intent": booking.payment_intent_id,
                                                          "reason": type(exc).__name__})
        return False
    return bool(row["applied"])


async def _general(database: Database, gateway: PaymentGateway, event_id: str, event_type: str,
                   event: dict[str, Any], pi_id: str | None, now: datetime, *, intent: Any = _UNREAD,
                   read: _BookingRead | None = None) -> str:
    """Any event: under the booking's lock, with the ORM. `intent` is the intent as read before (no
    lock held); it is read again, under the lock, if the booking changed since `read`."""
    async with database.sessionmaker() as session:
        outcome = await _apply(session, gateway, event_type, event, pi_id, now, intent=intent, read=read)
        session.add(StripeEvent(id=event_id, type=event_type, payment_intent_id=pi_id, outcome=outcome[:200],
                                received_at=now))
        try:
            await session.commit()
        except IntegrityError:  # the same event, delivered twice at once: the other delivery did it
            await session.rollback()
            return "duplicate"
        return outcome


async def _apply(session: AsyncSession, gateway: PaymentGateway, event_type: str, event: dict[str, Any],
                 pi_id: str | None, now: datetime, *, intent: Any = _UNREAD,
                 read: _BookingRead | None = None) -> str:
    if pi_id is None:
        return f"ignored: {event_type} concerns no payment intent"
    booking = (await session.execute(select(Booking).where(Booking.payment_intent_id == pi_id)
                                     .with_for_update())).scalar_one_or_none()
    if booking is None:
        log.warning("stripe event for an unknown payment intent", extra={"payment_intent": pi_id,
                                                                         "event_type": event_type})
        return "unknown payment intent"
    obj = _object_of(event)
    if event_type == "charge.refunded":
        return await _sync_refunds(session, booking, obj, now)
    if event_type == "charge.dispute.created":
        return await _dispute_opened(session, booking, obj, now)
    if event_type == "charge.dispute.closed":
        return await _dispute_closed(session, booking, obj, now)
    # Events can arrive late, twice or out of order: act on the intent as it is now, not on the event.
    # The read made before the lock is as good as one made now unless the booking changed meanwhile
    # (another event applied a newer state): then read again.
    if intent is _UNREAD or read is None or _version(read) != _version(booking):
        intent = await gateway.retrieve_intent(pi_id)
    if intent is None:
        return "intent unknown to the processor"
    return await reconcile(session, booking, intent, now, failed_event=event_type == "payment_intent.payment_failed")


async def reconcile(session: AsyncSession, booking: Booking, intent: IntentState, now: datetime, *,
                    failed_event: bool = False) -> str:
    """Bring the booking in line with the intent's current state."""
    if intent.status == "requires_capture":
        if booking.status == "pending_payment":
            await bookings.mark_authorized(session, booking, now)
            return "authorized: offered to workers"
        return "authorized (nothing to do)"
    if intent.status == "succeeded":
        if booking.payment_status == "captured":
            return "captured (already posted)"
        if booking.status not in ("completed", "cancelled"):
            booking.payment_issue = f"payment captured while the booking is {booking.status}"
            return "captured unexpectedly: flagged to staff"
        await bookings.record_capture(session, booking, processing_fee_cents=intent.processing_fee_cents,
                                      amount_cents=intent.amount_received_cents, now=now)
        return "captured: posted to the ledger"
    if intent.status == "canceled":
        if booking.status in ("pending_payment", "offered"):
            bookings._transition(session, booking, "expired", SYSTEM, now, {"reason": "payment canceled"})
            booking.payment_status = "released"
            return "canceled: booking expired"
        if booking.payment_status in ("release_pending", "released"):
            booking.payment_status = "released"
            return "released"
        if booking.status in ("accepted", "in_progress"):
            booking.payment_issue = "the payment hold was canceled before the work was done"
            return "hold lost: flagged to staff"
        return "canceled (nothing to do)"
    if intent.status == "requires_payment_method" and failed_event:
        # (A new intent waiting for the client's card is in this state too: only a failure event counts.)
        if booking.status == "completed" and booking.payment_status in ("capture_pending", "capture_requested"):
            return await _cover_failed_capture(session, booking, now)
        booking.payment_status = "failed"
        return "payment failed: the client can try another card"
    return f"intent {intent.status}: nothing to do"


async def _guarantee_enabled(session: AsyncSession, booking: Booking) -> bool:
    coop = await session.get(Cooperative, booking.cooperative_id)
    return settings_of(coop.settings).guarantee_fund_enabled


async def _cover_failed_capture(session: AsyncSession, booking: Booking, now: datetime) -> str:
    """The work was done but the client's payment failed: the member is paid from the guarantee fund."""
    if not await _guarantee_enabled(session, booking):
        booking.payment_issue = "capture failed after the work was done (guarantee fund not used)"
        booking.payment_status = "failed"
        return "capture failed: flagged to staff"
    budget = bookings.breakdown_of(booking).member_budget_cents
    await ledger.post(session, cooperative_id=booking.cooperative_id, occurred_at=now, posting=ledger_rules.Posting(
        f"guarantee:{booking.payment_intent_id}", "guarantee", "failed capture covered by the guarantee fund",
        (ledger_rules.Entry(ledger_rules.GUARANTEE_FUND, budget),
         ledger_rules.Entry(ledger_rules.member_activity(str(booking.worker_member_id)), -budget)),
        booking.currency))
    booking.payment_status = "failed"
    booking.payment_issue = "capture failed after the work was done: member paid from the guarantee fund"
    audit.record(session, action="payment.guarantee_used", target_type="booking", target_id=booking.id,
                 cooperative_id=booking.cooperative_id, actor_user_id=None, data={"amount_cents": budget})
    return "capture failed: member covered by the guarantee fund"


async def _dispute_opened(session: AsyncSession, booking: Booking, dispute: dict[str, Any], now: datetime) -> str:
    if booking.status == "completed":
        bookings._transition(session, booking, "disputed", SYSTEM, now, {"dispute": dispute.get("id")})
    booking.payment_issue = f"dispute {dispute.get('id')} opened ({dispute.get('reason', 'no reason given')})"
    audit.record(session, action="payment.dispute_opened", target_type="booking", target_id=booking.id,
                 cooperative_id=booking.cooperative_id, actor_user_id=None,
                 data={"dispute": dispute.get("id"), "amount_cents": dispute.get("amount")})
    return "dispute opened: flagged to staff"


async def _dispute_closed(session: AsyncSession, booking: Booking, dispute: dict[str, Any], now: datetime) -> str:
    status = dispute.get("status")
    if status == "won":
        if booking.status == "disputed":
            bookings._transition(session, booking, "completed", SYSTEM, now, {"dispute": "won"})
        booking.payment_issue = None
        return "dispute won"
    if status != "lost":
        return f"dispute {status}: nothing to do"
    amount = int(dispute.get("amount") or booking.captured_cents - booking.refunded_cents)
    if await _guarantee_enabled(session, booking):
        # The client got the money back from the bank; the member keeps their pay: the fund bears it.
        posting = ledger_rules.Posting(
            f"dispute_lost:{dispute.get('id')}", "dispute", "lost dispute borne by the guarantee fund",
            (ledger_rules.Entry(ledger_rules.GUARANTEE_FUND, amount),
             ledger_rules.Entry(ledger_rules.PROCESSOR_CLEARING, -amount)), booking.currency)
        await ledger.post(session, cooperative_id=booking.cooperative_id, posting=posting, occurred_at=now)
        note = "dispute lost: borne by the guarantee fund"
    else:
        for posting in ledger_rules.refund_postings(
                refund_id=f"dispute_{dispute.get('id')}", member_id=str(booking.worker_member_id),
                breakdown=bookings.breakdown_of(booking), amount_cents=amount,
                already_refunded_cents=booking.refunded_cents, currency=booking.currency):
            await ledger.post(session, cooperative_id=booking.cooperative_id, posting=posting, occurred_at=now)
        note = "dispute lost: reversed"
    booking.refunded_cents += amount
    if booking.status == "disputed":
        bookings._transition(session, booking, "refunded", SYSTEM, now, {"dispute": "lost"})
    booking.payment_issue = note
    audit.record(session, action="payment.dispute_lost", target_type="booking", target_id=booking.id,
                 cooperative_id=booking.cooperative_id, actor_user_id=None, data={"amount_cents": amount})
    return note


async def _post_refund(session: AsyncSession, booking: Booking, *, provider_refund_id: str, amount_cents: int,
                       reason: str, actor_user_id: uuid.UUID | None, now: datetime) -> bool:
    """Record one refund and post its reversing entries; False if it was recorded before."""
    exists = (await session.execute(select(Refund.id).where(Refund.provider_refund_id == provider_refund_id)))\
        .scalar_one_or_none()
    if exists is not None:
        return False
    await ledger.post_many(session, cooperative_id=booking.cooperative_id, occurred_at=now,
                           postings=ledger_rules.refund_postings(
                               refund_id=provider_refund_id, member_id=str(booking.worker_member_id),
                               breakdown=bookings.breakdown_of(booking), amount_cents=amount_cents,
                               already_refunded_cents=booking.refunded_cents, currency=booking.currency))
    session.add(Refund(cooperative_id=booking.cooperative_id, booking_id=booking.id,
                       provider_refund_id=provider_refund_id, amount_cents=amount_cents, reason=reason,
                       created_by_user_id=actor_user_id, created_at=now))
    booking.refunded_cents += amount_cents
    if booking.refunded_cents >= booking.captured_cents and booking.status in ("completed", "cancelled"):
        actor = bookings.Actor(actor_user_id, "staff" if actor_user_id else "system")
        bookings._transition(session, booking, "refunded", actor, now, {"refunded_cents": booking.refunded_cents})
    audit.record(session, action="payment.refunded", target_type="booking", target_id=booking.id,
                 cooperative_id=booking.cooperative_id, actor_user_id=actor_user_id,
                 data={"amount_cents": amount_cents, "reason": reason, "refund": provider_refund_id})
    return True


async def _sync_refunds(session: AsyncSession, booking: Booking, charge: dict[str, Any], now: datetime) -> str:
    """Refunds made at the processor (dashboard, or ours seen again) land in the ledger once."""
    posted = 0
    for refund in (charge.get("refunds") or {}).get("data", []) or []:
        if refund.get("status") in ("failed", "canceled"):
            continue
        amount = int(refund.get("amount") or 0)
        if amount <= 0 or booking.refunded_cents + amount > booking.captured_cents:
            continue
        posted += await _post_refund(session, booking, provider_refund_id=str(refund["id"]), amount_cents=amount,
                                     reason=refund.get("reason") or "refund made at the processor",
                                     actor_user_id=None, now=now)
    return f"refunds synced ({posted} new)"


async def refund(session: AsyncSession, gateway: PaymentGateway, *, booking_id: uuid.UUID, cooperative_id: uuid.UUID,
                 amount_cents: int, reason: str, actor_user_id: uuid.UUID, now: datetime,
                 claim_key: str | None = None) -> Booking:
    """A staff refund, partial or whole, with its reason; audited and posted as reversing entries."""
    booking = (await session.execute(select(Booking).where(
        Booking.id == booking_id, Booking.cooperative_id == cooperative_id).with_for_update())).scalar_one_or_none()
    if booking is None:
        raise NotFound("No such booking", code="booking_not_found")
    if booking.payment_status != "captured" or booking.captured_cents <= 0:
        raise Conflict("Only a captured payment can be refunded", code="not_captured")
    remaining = booking.captured_cents - booking.refunded_cents
    if amount_cents > remaining:
        raise RefundExceedsPayment(f"At most {remaining} cents can still be refunded")
    # The key makes a retried request refund once at the processor, even without an Idempotency-Key.
    key = claim_key or f"booking:{booking.id}:refund:{booking.refunded_cents}:{amount_cents}"
    result = await gateway.refund(payment_intent_id=booking.payment_intent_id, amount_cents=amount_cents,
                                  idempotency_key=key, reason=reason)
    await _post_refund(session, booking, provider_refund_id=result.id, amount_cents=amount_cents, reason=reason,
                       actor_user_id=actor_user_id, now=now)
    await session.commit()
    return booking


async def sync_payment(session: AsyncSession, gateway: PaymentGateway, *, booking_id: uuid.UUID, user_id: uuid.UUID,
                       role: str, cooperative_id: uuid.UUID, now: datetime) -> Booking:
    """Re-read the booking's payment at the processor and apply it, without waiting for the webhook
    (the client's app calls this right after confirming the payment)."""
    async def load(for_update: bool) -> Booking:
        return await bookings.visible_booking(session, booking_id=booking_id, user_id=user_id, role=role,
                                              cooperative_id=cooperative_id, member_id=None, for_update=for_update)

    booking = await load(False)
    if not booking.payment_intent_id or booking.payment_provider != gateway.provider:
        return booking
    booking, intent = await locked_with_intent(session, gateway, booking, load)
    if intent is not None:
        await reconcile(session, booking, intent, now)
        await session.commit()
    return booking


async def locked_with_intent(session: AsyncSession, gateway: PaymentGateway, booking: Booking,
                             load: Callable[[bool], Awaitable[Booking | None]],
                             ) -> tuple[Booking | None, IntentState | None]:
    """`booking` (just read by `load(False)`, unlocked) locked by `load(True)`, and its intent as the
    processor has it now, read with no row locked and no transaction open: a slow or unreachable
    processor never holds a booking's lock (which the webhook, the acceptance and the sweeper wait
    for). As in the webhook (`_apply`), the intent is read again under the lock only if the booking
    changed in between. `load(True)` may return None (gone, or locked elsewhere with SKIP LOCKED)."""
    payment_intent_id, seen = booking.payment_intent_id, _version(booking)
    await session.rollback()  # end the read's transaction before calling out
    intent = await gateway.retrieve_intent(payment_intent_id)
    locked = await load(True)
    if locked is not None and _version(locked) != seen:
        intent = await gateway.retrieve_intent(payment_intent_id)
    return locked, intent
