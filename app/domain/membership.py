"""The membership lifecycle of a CAE worker-member (DESIGN.md "Membership lifecycle"), as pure rules.

cape → cesa → associate, and `left` from any active stage. No IO: callers pass what they loaded.
"""
from __future__ import annotations

from datetime import date, datetime

from app.domain.errors import DomainError

CAPE, CESA, ASSOCIATE, LEFT = "cape", "cesa", "associate", "left"
STAGES: tuple[str, ...] = (CAPE, CESA, ASSOCIATE, LEFT)
ACTIVE_STAGES: frozenset[str] = frozenset({CAPE, CESA, ASSOCIATE})

# The only moves forward: a contract is never "unsigned", and leaving is final (a returning
# person signs a new contract, which is a new membership).
_NEXT: dict[str, frozenset[str]] = {
    CAPE: frozenset({CESA, LEFT}),
    CESA: frozenset({ASSOCIATE, LEFT}),
    ASSOCIATE: frozenset({LEFT}),
    LEFT: frozenset(),
}

# Code du travail L7331-3: within at most three years of signing the CESA (the contract of
# L7331-2), the entrepreneur-salarié becomes an associate of the CAE, or the contract ends.
# The article shortens that delay by the length of a prior CAPE (Code de commerce L127-1); the
# platform does not record when a CAPE was signed, so this is the outer limit and staff shorten it.
ASSOCIATE_DEADLINE_YEARS = 3


class IllegalTransition(DomainError):
    """A stage change the lifecycle does not allow (backwards, skipping a contract, after leaving)."""

    code = "illegal_transition"
    status = 409


def check_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless `current` → `target` is a step of the lifecycle."""
    if target not in _NEXT.get(current, frozenset()):
        raise IllegalTransition(f"A member in stage {current!r} cannot move to stage {target!r}")


def is_active(stage: str, suspended: bool) -> bool:
    """May take gigs: an active stage (cape, cesa or associate) and not suspended."""
    return stage in ACTIVE_STAGES and not suspended


def cesa_due(stage: str, has_completed_paid_booking: bool) -> bool:
    """A CAPE member whose first sales happened: staff should sign the CESA (DESIGN.md)."""
    return stage == CAPE and has_completed_paid_booking


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 28 February in a common year.

    A delay counted in years ends on the same day; when that day does not exist, on the last day
    of the month (the rule of Code de procédure civile art. 641): never later than the law allows.
    """
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def associate_due_by(cesa_signed_at: datetime | date) -> date:
    """The last day to become an associate: the CESA signature date + 3 years (L7331-3)."""
    day = cesa_signed_at.date() if isinstance(cesa_signed_at, datetime) else cesa_signed_at
    return add_years(day, ASSOCIATE_DEADLINE_YEARS)


def cesa_signed_before(deadline_before: date) -> date:
    """The day D such that a CESA signed on a day before D is due (associate_due_by) before `deadline_before`.

    associate_due_by is non-decreasing in the signature day, so the members due before a date are
    exactly those who signed before one threshold day: lets a database filter on the signature.
    """
    day = add_years(deadline_before, -ASSOCIATE_DEADLINE_YEARS)
    # Walk to the exact threshold: leap days make the naive inverse off by a day or two.
    while add_years(day, ASSOCIATE_DEADLINE_YEARS) >= deadline_before:
        day = day.fromordinal(day.toordinal() - 1)
    while add_years(day, ASSOCIATE_DEADLINE_YEARS) < deadline_before:
        day = day.fromordinal(day.toordinal() + 1)
    return day
