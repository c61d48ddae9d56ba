"""Fee rules: the booking breakdown, rate cards, schedules and the fair-pay floor."""

from decimal import ROUND_DOWN, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.errors import (
    BelowFairPayFloor,
    DomainError,
    InvalidAmount,
    InvalidCurrency,
    InvalidFeeSchedule,
    InvalidRateCard,
    PriceTooLow,
)
from app.domain.fees import (
    LINE_CODES,
    Breakdown,
    BreakdownLine,
    ContributionTier,
    FeeSchedule,
    RateCard,
    SalaryRates,
    check_offering_rate,
    contribution_cents,
    fair_pay_floor_hourly_cents,
    quote_breakdown,
)
from app.domain.money import round_half_up

# DESIGN.md "Money flow": 50 €/h × 3 h, VAT 20 %, contribution 10 %, Stripe 1.5 % + 0.25 € borne
# by the member; OpenFisca-France 176, January 2026: gross 3,000.00 € -> net 2,374.79 €, cost 3,980.58 €.
EXAMPLE_SCHEDULE = FeeSchedule(
    contribution_rate_bps=1000,
    processing_fee_payer="member",
    processing_fee_bps=150,
    processing_fee_fixed_cents=25,
)
EXAMPLE_RATES = SalaryRates(
    gross_per_cost=Decimal(300000) / Decimal(398058),
    net_per_gross=Decimal(237479) / Decimal(300000),
)


def example_quote(**overrides):
    arguments = dict(
        price_excl_vat_cents=15000, vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=EXAMPLE_RATES
    )
    arguments.update(overrides)
    return quote_breakdown(**arguments)


def test_worked_example_of_design_md_exactly():
    breakdown = example_quote()
    assert breakdown.price_cents == 18000
    assert breakdown.currency == "EUR"
    assert [(line.code, line.amount_cents, line.recipient) for line in breakdown.lines] == [
        ("vat", 3000, "state"),
        ("payment_processing", 295, "payment_processor"),
        ("coop_contribution", 1500, "cooperative"),
        ("employer_contributions", 3253, "social_security"),
        ("employee_contributions", 2074, "social_security"),
        ("net_salary", 7878, "worker"),
    ]
    assert breakdown.member_budget_cents == 13205
    assert breakdown.gross_cents == 9952
    assert breakdown.price_excl_vat_cents == 15000
    assert breakdown.vat_cents == 3000
    assert breakdown.processing_fee_cents == 295
    assert breakdown.contribution_cents == 1500
    assert breakdown.cooperative_absorbed_cents == 0
    assert "10% of 150.00 €" in breakdown.lines[2].label


def test_to_dict_has_the_api_shape():
    data = example_quote().to_dict()
    assert set(data) == {"price_cents", "currency", "lines"}
    assert data["price_cents"] == sum(line["amount_cents"] for line in data["lines"]) == 18000
    for line in data["lines"]:
        assert set(line) == {"code", "label", "amount_cents", "recipient"}
        assert isinstance(line["amount_cents"], int)
    assert [line["code"] for line in data["lines"]] == list(LINE_CODES)


def test_quote_ignores_the_thread_decimal_context():
    with localcontext() as context:
        context.prec = 5
        context.rounding = ROUND_DOWN
        assert example_quote() == quote_breakdown(
            price_excl_vat_cents=15000, vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=EXAMPLE_RATES
        )
    assert example_quote().amount("net_salary") == 7878


def test_cooperative_bears_processing_out_of_its_contribution():
    schedule = FeeSchedule(
        contribution_rate_bps=1000,
        processing_fee_payer="cooperative",
        processing_fee_bps=150,
        processing_fee_fixed_cents=25,
    )
    breakdown = example_quote(schedule=schedule)
    assert breakdown.amount("payment_processing") == 295
    assert breakdown.amount("coop_contribution") == 1500 - 295
    assert breakdown.member_budget_cents == 18000 - 3000 - 1500
    assert breakdown.cooperative_absorbed_cents == 0
    assert sum(line.amount_cents for line in breakdown.lines) == 18000


