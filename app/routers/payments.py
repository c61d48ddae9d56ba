"""Payments (API.md "Payments"): the Stripe webhook and staff refunds."""
from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.deps import CurrentUser, GatewayDep, NowDep, SessionDep, StaffUser
from app.errors import Forbidden
from app.payments.stripe_events import verify_and_parse
from app.routers import idempotent
from app.routers.bookings import booking_public
from app.services import payments

router = APIRouter(tags=["payments"])


class WebhookOut(BaseModel):
    received: str
    outcome: str


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount_cents: int = Field(gt=0, le=100_000_000)
    reason: str = Field(min_length=3, max_length=500)


@router.post("/payments/stripe/webhook", response_model=WebhookOut)
async def stripe_webhook(request: Request) -> JSONResponse:
    """Stripe events, verified on the raw body; redeliveries and out-of-order events change nothing twice."""
    # The hottest route (every payment event): the app's state read directly, no dependency to solve,
    # no response model to validate (the shape is WebhookOut, documented above).
    state = request.app.state
    event = verify_and_parse(await request.body(), request.headers.get("stripe-signature"),
                             state.settings.stripe_webhook_secret)
    outcome = await payments.handle_event(state.db, state.gateway, event=event, now=state.clock())
    return JSONResponse({"received": "true", "outcome": outcome})


@router.post("/bookings/{booking_id}/refund")
async def refund(booking_id: uuid.UUID, body: RefundIn, request: Request, user: StaffUser, session: SessionDep,
                 gateway: GatewayDep, now: NowDep) -> JSONResponse:
    async def handler(claim):
        booking = await payments.refund(session, gateway, booking_id=booking_id, cooperative_id=user.cooperative_id,
                                        amount_cents=body.amount_cents, reason=body.reason,
                                        actor_user_id=user.user_id, now=now,
                                        claim_key=f"idem:{claim.record_id}" if claim else None)
        return booking_public(booking, role=user.role, member_id=None)

    return await idempotent.run(request, session=session, user_id=user.user_id, status_code=200, handler=handler)


@router.post("/bookings/{booking_id}/payment/sync")
async def sync_payment(booking_id: uuid.UUID, user: CurrentUser, session: SessionDep, gateway: GatewayDep,
                       now: NowDep):
    """The client's app, after confirming the payment: apply the processor's state now."""
    if user.role not in ("client", "staff", "admin"):
        raise Forbidden("Only the booking's client or staff can do this", code="wrong_role")
    booking = await payments.sync_payment(session, gateway, booking_id=booking_id, user_id=user.user_id,
                                          role=user.role, cooperative_id=user.cooperative_id, now=now)
    return booking_public(booking, role=user.role, member_id=None)
