"""Money arithmetic on integer cents: half-up rounding, basis points, exact splits, labels.

Amounts are always int cents; Decimal only appears inside rate maths and never leaves it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Context, Decimal

from app.domain.errors import InvalidCurrency

# The rounding rule, everywhere in coopgig: ROUND_HALF_UP (ties away from zero) to whole cents,
# once per computed line, never on intermediate results. A set of lines that must add up to a
# total computes all lines but one and gives the last one the difference, so it absorbs the
# remainder: in a booking breakdown that is `employee_contributions` (fees.quote_breakdown); in
# proportional splits (refunds) `allocate` hands out the leftover cents by largest remainder.

BPS = 10_000  # basis points in 100 %

# A private context: the thread's decimal context may be changed by any library, and the
# rounding of a money line must not depend on it. 50 digits keep products of a cent amount
# (up to 10^15) by a 28-digit rate exact, so the only rounding is the explicit half-up.
DECIMAL_CONTEXT = Context(prec=50)
_ONE = Decimal(1)
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def round_half_up(value: Decimal) -> int:
    """Round an amount expressed in cents to whole cents, ties away from zero (2.5 -> 3, -2.5 -> -3)."""
    return int(value.quantize(_ONE, rounding=ROUND_HALF_UP, context=DECIMAL_CONTEXT))


def div_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up (ties away from zero), in integers only."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


def apply_bps(amount_cents: int, bps: int) -> int:
    """amount × bps / 10000, rounded half-up to whole cents (integer arithmetic, no Decimal)."""
    n = amount_cents * bps
    if n >= 0:
        return (2 * n + BPS) // (2 * BPS)
    return -((-2 * n + BPS) // (2 * BPS))


def allocate(total_cents: int, weights: Sequence[int]) -> list[int]:
    """Split `total_cents` in proportion to integer `weights`, summing to the total exactly.

    Largest-remainder method: each part gets the floor of its exact share, then the cents left
    over go one each to the largest remainders; equal remainders go to the lower index first,
    so the split is deterministic. A negative total is split as the mirror of its absolute value.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    if total_cents < 0:
        return [-part for part in allocate(-total_cents, weights)]
    parts: list[int] = []
    remainders: list[tuple[int, int]] = []
    for index, weight in enumerate(weights):
        quotient, remainder = divmod(total_cents * weight, weight_sum)
        parts.append(quotient)
        remainders.append((-remainder, index))
    left = total_cents - sum(parts)
    # Sorting on (-remainder, index): largest remainder first, ties by index.
    for _, index in sorted(remainders)[:left]:
        parts[index] += 1
    return parts


def validate_currency(code: str) -> str:
    """Return `code` if it has the ISO 4217 alphabetic shape (three uppercase letters), else raise.

    Only the shape is checked: which currencies a cooperative accepts is a setting, not a rule here.
    """
    if not isinstance(code, str) or not _CURRENCY_RE.fullmatch(code):
        raise InvalidCurrency(f"invalid currency {code!r}: expected an ISO 4217 code such as 'EUR'")
    return code


def format_eur(cents: int) -> str:
    """A label-friendly amount: 15000 -> '150.00 €', -295 -> '-2.95 €' (no float on the way)."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros}.{rest:02d} €"


def format_bps(bps: int) -> str:
    """A rate for labels: 2000 -> '20%', 550 -> '5.5%', 125 -> '1.25%'."""
    whole, rest = divmod(bps, 100)
    if rest == 0:
        return f"{whole}%"
    return f"{whole}.{rest:02d}".rstrip("0") + "%"
