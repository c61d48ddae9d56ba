"""Fee rules: where each cent of a booking's price goes (VAT, processing, contribution, payroll).

Rates are basis points (10000 = 100 %) or exact Decimal ratios; rounding is told in quote_breakdown.
"""

from __future__ import annotations

import operator
import re
from bisect import bisect_right
from dataclasses import KW_ONLY, dataclass
from decimal import Context, Decimal
from typing import Any, Literal

from app.domain.errors import (
    BelowFairPayFloor,
    InvalidAmount,
    InvalidFeeSchedule,
    InvalidRateCard,
    PriceTooLow,
)
from app.domain.money import BPS, format_bps, format_eur, validate_currency

ProcessingFeePayer = Literal["member", "cooperative"]

# Line codes are part of the API contract (transparency pages and apps key on them): never rename.
VAT = "vat"
PAYMENT_PROCESSING = "payment_processing"
COOP_CONTRIBUTION = "coop_contribution"
EMPLOYER_CONTRIBUTIONS = "employer_contributions"
EMPLOYEE_CONTRIBUTIONS = "employee_contributions"
NET_SALARY = "net_salary"
LINE_CODES = (
    VAT,
    PAYMENT_PROCESSING,
    COOP_CONTRIBUTION,
    EMPLOYER_CONTRIBUTIONS,
    EMPLOYEE_CONTRIBUTIONS,
    NET_SALARY,
)

# Recipients are machine-readable too (snake_case), labels are for people.
STATE = "state"
PAYMENT_PROCESSOR = "payment_processor"
COOPERATIVE = "cooperative"
SOCIAL_SECURITY = "social_security"
WORKER = "worker"

# Rates are ratios like 300000/398058: 28 significant digits (Python's default precision) so
# that a rate computed here equals one computed with Decimal(a) / Decimal(b) elsewhere.
RATE_CONTEXT = Context(prec=28)
_PERIOD_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_ZERO = Decimal(0)
_ONE = Decimal(1)

# Why this cap: the fair-pay search must stop on a schedule that can never pay the minimum.
_MAX_HOURLY_PRICE_CENTS = 10**11
# Rounding can make the net dip by a cent between two consecutive prices; the floor is only
# accepted once this many prices above it also pay the minimum (see fair_pay_floor_hourly_cents).
_FLOOR_STABILITY_WINDOW = 32


def _is_int(value: Any) -> bool:
    return type(value) is int


@dataclass(frozen=True)
class SalaryRates:
    """How an employer cost splits at one salary level (estimates from the payroll engine)."""

    gross_per_cost: Decimal  # gross / employer cost at that salary level
    net_per_gross: Decimal  # net / gross

    def __post_init__(self) -> None:
        g, n = self.gross_per_cost, self.net_per_gross
        if not (isinstance(g, Decimal) and isinstance(n, Decimal) and g.is_finite() and n.is_finite()):
            raise InvalidRateCard("salary rates must be finite Decimal values")
        # A ratio above 1 would make a contribution line negative; 0 would pay no salary at all.
        if not (_ZERO < g <= _ONE and _ZERO < n <= _ONE):
            raise InvalidRateCard(
                f"salary rates must be in (0, 1], got gross_per_cost={g}, net_per_gross={n}"
            )
        # Exact integer ratios so that a quote needs no Decimal arithmetic (speed), and the only
        # rounding is the documented half-up: employer = budget × (1 − g), net = gross × n.
        g_num, g_den = g.as_integer_ratio()
        object.__setattr__(self, "_employer_ratio", (g_den - g_num, g_den))
        object.__setattr__(self, "_net_ratio", n.as_integer_ratio())


_RATES_MEMO_MAX = 4096  # distinct salary levels remembered per rate card


