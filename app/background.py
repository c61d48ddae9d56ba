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

from app.services import bookings

log = logging.getLogger("coopgig.background")


async def sweep_once(app: FastAPI) -> None:
    now = app.state.clock()
    async with app.state.db.sessionmaker() as session:
        expired = await bookings.expire_due(session, app.state.gateway, app.state.rate_cards, now=now)
    async with app.state.db.sessionmaker() as session:
        retried = await bookings.retry_pending_payments(session, app.state.gateway, now=now)
    if expired or retried:
        log.info("background sweep", extra={"bookings_expired_or_rematched": expired, "payments_retried": retried})


async def run_periodically(app: FastAPI, interval_seconds: float) -> None:
    while True:
        try:
            await sweep_once(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed sweep is retried at the next tick; never kill the loop
            log.exception("background sweep failed")
        await asyncio.sleep(interval_seconds)
