"""SalaryEngine on OpenFisca-France: every rate, ceiling and reduction comes from its rules and parameters.

One vectorised simulation per call (N members = N individuals); the lines are OpenFisca's own
contribution variables, rounded half-up to the cent, and reconciled with its aggregates
(`salaire_net`, `cout_du_travail`) on every call.

Scope: private-sector employees, a full month, each month on its own (the simulation holds no
earlier months, so the yearly regularisation of the ceiling and of the general reduction across a
member's months is not modelled: the month is computed as if it were the only one).
"""

from __future__ import annotations

import asyncio
import gc
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from app.payouts.engine import (
    FULL_TIME_MONTHLY_HOURS,
    ContributionLine,
    EmploymentSettings,
    PayrollEngineError,
    SalaryComputation,
    check_period,
)

if TYPE_CHECKING:
    from openfisca_core.taxbenefitsystems import TaxBenefitSystem

# The categories the line table below covers: an entrepreneur-salarié of a CAE is a private-sector
# employee (Code du travail, art. L7331-2); public-sector schemes are out of scope.
SUPPORTED_CATEGORIES = ("prive_non_cadre", "prive_cadre")

_RATE_6DP = Decimal("0.000001")
_RATE_4DP = Decimal("0.0001")
_ZERO_RATE = Decimal("0.0000")
# More than the rounding of all the lines (half a cent each) can move a cost below its gross.
_ROUNDING_SLACK_CENTS = 64
# Points per simulation the inverse's last steps may spend on the few members left to settle.
_SEARCH_POINTS = 2_000