@dataclass(frozen=True)
class RateCard:
    """Monthly payroll figures of a period on a grid of gross salaries (from the payroll engine)."""

    period: str  # "YYYY-MM"
    gross_cents: tuple[int, ...]  # ascending monthly gross grid
    employer_cost_cents: tuple[int, ...]
    net_cents: tuple[int, ...]
    min_net_hourly_cents: int  # legal minimum net hourly wage of the period

    def __post_init__(self) -> None:
        # The payroll engine may hand numpy integers: accept any exact integer, never a float.
        try:
            for name in ("gross_cents", "employer_cost_cents", "net_cents"):
                object.__setattr__(self, name, tuple(operator.index(v) for v in getattr(self, name)))
            object.__setattr__(self, "min_net_hourly_cents", operator.index(self.min_net_hourly_cents))
        except TypeError as error:
            raise InvalidRateCard(f"rate card amounts must be integer cents ({error})") from None
        grid = (self.gross_cents, self.employer_cost_cents, self.net_cents)
        size = len(self.gross_cents)
        if size == 0 or any(len(column) != size for column in grid):
            raise InvalidRateCard("a rate card needs one or more grid points of equal length")
        if any(v <= 0 for column in grid for v in column):
            raise InvalidRateCard("rate card amounts must be positive")
        if any(a >= b for a, b in zip(self.gross_cents, self.gross_cents[1:])):
            raise InvalidRateCard("the gross grid must be strictly ascending")
        for gross, cost, net in zip(*grid):
            if not (net <= gross <= cost):
                raise InvalidRateCard(
                    f"at gross {gross} expected net <= gross <= employer cost, got {net}, {cost}"
                )
        if self.min_net_hourly_cents < 0:
            raise InvalidRateCard("min_net_hourly_cents must not be negative")
        if not _PERIOD_RE.fullmatch(str(self.period)):
            raise InvalidRateCard(f"period must be 'YYYY-MM', got {self.period!r}")
        # rates_at's answers (a pure function of the card): every search asks again for the few
        # salary levels of the members it shows.
        object.__setattr__(self, "_rates_memo", {})

    def rates_at(self, monthly_gross_cents: int) -> SalaryRates:
        """Rates at a monthly gross: linear interpolation of cost and net between grid points.

        Interpolating the amounts (not the ratios) keeps the card's own figures exact at grid
        points; outside the grid the end point's rates apply (clamped).
        """
        memo: dict[int, SalaryRates] = self._rates_memo  # type: ignore[attr-defined]
        found = memo.get(monthly_gross_cents)
        if found is None:
            if len(memo) >= _RATES_MEMO_MAX:
                memo.clear()
            found = memo[monthly_gross_cents] = self._rates_at(monthly_gross_cents)
        return found

    def _rates_at(self, monthly_gross_cents: int) -> SalaryRates:
        grosses = self.gross_cents
        i = bisect_right(grosses, monthly_gross_cents) - 1
        last = len(grosses) - 1
        if i < 0:
            i = 0
            monthly_gross_cents = grosses[0]
        elif i >= last:
            i = last
            monthly_gross_cents = grosses[last]
        g0 = grosses[i]
        if monthly_gross_cents == g0:
            # Exactly the ratios Decimal(gross) / Decimal(cost) of the grid point.
            num_g, cost_num, net_num = g0, self.employer_cost_cents[i], self.net_cents[i]
        else:
            # cost(g) = c0 + (c1 − c0)·t/span, so g/cost = g·span / (c0·span + (c1 − c0)·t):
            # one exact integer fraction, rounded once to a 28-digit Decimal.
            span = grosses[i + 1] - g0
            t = monthly_gross_cents - g0
            c0, n0 = self.employer_cost_cents[i], self.net_cents[i]
            cost_num = c0 * span + (self.employer_cost_cents[i + 1] - c0) * t
            net_num = n0 * span + (self.net_cents[i + 1] - n0) * t
            num_g = monthly_gross_cents * span
        divide = RATE_CONTEXT.divide
        return SalaryRates(
            gross_per_cost=divide(Decimal(num_g), Decimal(cost_num)),
            net_per_gross=divide(Decimal(net_num), Decimal(num_g)),
        )


@dataclass(frozen=True)
class ContributionTier:
    """From this yearly turnover (excl. VAT) on, the contribution rate becomes `rate_bps`."""

    above_yearly_turnover_cents: int
    rate_bps: int


