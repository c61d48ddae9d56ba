"""The FastAPI application factory: settings, database, routers, error handlers, middleware."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import background
from app.config import Settings, get_settings
from app.db import Database, utcnow
from app.errors import install_error_handlers
from app.logging import configure_logging
from app.middleware import RequestContextMiddleware
from app.payments.factory import make_gateway
from app.payouts.openfisca_engine import get_engine
from app.payouts.rate_card import RateCardCache
from app.routers import (
    accounts,
    audit,
    auth,
    bookings,
    catalog,
    cooperatives,
    members,
    offerings,
    ops,
    payments,
    reviews,
)
from app.services import quotes

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = database or Database(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load OpenFisca now (seconds, off the event loop) rather than on the first quote.
        await get_engine()
        sweeper = None
        if settings.background_interval_seconds > 0:
            sweeper = asyncio.create_task(background.run_periodically(app, settings.background_interval_seconds))
        yield
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if hasattr(app.state.gateway, "aclose"):
            await app.state.gateway.aclose()
        if database is None:  # an injected database belongs to the caller (tests)
            await db.dispose()

    app = FastAPI(title="coopgig", version="0.1.0", lifespan=lifespan,
                  description="Backend of a platform cooperative: bookings, payments, ledger, payroll.")
    app.state.settings = settings
    app.state.db = db
    app.state.clock = utcnow
    app.state.gateway = make_gateway(settings)
    app.state.rate_cards = RateCardCache()
    quotes.set_memo_size(settings.quote_memo_size)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    # Starlette tries the routes in order until one matches: the hot ones (matches, accept, the
    # webhook) first. No two routes match the same method and path (tests/unit/test_routes.py), so
    # the order changes nothing else.
    for router in (bookings.router, payments.router, auth.router, catalog.router, cooperatives.router,
                   audit.router, members.router, offerings.router, reviews.router, accounts.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(ops.router)
    return app


def _default_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)


# `uvicorn app.main:app` and contract_check import this; `coopgig serve` uses the same factory.
app = _default_app()
