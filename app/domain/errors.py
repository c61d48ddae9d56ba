"""Domain errors: a stable snake_case `code`, a human `message` and a `status` hint (409 or 422).

app/errors.py maps them to the API's `{"error": {"code", "message"}}` shape.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every business-rule violation raised by app.domain."""

    code: str = "domain_error"
    status: int = 422

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message()
        super().__init__(self.message)

    def default_message(self) -> str:
        return self.code.replace("_", " ")


class UnbalancedTransaction(DomainError):
    """A posting (or a trial balance) whose debits and credits differ: a bug, never user input."""

    code = "unbalanced_transaction"
    status = 409


class PriceTooLow(DomainError):
    """The price leaves nothing (or less than nothing) for the member after VAT and fees."""

    code = "price_too_low"
    status = 422


class BelowFairPayFloor(DomainError):
    """An hourly rate that cannot pay the legal minimum net hourly wage after every contribution."""

    code = "below_fair_pay_floor"
    status = 422

    def __init__(self, floor_cents: int, message: str | None = None) -> None:
        self.floor_cents = floor_cents
        super().__init__(
            message
            or f"the hourly rate must be at least {floor_cents} cents excl. VAT to pay the "
            "legal minimum net hourly wage after every contribution"
        )


class InvalidFeeSchedule(DomainError):
    """A fee schedule out of range (rates outside 0..10000 bps, tiers not ascending, ...)."""

    code = "invalid_fee_schedule"
    status = 422


class InvalidRateCard(DomainError):
    """A payroll rate card (or salary rates) that cannot be used to split a budget."""

    code = "invalid_rate_card"
    status = 422


class InvalidCurrency(DomainError):
    """Not an ISO 4217 alphabetic code (three uppercase letters)."""

    code = "invalid_currency"
    status = 422


class InvalidAmount(DomainError):
    """A negative amount, or a rate outside its range, given to a money rule."""

    code = "invalid_amount"
    status = 422


class RefundExceedsPayment(DomainError):
    """A refund larger than what is left of the captured payment."""

    code = "refund_exceeds_payment"
    status = 422
