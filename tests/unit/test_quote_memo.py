"""quotes.quote is memoised per process: the memo must never return a quote of other inputs."""
from __future__ import annotations

import dataclasses
import uuid

import pytest

from app.domain.fees import ContributionTier
from app.services import quotes
from tests.unit.test_fees import CARD, EXAMPLE_SCHEDULE

SCHEDULE_ID = uuid.uuid4()


def _ctx(**changes) -> quotes.QuoteContext:
    values = dict(schedule_id=SCHEDULE_ID, schedule=EXAMPLE_SCHEDULE, rate_card=CARD, currency="EUR",
                  default_expected_gross_cents=300000)
    values.update(changes)
    return quotes.QuoteContext(**values)


def _fresh(ctx: quotes.QuoteContext, **kw) -> quotes.Quote:
    """The same quote computed without the memo."""
    args = dict(hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000, expected_monthly_gross_cents=None,
                yearly_turnover_before_cents=0)
    args.update(kw)
    gross = args.pop("expected_monthly_gross_cents")
    return quotes._quote(ctx, ctx.rate_card.rates_at(gross or ctx.default_expected_gross_cents), **args)


@pytest.fixture(autouse=True)
def empty_memo():
    quotes._QUOTES.clear()
    yield
    quotes._QUOTES.clear()


def test_a_repeated_quote_is_the_same_object_and_equal_to_a_fresh_computation():
    first = quotes.quote(_ctx(), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    again = quotes.quote(_ctx(), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    assert again is first
    fresh = _fresh(_ctx())
    assert (first.breakdown, first.terms, first.price_excl_vat_cents) == (fresh.breakdown, fresh.terms, 15000)
    assert first.public_breakdown == first.breakdown.to_dict()


@pytest.mark.parametrize("ctx_change, quote_change", [
    ({}, {"hourly_rate_cents": 5100}),
    ({}, {"minutes": 120}),
    ({}, {"vat_rate_bps": 1000}),
    ({}, {"yearly_turnover_before_cents": 10_000_00}),
    ({}, {"expected_monthly_gross_cents": 200000}),
    ({"schedule": dataclasses.replace(EXAMPLE_SCHEDULE, contribution_rate_bps=1200)}, {}),
    ({"schedule": dataclasses.replace(EXAMPLE_SCHEDULE, processing_fee_payer="cooperative")}, {}),
    ({"schedule_id": uuid.uuid4()}, {}),
    ({"rate_card": dataclasses.replace(CARD, period="2026-02")}, {}),
    ({"rate_card": dataclasses.replace(CARD, net_cents=(150000, 230000, 300000))}, {}),
    ({"currency": "CHF"}, {}),
    ({"default_expected_gross_cents": 400000}, {}),
])
def test_any_input_that_changes_the_quote_is_part_of_the_key(ctx_change, quote_change):
    base = dict(hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    quotes.quote(_ctx(), **base)  # in the memo now
    changed = quotes.quote(_ctx(**ctx_change), **{**base, **quote_change})
    fresh = _fresh(_ctx(**ctx_change), **quote_change)
    assert (changed.breakdown, changed.terms) == (fresh.breakdown, fresh.terms)


def test_tiers_are_part_of_the_key():
    tiered = dataclasses.replace(EXAMPLE_SCHEDULE, contribution_tiers=(ContributionTier(10_000_00, 500),))
    flat = quotes.quote(_ctx(), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000,
                        yearly_turnover_before_cents=20_000_00)
    with_tiers = quotes.quote(_ctx(schedule=tiered), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000,
                              yearly_turnover_before_cents=20_000_00)
    assert with_tiers.breakdown != flat.breakdown
    assert with_tiers.terms["schedule"]["contribution_tiers"] == [[10_000_00, 500]]


def test_the_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(quotes, "_QUOTES_MAX", 10)
    for rate in range(3000, 3025):
        quotes.quote(_ctx(), hourly_rate_cents=rate, minutes=60, vat_rate_bps=2000)
    assert len(quotes._QUOTES) <= 10


def test_a_memo_size_of_zero_computes_every_quote():
    quotes.set_memo_size(0)
    try:
        first = quotes.quote(_ctx(), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
        again = quotes.quote(_ctx(), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
        assert again is not first and again == first and not quotes._QUOTES
    finally:
        quotes.set_memo_size(20_000)


def test_a_context_from_before_the_key_table_was_emptied_never_gets_another_schedules_quote(monkeypatch):
    monkeypatch.setattr(quotes, "_FIXED_IDS_MAX", 1)
    old = _ctx()
    first = quotes.quote(old, hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    other_schedule = dataclasses.replace(EXAMPLE_SCHEDULE, contribution_rate_bps=1500)
    other = quotes.quote(_ctx(schedule=other_schedule), hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    # the table of keys was emptied for the second schedule: the first context still prices its own
    again = quotes.quote(old, hourly_rate_cents=5000, minutes=180, vat_rate_bps=2000)
    assert again.breakdown == first.breakdown != other.breakdown
    assert again.terms["schedule"]["contribution_rate_bps"] == EXAMPLE_SCHEDULE.contribution_rate_bps
