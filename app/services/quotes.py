"""Quotes: the price of a member's time and where each euro of it goes, at the schedule in force.

A quote never runs a payroll simulation: it reads the period's rate card (built once per process
from the OpenFisca engine, app/payouts/rate_card.py) and the pure split of app/domain/fees.py.
The terms a quote used are frozen with the booking (`quote_terms`) so that a shorter actual
duration or a cancellation fee is split with exactly the same rules later.
"""
from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import fees
from app.models import Cooperative, FeeScheduleVersion
from app.models.coop_settings import CooperativeSettings
from app.payouts.engine import EmploymentSettings
from app.services import fee_schedules


def employment_settings(coop_settings: CooperativeSettings) -> EmploymentSettings:
    return EmploymentSettings(headcount=coop_settings.headcount,
                              work_accident_rate_bps=coop_settings.work_accident_rate_bps,
                              transport_levy_rate_bps=coop_settings.transport_levy_rate_bps,
                              category=coop_settings.salary_category,
                              health_cover_monthly_cents=coop_settings.health_cover_monthly_cents)


def price_excl_vat(hourly_rate_cents: int, minutes: int) -> int:
    """Rate × time, rounded half-up to the cent (integers only)."""
    return (hourly_rate_cents * minutes * 2 + 60) // 120


@dataclass(frozen=True)
class QuoteContext:
    """Everything a quote at one instant depends on, loaded once per request."""

    schedule_id: uuid.UUID
    schedule: fees.FeeSchedule
    rate_card: fees.RateCard
    currency: str
    default_expected_gross_cents: int
    # The rate card read once per salary level for this request's quotes (most use the default),
    # with the number standing for the part of the quote memo's key they fix (`_fixed_id`).
    _rates: dict[int, tuple[fees.SalaryRates, int]] = field(default_factory=dict, compare=False, repr=False)

    def rates_and_key(self, expected_monthly_gross_cents: int | None) -> tuple[fees.SalaryRates, int]:
        gross = expected_monthly_gross_cents or self.default_expected_gross_cents
        found = self._rates.get(gross)
        if found is None:
            rates = self.rate_card.rates_at(gross)
            # (The rates as text: Decimal("0.7") == Decimal("0.70"), but the terms frozen with a
            # booking write them out.)
            found = self._rates[gross] = (rates, _fixed_id((
                self.schedule_id, self.schedule, str(rates.gross_per_cost), str(rates.net_per_gross),
                self.rate_card.period, self.currency)))
        return found


@dataclass(frozen=True)
class Quote:
    price_excl_vat_cents: int
    breakdown: fees.Breakdown
    terms: dict[str, Any]
    # `breakdown.to_dict()`, made once: for answers that only serialize it (GET /matches).
    public_breakdown: dict[str, Any] = field(compare=False, repr=False)
    # ... and written as JSON once, to be spliced into such an answer by orjson as it is.
    public_breakdown_json: orjson.Fragment = field(compare=False, repr=False)


async def context(session: AsyncSession, rate_cards, *, cooperative: Cooperative, coop_settings: CooperativeSettings,
                  at: datetime, period: str, version: FeeScheduleVersion | None = None) -> QuoteContext:
    """Load the schedule in force at `at` (unless the caller read it: `version`) and the salary rate
    card of `period`."""
    if version is None:
        version = await fee_schedules.in_force(session, cooperative_id=cooperative.id, at=at)
    card = await rate_cards.get(period, employment_settings(coop_settings))
    return QuoteContext(version.id, fee_schedules.to_domain(version), card, cooperative.currency,
                        coop_settings.default_expected_monthly_gross_cents)


def quote(ctx: QuoteContext, *, hourly_rate_cents: int, minutes: int, vat_rate_bps: int,
          expected_monthly_gross_cents: int | None = None, yearly_turnover_before_cents: int = 0) -> Quote:
    """The quote of a member's time. A pure function of its key (the schedule, the salary rates, the
    rate, the time, the VAT and the turnover before it), so it is memoised per process: a search
    prices twenty members whose rates, mostly whole euros, repeat from one search to the next. The
    Quote returned may be shared: never mutate it (or its `terms`); `Breakdown.to_dict()` gives a
    fresh dict."""
    rates, fixed = ctx.rates_and_key(expected_monthly_gross_cents)
    key = (fixed, hourly_rate_cents, minutes, vat_rate_bps, yearly_turnover_before_cents)
    found = _QUOTES.get(key)
    if found is None:
        found = _quote(ctx, rates, hourly_rate_cents=hourly_rate_cents, minutes=minutes, vat_rate_bps=vat_rate_bps,
                       yearly_turnover_before_cents=yearly_turnover_before_cents)
        if _QUOTES_MAX:
            if len(_QUOTES) >= _QUOTES_MAX:
                _QUOTES.clear()  # crude but bounded; a full memo refills in a few searches
            _QUOTES[key] = found
    return found