def test_cooperative_absorbs_processing_above_its_contribution():
    schedule = FeeSchedule(
        contribution_rate_bps=100,
        processing_fee_payer="cooperative",
        processing_fee_bps=150,
        processing_fee_fixed_cents=25,
    )
    breakdown = example_quote(schedule=schedule)
    # contribution 150 < processing 295: the coop line is 0, 145 come from the coop's reserves.
    assert breakdown.contribution_cents == 150
    assert breakdown.processing_fee_cents == 295
    assert breakdown.amount("coop_contribution") == 0
    assert breakdown.amount("payment_processing") == 150
    assert breakdown.cooperative_absorbed_cents == 145
    assert breakdown.member_budget_cents == 18000 - 3000 - 150
    assert "1.45 €" in breakdown.lines[1].label
    assert sum(line.amount_cents for line in breakdown.lines) == 18000


def test_tiers_are_marginal_on_yearly_turnover():
    # 10 % up to 35,000 €, 8 % above: a 20 € booking straddling the threshold pays 1 € + 0.80 €.
    schedule = FeeSchedule(
        contribution_rate_bps=1000,
        contribution_tiers=(ContributionTier(above_yearly_turnover_cents=3_500_000, rate_bps=800),),
    )

    def contribution(price, before):
        return contribution_cents(schedule, price_excl_vat_cents=price, yearly_turnover_before_cents=before)

    assert contribution(2000, 3_499_000) == 180
    assert contribution(2000, 0) == 200
    assert contribution(2000, 3_500_000) == 160
    assert contribution(2000, 9_000_000) == 160
    breakdown = example_quote(schedule=schedule, yearly_turnover_before_cents=3_490_000)
    assert breakdown.contribution_cents == 1000 + 400
    assert "tiered 10%/8%" in breakdown.lines[2].label


def test_several_tiers():
    schedule = FeeSchedule(
        contribution_rate_bps=1000,
        contribution_tiers=(ContributionTier(1000, 500), ContributionTier(2000, 0)),
    )
    assert contribution_cents(schedule, price_excl_vat_cents=3000) == 100 + 50 + 0
    assert contribution_cents(schedule, price_excl_vat_cents=1000, yearly_turnover_before_cents=1500) == 25


def test_price_too_low():
    with pytest.raises(PriceTooLow) as info:
        example_quote(price_excl_vat_cents=20)  # the 0.25 € fixed fee alone exceeds it
    assert info.value.code == "price_too_low"
    assert isinstance(info.value, DomainError)
    with pytest.raises(PriceTooLow):
        example_quote(price_excl_vat_cents=0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"price_excl_vat_cents": -1},
        {"price_excl_vat_cents": 10.5},
        {"vat_rate_bps": -1},
        {"vat_rate_bps": 10001},
    ],
)
def test_quote_rejects_bad_input(overrides):
    with pytest.raises(InvalidAmount):
        example_quote(**overrides)


def test_quote_rejects_a_bad_currency():
    with pytest.raises(InvalidCurrency):
        example_quote(currency="eur")
    assert example_quote(currency="CHF").currency == "CHF"


TIER = ContributionTier


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contribution_rate_bps": -1},
        {"contribution_rate_bps": 10001},
        {"contribution_rate_bps": 1000, "processing_fee_bps": 20000},
        {"contribution_rate_bps": 1000, "processing_fee_payer": "client"},
        {"contribution_rate_bps": 1000, "processing_fee_fixed_cents": -5},
        {"contribution_rate_bps": 1000, "min_fixed_monthly_gross_cents": -1},
        {"contribution_rate_bps": 1000, "contribution_tiers": (TIER(100, 800), TIER(100, 700))},
        {"contribution_rate_bps": 1000, "contribution_tiers": (TIER(200, 800), TIER(100, 700))},
        {"contribution_rate_bps": 1000, "contribution_tiers": (ContributionTier(100, 10001),)},
        {"contribution_rate_bps": 1000, "contribution_tiers": (ContributionTier(0, 800),)},
        {"contribution_rate_bps": "1000"},
    ],
)
def test_fee_schedule_validation(kwargs):
    with pytest.raises(InvalidFeeSchedule) as info:
        FeeSchedule(**kwargs)
    assert info.value.code == "invalid_fee_schedule"


def test_fee_schedule_accepts_a_list_of_tiers_as_a_tuple():
    schedule = FeeSchedule(contribution_rate_bps=1000, contribution_tiers=[ContributionTier(100, 800)])
    assert schedule.contribution_tiers == (ContributionTier(100, 800),)
    hash(schedule)


