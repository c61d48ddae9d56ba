"""Choose the payment gateway from the settings: Stripe when configured, else the demo gateway."""
from __future__ import annotations

from app.config import Settings
from app.payments.demo import DemoPaymentGateway
from app.payments.port import PaymentGateway


def make_gateway(settings: Settings) -> PaymentGateway:
    if settings.stripe_api_key:
        from app.payments.stripe_gateway import StripeGateway  # noqa: PLC0415  (only when configured)

        return StripeGateway(settings)
    return DemoPaymentGateway()
