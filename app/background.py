"""Periodic work inside each API process: expire offers and bookings past their delay, and finish
payment steps a crash or an outage left pending. Both are idempotent and safe to run in several
processes at once (row locks with SKIP LOCKED, processor idempotency keys, unique ledger references).

(DESIGN.md asks for a job queue fed by a transactional outbox for background work; this sweeper is
the first step: it needs no queue because its work is always re-derived from the database.)
"""
from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from datetime import timedelta

from sqlalchemy import delete, func, select

from app.models import Booking, HeldBookingChange
from app.services import bookings, payments

# A capture Stripe has not confirmed by webhook after this long is looked up at Stripe directly
# (webhooks can be delayed for hours, or lost when the endpoint was down past Stripe's retries).
UNCONFIRMED_CAPTURE_AFTER = timedelta(minutes=10)

log = logging.getLogger("coopgig.background")


async def sweep_once(app: FastAPI) -> None:
    now = app.state.clock()
    async with app.state.db.sessionmaker() as session:
        expired = await bookings.expire_due(session, app.state.gateway, app.state.rate_cards, now=now)
    async with app.state.db.sessionmaker() as session:
        retried = await bookings.retry_pending_payments(session, app.state.gateway, now=now)
    try:
        await prune_held_booking_changes(app)
    except Exception:  # never let housekeeping stop the payment steps below (or the reverse)
        log.exception("pruning held booking changes failed")
    reconciled = await reconcile_unconfirmed_captures(app)
    if expired or retried or reconciled:
        log.info("background sweep", extra={"bookings_expired_or_rematched": expired, "payments_retried": retried,
                                            "captures_reconciled": reconciled})


async def reconcile_unconfirmed_captures(app: FastAPI) -> int:
    """Apply the processor's state to captures still waiting for their webhook (at most 100 a sweep)."""
    now = app.state.clock()
    async with app.state.db.sessionmaker() as session:
        ids = list((await session.execute(select(Booking.id).where(
            Booking.payment_status == "capture_requested", Booking.payment_provider == app.state.gateway.provider,
            Booking.updated_at < now - UNCONFIRMED_CAPTURE_AFTER).limit(100))).scalars())
    done = 0
    for booking_id in ids:
        async with app.state.db.sessionmaker() as session:
            async def load(for_update: bool, booking_id=booking_id) -> Booking | None:
                query = select(Booking).where(Booking.id == booking_id, Booking.payment_status == "capture_requested")
                if for_update:  # another process (or the webhook) on it: leave it to them
                    query = query.with_for_update(skip_locked=True)
                return (await session.execute(query)).scalar_one_or_none()

            pending = await load(False)
            if pending is None:
                continue
            # Stripe is read with no row locked (payments.locked_with_intent).
            booking, intent = await payments.locked_with_intent(session, app.state.gateway, pending, load)
            if booking is not None and intent is not None:
                await payments.reconcile(session, booking, intent, now)
                await session.commit()
                done += 1
    return done


# held_booking_change rows are needed only by processes whose held bookings are older than they are,
# and those reload every supply.HELD_TTL_SECONDS (10 minutes): a day is far beyond it, and beyond any
# transaction that changes a booking.
HELD_CHANGES_KEPT = timedelta(days=1)


async def prune_held_booking_changes(app: FastAPI) -> int:
    """By the database's clock, which wrote `at` (the app's may be another's, or moved by tests).
    A transaction that changes bookings and stays open for more than a day could see its row
    deleted right after it commits; none does (each use case is one short unit of work)."""
    async with app.state.db.sessionmaker() as session:
        deleted = (await session.execute(delete(HeldBookingChange).where(
            HeldBookingChange.at < func.now() - HELD_CHANGES_KEPT))).rowcount
        await session.commit()
    return deleted


async def run_periodically(app: FastAPI, interval_seconds: float) -> None:
    while True:
        try:
            await sweep_once(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed sweep is retried at the next tick; never kill the loop
            log.exception("background sweep failed")
        await asyncio.sleep(interval_seconds)
