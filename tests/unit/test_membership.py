"""The membership lifecycle rules (DESIGN.md "Membership lifecycle"), without a database."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from app.domain import membership
from app.domain.errors import DomainError
from app.domain.membership import (
    IllegalTransition,
    associate_due_by,
    cesa_due,
    cesa_signed_before,
    check_transition,
    is_active,
)

LEGAL = {("cape", "cesa"), ("cape", "left"), ("cesa", "associate"), ("cesa", "left"), ("associate", "left")}
ALL_PAIRS = [(a, b) for a in membership.STAGES for b in membership.STAGES]


@pytest.mark.parametrize("current,target", sorted(LEGAL))
def test_legal_transitions_pass(current, target):
    assert check_transition(current, target) is None


@pytest.mark.parametrize("current,target", [p for p in ALL_PAIRS if p not in LEGAL])
def test_every_other_transition_is_illegal_409(current, target):
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target)
    assert isinstance(info.value, DomainError)
    assert info.value.code == "illegal_transition" and info.value.status == 409
    assert current in info.value.message and target in info.value.message


@pytest.mark.parametrize("current,target", [("cape", "bogus"), ("bogus", "cesa"), ("cape", "cape")])
def test_unknown_or_identical_stages_are_illegal(current, target):
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


def test_nothing_follows_leaving():
    for target in membership.STAGES:
        with pytest.raises(IllegalTransition):
            check_transition("left", target)


@pytest.mark.parametrize("stage,paid,due", [
    ("cape", True, True), ("cape", False, False),
    ("cesa", True, False), ("associate", True, False), ("left", True, False),
])
def test_cesa_due_only_for_cape_members_with_paid_work(stage, paid, due):
    assert cesa_due(stage, paid) is due


@pytest.mark.parametrize("stage,suspended,active", [
    ("cape", False, True), ("cesa", False, True), ("associate", False, True),
    ("left", False, False), ("cape", True, False), ("associate", True, False), ("left", True, False),
])
def test_is_active(stage, suspended, active):
    assert is_active(stage, suspended) is active


def test_associate_due_by_is_three_years_after_the_cesa():
    assert associate_due_by(datetime(2025, 3, 14, 9, 30, tzinfo=UTC)) == date(2028, 3, 14)
    assert associate_due_by(date(2024, 12, 31)) == date(2027, 12, 31)


def test_associate_due_by_of_a_29_february_is_the_28th_never_later():
    assert associate_due_by(date(2024, 2, 29)) == date(2027, 2, 28)
    assert associate_due_by(datetime(2028, 2, 29, tzinfo=UTC)) == date(2031, 2, 28)


def test_associate_due_by_uses_the_utc_day_of_the_signature():
    # 00:30 in Paris on 1 March is still 28 February in UTC: the earlier, safer deadline.
    paris_winter = timezone(timedelta(hours=1))
    signed = datetime(2025, 3, 1, 0, 30, tzinfo=paris_winter).astimezone(UTC)
    assert associate_due_by(signed) == date(2028, 2, 28)


def test_cesa_signed_before_matches_associate_due_by_exactly():
    # Every signature day over a span with leap years: signed < threshold <=> due < deadline.
    start = date(2023, 1, 1)
    signatures = [start + timedelta(days=n) for n in range(0, 365 * 3)]
    for deadline in [date(2026, 2, 28), date(2026, 3, 1), date(2027, 2, 28), date(2027, 3, 1),
                     date(2028, 2, 28), date(2028, 2, 29), date(2028, 3, 1), date(2028, 7, 15)]:
        threshold = cesa_signed_before(deadline)
        for signed in signatures:
            assert (signed < threshold) == (associate_due_by(signed) < deadline), (deadline, signed)
