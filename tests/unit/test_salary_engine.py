"""The OpenFisca-France salary engine: reference figures, line invariants, the budget → gross inverse.

The reference figures are those of DESIGN.md (OpenFisca-France 176, January 2026, prive_non_cadre,
temps_plein, cdi, effectif_entreprise=100, everything else at OpenFisca's defaults).
"""

from __future__ import annotations

import asyncio
import random
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from app.payouts.engine import (
    BRANCHES,
    FULL_TIME_MONTHLY_HOURS,
    EmploymentSettings,
    SalaryComputation,
    SalaryEngine,
)
from app.payouts.openfisca_engine import OpenFiscaFranceEngine, get_engine, get_engine_sync

pytestmark = pytest.mark.slow

PERIOD = "2026-01"
REFERENCE = EmploymentSettings()  # headcount 100, prive_non_cadre, OpenFisca defaults
SMIC_MONTHLY_2026 = 182_307  # 12.02 €/h × 151.67 h, the bottom of the round-trip range


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture(scope="module")
def engine() -> OpenFiscaFranceEngine:
    return get_engine_sync()


def spread(low: int, high: int, count: int, seed: int) -> list[int]:
    """Round salaries, every bracket boundary region and random cents between low and high."""
    rng = random.Random(seed)
    values = {low, high, 200_000, 250_000, 300_000, 350_000, 400_500, 400_501, 500_000, 546_921, 750_000}
    values |= {rng.randint(low, high) for _ in range(count)}
    return sorted(v for v in values if low <= v <= high)


# --- reference figures -----------------------------------------------------------------------


def test_reference_gross_3000_gives_the_published_net_and_employer_cost(engine):
    (figures,) = engine.compute(PERIOD, [300_000], REFERENCE)
    assert figures.gross_cents == 300_000
    assert figures.net_cents == 237_479
    assert figures.employer_cost_cents == 398_058


def test_headcount_5_changes_the_employer_cost(engine):
    (figures,) = engine.compute(PERIOD, [300_000], EmploymentSettings(headcount=5))
    assert figures.employer_cost_cents == 394_398
    assert figures.net_cents == 237_479  # employee contributions do not depend on the headcount


def test_reference_budget_inverts_to_the_reference_gross(engine):
    assert engine.gross_from_employer_cost(PERIOD, [398_058], REFERENCE) == [300_000]
    assert engine.gross_from_employer_cost(PERIOD, [394_398], EmploymentSettings(headcount=5)) == [300_000]


def test_reference_payslip_lines(engine):
    (figures,) = engine.compute(PERIOD, [300_000], REFERENCE)
    lines = {line.code: line for line in figures.lines}
    pension = lines["vieillesse_plafonnee"]
    assert (pension.base_cents, pension.employee_rate) == (300_000, Decimal("0.069"))
    assert pension.employee_cents == 20_700
    assert (pension.employer_rate, pension.employer_cents) == (Decimal("0.0855"), 25_650)
    csg = lines["csg_deductible"]
    # CSG base: gross less the 1.75 % allowance (art. L136-1-2 CSS).
    assert (csg.base_cents, csg.employee_rate, csg.employee_cents) == (294_750, Decimal("0.068"), 20_043)
    assert lines["crds"].employee_cents == 1_474  # 14.7375 € rounds half-up
    assert figures.general_reduction_cents == 30_240
    assert "agirc_arrco_t2" not in lines  # below the ceiling: no tranche 2
    assert figures.by_branch()["csg_crds"] == (20_043 + 7_074 + 1_474, 0)


# --- invariants ------------------------------------------------------------------------------


def check_invariants(figures: SalaryComputation) -> None:
    assert sum(line.employee_cents for line in figures.lines) == figures.employee_contributions_cents
    assert sum(line.employer_cents for line in figures.lines) == figures.employer_contributions_cents
    assert figures.gross_cents - figures.employee_contributions_cents == figures.net_cents
    assert (
        figures.gross_cents + figures.employer_contributions_cents - figures.general_reduction_cents
        == figures.employer_cost_cents
    )
    for line in figures.lines:
        assert line.branch in BRANCHES
        assert line.employee_cents >= 0 and line.employer_cents >= 0
        assert line.employee_cents or line.employer_cents
        assert isinstance(line.employee_rate, Decimal) and isinstance(line.employer_rate, Decimal)
    codes = [line.code for line in figures.lines]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize(
    "settings",
    [
        REFERENCE,
        EmploymentSettings(headcount=5),
        EmploymentSettings(category="prive_cadre"),
        EmploymentSettings(headcount=30, transport_levy_rate_bps=295, work_accident_rate_bps=150,
                           health_cover_monthly_cents=6_000),
    ],
    ids=["reference", "headcount-5", "cadre", "levy-at-health"],
)
def test_lines_add_up_to_the_totals(engine, settings):
    gross = [0, 1, 2, 99, 50_000, SMIC_MONTHLY_2026, 400_500, 400_501, 1_602_000, 3_204_001, 5_000_000]
    gross += spread(0, 2_000_000, 300, seed=7)
    results = engine.compute(PERIOD, gross, settings)
    assert [r.gross_cents for r in results] == gross
    for figures in results:
        check_invariants(figures)
    assert results[0].lines == () and results[0].employer_cost_cents == 0


