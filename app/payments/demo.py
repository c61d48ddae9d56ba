"""DemoPaymentGateway: a stand-in for local demos and tests without a payment processor.

It moves no money: every authorization is held at once, every capture settles at once, with the
fee of the cooperative's fee schedule. It is only used when STRIPE_API_KEY is not set (see
app/payments/factory.py), and bookings paid through it say `provider: "demo"`.
"""
from __future__ import annotations

import hashlib

from app.payments.port import Authorization, AuthorizeRequest, Capture, IntentState, RefundResult


class DemoPaymentGateway:
    provider = "demo"

    async def authorize(self, request: AuthorizeRequest) -> Authorization:
        digest = hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:24]
        return Authorization(provider=self.provider, payment_intent_id=f"demo_pi_{digest}",
                             client_secret=None, status="authorized")

    async def capture(self, *, payment_intent_id: str, amount_cents: int, idempotency_key: str) -> Capture:
        return Capture(amount_cents=amount_cents, processing_fee_cents=None, settled=True)

    async def release(self, *, payment_intent_id: str, idempotency_key: str) -> None:
        return None

    async def retrieve_intent(self, payment_intent_id: str) -> IntentState | None:
        return None  # no processor behind it: webhooks never concern demo payments

    async def refund(self, *, payment_intent_id: str, amount_cents: int, idempotency_key: str,
                     reason: str) -> RefundResult:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return RefundResult(id=f"demo_re_{digest}", amount_cents=amount_cents, status="succeeded")