# --- the payslip's lines --------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """One contribution: OpenFisca's employee/employer variables and how its base is shown.

    `base` is "gross" (assiette_cotisations_sociales), "pss" (capped at the social-security
    ceiling), "csg" (the CSG/CRDS base after the 1.75 % allowance), "forfait_social" (the
    employer's prévoyance/health contributions), "health_premium", or "bareme:<name>": the
    bracket scale of `cotsoc` that OpenFisca applies, shown one line per bracket (T1/T2);
    "bareme:<a>|<b>" lists alternative scales (FNAL: by headcount), the one that reproduces
    OpenFisca's amount gives the base and rate shown.
    """

    code: str
    label: str
    branch: str
    employee: tuple[str, ...] = ()
    employer: tuple[str, ...] = ()
    base: str = "gross"


# Branches follow the headings of the French "bulletin de paie clarifié" (arrêté du 25 février
# 2016): santé, AT/MP, retraite, famille, assurance chômage (incl. AGS and APEC), autres
# contributions dues par l'employeur (→ "other"), CSG/CRDS.
_SPECS: tuple[_Spec, ...] = (
    _Spec("maladie", "Sécurité sociale - Maladie, maternité, invalidité, décès", "health",
          ("mmid_salarie",), ("mmid_employeur_net_allegement",), "bareme:maladie"),
    _Spec("complementaire_sante", "Complémentaire santé", "health",
          ("complementaire_sante_salarie",), ("complementaire_sante_employeur",), "health_premium"),
    _Spec("prevoyance_cadre", "Prévoyance obligatoire des cadres", "health",
          (), ("prevoyance_obligatoire_cadre",), "pss"),
    _Spec("prevoyance_complementaire", "Prévoyance complémentaire", "health",
          (), ("prevoyance_complementaire_employeur",)),
    _Spec("accident_du_travail", "Accidents du travail - maladies professionnelles", "work_accident",
          (), ("accident_du_travail",)),
    _Spec("vieillesse_plafonnee", "Retraite - Sécurité sociale plafonnée", "pension",
          ("vieillesse_plafonnee_salarie",), ("vieillesse_plafonnee_employeur",),
          "bareme:vieillesse_plafonnee"),
    _Spec("vieillesse_deplafonnee", "Retraite - Sécurité sociale déplafonnée", "pension",
          ("vieillesse_deplafonnee_salarie",), ("vieillesse_deplafonnee_employeur",),
          "bareme:vieillesse_deplafonnee"),
    _Spec("agirc_arrco", "Retraite complémentaire AGIRC-ARRCO", "complementary_pension",
          ("agirc_arrco_salarie",), ("agirc_arrco_employeur",), "bareme:agirc_arrco"),
    _Spec("ceg", "Contribution d'équilibre général (CEG)", "complementary_pension",
          ("contribution_equilibre_general_salarie",), ("contribution_equilibre_general_employeur",),
          "bareme:ceg"),
    _Spec("cet", "Contribution d'équilibre technique (CET)", "complementary_pension",
          ("contribution_equilibre_technique_salarie",), ("contribution_equilibre_technique_employeur",),
          "bareme:cet2019"),
    _Spec("famille", "Famille", "family", (), ("famille_net_allegement",), "bareme:famille"),
    _Spec("chomage", "Assurance chômage", "unemployment",
          ("chomage_salarie",), ("chomage_employeur",), "bareme:chomage"),
    _Spec("ags", "AGS (garantie des salaires)", "unemployment", (), ("ags",), "bareme:ags"),
    _Spec("apec", "APEC", "unemployment", ("apec_salarie",), ("apec_employeur",), "bareme:apec"),
    _Spec("csa", "Contribution solidarité autonomie", "other",
          (), ("contribution_solidarite_autonomie",), "bareme:csa"),
    _Spec("fnal", "FNAL (aide au logement)", "other", (), ("fnal",),
          "bareme:fnal_contribution_plus_de_50_salaries|fnal_contribution_moins_de_50_salaries"),
    _Spec("dialogue_social", "Contribution au dialogue social", "other",
          (), ("financement_organisations_syndicales",), "bareme:financement_organisations_syndicales"),
    _Spec("versement_mobilite", "Versement mobilité", "other", (), ("versement_transport",)),
    _Spec("formation_professionnelle", "Contribution à la formation professionnelle", "other",
          (), ("contribution_formation_professionnelle",)),
    _Spec("taxe_apprentissage", "Taxe d'apprentissage", "other", (), ("taxe_apprentissage",),
          "bareme:apprentissage_taxe|apprentissage_taxe_alsace_moselle"),
    _Spec("contribution_supplementaire_apprentissage", "Contribution supplémentaire à l'apprentissage",
          "other", (), ("contribution_supplementaire_apprentissage",)),
    _Spec("contribution_developpement_apprentissage",
          "Contribution additionnelle au développement de l'apprentissage", "other",
          (), ("contribution_developpement_apprentissage",)),
    _Spec("cif_cdd", "Contribution CIF-CDD", "other", (), ("conge_individuel_formation_cdd",)),
    _Spec("peec", "Participation à l'effort de construction", "other",
          (), ("participation_effort_construction",), "bareme:construction_plus_de_50_salaries"),
    _Spec("forfait_social", "Forfait social", "other", (), ("forfait_social",), "forfait_social"),
    _Spec("taxe_salaires", "Taxe sur les salaires", "other", (), ("taxe_salaires",)),
    _Spec("csg_deductible", "CSG déductible de l'impôt sur le revenu", "csg_crds",
          ("csg_deductible_salaire",), (), "csg"),
    _Spec("csg_non_deductible", "CSG non déductible de l'impôt sur le revenu", "csg_crds",
          ("csg_imposable_salaire",), (), "csg"),
    _Spec("crds", "CRDS non déductible de l'impôt sur le revenu", "csg_crds",
          ("crds_salaire",), (), "csg"),
)


@dataclass(frozen=True)
class _Bracket:
    """A bracket of a cotsoc scale: bounds in multiples of the social-security ceiling, rates."""

    low: float
    high: float
    employee_rate: float
    employer_rate: float


@dataclass(frozen=True)
class _Column:
    """One published line for a period and category: a spec, or one bracket of its scale.

    `brackets` are the legal brackets that may explain the amount: one per column when a
    multi-bracket scale is split (`split`), or the alternatives of a spec (FNAL's two scales);
    empty when the base is not a scale's.
    """

    code: str
    label: str
    branch: str
    spec: _Spec
    brackets: tuple[_Bracket, ...] = ()
    split: bool = False


def _scale_brackets(scale: Any) -> list[tuple[float, float]]:
    if scale is None:
        return []
    return list(zip((float(t) for t in scale.thresholds), (float(r) for r in scale.rates)))


def _rate_at(brackets: list[tuple[float, float]], point: float) -> float:
    rate = 0.0
    for threshold, bracket_rate in brackets:
        if threshold <= point:
            rate = bracket_rate
    return rate


def _merged_brackets(employee_scale: Any, employer_scale: Any) -> list[_Bracket]:
    """The brackets of a scale, employee and employer sides on the same bounds, zero ones dropped."""
    employee, employer = _scale_brackets(employee_scale), _scale_brackets(employer_scale)
    bounds = sorted({t for t, _ in employee} | {t for t, _ in employer})
    pieces: list[_Bracket] = []
    for i, low in enumerate(bounds):
        high = bounds[i + 1] if i + 1 < len(bounds) else math.inf
        bracket = _Bracket(low, high, _rate_at(employee, low), _rate_at(employer, low))
        previous = pieces[-1] if pieces else None
        if previous and previous.high == low and (previous.employee_rate, previous.employer_rate) == (
            bracket.employee_rate, bracket.employer_rate
        ):
            pieces[-1] = _Bracket(previous.low, high, bracket.employee_rate, bracket.employer_rate)
        else:
            pieces.append(bracket)
    return [b for b in pieces if b.employee_rate or b.employer_rate]


# --- money conversions ----------------------------------------------------------------------


def _to_cents(amount_eur: np.ndarray) -> np.ndarray:
    """Euro amounts (>= 0) from the simulation to whole cents, rounded half-up.

    OpenFisca computes in float32 (about 7 significant digits), so a figure that is exactly a
    half-cent in decimal may be stored a few float32 steps below it; anything within 4 float32
    steps of the half is treated as the half, which keeps "half-up" true to the decimal figure.
    """
    x = np.asarray(amount_eur, dtype=np.float64)
    slack = 4.0 * np.spacing(np.abs(x).astype(np.float32)).astype(np.float64)
    return np.floor((np.abs(x) + slack) * 100.0 + 0.5).astype(np.int64)


def _decimal_rate(value: float) -> Decimal:
    """An effective rate as Decimal: half-up to 6 decimals, shown with 4 when that is exact."""
    rate = Decimal(value).quantize(_RATE_6DP, rounding=ROUND_HALF_UP)
    short = rate.quantize(_RATE_4DP)
    return short if short == rate else rate


def _as_cents_array(values: Sequence[int], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of integer cents")
    if array.size and (array.dtype.kind not in "iu" or array.min() < 0):
        raise ValueError(f"{name} must be non-negative integer cents")
    return array.astype(np.int64)


# --- the evaluation of one batch ----------------------------------------------------------------


@dataclass
class _Batch:
    """Per-column arrays (shape: columns × N), cents and raw effective rates, plus the totals."""

    columns: list[_Column]
    gross: np.ndarray
    base: np.ndarray
    employee: np.ndarray
    employer: np.ndarray
    employee_rate: np.ndarray
    employer_rate: np.ndarray
    reduction: np.ndarray
    employer_cost: np.ndarray
    net: np.ndarray | None
    openfisca_net_eur: np.ndarray | None
    openfisca_cost_eur: np.ndarray


@dataclass(frozen=True)
class _PeriodParameters:
    smic_hourly_eur: float
    smic_hourly_cents: int
    smic_monthly_eur: float  # full-time: hourly × legal monthly hours
    transport_levy_headcount: int  # versement mobilité applies from this headcount on
    csg_allowance: Any  # the CSG/CRDS 1.75 % allowance scale (thresholds in ceilings)


class OpenFiscaFranceEngine:
    """French payroll on OpenFisca-France (see the module docstring); thread-safe, stateless."""

    def __init__(self, tax_benefit_system: TaxBenefitSystem) -> None:
        self._tbs = tax_benefit_system
        self._variables = frozenset(tax_benefit_system.variables)
        missing = {v for s in _SPECS for v in s.employee + s.employer} - self._variables
        if missing:
            raise PayrollEngineError(f"OpenFisca-France lacks the variables {sorted(missing)}")

    @property
    def tax_benefit_system(self) -> TaxBenefitSystem:
        """The loaded OpenFisca-France system (read-only use: shared by every thread)."""
        return self._tbs

    # -- parameters ---------------------------------------------------------------------------

    @lru_cache(maxsize=256)  # noqa: B019 - one engine per process, periods are few
    def _parameters(self, period: str) -> _PeriodParameters:
        p = self._tbs.parameters(f"{check_period(period)}-01")
        smic = p.marche_travail.salaire_minimum.smic
        hours = Decimal(str(smic.nb_heures_travail_mensuel))
        if hours != FULL_TIME_MONTHLY_HOURS:
            raise PayrollEngineError(f"OpenFisca's monthly legal hours are {hours}, expected 151.67")
        hourly = Decimal(str(smic.smic_b_horaire))
        return _PeriodParameters(
            smic_hourly_eur=float(hourly),
            smic_hourly_cents=int((hourly * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
            smic_monthly_eur=float(hourly) * float(hours),
            transport_levy_headcount=int(
                p.prelevements_sociaux.autres_taxes_participations_assises_salaires
                .versement_transport.seuil_effectif
            ),
            csg_allowance=p.prelevements_sociaux.contributions_sociales.csg.activite.abattement,
        )

    @lru_cache(maxsize=256)  # noqa: B019
    def _columns(self, period: str, category: str) -> tuple[_Column, ...]:
        p = self._tbs.parameters(f"{period}-01")
        columns: list[_Column] = []
        for spec in _SPECS:
            if not spec.base.startswith("bareme:"):
                columns.append(_Column(spec.code, spec.label, spec.branch, spec))
                continue
            alternatives = [
                _merged_brackets(
                    _find_scale(p.cotsoc.cotisations_salarie, category, name),
                    _find_scale(p.cotsoc.cotisations_employeur, category, name),
                )
                for name in spec.base.split(":", 1)[1].split("|")
            ]
            split = [brackets for brackets in alternatives if len(brackets) > 1]
            if split and len(alternatives) == 1:
                # One line per bracket (AGIRC-ARRCO T1/T2, CEG), as on a French payslip.
                columns += [
                    _Column(f"{spec.code}_t{i + 1}", f"{spec.label} - tranche {i + 1}", spec.branch,
                            spec, (bracket,), split=True)
                    for i, bracket in enumerate(split[0])
                ]
            else:
                brackets = tuple(b for bs in alternatives for b in bs)
                columns.append(_Column(spec.code, spec.label, spec.branch, spec, brackets))
        return tuple(columns)

    # -- the simulation -----------------------------------------------------------------------

    def _simulate(self, period: str, gross_cents: np.ndarray, settings: EmploymentSettings) -> Any:
        from openfisca_core.simulations import SimulationBuilder

        params = self._parameters(period)
        n = len(gross_cents)
        gross_eur = gross_cents / 100.0
        sim = SimulationBuilder().build_default_simulation(self._tbs, n)
        sim.set_input("salaire_de_base", period, gross_eur)
        sim.set_input("categorie_salarie", period, np.full(n, settings.category))
        sim.set_input("contrat_de_travail", period, np.full(n, "temps_plein"))
        sim.set_input("contrat_de_travail_type", period, np.full(n, "cdi"))
        sim.set_input("effectif_entreprise", period, np.full(n, settings.headcount))
        # An entrepreneur-salarié has no contractual working time: the general reduction counts
        # the hours as gross ÷ hourly SMIC, capped at the legal full-time month (DESIGN.md; the
        # rule for employees not paid by the hour, art. D241-7 code de la sécurité sociale).
        # OpenFisca scales the SMIC of the reduction by `coefficient_proratisation` (hours ÷
        # 151.67 for part-time work); setting it to min(1, gross ÷ full-time SMIC) gives exactly
        # that, while keeping contrat_de_travail=temps_plein so that nothing else is prorated
        # (the social-security ceiling, quotité de travail). 0 gross keeps 1 to avoid 0/0.
        coefficient = np.where(
            (gross_eur >= params.smic_monthly_eur) | (gross_eur == 0),
            1.0,
            gross_eur / params.smic_monthly_eur,
        )
        sim.set_input("coefficient_proratisation", period, coefficient)
        if settings.work_accident_rate_bps is not None:
            sim.set_input("taux_accident_travail", period, np.full(n, settings.work_accident_rate_bps / 1e4))
        if settings.transport_levy_rate_bps is not None:
            # The levy is due from 11 employees on (art. L2333-64 CGCT), threshold from OpenFisca.
            due = settings.headcount >= params.transport_levy_headcount
            rate = settings.transport_levy_rate_bps / 1e4 if due else 0.0
            sim.set_input("taux_versement_transport", period, np.full(n, rate))
        if settings.health_cover_monthly_cents:
            # No salary, no payslip: the premium is only withheld in a month with a salary.
            premium = np.where(gross_cents > 0, settings.health_cover_monthly_cents / 100.0, 0.0)
            sim.set_input("complementaire_sante_montant", period, premium)
        return sim

    def _evaluate(
        self,
        period: str,
        gross_cents: np.ndarray,
        settings: EmploymentSettings,
        *,
        employee_side: bool = True,
    ) -> _Batch:
        period = check_period(period)
        if settings.category not in SUPPORTED_CATEGORIES:
            raise ValueError(f"category must be one of {SUPPORTED_CATEGORIES}, got {settings.category!r}")
        columns = [
            c for c in self._columns(period, settings.category) if employee_side or c.spec.employer
        ]
        n = len(gross_cents)
        gross_eur = gross_cents / 100.0
        # OpenFisca formulas divide by zero on zero salaries on purpose (then mask the result).
        with np.errstate(all="ignore"):
            sim = self._simulate(period, gross_cents, settings)

            def amount(names: tuple[str, ...]) -> np.ndarray:
                # OpenFisca books contributions as negative amounts.
                total = np.zeros(n)
                for name in names:
                    total -= sim.calculate(name, period).astype(np.float64)
                return total

            pss_eur = sim.calculate("plafond_securite_sociale", period).astype(np.float64)
            pss_cents = _to_cents(pss_eur)
            reduction_eur = sim.calculate("allegement_general", period).astype(np.float64)
            cost_eur = sim.calculate("cout_du_travail", period).astype(np.float64)
            net_eur = sim.calculate("salaire_net", period).astype(np.float64) if employee_side else None
            special_bases: dict[str, np.ndarray] = {}
            if employee_side:
                abattue = sim.calculate("assiette_csg_abattue", period).astype(np.float64)
                non_abattue = sim.calculate("assiette_csg_non_abattue", period).astype(np.float64)
                allowance = self._parameters(period).csg_allowance.calc(
                    abattue, factor=pss_eur, round_base_decimals=2
                )
                special_bases["csg"] = abattue - allowance + non_abattue
            special_bases["forfait_social"] = amount(
                ("prevoyance_obligatoire_cadre", "prevoyance_complementaire_employeur",
                 "complementaire_sante_employeur")
            )
            special_bases["health_premium"] = sim.calculate(
                "complementaire_sante_montant", period
            ).astype(np.float64)
            # In cost-only mode the employee side is neither simulated nor published.
            raw = {
                s.code: (amount(s.employee if employee_side else ()), amount(s.employer))
                for s in _SPECS
                if employee_side or s.employer
            }

        shape = (len(columns), n)
        base = np.zeros(shape, dtype=np.int64)
        employee = np.zeros(shape, dtype=np.int64)
        employer = np.zeros(shape, dtype=np.int64)
        employee_rate = np.zeros(shape)
        employer_rate = np.zeros(shape)
        for spec_code, group in _group_columns(columns):
            employee_raw, employer_raw = raw[spec_code]
            if min(employee_raw.min(initial=0.0), employer_raw.min(initial=0.0)) < -0.005:
                raise PayrollEngineError(f"OpenFisca returned a negative contribution for {spec_code}")
            employee_raw = np.maximum(employee_raw, 0.0)
            employer_raw = np.maximum(employer_raw, 0.0)
            spec = group[0][1].spec
            if not group[0][1].split:
                ((i, column),) = group
                base[i], base_eur = _base(spec, gross_cents, pss_cents, special_bases)
                employee[i], employer[i] = _to_cents(employee_raw), _to_cents(employer_raw)
                employee_rate[i] = _safe_ratio(employee_raw, base_eur)
                employer_rate[i] = _safe_ratio(employer_raw, base_eur)
                # Show the legal base and rate when a bracket of the scale OpenFisca applied
                # reproduces the amount (it rounds each bracket to the cent: 1 cent tolerance);
                # otherwise (a reduced rate, a threshold) the effective rate on the gross.
                matched = np.zeros(n, dtype=bool)
                for bracket in column.brackets:
                    b = _bracket_cents(bracket, gross_cents, pss_cents)
                    ok = ~matched & (b > 0) & (employee_raw + employer_raw > 0)
                    ok &= _close(employee_raw, bracket.employee_rate * b / 100.0)
                    ok &= _close(employer_raw, bracket.employer_rate * b / 100.0)
                    base[i] = np.where(ok, b, base[i])
                    employee_rate[i] = np.where(ok, bracket.employee_rate, employee_rate[i])
                    employer_rate[i] = np.where(ok, bracket.employer_rate, employer_rate[i])
                    matched |= ok
                continue
            # A multi-bracket scale: each bracket at its legal rate, and the highest bracket the
            # salary reaches takes the rest of OpenFisca's own total, so the lines add up to it.
            bases = np.stack([_bracket_cents(c.brackets[0], gross_cents, pss_cents) for _, c in group])
            rows = np.arange(len(group))[:, None]
            top = rows == np.maximum((bases > 0).sum(axis=0) - 1, 0)
            for side, raw_total, out, out_rate in (
                ("employee", employee_raw, employee, employee_rate),
                ("employer", employer_raw, employer, employer_rate),
            ):
                if side == "employee" and not employee_side:
                    continue
                legal_rate = np.array([getattr(c.brackets[0], f"{side}_rate") for _, c in group])[:, None]
                legal = legal_rate * bases / 100.0
                cents = np.where(top, 0, _to_cents(legal))
                remainder = _to_cents(raw_total) - cents.sum(axis=0)
                if remainder.min(initial=0) < 0:
                    raise PayrollEngineError(f"{spec.code} ({side}): brackets exceed OpenFisca's total")
                cents = np.where(top, remainder, cents)
                rest = np.where(top, raw_total - np.where(top, 0.0, legal).sum(axis=0), legal)
                shown = np.where(_close(rest, legal), legal_rate, _safe_ratio(rest, bases / 100.0))
                for k, (i, _) in enumerate(group):
                    base[i], out[i], out_rate[i] = bases[k], cents[k], shown[k]

        reduction = _to_cents(reduction_eur)
        employer_total = employer.sum(axis=0)
        employer_cost = gross_cents + employer_total - reduction
        net = gross_cents - employee.sum(axis=0) if employee_side else None

        # Every contribution OpenFisca counts must be on a line: reconcile the unrounded sums
        # with its aggregates (float32 noise allowed, a missing line is >= a cent on most pays).
        raw_employer = sum(employer_part for _, employer_part in raw.values())
        _reconcile("employer cost (cout_du_travail)", gross_eur + raw_employer - reduction_eur, cost_eur)
        if employee_side:
            raw_employee = sum(employee_part for employee_part, _ in raw.values())
            _reconcile("net salary (salaire_net)", gross_eur - raw_employee, net_eur)
        return _Batch(columns, gross_cents, base, employee, employer, employee_rate, employer_rate,
                      reduction, employer_cost, net, net_eur, cost_eur)

    # -- SalaryEngine -------------------------------------------------------------------------

    def compute(
        self, period: str, gross_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[SalaryComputation]:
        """The figures of each monthly gross salary, from one simulation of all of them."""
        gross = _as_cents_array(gross_cents, "gross_cents")
        if gross.size == 0:
            return []
        batch = self._evaluate(period, gross, settings)
        return _materialise(batch)

    def employer_cost_cents(
        self, period: str, gross_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[int]:
        """Only the employer cost of each gross (the employee side is not simulated)."""
        gross = _as_cents_array(gross_cents, "gross_cents")
        if gross.size == 0:
            return []
        return self._evaluate(period, gross, settings, employee_side=False).employer_cost.tolist()

    def gross_from_employer_cost(
        self, period: str, employer_cost_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[int]:
        """For each budget B, the largest gross g with cost(g) <= B, i.e. cost(g) <= B < cost(g + 1).

        Employer cost is non-decreasing in the gross (each rounded line is, and the general
        reduction never grows faster than the contributions it cancels) but not strictly: on a
        one-cent plateau the answer is the upper end, so gross → cost → gross may come back one
        cent higher, at the same cost. It jumps where a rule starts (CET above the ceiling,
        the reduction's coefficient steps); a budget in a jump gets the gross below it.

        All budgets are solved together, each step ONE vectorised simulation of the members
        not yet settled: a 128-point grid gives a first guess and local slopes, then Newton
        steps, each evaluation narrowing a bracket lo (affordable) < hi (not affordable) per
        member, until hi = lo + 1 cent; the last steps evaluate g, g + 1 and, for the few
        members left (budgets inside a jump), points spread over their bracket.
        """
        budgets = _as_cents_array(employer_cost_cents, "employer_cost_cents")
        if budgets.size == 0:
            return []

        def cost(gross: np.ndarray) -> np.ndarray:
            return self._evaluate(period, gross, settings, employee_side=False).employer_cost

        # Employer cost >= gross before rounding (the reduction never exceeds the contributions it
        # cancels), so g <= B; per-line rounding can put a tiny pay's cost a few cents under its
        # gross (2 cents of gross cost 1 cent), hence the slack of the upper bound.
        smic_cents = self.smic_monthly_gross_cents(period)
        lo = np.zeros_like(budgets)  # cost(0) = 0 is always affordable
        hi = budgets + _ROUNDING_SLACK_CENTS  # never affordable
        top = int(max(hi.max(), smic_cents))
        grid = np.unique(np.concatenate((
            [0, smic_cents, top],
            np.round(np.geomspace(smic_cents, top, 125)).astype(np.int64),
        ))).astype(np.int64)
        grid_cost = cost(grid).astype(np.float64)
        slopes = np.maximum(np.diff(grid_cost) / np.diff(grid), 1.0)

        def newton(gross: np.ndarray, error: np.ndarray) -> np.ndarray:
            i = np.clip(np.searchsorted(grid, gross, side="right") - 1, 0, len(slopes) - 1)
            return gross - np.round(error / slopes[i]).astype(np.int64)

        g = np.floor(np.interp(budgets, grid_cost, grid)).astype(np.int64)
        # Phase 1: plain Newton steps (one evaluation per member) while they move by > 1 cent.
        active = np.flatnonzero(budgets > 0)
        for _ in range(4):
            if active.size == 0:
                break
            g[active] = np.clip(g[active], lo[active], hi[active] - 1)
            at = cost(g[active])
            affordable = at <= budgets[active]
            lo[active] = np.where(affordable, np.maximum(lo[active], g[active]), lo[active])
            hi[active] = np.where(affordable, hi[active], np.minimum(hi[active], g[active]))
            proposal = newton(g[active], at - budgets[active])
            moved = np.abs(proposal - g[active]) > 1
            g[active] = proposal
            active = active[moved]
        # Phase 2: evaluate g and g + 1 (and, once few members are left, more points spread
        # over their bracket: a small simulation costs its fixed overhead, not its size) until
        # each bracket is one cent wide.
        pending = np.flatnonzero(hi - lo > 1)
        for _ in range(64):
            if pending.size == 0:
                return lo.tolist()
            b, l, h = budgets[pending], lo[pending], hi[pending]
            guess = np.clip(g[pending], l, h - 1)
            extra = int(np.clip(_SEARCH_POINTS // pending.size, 0, 30))
            fractions = np.arange(1, extra + 1) / (extra + 1)
            spread = l[:, None] + np.floor((h - l)[:, None] * fractions[None, :]).astype(np.int64)
            points = np.concatenate((guess[:, None], guess[:, None] + 1, spread), axis=1)
            costs = cost(points.ravel()).reshape(points.shape)
            affordable = costs <= b[:, None]
            l = np.maximum(l, np.where(affordable, points, -1).max(axis=1))
            h = np.minimum(h, np.where(affordable, h[:, None], points).min(axis=1))
            lo[pending], hi[pending] = l, h
            g[pending] = newton(guess, costs[:, 0] - b)
            pending = pending[h - l > 1]
        raise PayrollEngineError("gross_from_employer_cost did not converge")

    def smic_hourly_gross_cents(self, period: str) -> int:
        """The gross hourly SMIC of the period (OpenFisca `smic_b_horaire`)."""
        return self._parameters(period).smic_hourly_cents

    def smic_monthly_gross_cents(self, period: str) -> int:
        """A full-time month at the SMIC: hourly SMIC × 151.67 h, rounded half-up to the cent."""
        hourly = Decimal(str(self._parameters(period).smic_hourly_eur))
        return int((hourly * FULL_TIME_MONTHLY_HOURS * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def minimum_net_hourly_cents(self, period: str, settings: EmploymentSettings) -> int:
        """Net of a full-time SMIC month (through the engine) ÷ 151.67 h, rounded half-up."""
        net = self.compute(period, [self.smic_monthly_gross_cents(period)], settings)[0].net_cents
        return int((Decimal(net) / FULL_TIME_MONTHLY_HOURS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _find_scale(node: Any, category: str, name: str) -> Any:
    """The cotsoc scale `name` of a category, or None (OpenFisca's ParameterNotFoundError is an
    AttributeError)."""
    try:
        return node[category][name]
    except (KeyError, AttributeError):
        return None


def _group_columns(columns: list[_Column]) -> list[tuple[str, list[tuple[int, _Column]]]]:
    groups: dict[str, list[tuple[int, _Column]]] = {}
    for i, column in enumerate(columns):
        groups.setdefault(column.spec.code, []).append((i, column))
    return list(groups.items())


def _bracket_cents(bracket: _Bracket, gross_cents: np.ndarray, pss_cents: np.ndarray) -> np.ndarray:
    """The part of the gross inside a bracket whose bounds are multiples of the ceiling."""
    low = np.round(bracket.low * pss_cents).astype(np.int64)
    span = gross_cents - low
    if math.isfinite(bracket.high):
        span = np.minimum(span, np.round(bracket.high * pss_cents).astype(np.int64) - low)
    return np.maximum(span, 0)


def _base(
    spec: _Spec, gross_cents: np.ndarray, pss_cents: np.ndarray, special: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A line's base in cents (shown) and in euros (unrounded, for its effective rate)."""
    if spec.base in special:
        base_eur = np.maximum(special[spec.base], 0.0)
        return _to_cents(base_eur), base_eur
    cents = np.minimum(gross_cents, pss_cents) if spec.base == "pss" else gross_cents.copy()
    return cents, cents / 100.0


def _close(raw_eur: np.ndarray, legal_eur: np.ndarray) -> np.ndarray:
    return np.abs(raw_eur - legal_eur) <= 0.0101


def _safe_ratio(amount_eur: np.ndarray, base_eur: np.ndarray) -> np.ndarray:
    out = np.zeros_like(amount_eur, dtype=np.float64)
    return np.divide(amount_eur, base_eur, out=out, where=base_eur > 0)


def _reconcile(what: str, ours: np.ndarray, openfisca: np.ndarray) -> None:
    tolerance = 0.01 + 8.0 * np.spacing(np.abs(openfisca).astype(np.float32)).astype(np.float64)
    gap = np.abs(ours - openfisca)
    if np.any(gap > tolerance):
        i = int(np.argmax(gap - tolerance))
        raise PayrollEngineError(
            f"contribution lines do not reconcile with OpenFisca's {what}: {ours[i]:.4f} vs "
            f"{openfisca[i]:.4f} (a contribution is missing from the line table)"
        )


def _materialise(batch: _Batch) -> list[SalaryComputation]:
    """Build the frozen results; effective rates go through Decimal once per distinct value."""
    rate_cache: dict[float, Decimal] = {0.0: _ZERO_RATE}

    def rate(value: float) -> Decimal:
        cached = rate_cache.get(value)
        if cached is None:
            cached = rate_cache[value] = _decimal_rate(value)
        return cached

    # Tens of thousands of small objects: the cyclic GC would rescan them over and over while
    # they are built (they hold no cycles), so it is paused for the loop (process-wide, briefly).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_results(batch, rate)
    finally:
        if gc_was_enabled:
            gc.enable()


def _build_results(batch: _Batch, rate: Any) -> list[SalaryComputation]:
    columns = batch.columns
    base = batch.base.T.tolist()
    employee = batch.employee.T.tolist()
    employer = batch.employer.T.tolist()
    employee_rate = batch.employee_rate.T.tolist()
    employer_rate = batch.employer_rate.T.tolist()
    gross = batch.gross.tolist()
    net = batch.net.tolist()
    cost = batch.employer_cost.tolist()
    reduction = batch.reduction.tolist()
    results = []
    for j in range(len(gross)):
        e_row, r_row = employee[j], employer[j]
        lines = tuple(
            ContributionLine(
                code=c.code,
                label=c.label,
                branch=c.branch,
                base_cents=base[j][k],
                employee_rate=rate(employee_rate[j][k]),
                employee_cents=e_row[k],
                employer_rate=rate(employer_rate[j][k]),
                employer_cents=r_row[k],
            )
            for k, c in enumerate(columns)
            if e_row[k] or r_row[k]  # a payslip shows the contributions actually due
        )
        results.append(
            SalaryComputation(
                gross_cents=gross[j],
                net_cents=net[j],
                employer_cost_cents=cost[j],
                employee_contributions_cents=sum(e_row),
                employer_contributions_cents=sum(r_row),
                general_reduction_cents=reduction[j],
                lines=lines,
            )
        )
    return results


# --- the process-wide engine ------------------------------------------------------------------

_ENGINE: OpenFiscaFranceEngine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine_sync() -> OpenFiscaFranceEngine:
    """The process's engine; the first call loads OpenFisca-France (a few seconds), once."""
    global _ENGINE
    engine = _ENGINE
    if engine is None:
        with _ENGINE_LOCK:  # two threads asking at once must not load it twice
            if _ENGINE is None:
                from openfisca_france import FranceTaxBenefitSystem

                _ENGINE = OpenFiscaFranceEngine(FranceTaxBenefitSystem())
            engine = _ENGINE
    return engine


async def get_engine() -> OpenFiscaFranceEngine:
    """The process's engine, loaded in a worker thread so the event loop never blocks on it."""
    engine = _ENGINE
    if engine is not None:
        return engine
    return await asyncio.to_thread(get_engine_sync)
