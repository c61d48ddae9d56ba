"""Rate cards: a period's employer cost and net salary on a grid of monthly gross salaries.

Quotes split a booking's budget with `RateCard.rates_at` (app/domain/fees.py) instead of running
the payroll engine per request; the card is built from ONE vectorised engine call per (period,
settings) and cached in-process.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from app.domain.fees import RateCard
from app.payouts.engine import FULL_TIME_MONTHLY_HOURS, EmploymentSettings, SalaryEngine, check_period

# 15,000 € a month covers every salary a CAE member is expected to draw; above it the card
# clamps to the last point (the rates are nearly flat there: every ceiling is passed but 8 PSS).
DEFAULT_TOP_GROSS_CENTS = 1_500_000
DEFAULT_POINTS = 320


def rate_card_grid(
    smic_monthly_cents: int, *, top_gross_cents: int = DEFAULT_TOP_GROSS_CENTS, points: int = DEFAULT_POINTS
) -> list[int]:
    """Ascending gross salaries from the full-time SMIC month (always the first point, callers
    rely on it: the fair-pay floor is priced there) to `top_gross_cents`.

    Geometric spacing puts most points at the low end, where the general reduction curves the
    cost (1 to 3 SMIC). Below the SMIC the card clamps to its first point, which is exact for
    proportional contributions (the reduction stays at its hour-equivalent maximum) and an
    estimate when a fixed amount (the health cover premium) weighs on a small salary.
    """
    if smic_monthly_cents <= 0 or top_gross_cents <= smic_monthly_cents or points < 2:
        raise ValueError("the grid needs 0 < SMIC < top and at least 2 points")
    grid = np.round(np.geomspace(smic_monthly_cents, top_gross_cents, points)).astype(np.int64)
    return sorted(set(grid.tolist()) | {smic_monthly_cents, top_gross_cents})


def build_rate_card(
    engine: SalaryEngine,
    period: str,
    settings: EmploymentSettings,
    *,
    top_gross_cents: int = DEFAULT_TOP_GROSS_CENTS,
    points: int = DEFAULT_POINTS,
) -> RateCard:
    """The rate card of `period`: one engine call over the grid, plus the minimum net hourly wage."""
    check_period(period)
    smic_hourly = engine.smic_hourly_gross_cents(period)
    smic_monthly = int(
        (Decimal(smic_hourly) * FULL_TIME_MONTHLY_HOURS).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    )
    grid = rate_card_grid(smic_monthly, top_gross_cents=top_gross_cents, points=points)
    figures = engine.compute(period, grid, settings)
    return RateCard(
        period=period,
        gross_cents=tuple(f.gross_cents for f in figures),
        employer_cost_cents=tuple(f.employer_cost_cents for f in figures),
        net_cents=tuple(f.net_cents for f in figures),
        min_net_hourly_cents=engine.minimum_net_hourly_cents(period, settings),
    )


class RateCardCache:
    """Rate cards per (period, settings), each built once per process, off the event loop.

    `engine` defaults to the process's OpenFisca-France engine (loaded on first use, in the
    building thread). A card depends only on its key, so a bounded LRU is enough.
    """

    def __init__(self, engine: SalaryEngine | None = None, *, max_entries: int = 64) -> None:
        self._engine = engine
        self._max_entries = max_entries
        self._cards: OrderedDict[tuple[str, EmploymentSettings], RateCard] = OrderedDict()
        self._lock = threading.Lock()  # guards the two dicts, never held while building
        self._building: dict[tuple[str, EmploymentSettings], threading.Lock] = {}

    def _cached(self, key: tuple[str, EmploymentSettings]) -> RateCard | None:
        with self._lock:
            card = self._cards.get(key)
            if card is not None:
                self._cards.move_to_end(key)
            return card

    def get_sync(self, period: str, settings: EmploymentSettings) -> RateCard:
        """The card of (period, settings); builds it in this thread if needed (blocking)."""
        key = (check_period(period), settings)
        card = self._cached(key)
        if card is not None:
            return card
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        # One build per key: concurrent callers wait for the first one instead of building again.
        with building:
            card = self._cached(key)
            if card is None:
                card = build_rate_card(self._resolve_engine(), period, settings)
                with self._lock:
                    self._cards[key] = card
                    while len(self._cards) > self._max_entries:
                        self._cards.popitem(last=False)
            with self._lock:
                self._building.pop(key, None)
        return card

    async def get(self, period: str, settings: EmploymentSettings) -> RateCard:
        """The card of (period, settings); a miss is built in a worker thread (seconds of CPU)."""
        card = self._cached((check_period(period), settings))
        if card is not None:
            return card
        return await asyncio.to_thread(self.get_sync, period, settings)

    def clear(self) -> None:
        """Forget every card (e.g. after upgrading the rules engine)."""
        with self._lock:
            self._cards.clear()

    def _resolve_engine(self) -> SalaryEngine:
        if self._engine is None:
            from app.payouts.openfisca_engine import get_engine_sync  # heavy: only when needed

            self._engine = get_engine_sync()
        return self._engine