@dataclass(frozen=True)
class FeeSchedule:
    """The fee settings the members voted on; a booking keeps the schedule in force when quoted."""

    contribution_rate_bps: int
    contribution_tiers: tuple[ContributionTier, ...] = ()
    processing_fee_payer: ProcessingFeePayer = "member"
    processing_fee_bps: int = 0
    processing_fee_fixed_cents: int = 0
    min_fixed_monthly_gross_cents: int = 0

    def __post_init__(self) -> None:
        _check_bps("contribution_rate_bps", self.contribution_rate_bps)
        _check_bps("processing_fee_bps", self.processing_fee_bps)
        if self.processing_fee_payer not in ("member", "cooperative"):
            raise InvalidFeeSchedule(
                f"processing_fee_payer must be 'member' or 'cooperative', "
                f"got {self.processing_fee_payer!r}"
            )
        for name in ("processing_fee_fixed_cents", "min_fixed_monthly_gross_cents"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise InvalidFeeSchedule(f"{name} must be a non-negative integer, got {value!r}")
        tiers = tuple(self.contribution_tiers)
        object.__setattr__(self, "contribution_tiers", tiers)
        previous = 0
        for tier in tiers:
            if not isinstance(tier, ContributionTier):
                raise InvalidFeeSchedule("contribution_tiers must hold ContributionTier values")
            _check_bps("contribution tier rate_bps", tier.rate_bps)
            above = tier.above_yearly_turnover_cents
            if not _is_int(above) or above <= previous:
                raise InvalidFeeSchedule(
                    "contribution tiers must have positive, strictly ascending thresholds"
                )
            previous = above


def _check_bps(name: str, value: Any) -> None:
    if not _is_int(value) or not 0 <= value <= BPS:
        raise InvalidFeeSchedule(f"{name} must be an integer in 0..{BPS} bps, got {value!r}")


def contribution_cents(
    schedule: FeeSchedule, *, price_excl_vat_cents: int, yearly_turnover_before_cents: int = 0
) -> int:
    """The cooperative contribution on a booking, with marginal tiers on the yearly turnover.

    The booking covers turnover [before, before + price); each part of it pays the rate of the
    band it falls in (like income-tax brackets), and the sum is rounded half-up once.
    """
    rate = schedule.contribution_rate_bps
    if not schedule.contribution_tiers:
        return (price_excl_vat_cents * rate * 2 + BPS) // (2 * BPS)
    position = max(yearly_turnover_before_cents, 0)
    end = position + price_excl_vat_cents
    weighted = 0  # Σ part × rate_bps, rounded once at the end
    for tier in schedule.contribution_tiers:
        threshold = tier.above_yearly_turnover_cents
        if threshold >= end:
            break
        if threshold > position:
            weighted += (threshold - position) * rate
            position = threshold
        rate = tier.rate_bps
    weighted += (end - position) * rate
    return (weighted * 2 + BPS) // (2 * BPS)


@dataclass(frozen=True)
class BreakdownLine:
    """One destination of a booking's money; `code` and `recipient` are stable identifiers."""

    code: str
    label: str
    amount_cents: int
    recipient: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "label": self.label,
            "amount_cents": self.amount_cents,
            "recipient": self.recipient,
        }


@dataclass(frozen=True)
class Breakdown:
    """Where the client's price (VAT included) goes; the lines add up to `price_cents` exactly.

    The keyword-only figures after `lines` are not published as lines but are needed by the
    ledger (postings at capture) and payroll (the salary estimate).
    """

    price_cents: int
    currency: str
    lines: tuple[BreakdownLine, ...]
    _: KW_ONLY
    price_excl_vat_cents: int = 0
    vat_cents: int = 0
    processing_fee_cents: int = 0  # the whole processor fee, whoever bears it
    processing_fee_payer: ProcessingFeePayer = "member"
    contribution_cents: int = 0  # the contribution due under the schedule (before processing)
    cooperative_absorbed_cents: int = 0  # processing paid from the coop's reserves (see quote)
    member_budget_cents: int = 0  # = employer cost: credited to the member's activity account
    gross_cents: int = 0  # estimated gross salary part of the budget

    def __post_init__(self) -> None:
        if sum(line.amount_cents for line in self.lines) != self.price_cents:
            raise ValueError("breakdown lines must add up to price_cents")

    def amount(self, code: str) -> int:
        """The amount of the line `code` (0 if there is no such line)."""
        for line in self.lines:
            if line.code == code:
                return line.amount_cents
        return 0

    def to_dict(self) -> dict[str, Any]:
        """The API shape: {price_cents, currency, lines: [{code, label, amount_cents, recipient}]}."""
        return {
            "price_cents": self.price_cents,
            "currency": self.currency,
            "lines": [line.to_dict() for line in self.lines],
        }


_valid_currencies: set[str] = set()
_vat_labels: dict[int, str] = {}
_rate_labels: dict[int, str] = {}


def _vat_label(vat_rate_bps: int) -> str:
    label = _vat_labels.get(vat_rate_bps)
    if label is None:
        label = _vat_labels.setdefault(vat_rate_bps, f"VAT ({format_bps(vat_rate_bps)})")
    return label


