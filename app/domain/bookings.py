"""The booking state machine (API.md "Booking states") and the cancellation policy, as pure rules."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.errors import DomainError

# (from, to) -> the roles that may cause it; "system" = payment events, expiry and re-matching.
TRANSITIONS: dict[tuple[str | None, str], frozenset[str]] = {
    (None, "pending_payment"): frozenset({"client"}),
    ("pending_payment", "offered"): frozenset({"system"}),
    ("pending_payment", "cancelled"): frozenset({"client", "system"}),
    ("pending_payment", "expired"): frozenset({"system"}),
    ("offered", "accepted"): frozenset({"worker"}),
    ("offered", "cancelled"): frozenset({"client"}),
    ("offered", "expired"): frozenset({"system", "worker"}),  # the last open offer declined
    ("accepted", "in_progress"): frozenset({"worker"}),
    ("accepted", "offered"): frozenset({"worker"}),  # the worker withdraws: back to matching
    ("accepted", "expired"): frozenset({"worker"}),  # ... and nobody else can take it
    ("accepted", "cancelled"): frozenset({"client"}),
    ("in_progress", "completed"): frozenset({"worker"}),
    ("completed", "refunded"): frozenset({"staff", "system"}),
    ("completed", "disputed"): frozenset({"system"}),
    ("disputed", "completed"): frozenset({"system"}),  # dispute won
    ("disputed", "refunded"): frozenset({"system"}),  # dispute lost: the client got the money back
    ("cancelled", "refunded"): frozenset({"staff", "system"}),
}
# Earliest start: work often begins early by agreement (API.md).
START_WINDOW = timedelta(hours=24)


class WrongState(DomainError):
    code = "wrong_state"
    status = 409


class NotAllowed(DomainError):
    code = "transition_not_allowed"
    status = 403


def check_transition(current: str | None, target: str, role: str) -> None:
    roles = TRANSITIONS.get((current, target))
    if roles is None:
        raise WrongState(f"A booking that is {current} cannot become {target}")
    if role not in roles:
        raise NotAllowed(f"A {role} cannot move a booking from {current} to {target}")


@dataclass(frozen=True)
class CancellationOutcome:
    fee_price_excl_vat_cents: int  # 0 = free
    reason: str


def client_cancellation(*, status: str, starts_at: datetime, now: datetime, price_excl_vat_cents: int,
                        notice_hours: int, fee_bps: int) -> CancellationOutcome:
    """Free before the notice, or while no worker has committed; later, the worker is owed a share."""
    if status != "accepted":
        return CancellationOutcome(0, "no worker had accepted yet")
    if now < starts_at - timedelta(hours=notice_hours):
        return CancellationOutcome(0, f"cancelled at least {notice_hours} h before the start")
    fee = (price_excl_vat_cents * fee_bps * 2 + 10_000) // 20_000
    return CancellationOutcome(fee, f"late cancellation: {fee_bps / 100:g}% of the price goes to the worker")
