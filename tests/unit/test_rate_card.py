"""Rate cards: built from one engine call, accurate within 1 % of the full engine, cached once per key."""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_right
import threading
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import pytest

from app.domain.fees import RateCard
from app.payouts.engine import (
    FULL_TIME_MONTHLY_HOURS,
    ContributionLine,
    EmploymentSettings,
    SalaryComputation,
)
from app.payouts.openfisca_engine import OpenFiscaFranceEngine, get_engine_sync
from app.payouts.rate_card import RateCardCache, build_rate_card, rate_card_grid

PERIOD = "2026-01"
REFERENCE = EmploymentSettings()


def estimated_net(card: RateCard, budget_cents: int) -> Decimal:
    """What a quote does with a budget: the card's rates at the gross the budget buys."""
    # Gross at that budget, read off the card's own (monotone) cost column.
    costs, grosses = card.employer_cost_cents, card.gross_cents
    i = min(max(bisect_right(costs, budget_cents) - 1, 0), len(costs) - 2)
    c0, c1, g0, g1 = costs[i], costs[i + 1], grosses[i], grosses[i + 1]
    gross = g0 + (g1 - g0) * (budget_cents - c0) // (c1 - c0)
    rates = card.rates_at(gross)
    return Decimal(budget_cents) * rates.gross_per_cost * rates.net_per_gross


# --- against OpenFisca -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> OpenFiscaFranceEngine:
    return get_engine_sync()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "lowest_gross"),
    [
        (REFERENCE, 50_000),
        (EmploymentSettings(headcount=5, category="prive_cadre"), 50_000),
        # A fixed premium is not proportional: below the SMIC (clamped) the card is only close.
        (EmploymentSettings(headcount=30, transport_levy_rate_bps=295, health_cover_monthly_cents=6_000),
         182_307),
    ],
    ids=["reference", "small-cadre", "levy-health"],
)
def test_rate_card_net_is_within_one_percent_of_the_full_engine(engine, settings, lowest_gross):
    card = build_rate_card(engine, PERIOD, settings)
    rng = random.Random(13)
    # Budgets from salaries sampled across the card (and beyond its top), and random budgets.
    gross = [rng.randint(lowest_gross, 1_500_000) for _ in range(400)] + [182_307, 400_500, 2_000_000]
    budgets = engine.employer_cost_cents(PERIOD, gross, settings)
    lowest, highest = engine.employer_cost_cents(PERIOD, [lowest_gross, 2_000_000], settings)
    budgets += [rng.randint(lowest, highest) for _ in range(200)]
    exact_gross = engine.gross_from_employer_cost(PERIOD, budgets, settings)
    for budget, figures in zip(budgets, engine.compute(PERIOD, exact_gross, settings)):
        estimate = estimated_net(card, budget)
        assert abs(estimate - figures.net_cents) <= Decimal("0.01") * figures.net_cents, (budget, estimate)


@pytest.mark.slow
def test_reference_card_shape(engine):
    card = build_rate_card(engine, PERIOD, REFERENCE)
    assert card.period == PERIOD
    assert list(card.gross_cents) == sorted(set(card.gross_cents))
    assert 250 <= len(card.gross_cents) <= 400
    assert card.gross_cents[-1] == 1_500_000
    smic_month = int((Decimal(1_202) * FULL_TIME_MONTHLY_HOURS).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert card.gross_cents[0] == smic_month  # app/services/quotes.py prices the fair-pay floor there
    # Denser at the low end: more points below 3 SMIC than above.
    assert sum(g < 3 * smic_month for g in card.gross_cents) > len(card.gross_cents) / 2
    assert card.min_net_hourly_cents == engine.minimum_net_hourly_cents(PERIOD, REFERENCE)
    # The card's figures at a grid point are the engine's.
    i = card.gross_cents.index(smic_month)
    (figures,) = engine.compute(PERIOD, [smic_month], REFERENCE)
    assert card.employer_cost_cents[i] == figures.employer_cost_cents
    assert card.net_cents[i] == figures.net_cents


# --- the cache, on a fake engine (no OpenFisca needed) ---------------------------------------


class LinearEngine:
    """cost = 1.4 × gross, net = 0.78 × gross; counts its calls and can be slowed down."""

    def __init__(self, delay: threading.Event | None = None) -> None:
        self.compute_calls = 0
        self.threads: set[int] = set()
        self._delay = delay

    def compute(
        self, period: str, gross_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[SalaryComputation]:
        self.compute_calls += 1
        self.threads.add(threading.get_ident())
        if self._delay is not None:
            self._delay.wait(5)
        results = []
        for gross in gross_cents:
            employee, employer = gross * 22 // 100, gross * 40 // 100
            line = ContributionLine(
                "all", "All", "other", gross, Decimal("0.22"), employee, Decimal("0.40"), employer
            )
            results.append(
                SalaryComputation(gross, gross - employee, gross + employer, employee, employer, 0, (line,))
            )
        return results

    def gross_from_employer_cost(self, period, employer_cost_cents, settings):  # pragma: no cover
        return [c * 100 // 140 for c in employer_cost_cents]

    def smic_hourly_gross_cents(self, period: str) -> int:
        return 1_202

    def minimum_net_hourly_cents(self, period: str, settings: EmploymentSettings) -> int:
        return 950


def test_grid_starts_at_the_smic_month_and_is_ascending():
    grid = rate_card_grid(182_307)
    assert grid[0] == 182_307 and grid[-1] == 1_500_000
    assert grid == sorted(set(grid))
    with pytest.raises(ValueError):
        rate_card_grid(0)


def test_cache_builds_each_key_once():
    fake = LinearEngine()
    cache = RateCardCache(fake)
    card = cache.get_sync(PERIOD, REFERENCE)
    assert cache.get_sync(PERIOD, REFERENCE) is card
    assert asyncio.run(cache.get(PERIOD, REFERENCE)) is card
    assert fake.compute_calls == 1
    other = cache.get_sync(PERIOD, EmploymentSettings(headcount=5))
    assert other is not card and fake.compute_calls == 2
    assert card.min_net_hourly_cents == 950
    assert abs(card.rates_at(300_000).gross_per_cost - Decimal(100) / Decimal(140)) < Decimal("0.00001")
    cache.clear()
    cache.get_sync(PERIOD, REFERENCE)
    assert fake.compute_calls == 3


def test_async_get_builds_off_the_event_loop_and_only_once_under_concurrency():
    release = threading.Event()
    fake = LinearEngine(delay=release)
    cache = RateCardCache(fake)

    async def main() -> list[RateCard]:
        loop_thread = threading.get_ident()
        tasks = [asyncio.create_task(cache.get(PERIOD, REFERENCE)) for _ in range(5)]
        await asyncio.sleep(0.05)  # the event loop is free while the build runs
        release.set()
        cards = await asyncio.gather(*tasks)
        assert loop_thread not in fake.threads
        return cards

    cards = asyncio.run(main())
    assert all(card is cards[0] for card in cards)
    assert fake.compute_calls == 1


def test_cache_is_bounded():
    fake = LinearEngine()
    cache = RateCardCache(fake, max_entries=2)
    for headcount in (1, 2, 3):
        cache.get_sync(PERIOD, EmploymentSettings(headcount=headcount))
    cache.get_sync(PERIOD, EmploymentSettings(headcount=3))
    assert fake.compute_calls == 3
    cache.get_sync(PERIOD, EmploymentSettings(headcount=1))  # evicted first
    assert fake.compute_calls == 4