def _contribution_label(
    schedule: FeeSchedule, excl: int, processing_line: int, absorbed: int
) -> str:
    if schedule.contribution_tiers:
        rates = "/".join(
            format_bps(r)
            for r in (schedule.contribution_rate_bps,)
            + tuple(t.rate_bps for t in schedule.contribution_tiers)
        )
        label = f"Cooperative contribution (tiered {rates} of {format_eur(excl)})"
    else:
        rate = _rate_labels.get(schedule.contribution_rate_bps)
        if rate is None:
            rate = _rate_labels.setdefault(
                schedule.contribution_rate_bps, format_bps(schedule.contribution_rate_bps)
            )
        label = f"Cooperative contribution ({rate} of {format_eur(excl)})"
    if schedule.processing_fee_payer == "cooperative" and (processing_line or absorbed):
        label = label[:-1] + ", less payment processing)"
    return label


_PROCESSING_LABEL = "Payment processing"
_EMPLOYER_LABEL = "Employer social contributions (estimate)"
_EMPLOYEE_LABEL = "Employee social contributions incl. CSG/CRDS (estimate)"
_NET_LABEL = "Net salary (estimate)"


def quote_breakdown(
    *,
    price_excl_vat_cents: int,
    vat_rate_bps: int,
    schedule: FeeSchedule,
    rates: SalaryRates,
    currency: str = "EUR",
    yearly_turnover_before_cents: int = 0,
) -> Breakdown:
    """Split a booking price into its six lines, in this order and with this rounding:

    1. vat = half-up(excl × vat rate); price = excl + vat (what the client pays).
    2. processing = half-up(price × processing bps) + fixed fee.
    3. contribution = half-up(Σ part × tier rate) on excl (marginal tiers, see contribution_cents).
    4. member budget (= employer cost) = price − vat − processing − contribution when the member
       bears processing, price − vat − contribution when the cooperative does; budget <= 0
       raises PriceTooLow.
    5. employer contributions = half-up(budget × (1 − gross_per_cost)); gross = budget − employer.
    6. net salary = half-up(gross × net_per_gross); employee contributions = gross − net, so the
       remainder cent of the whole split always lands in `employee_contributions`.

    When the cooperative bears processing, the processing line is still shown and is paid out of
    its contribution: coop_contribution = contribution − processing. If processing exceeds the
    contribution, the coop_contribution line is 0, the processing line shows the part paid out of
    this price (= the contribution) and the rest, `cooperative_absorbed_cents`, is paid by the
    cooperative from its reserves (in the ledger, its processing-fee expense exceeds this
    contribution). The member's budget never depends on the processor's fee in that case.
    """
    excl = price_excl_vat_cents
    if not _is_int(excl) or excl < 0:
        raise InvalidAmount(f"price_excl_vat_cents must be a non-negative integer, got {excl!r}")
    if not _is_int(vat_rate_bps) or not 0 <= vat_rate_bps <= BPS:
        raise InvalidAmount(f"vat_rate_bps must be an integer in 0..{BPS}, got {vat_rate_bps!r}")
    if currency not in _valid_currencies:
        _valid_currencies.add(validate_currency(currency))

    # half-up(a × bps / 10000) for a >= 0, in integers: (2·a·bps + 10000) // 20000.
    vat = (excl * vat_rate_bps * 2 + BPS) // (2 * BPS)
    price = excl + vat
    processing = (
        price * schedule.processing_fee_bps * 2 + BPS
    ) // (2 * BPS) + schedule.processing_fee_fixed_cents
    contribution = contribution_cents(
        schedule,
        price_excl_vat_cents=excl,
        yearly_turnover_before_cents=yearly_turnover_before_cents,
    )
    absorbed = 0
    if schedule.processing_fee_payer == "member":
        budget = excl - processing - contribution
        processing_line, contribution_line = processing, contribution
    else:
        budget = excl - contribution
        if processing <= contribution:
            processing_line, contribution_line = processing, contribution - processing
        else:
            processing_line, contribution_line = contribution, 0
            absorbed = processing - contribution
    if budget <= 0:
        raise PriceTooLow(
            f"a price of {format_eur(price)} leaves nothing for the member after VAT and fees"
        )

    employer_num, employer_den = rates._employer_ratio  # type: ignore[attr-defined]
    employer = (budget * employer_num * 2 + employer_den) // (2 * employer_den)
    gross = budget - employer
    net_num, net_den = rates._net_ratio  # type: ignore[attr-defined]
    net = (gross * net_num * 2 + net_den) // (2 * net_den)

    processing_label = _PROCESSING_LABEL
    if absorbed:
        processing_label = (
            f"Payment processing ({format_eur(processing)}, of which {format_eur(absorbed)} "
            "paid from the cooperative's reserves)"
        )
    lines = (
        BreakdownLine(VAT, _vat_label(vat_rate_bps), vat, STATE),
        BreakdownLine(PAYMENT_PROCESSING, processing_label, processing_line, PAYMENT_PROCESSOR),
        BreakdownLine(
            COOP_CONTRIBUTION,
            _contribution_label(schedule, excl, processing_line, absorbed),
            contribution_line,
            COOPERATIVE,
        ),
        BreakdownLine(EMPLOYER_CONTRIBUTIONS, _EMPLOYER_LABEL, employer, SOCIAL_SECURITY),
        BreakdownLine(EMPLOYEE_CONTRIBUTIONS, _EMPLOYEE_LABEL, gross - net, SOCIAL_SECURITY),
        BreakdownLine(NET_SALARY, _NET_LABEL, net, WORKER),
    )
    return Breakdown(
        price,
        currency,
        lines,
        price_excl_vat_cents=excl,
        vat_cents=vat,
        processing_fee_cents=processing,
        processing_fee_payer=schedule.processing_fee_payer,
        contribution_cents=contribution,
        cooperative_absorbed_cents=absorbed,
        member_budget_cents=budget,
        gross_cents=gross,
    )