@pytest.mark.parametrize(
    ("gross_per_cost", "net_per_gross"),
    [
        (Decimal(0), Decimal("0.8")),
        (Decimal("1.01"), Decimal("0.8")),
        (Decimal("0.7"), Decimal(2)),
        (0.7, 0.8),
        (Decimal("NaN"), Decimal("0.8")),
        (Decimal("0.7"), Decimal("Infinity")),
    ],
)
def test_salary_rates_validation(gross_per_cost, net_per_gross):
    with pytest.raises(InvalidRateCard):
        SalaryRates(gross_per_cost=gross_per_cost, net_per_gross=net_per_gross)


def test_breakdown_must_add_up():
    with pytest.raises(ValueError):
        Breakdown(100, "EUR", (BreakdownLine("vat", "VAT", 50, "state"),))


# --- rate cards -----------------------------------------------------------------------------

CARD = RateCard(
    period="2026-01",
    gross_cents=(200000, 300000, 400000),
    employer_cost_cents=(240000, 398058, 540000),
    net_cents=(156000, 237479, 312000),
    min_net_hourly_cents=941,
)


def test_rate_card_at_a_grid_point_is_the_exact_ratio():
    rates = CARD.rates_at(300000)
    assert rates == EXAMPLE_RATES
    assert quote_breakdown(
        price_excl_vat_cents=15000, vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=rates
    ) == example_quote()


def test_rate_card_interpolates_amounts_linearly():
    rates = CARD.rates_at(250000)
    cost = Decimal(240000 + 398058) / 2
    net = Decimal(156000 + 237479) / 2
    assert abs(rates.gross_per_cost - Decimal(250000) / cost) < Decimal("1e-25")
    assert abs(rates.net_per_gross - net / Decimal(250000)) < Decimal("1e-25")


def test_rate_card_accepts_any_exact_integer_type():
    class NumpyLikeInt:  # what numpy.int64 offers: __index__, not an int subclass
        def __init__(self, value):
            self.value = value

        def __index__(self):
            return self.value

    card = RateCard(
        period="2026-01",
        gross_cents=tuple(NumpyLikeInt(v) for v in CARD.gross_cents),
        employer_cost_cents=CARD.employer_cost_cents,
        net_cents=CARD.net_cents,
        min_net_hourly_cents=NumpyLikeInt(941),
    )
    assert card == CARD


def test_rate_card_clamps_to_its_ends():
    assert CARD.rates_at(1) == CARD.rates_at(200000)
    assert CARD.rates_at(10**9) == CARD.rates_at(400000)


@given(st.integers(0, 10**7))
def test_rate_card_rates_stay_between_neighbours(gross):
    rates = CARD.rates_at(gross)
    ratios = [Decimal(g) / Decimal(c) for g, c in zip(CARD.gross_cents, CARD.employer_cost_cents)]
    assert min(ratios) - Decimal("1e-20") <= rates.gross_per_cost <= max(ratios) + Decimal("1e-20")
    assert Decimal(0) < rates.net_per_gross <= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gross_cents": ()},
        {"gross_cents": (300000, 200000, 400000)},
        {"net_cents": (156000, 237479)},
        {"employer_cost_cents": (240000, 298058, 540000)},  # cost below gross
        {"net_cents": (156000, 237479, -1)},
        {"min_net_hourly_cents": -1},
        {"period": "January"},
        {"period": "2026-13"},
        {"gross_cents": (200000.0, 300000, 400000)},
    ],
)
def test_rate_card_validation(kwargs):
    fields = dict(
        period=CARD.period,
        gross_cents=CARD.gross_cents,
        employer_cost_cents=CARD.employer_cost_cents,
        net_cents=CARD.net_cents,
        min_net_hourly_cents=CARD.min_net_hourly_cents,
    )
    fields.update(kwargs)
    with pytest.raises(InvalidRateCard):
        RateCard(**fields)


# --- properties of every quote ----------------------------------------------------------------

@st.composite
def schedules(draw):
    thresholds = sorted(set(draw(st.lists(st.integers(1, 10**8), max_size=3))))
    tiers = tuple(ContributionTier(t, draw(st.integers(0, 3000))) for t in thresholds)
    return FeeSchedule(
        contribution_rate_bps=draw(st.integers(0, 3000)),
        contribution_tiers=tiers,
        processing_fee_payer=draw(st.sampled_from(["member", "cooperative"])),
        processing_fee_bps=draw(st.integers(0, 500)),
        processing_fee_fixed_cents=draw(st.integers(0, 100)),
    )