def test_one_vectorised_call_equals_separate_calls(engine):
    gross = [150_000, 300_000, 987_654]
    together = engine.compute(PERIOD, gross, REFERENCE)
    assert together == [engine.compute(PERIOD, [g], REFERENCE)[0] for g in gross]


def test_totals_agree_with_openfisca_aggregates(engine):
    """Published totals (sums of lines rounded one by one) vs OpenFisca's own aggregates.

    An independent plain simulation (no line table, no hour-equivalent, which is a no-op at or
    above the SMIC) must give the same net and employer cost within the per-line rounding: one
    cent at most, and exactly at the reference point.
    """
    from openfisca_core.simulations import SimulationBuilder

    gross = spread(SMIC_MONTHLY_2026, 2_000_000, 400, seed=11)
    n = len(gross)
    sim = SimulationBuilder().build_default_simulation(engine.tax_benefit_system, n)
    sim.set_input("salaire_de_base", PERIOD, np.array(gross) / 100)
    sim.set_input("categorie_salarie", PERIOD, np.full(n, "prive_non_cadre"))
    sim.set_input("contrat_de_travail", PERIOD, np.full(n, "temps_plein"))
    sim.set_input("contrat_de_travail_type", PERIOD, np.full(n, "cdi"))
    sim.set_input("effectif_entreprise", PERIOD, np.full(n, 100))
    with np.errstate(all="ignore"):
        net = sim.calculate("salaire_net", PERIOD)
        cost = sim.calculate("cout_du_travail", PERIOD)
    results = engine.compute(PERIOD, gross, REFERENCE)
    for figures, of_net, of_cost in zip(results, net, cost):
        assert abs(figures.net_cents - half_up(Decimal(str(of_net)) * 100)) <= 1
        assert abs(figures.employer_cost_cents - half_up(Decimal(str(of_cost)) * 100)) <= 1
    reference = gross.index(300_000)
    assert half_up(Decimal(str(net[reference])) * 100) == 237_479
    assert half_up(Decimal(str(cost[reference])) * 100) == 398_058


# --- the inverse -----------------------------------------------------------------------------


def test_round_trip_across_the_salary_range(engine):
    """gross → employer cost → gross, from the full-time SMIC to 10,000 €.

    The inverse returns the largest gross the budget pays; where the cost has a one-cent plateau
    (cost(g) == cost(g + 1), rounding in the general reduction's range) that is g + 1, at the same
    cost. Round salaries never sit on one.
    """
    gross = spread(SMIC_MONTHLY_2026, 1_000_000, 600, seed=3)
    costs = engine.employer_cost_cents(PERIOD, gross, REFERENCE)
    back = engine.gross_from_employer_cost(PERIOD, costs, REFERENCE)
    assert engine.employer_cost_cents(PERIOD, back, REFERENCE) == costs
    after = engine.employer_cost_cents(PERIOD, [g + 1 for g in back], REFERENCE)
    for g, cost, b, cost_after in zip(gross, costs, back, after):
        assert b in (g, g + 1)
        assert cost_after > cost  # b is the largest gross at that cost
    assert sum(b == g for g, b in zip(gross, back)) >= 0.9 * len(gross)
    round_salaries = list(range(190_000, 1_000_001, 10_000))
    round_costs = engine.employer_cost_cents(PERIOD, round_salaries, REFERENCE)
    assert engine.gross_from_employer_cost(PERIOD, round_costs, REFERENCE) == round_salaries


@pytest.mark.parametrize(
    "settings",
    [REFERENCE, EmploymentSettings(headcount=8, category="prive_cadre", health_cover_monthly_cents=6_000)],
    ids=["reference", "small-cadre-health"],
)
def test_inverse_is_exact_to_the_cent_for_any_budget(engine, settings):
    rng = random.Random(5)
    budgets = [0, 1, 2, 3, 100, 5_000, 186_967, 186_968, 4_000_000]
    budgets += [rng.randint(0, 2_500_000) for _ in range(500)]
    gross = engine.gross_from_employer_cost(PERIOD, budgets, settings)
    at = engine.employer_cost_cents(PERIOD, gross, settings)
    above = engine.employer_cost_cents(PERIOD, [g + 1 for g in gross], settings)
    for budget, g, cost, cost_above in zip(budgets, gross, at, above):
        assert g >= 0
        assert cost <= budget < cost_above, (budget, g, cost, cost_above)