def _one_hour_net(
    price: int,
    vat_rate_bps: int,
    schedule: FeeSchedule,
    rates: SalaryRates,
    yearly_turnover_before_cents: int,
) -> int | None:
    """The net salary of a one-hour booking at `price`, or None when the price is too low."""
    try:
        breakdown = quote_breakdown(
            price_excl_vat_cents=price,
            vat_rate_bps=vat_rate_bps,
            schedule=schedule,
            rates=rates,
            yearly_turnover_before_cents=yearly_turnover_before_cents,
        )
    except PriceTooLow:
        return None
    return breakdown.lines[-1].amount_cents


def fair_pay_floor_hourly_cents(
    *,
    vat_rate_bps: int,
    schedule: FeeSchedule,
    rates: SalaryRates,
    min_net_hourly_cents: int,
    yearly_turnover_before_cents: int = 0,
) -> int:
    """The lowest hourly price excl. VAT whose one-hour booking pays `net_salary` >= the minimum.

    The net grows with the price but, through per-line rounding, can dip by a cent from one
    price to the next; so the floor returned is a price F such that F − 1 pays less than the
    minimum and F .. F + 32 all pay at least it (binary search, then a check of that window).
    Raises InvalidFeeSchedule if no price up to 1 bn €/h can pay the minimum.
    """
    if not _is_int(min_net_hourly_cents):
        raise InvalidAmount("min_net_hourly_cents must be an integer")

    def pays(price: int) -> bool:
        net = _one_hour_net(price, vat_rate_bps, schedule, rates, yearly_turnover_before_cents)
        return net is not None and net >= min_net_hourly_cents

    # Invariant: `low` does not pay (a zero price always raises PriceTooLow), `high` pays.
    low = 0
    high = max(1, 2 * min_net_hourly_cents)
    while not pays(high):
        low = high
        high *= 2
        if high > _MAX_HOURLY_PRICE_CENTS:
            raise InvalidFeeSchedule(
                "no hourly price can pay the minimum net wage under this fee schedule"
            )
    while True:
        while high - low > 1:
            middle = (low + high) // 2
            if pays(middle):
                high = middle
            else:
                low = middle
        dip = next(
            (p for p in range(high + 1, high + 1 + _FLOOR_STABILITY_WINDOW) if not pays(p)),
            None,
        )
        if dip is None:
            return high
        # A rounding dip above the candidate: the floor must lie above it.
        low, high = dip, dip + 1
        while not pays(high):
            low, high = high, high + 1


def check_offering_rate(
    *,
    hourly_rate_cents: int,
    vat_rate_bps: int,
    schedule: FeeSchedule,
    rates: SalaryRates,
    min_net_hourly_cents: int,
    yearly_turnover_before_cents: int = 0,
) -> int:
    """Return the fair-pay floor, or raise BelowFairPayFloor(floor) if the rate is below it."""
    floor = fair_pay_floor_hourly_cents(
        vat_rate_bps=vat_rate_bps,
        schedule=schedule,
        rates=rates,
        min_net_hourly_cents=min_net_hourly_cents,
        yearly_turnover_before_cents=yearly_turnover_before_cents,
    )
    if hourly_rate_cents < floor:
        raise BelowFairPayFloor(floor)
    return floor
