"""The one small interface the booking flow uses to move a client's money.

The booking flow never knows which processor is behind it: Stripe in production (app/payments/stripe
adapter), or the demo gateway for local demos without Stripe. Amounts are integer cents, VAT included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

AuthorizationStatus = Literal["requires_confirmation", "authorized"]


@dataclass(frozen=True)
class Authorization:
    provider: str
    payment_intent_id: str
    client_secret: str | None
    # `authorized`: the funds are held now (demo). `requires_confirmation`: the client's app must
    # confirm the payment first; the processor tells us when the funds are held (webhook).
    status: AuthorizationStatus


@dataclass(frozen=True)
class Capture:
    amount_cents: int
    # The processor's actual fee when it is known at capture time (None: take it from the
    # schedule's fee model, or later from the processor's balance transaction).
    processing_fee_cents: int | None
    # True when the money is captured now (demo); False when the processor confirms it later
    # (Stripe: payment_intent.succeeded), and the ledger posting waits for that confirmation.
    settled: bool


@dataclass(frozen=True)
class AuthorizeRequest:
    booking_id: str
    cooperative_slug: str
    amount_cents: int
    currency: str
    description: str
    idempotency_key: str


@dataclass(frozen=True)
class IntentState:
    """A payment intent as the processor sees it now (webhooks act on this, not on the event)."""

    id: str
    status: str  # requires_payment_method, requires_confirmation, requires_capture, succeeded, canceled...
    amount_cents: int
    amount_capturable_cents: int
    amount_received_cents: int
    processing_fee_cents: int | None
    latest_charge: str | None


@dataclass(frozen=True)
class RefundResult:
    id: str
    amount_cents: int
    status: str


class PaymentGateway(Protocol):
    provider: str

    async def authorize(self, request: AuthorizeRequest) -> Authorization:
        """Hold the amount on the client's means of payment (nothing is charged yet)."""

    async def capture(self, *, payment_intent_id: str, amount_cents: int, idempotency_key: str) -> Capture:
        """Charge `amount_cents` (at most what was authorized); the rest of the hold is released."""

    async def release(self, *, payment_intent_id: str, idempotency_key: str) -> None:
        """Drop the hold entirely (cancellation before any fee is due, no taker)."""

    async def retrieve_intent(self, payment_intent_id: str) -> IntentState | None:
        """The intent's current state at the processor (None: the processor does not know it)."""

    async def refund(self, *, payment_intent_id: str, amount_cents: int, idempotency_key: str,
                     reason: str) -> RefundResult:
        """Give back part or all of a captured payment."""