@st.composite
def salary_rates(draw):
    """Realistic French ranges: gross/cost 0.65..1 (the general reduction near the SMIC brings
    it close to 1), net/gross 0.70..0.85; either exact ratios or a rate card's interpolation."""
    if draw(st.booleans()):
        return CARD.rates_at(draw(st.integers(150_000, 500_000)))
    cost = draw(st.integers(100_000, 1_000_000))
    return SalaryRates(
        gross_per_cost=Decimal(draw(st.integers(cost * 65 // 100, cost))) / Decimal(cost),
        net_per_gross=Decimal(draw(st.integers(700_000, 850_000))) / Decimal(1_000_000),
    )


vat_rates = st.one_of(st.sampled_from([0, 550, 1000, 2000]), st.integers(0, 10_000))


def reference_lines(price_excl, vat_bps, schedule, rates, before):
    """The same rules written with Decimal half-up, independently of the integer fast path."""
    bps = Decimal(10_000)
    vat = round_half_up(Decimal(price_excl) * vat_bps / bps)
    price = price_excl + vat
    processing = round_half_up(Decimal(price) * schedule.processing_fee_bps / bps)
    processing += schedule.processing_fee_fixed_cents
    contribution = contribution_cents(
        schedule, price_excl_vat_cents=price_excl, yearly_turnover_before_cents=before
    )
    if schedule.processing_fee_payer == "member":
        budget = price - vat - processing - contribution
        shown = (processing, contribution)
    else:
        budget = price - vat - contribution
        shown = (min(processing, contribution), max(contribution - processing, 0))
    if budget <= 0:
        return None
    with localcontext() as context:
        context.prec = 80
        employer = round_half_up(budget * (1 - rates.gross_per_cost))
        gross = budget - employer
        net = round_half_up(gross * rates.net_per_gross)
    return [vat, *shown, employer, gross - net, net], price, budget


@settings(max_examples=400)
@given(
    st.integers(1, 10**7),
    vat_rates,
    schedules(),
    salary_rates(),
    st.integers(0, 2 * 10**8),
    st.sampled_from(["EUR", "CHF"]),
)
def test_every_breakdown_adds_up_and_is_non_negative(price_excl, vat_bps, schedule, rates, before, currency):
    expected = reference_lines(price_excl, vat_bps, schedule, rates, before)
    kwargs = dict(
        price_excl_vat_cents=price_excl,
        vat_rate_bps=vat_bps,
        schedule=schedule,
        rates=rates,
        currency=currency,
        yearly_turnover_before_cents=before,
    )
    try:
        breakdown = quote_breakdown(**kwargs)
    except PriceTooLow:
        assert expected is None  # only a budget <= 0 may be refused
        return
    lines, price, budget = expected
    amounts = [line.amount_cents for line in breakdown.lines]
    assert sum(amounts) == breakdown.price_cents == price
    assert all(amount >= 0 for amount in amounts)
    assert amounts == lines
    assert [line.code for line in breakdown.lines] == list(LINE_CODES)
    assert breakdown.member_budget_cents == budget == sum(amounts[3:])
    assert breakdown.gross_cents == amounts[4] + amounts[5]
    assert breakdown.currency == currency
    assert quote_breakdown(**kwargs) == breakdown  # deterministic
    if schedule.processing_fee_payer == "cooperative":
        assert amounts[1] + amounts[2] + breakdown.cooperative_absorbed_cents == max(
            breakdown.contribution_cents, breakdown.processing_fee_cents
        )


# --- the fair-pay floor -----------------------------------------------------------------------


def one_hour_net(price, vat_bps, schedule, rates, before=0):
    try:
        return quote_breakdown(
            price_excl_vat_cents=price,
            vat_rate_bps=vat_bps,
            schedule=schedule,
            rates=rates,
            yearly_turnover_before_cents=before,
        ).amount("net_salary")
    except PriceTooLow:
        return -1


def test_fair_pay_floor_for_the_example_schedule():
    floor = fair_pay_floor_hourly_cents(
        vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=EXAMPLE_RATES, min_net_hourly_cents=941
    )
    assert one_hour_net(floor, 2000, EXAMPLE_SCHEDULE, EXAMPLE_RATES) >= 941
    assert one_hour_net(floor - 1, 2000, EXAMPLE_SCHEDULE, EXAMPLE_RATES) < 941
    assert 1700 < floor < 1900  # about 9.41 € / (0.9 × 0.75 × 0.79) minus processing


def test_check_offering_rate():
    kwargs = dict(vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=EXAMPLE_RATES, min_net_hourly_cents=941)
    floor = fair_pay_floor_hourly_cents(**kwargs)
    assert check_offering_rate(hourly_rate_cents=floor, **kwargs) == floor
    assert check_offering_rate(hourly_rate_cents=5000, **kwargs) == floor
    with pytest.raises(BelowFairPayFloor) as info:
        check_offering_rate(hourly_rate_cents=floor - 1, **kwargs)
    assert info.value.code == "below_fair_pay_floor"
    assert info.value.floor_cents == floor
    assert info.value.status == 422
    assert str(floor) in info.value.message


def test_fair_pay_floor_impossible_schedule():
    with pytest.raises(InvalidFeeSchedule):
        fair_pay_floor_hourly_cents(
            vat_rate_bps=2000,
            schedule=FeeSchedule(contribution_rate_bps=10_000),
            rates=EXAMPLE_RATES,
            min_net_hourly_cents=941,
        )


def test_fair_pay_floor_of_zero_minimum_is_the_lowest_quotable_price():
    floor = fair_pay_floor_hourly_cents(
        vat_rate_bps=2000, schedule=EXAMPLE_SCHEDULE, rates=EXAMPLE_RATES, min_net_hourly_cents=0
    )
    assert one_hour_net(floor, 2000, EXAMPLE_SCHEDULE, EXAMPLE_RATES) >= 0
    assert one_hour_net(floor - 1, 2000, EXAMPLE_SCHEDULE, EXAMPLE_RATES) == -1


@settings(max_examples=150, deadline=None)
@given(
    vat_rates.filter(lambda v: v <= 2000),
    schedules(),
    salary_rates(),
    st.integers(0, 3000),
    st.integers(0, 10**8),
)
def test_fair_pay_floor_property(vat_bps, schedule, rates, minimum, before):
    floor = fair_pay_floor_hourly_cents(
        vat_rate_bps=vat_bps,
        schedule=schedule,
        rates=rates,
        min_net_hourly_cents=minimum,
        yearly_turnover_before_cents=before,
    )
    assert one_hour_net(floor, vat_bps, schedule, rates, before) >= minimum
    assert one_hour_net(floor - 1, vat_bps, schedule, rates, before) < minimum
    # Rounding dips never bring a price just above the floor back under the minimum.
    assert all(one_hour_net(p, vat_bps, schedule, rates, before) >= minimum for p in range(floor, floor + 33))


def test_fair_pay_floor_steps_over_a_rounding_dip():
    # Found by search: 1.10 € pays a 0.32 € net, 1.11 € only 0.31 € (per-line rounding), so the
    # floor is 1.12 €, from which every price pays the minimum.
    schedule = FeeSchedule(
        contribution_rate_bps=2861, processing_fee_bps=136, processing_fee_fixed_cents=26
    )
    rates = SalaryRates(gross_per_cost=Decimal("0.80024"), net_per_gross=Decimal("0.7598"))
    nets = [one_hour_net(price, 0, schedule, rates) for price in (109, 110, 111, 112)]
    assert nets == [31, 32, 31, 32]
    floor = fair_pay_floor_hourly_cents(
        vat_rate_bps=0, schedule=schedule, rates=rates, min_net_hourly_cents=32
    )
    assert floor == 112


def test_rates_at_remembers_its_answers_per_card_and_stays_bounded(monkeypatch):
    import dataclasses

    from app.domain import fees

    card = dataclasses.replace(CARD)  # a card of its own: an empty memo
    levels = [1, 200000, 212345, 250000, 299999, 300000, 387654, 400000, 10**9]
    first = [card.rates_at(g) for g in levels]
    assert [card.rates_at(g) for g in levels] == first == [card._rates_at(g) for g in levels]
    assert all(card.rates_at(g) is r for g, r in zip(levels, first))  # the same answers, not recomputed
    other = dataclasses.replace(card, net_cents=tuple(n - 100 for n in card.net_cents))
    assert other.rates_at(250000) != card.rates_at(250000)  # another card never answers from this one
    monkeypatch.setattr(fees, "_RATES_MEMO_MAX", 4)
    for g in range(200000, 200050):
        assert card.rates_at(g) == card._rates_at(g)
    assert len(card._rates_memo) <= 4
