"""Monthly periods ("YYYY-MM"): what quotes, fair-share hours, ledger exports and payroll count in."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from app.domain.errors import DomainError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class InvalidPeriod(DomainError):
    code = "invalid_period"
    status = 422


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """[first instant of `at`'s month, first instant of the next month), in `at`'s time zone."""
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The UTC bounds of a "YYYY-MM" period; InvalidPeriod (422) for anything else."""
    match = _PERIOD.match(period)
    if not match:
        raise InvalidPeriod("period must be YYYY-MM")
    return month_bounds(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC))
