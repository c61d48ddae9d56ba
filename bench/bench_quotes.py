"""Benchmark: booking quotes per second, in-process on one core (target: 50,000/s).

Run from anywhere: `python bench/bench_quotes.py [--quotes N]`; prints markdown table rows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.fees import FeeSchedule, RateCard, quote_breakdown  # noqa: E402

TARGET_PER_SECOND = 50_000
SMIC_MONTHLY_GROSS_CENTS = 182_303  # order of magnitude of the 2026 SMIC × 151.67 h (synthetic)


def synthetic_rate_card() -> RateCard:
    """A realistic-shaped grid: ~42 % employer contributions, minus a general reduction that
    fades out at 1.6 SMIC (the shape of the French "réduction générale"), net ≈ 78 % of gross.
    Synthetic figures: only the shape and the grid size matter for speed."""
    grosses = tuple(range(SMIC_MONTHLY_GROSS_CENTS, 1_500_000, 5_000))
    costs, nets = [], []
    for gross in grosses:
        ratio = 1.6 * SMIC_MONTHLY_GROSS_CENTS / gross - 1
        reduction_rate = max(0.0, 0.3194 / 0.6 * ratio)
        costs.append(round(gross * (1.42 - reduction_rate)))
        nets.append(round(gross * 0.7816))
    return RateCard(
        period="2026-01",
        gross_cents=grosses,
        employer_cost_cents=tuple(costs),
        net_cents=tuple(nets),
        min_net_hourly_cents=941,
    )


def pin_to_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run(quotes: int, repeats: int) -> None:
    rng = random.Random(2026)
    card = synthetic_rate_card()
    schedules = [
        FeeSchedule(contribution_rate_bps=1000, processing_fee_bps=150, processing_fee_fixed_cents=25),
        FeeSchedule(
            contribution_rate_bps=1200,
            processing_fee_payer="cooperative",
            processing_fee_bps=150,
            processing_fee_fixed_cents=25,
        ),
    ]
    # Inputs drawn up front so the loop measures the quote, not the random generator.
    cases = [
        (
            rng.randint(2_000, 30_000) * rng.randint(1, 8),  # hourly rate × hours
            rng.choice((2000, 1000, 550, 0)),
            schedules[i % 2],
            rng.randint(150_000, 800_000),  # the member's expected monthly gross
            rng.randint(0, 8_000_000),
        )
        for i in range(quotes)
    ]
    precomputed = [card.rates_at(gross) for _, _, _, gross, _ in cases]

    def with_lookup() -> None:
        rates_at = card.rates_at
        for price, vat, schedule, gross, before in cases:
            quote_breakdown(
                price_excl_vat_cents=price,
                vat_rate_bps=vat,
                schedule=schedule,
                rates=rates_at(gross),
                yearly_turnover_before_cents=before,
            )

    def quote_only() -> None:
        for (price, vat, schedule, _, before), rates in zip(cases, precomputed):
            quote_breakdown(
                price_excl_vat_cents=price,
                vat_rate_bps=vat,
                schedule=schedule,
                rates=rates,
                yearly_turnover_before_cents=before,
            )

    print(f"<!-- Python {sys.version.split()[0]}, {quotes} quotes × {repeats} runs, one core, "
          f"rate card of {len(card.gross_cents)} grid points; best and median run -->")
    print("| benchmark | quotes/s (best) | quotes/s (median) | target | ratio (best / target) |")
    print("|---|---:|---:|---:|---:|")
    benchmarks = (("quote_breakdown + RateCard.rates_at", with_lookup), ("quote_breakdown alone", quote_only))
    for name, body in benchmarks:
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            body()
            rates.append(quotes / (time.perf_counter() - started))
        best, median = max(rates), statistics.median(rates)
        print(f"| {name} | {best:,.0f} | {median:,.0f} | {TARGET_PER_SECOND:,} | "
              f"{best / TARGET_PER_SECOND:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quotes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    pin_to_one_core()
    run(arguments.quotes, arguments.repeats)


if __name__ == "__main__":
    main()