def test_employer_cost_only_matches_compute(engine):
    gross = spread(0, 1_500_000, 100, seed=9)
    assert engine.employer_cost_cents(PERIOD, gross, REFERENCE) == [
        f.employer_cost_cents for f in engine.compute(PERIOD, gross, REFERENCE)
    ]


# --- minimum wage and the hour-equivalent ----------------------------------------------------


def test_minimum_net_hourly_is_the_net_smic_month_over_151_67_hours(engine):
    hourly = engine.smic_hourly_gross_cents(PERIOD)
    assert hourly == 1_202  # décret n° 2025-1228: 12.02 € from 1 January 2026
    smic_month = half_up(Decimal(hourly) * FULL_TIME_MONTHLY_HOURS)
    (figures,) = engine.compute(PERIOD, [smic_month], REFERENCE)
    minimum = engine.minimum_net_hourly_cents(PERIOD, REFERENCE)
    assert 800 <= minimum <= 1_200
    assert minimum == half_up(Decimal(figures.net_cents) / FULL_TIME_MONTHLY_HOURS)


def test_below_the_smic_the_reduction_is_the_hour_equivalent_maximum(engine):
    """An entrepreneur-salarié paid below a full-time SMIC counts gross ÷ hourly SMIC hours: the
    reduction keeps its maximum coefficient, so cost / gross stays that of a SMIC salary."""
    gross = [SMIC_MONTHLY_2026 // 4, SMIC_MONTHLY_2026 // 2, SMIC_MONTHLY_2026 * 9 // 10, SMIC_MONTHLY_2026]
    results = engine.compute(PERIOD, gross, REFERENCE)
    smic_rate = Decimal(results[-1].general_reduction_cents) / results[-1].gross_cents
    for figures in results:
        rate = Decimal(figures.general_reduction_cents) / figures.gross_cents
        assert abs(rate - smic_rate) < Decimal("0.0002")
    # From 3 SMIC on there is no reduction (RGDU exit threshold).
    (high,) = engine.compute(PERIOD, [3 * SMIC_MONTHLY_2026 + 100], REFERENCE)
    assert high.general_reduction_cents == 0


# --- settings --------------------------------------------------------------------------------


def test_settings_are_honoured(engine):
    def lines(settings: EmploymentSettings) -> dict[str, object]:
        (figures,) = engine.compute(PERIOD, [300_000], settings)
        return {line.code: line for line in figures.lines}

    work_accident = lines(EmploymentSettings(work_accident_rate_bps=150))["accident_du_travail"]
    assert (work_accident.employer_rate, work_accident.employer_cents) == (Decimal("0.015"), 4_500)
    levy = lines(EmploymentSettings(transport_levy_rate_bps=295))["versement_mobilite"]
    assert (levy.employer_rate, levy.employer_cents) == (Decimal("0.0295"), 8_850)
    # The versement mobilité is only due from 11 employees (art. L2333-64 CGCT).
    assert "versement_mobilite" not in lines(EmploymentSettings(headcount=10, transport_levy_rate_bps=295))
    health = lines(EmploymentSettings(health_cover_monthly_cents=6_000))["complementaire_sante"]
    assert (health.employee_cents, health.employer_cents) == (3_000, 3_000)  # 50 % legal minimum share
    cadre = lines(EmploymentSettings(category="prive_cadre"))
    assert cadre["prevoyance_cadre"].employer_rate == Decimal("0.015")
    assert "apec" in cadre and "apec" not in lines(REFERENCE)


def test_invalid_inputs_are_refused(engine):
    with pytest.raises(ValueError):
        engine.compute(PERIOD, [300_000], EmploymentSettings(category="public_titulaire_etat"))
    with pytest.raises(ValueError):
        engine.compute("2026-13", [300_000], REFERENCE)
    with pytest.raises(ValueError):
        engine.compute(PERIOD, [-1], REFERENCE)
    with pytest.raises(ValueError):
        engine.gross_from_employer_cost(PERIOD, [1.5], REFERENCE)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        EmploymentSettings(headcount=-1)
    assert engine.compute(PERIOD, [], REFERENCE) == []
    assert engine.gross_from_employer_cost(PERIOD, [], REFERENCE) == []


def test_engine_is_a_process_singleton_behind_the_protocol(engine):
    assert isinstance(engine, SalaryEngine)
    assert get_engine_sync() is engine
    assert asyncio.run(get_engine()) is engine