_QUOTES: dict[tuple, Quote] = {}
_QUOTES_MAX = 20_000

# The memo's key starts with a number standing for the schedule, the salary rates, the period and
# the currency (found once per request and salary level), so that a quote's lookup hashes five
# integers, not the schedule. Numbers are never reused, even after the table is emptied: a context
# made before that keeps a number no new key gets, and only misses the memo.
_FIXED_IDS: dict[tuple, int] = {}
_FIXED_IDS_MAX = 1_000
_NEXT_FIXED_ID = itertools.count()


def _fixed_id(fixed: tuple) -> int:
    found = _FIXED_IDS.get(fixed)
    if found is None:
        if len(_FIXED_IDS) >= _FIXED_IDS_MAX:
            _FIXED_IDS.clear()
        found = _FIXED_IDS[fixed] = next(_NEXT_FIXED_ID)
    return found


def set_memo_size(size: int) -> None:
    """QUOTE_MEMO_SIZE: how many quotes a process keeps (0: none, every quote computed)."""
    global _QUOTES_MAX
    _QUOTES_MAX = size
    _QUOTES.clear()


def _quote(ctx: QuoteContext, rates: fees.SalaryRates, *, hourly_rate_cents: int, minutes: int, vat_rate_bps: int,
           yearly_turnover_before_cents: int) -> Quote:
    excl = price_excl_vat(hourly_rate_cents, minutes)
    breakdown = fees.quote_breakdown(price_excl_vat_cents=excl, vat_rate_bps=vat_rate_bps, schedule=ctx.schedule,
                                     rates=rates, currency=ctx.currency,
                                     yearly_turnover_before_cents=yearly_turnover_before_cents)
    terms = {
        "fee_schedule_id": str(ctx.schedule_id),
        "schedule": {
            "contribution_rate_bps": ctx.schedule.contribution_rate_bps,
            "contribution_tiers": [[t.above_yearly_turnover_cents, t.rate_bps] for t in ctx.schedule.contribution_tiers],
            "processing_fee_payer": ctx.schedule.processing_fee_payer,
            "processing_fee_bps": ctx.schedule.processing_fee_bps,
            "processing_fee_fixed_cents": ctx.schedule.processing_fee_fixed_cents,
            "min_fixed_monthly_gross_cents": ctx.schedule.min_fixed_monthly_gross_cents,
        },
        "rates": {"gross_per_cost": str(rates.gross_per_cost), "net_per_gross": str(rates.net_per_gross)},
        "rate_card_period": ctx.rate_card.period,
        "vat_rate_bps": vat_rate_bps,
        "hourly_rate_cents": hourly_rate_cents,
        "yearly_turnover_before_cents": yearly_turnover_before_cents,
        "currency": ctx.currency,
    }
    public = breakdown.to_dict()
    return Quote(excl, breakdown, terms, public, orjson.Fragment(orjson.dumps(public)))


def schedule_from_terms(terms: dict[str, Any]) -> fees.FeeSchedule:
    s = terms["schedule"]
    return fees.FeeSchedule(
        contribution_rate_bps=s["contribution_rate_bps"],
        contribution_tiers=tuple(fees.ContributionTier(a, r) for a, r in s["contribution_tiers"]),
        processing_fee_payer=s["processing_fee_payer"], processing_fee_bps=s["processing_fee_bps"],
        processing_fee_fixed_cents=s["processing_fee_fixed_cents"],
        min_fixed_monthly_gross_cents=s["min_fixed_monthly_gross_cents"])


def requote(terms: dict[str, Any], *, price_excl_vat_cents: int) -> fees.Breakdown:
    """Split another amount (a shorter duration, a cancellation fee) with a booking's frozen terms."""
    rates = fees.SalaryRates(Decimal(terms["rates"]["gross_per_cost"]), Decimal(terms["rates"]["net_per_gross"]))
    return fees.quote_breakdown(price_excl_vat_cents=price_excl_vat_cents, vat_rate_bps=terms["vat_rate_bps"],
                                schedule=schedule_from_terms(terms), rates=rates, currency=terms["currency"],
                                yearly_turnover_before_cents=terms["yearly_turnover_before_cents"])


def fair_pay_floor(ctx: QuoteContext, *, vat_rate_bps: int) -> int:
    """The lowest hourly rate excl. VAT whose net pays the legal minimum net hourly wage.

    The split is taken at the salary level of a full-time minimum wage (the rate card's first grid
    point, the SMIC): the floor is about someone living on such gigs.
    """
    return fees.fair_pay_floor_hourly_cents(vat_rate_bps=vat_rate_bps, schedule=ctx.schedule,
                                            rates=ctx.rate_card.rates_at(ctx.rate_card.gross_cents[0]),
                                            min_net_hourly_cents=ctx.rate_card.min_net_hourly_cents)
