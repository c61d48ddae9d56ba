"""The engine-agnostic payroll interface: settings, contribution lines, salary figures, SalaryEngine.

Pure Python (no rules engine imported here), so another country's engine can plug in behind the
same Protocol. Money is integer cents; rates are Decimal.

Rounding rule (every engine must follow it): each contribution line, and the general reduction, is
rounded half-up (ties away from zero) to the cent on its own; every total is then *derived from
the rounded lines*, so a published payslip always adds up (and may differ by a cent from the
rules engine's own unrounded aggregate rounded once):

    employee_contributions = Σ line.employee_cents      net           = gross − employee_contributions
    employer_contributions = Σ line.employer_cents      employer_cost = gross + employer_contributions
                                                                        − general_reduction
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, get_args, runtime_checkable

Branch = Literal[
    "health",
    "pension",
    "complementary_pension",
    "unemployment",
    "family",
    "work_accident",
    "csg_crds",
    "other",
]
BRANCHES: tuple[str, ...] = get_args(Branch)
_BRANCH_SET = frozenset(BRANCHES)

# Legal monthly working time of a full-time employee: 35 h × 52 weeks / 12 months
# (Code du travail, art. L3121-27). Engines check it against their own parameter.
FULL_TIME_MONTHLY_HOURS = Decimal("151.67")

_PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class PayrollEngineError(RuntimeError):
    """The rules engine produced figures that do not reconcile (a bug or an unsupported case)."""


def check_period(period: str) -> str:
    """Return `period` if it is a month written 'YYYY-MM', else raise ValueError."""
    if not isinstance(period, str) or not _PERIOD_RE.match(period):
        raise ValueError(f"period must be a month 'YYYY-MM', got {period!r}")
    return period


def _check_non_negative_int(name: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class EmploymentSettings:
    """Cooperative-level settings that change the payroll figures (never hidden defaults).

    - headcount: the cooperative's workforce (OpenFisca `effectif_entreprise`); it decides FNAL,
      PEEC, the transport levy, the forfait social and the general reduction's parameters.
    - work_accident_rate_bps: the AT/MP rate notified by the CARSAT (OpenFisca
      `taux_accident_travail`); None keeps OpenFisca's default (the "faible" risk rate).
    - transport_levy_rate_bps: the versement mobilité rate of the cooperative's area (OpenFisca
      `taux_versement_transport`); None keeps OpenFisca's default (derived from the company's
      commune, unknown by default, hence 0). The legal headcount threshold still applies.
    - category: OpenFisca `categorie_salarie` (an entrepreneur-salarié is a private-sector
      employee: "prive_non_cadre" or "prive_cadre").
    - health_cover_monthly_cents: the monthly premium of the mandatory collective complementary
      health cover (OpenFisca `complementaire_sante_montant`; the employer pays at least the legal
      minimum share, 50 %, art. L911-7 code de la sécurité sociale); 0 = none, OpenFisca's default.
    """

    headcount: int = 100
    work_accident_rate_bps: int | None = None
    transport_levy_rate_bps: int | None = None
    category: str = "prive_non_cadre"
    health_cover_monthly_cents: int = 0

    def __post_init__(self) -> None:
        _check_non_negative_int("headcount", self.headcount)
        for name in ("work_accident_rate_bps", "transport_levy_rate_bps"):
            value = getattr(self, name)
            if value is not None:
                _check_non_negative_int(name, value)
                if value > 10_000:
                    raise ValueError(f"{name} must be at most 10000 bps, got {value}")
        if not isinstance(self.category, str) or not self.category:
            raise ValueError(f"category must be a non-empty string, got {self.category!r}")
        _check_non_negative_int("health_cover_monthly_cents", self.health_cover_monthly_cents)


@dataclass(frozen=True)
class ContributionLine:
    """One payslip line: a contribution on a base, with its employee and employer parts.

    Amounts are positive cents (employee_cents is withheld from the gross, employer_cents is paid
    on top of it); rates are the effective rates amount / base (legal rates for flat-rate lines).
    """

    code: str
    label: str
    branch: str
    base_cents: int
    employee_rate: Decimal
    employee_cents: int
    employer_rate: Decimal
    employer_cents: int

    def __post_init__(self) -> None:
        # Written for speed: a payroll run builds ~20 lines per member.
        if self.branch not in _BRANCH_SET:
            raise ValueError(f"unknown branch {self.branch!r} (expected one of {BRANCHES})")
        base, employee, employer = self.base_cents, self.employee_cents, self.employer_cents
        if not (
            type(base) is int and type(employee) is int and type(employer) is int
            and base >= 0 and employee >= 0 and employer >= 0
        ):
            raise ValueError(
                f"line {self.code!r}: base and amounts must be non-negative integer cents, got "
                f"{base!r}, {employee!r}, {employer!r}"
            )
        if not (isinstance(self.employee_rate, Decimal) and isinstance(self.employer_rate, Decimal)):
            raise ValueError(f"line {self.code!r}: rates must be Decimal")


@dataclass(frozen=True)
class SalaryComputation:
    """The salary figures of one member for one month; the totals are the sums of the lines."""

    gross_cents: int
    net_cents: int
    employer_cost_cents: int
    employee_contributions_cents: int
    employer_contributions_cents: int
    general_reduction_cents: int
    lines: tuple[ContributionLine, ...]

    def __post_init__(self) -> None:
        # The net alone may be negative: a fixed deduction (the employee's share of the health
        # cover premium) on a very small salary.
        if type(self.net_cents) is not int:
            raise ValueError(f"net_cents must be an integer, got {self.net_cents!r}")
        for name in (
            "gross_cents",
            "employer_cost_cents",
            "employee_contributions_cents",
            "employer_contributions_cents",
            "general_reduction_cents",
        ):
            _check_non_negative_int(name, getattr(self, name))
        lines = tuple(self.lines)
        object.__setattr__(self, "lines", lines)
        # The invariants the payslip, the ledger postings and the transparency report rely on.
        if sum(line.employee_cents for line in lines) != self.employee_contributions_cents:
            raise ValueError("employee contribution lines must add up to employee_contributions_cents")
        if sum(line.employer_cents for line in lines) != self.employer_contributions_cents:
            raise ValueError("employer contribution lines must add up to employer_contributions_cents")
        if self.gross_cents - self.employee_contributions_cents != self.net_cents:
            raise ValueError("gross − employee contributions must equal net")
        if (
            self.gross_cents + self.employer_contributions_cents - self.general_reduction_cents
            != self.employer_cost_cents
        ):
            raise ValueError("gross + employer contributions − general reduction must equal employer cost")

    def by_branch(self) -> dict[str, tuple[int, int]]:
        """(employee_cents, employer_cents) per social-protection branch, for reports."""
        totals = {branch: (0, 0) for branch in BRANCHES}
        for line in self.lines:
            employee, employer = totals[line.branch]
            totals[line.branch] = (employee + line.employee_cents, employer + line.employer_cents)
        return totals


@runtime_checkable
class SalaryEngine(Protocol):
    """A country's payroll rules: monthly figures, vectorised over all the members of a run."""

    def compute(
        self, period: str, gross_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[SalaryComputation]:
        """The figures of each monthly gross salary of `period` ('YYYY-MM'), in input order."""
        ...

    def gross_from_employer_cost(
        self, period: str, employer_cost_cents: Sequence[int], settings: EmploymentSettings
    ) -> list[int]:
        """For each budget, the largest gross whose employer cost is <= the budget (exact cents)."""
        ...

    def smic_hourly_gross_cents(self, period: str) -> int:
        """The legal minimum gross hourly wage of the period."""
        ...

    def minimum_net_hourly_cents(self, period: str, settings: EmploymentSettings) -> int:
        """Net of a full-time minimum-wage month ÷ 151.67 h, rounded half-up to the cent."""
        ...
