"""Money helpers: half-up rounding, basis points, exact largest-remainder splits, labels."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.errors import InvalidCurrency
from app.domain.money import (
    allocate,
    apply_bps,
    div_half_up,
    format_bps,
    format_eur,
    round_half_up,
    validate_currency,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2.5", 3), ("2.4999", 2), ("-2.5", -3), ("0.5", 1), ("3252.9", 3253), ("7", 7)],
)
def test_round_half_up(value, expected):
    assert round_half_up(Decimal(value)) == expected


@pytest.mark.parametrize(
    ("amount", "bps", "expected"),
    [(15000, 2000, 3000), (18000, 150, 270), (15000, 1000, 1500), (1, 5000, 1), (3, 5000, 2),
     (1, 4999, 0), (-3, 5000, -2), (0, 2000, 0), (101, 550, 6)],
)
def test_apply_bps(amount, bps, expected):
    assert apply_bps(amount, bps) == expected


@given(st.integers(-(10**12), 10**12), st.integers(0, 10_000))
def test_apply_bps_matches_decimal_half_up(amount, bps):
    assert apply_bps(amount, bps) == round_half_up(Decimal(amount) * bps / Decimal(10_000))


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**9))
def test_div_half_up_matches_decimal(numerator, denominator):
    exact = Decimal(numerator) / Decimal(denominator)
    from app.domain.money import DECIMAL_CONTEXT

    assert div_half_up(numerator, denominator) == round_half_up(
        DECIMAL_CONTEXT.divide(Decimal(numerator), Decimal(denominator))
    ), exact


def test_allocate_examples():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]  # tie: lowest index gets the cent
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(10, [0, 1]) == [0, 10]
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]
    assert allocate(0, [3, 7]) == [0, 0]
    assert allocate(18000, [3000, 15000]) == [3000, 15000]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_allocate_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        allocate(10, weights)


@given(
    st.integers(-(10**9), 10**9),
    st.lists(st.integers(0, 10**7), min_size=1, max_size=12).filter(lambda w: sum(w) > 0),
)
def test_allocate_is_exact_and_close(total, weights):
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert parts == allocate(total, weights)  # deterministic
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights):
        # every part is its exact share rounded down or up
        assert abs(part * weight_sum - total * weight) < weight_sum
        if weight == 0:
            assert part == 0


def test_validate_currency():
    assert validate_currency("EUR") == "EUR"
    for bad in ("eur", "EU", "EURO", "E1R", "", None, "€"):
        with pytest.raises(InvalidCurrency) as info:
            validate_currency(bad)
        assert info.value.code == "invalid_currency"
        assert info.value.status == 422


def test_format_eur_and_bps():
    assert format_eur(15000) == "150.00 €"
    assert format_eur(295) == "2.95 €"
    assert format_eur(5) == "0.05 €"
    assert format_eur(-295) == "-2.95 €"
    assert format_eur(0) == "0.00 €"
    assert format_bps(2000) == "20%"
    assert format_bps(550) == "5.5%"
    assert format_bps(125) == "1.25%"
    assert format_bps(0) == "0%"
