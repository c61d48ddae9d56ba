"""Benchmark of the OpenFisca payroll engine: one 12,000-member simulation vs the budget → gross inverse.

Run: `python bench/bench_payroll_engine.py [--members 12000] [--repeat 3]`. Prints the seconds of
each step, the ratio (target: the inverse costs at most 30 simulations) and a markdown table row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import numpy as np  # noqa: E402

from app.payouts.engine import EmploymentSettings  # noqa: E402
from app.payouts.openfisca_engine import get_engine_sync  # noqa: E402

PERIOD = "2026-01"
TARGET_RATIO = 30.0


def timed(function, repeat: int) -> tuple[float, object]:
    """Median wall time over `repeat` runs (after one warm-up run) and the last result."""
    result = function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=12_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--period", default=PERIOD, help="month 'YYYY-MM' (default %(default)s)")
    args = parser.parse_args()

    start = time.perf_counter()
    engine = get_engine_sync()
    load = time.perf_counter() - start

    settings = EmploymentSettings()
    rng = np.random.default_rng(2026)
    # Monthly gross salaries of a cooperative: many around 1-3 SMIC, a tail up to 10,000 €.
    gross = np.clip(rng.lognormal(np.log(250_000), 0.5, args.members), 50_000, 1_000_000).astype(int).tolist()
    budgets = engine.employer_cost_cents(args.period, gross, settings)

    simulation, figures = timed(lambda: engine.compute(args.period, gross, settings), args.repeat)
    cost_only, _ = timed(lambda: engine.employer_cost_cents(args.period, gross, settings), args.repeat)
    inverse, back = timed(
        lambda: engine.gross_from_employer_cost(args.period, budgets, settings), args.repeat
    )

    exact = all(c == b for c, b in zip(engine.employer_cost_cents(args.period, back, settings), budgets))
    ratio = inverse / simulation
    ratio_cost_only = inverse / cost_only
    n = args.members
    print(f"period {args.period}, OpenFisca-France load: {load:.3f} s")
    print(f"compute, {n} members (1 simulation + payslip lines): {simulation:8.3f} s "
          f"({len(figures)} results)")
    print(f"employer cost only, {n} members (1 simulation):       {cost_only:8.3f} s")
    print(f"gross_from_employer_cost, {n} budgets:                {inverse:8.3f} s "
          f"(budgets met exactly: {exact})")
    print(f"ratio inverse / compute: {ratio:.2f}x, inverse / cost-only simulation: {ratio_cost_only:.2f}x "
          f"(target <= {TARGET_RATIO:.0f}x)")
    print()
    print("| period | members | load (s) | 1 simulation: compute (s) | cost only (s) | inverse (s) "
          "| inverse / compute | inverse / cost only | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.period} | {n} | {load:.2f} | {simulation:.3f} | {cost_only:.3f} | {inverse:.3f} "
          f"| {ratio:.2f}x | {ratio_cost_only:.2f}x | <= {TARGET_RATIO:.0f}x |")
    return 0 if ratio_cost_only <= TARGET_RATIO and exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
