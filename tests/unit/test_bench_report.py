"""bench/run.py's report: with several rounds, each ratio is taken against its own round's
reference, and the table shows the median of those ratios (the benchmark's noise is mostly the
box's speed drifting between rows measured a minute apart)."""
from __future__ import annotations

from bench import loadgen
from bench.run import Endpoint, Row, render

REF = Endpoint(name="ref: insert", target="ref")
ACCEPT = Endpoint(name="accept", target="app", ratio_to="ref: insert", goal=0.40)


def _row(ep: Endpoint, rps: float, round_no: int, p99: float = 10.0) -> Row:
    result = loadgen.WrkResult(requests_per_sec=rps, latency_ms={50: 1.0, 90: 2.0, 99: p99}, requests=int(rps * 10),
                               duration_s=10.0)
    return Row(ep, "/x", result, round=round_no)


def _main_line(report: str, name: str) -> list[str]:
    line = next(x for x in report.splitlines() if x.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_one_round_reports_the_plain_ratio():
    report = render([_row(REF, 2000, 1), _row(ACCEPT, 700, 1)], {"date": "today"})
    cells = _main_line(report, "accept")
    assert cells[1:6] == ["700", "10.00", "0.35", "≥ 0.40 ✗", "ref: insert"]
    assert "ratio per round" not in report and "(round 1)" not in report


def test_rounds_report_the_median_of_each_rounds_own_ratio():
    # Round 2 ran on a slow box (both rows halved): its ratio is still 0.45. Ratios 0.35, 0.45, 0.50.
    rows = [_row(REF, 2000, 1), _row(ACCEPT, 700, 1, p99=30.0),
            _row(REF, 1000, 2), _row(ACCEPT, 450, 2, p99=50.0),
            _row(REF, 2000, 3), _row(ACCEPT, 1000, 3, p99=40.0)]
    report = render(rows, {"date": "today", "rounds": "3"})
    cells = _main_line(report, "accept")
    assert cells[1:7] == ["700", "40.00", "0.45", "≥ 0.40 ✓", "ref: insert", "0.35, 0.45, 0.50"]
    assert _main_line(report, "ref: insert")[1] == "2,000"
    assert report.count("| accept (round ") == 3  # every round's row in the details


def test_a_failed_round_is_flagged_and_left_out_of_the_median():
    rows = [_row(REF, 2000, 1), _row(ACCEPT, 900, 1), _row(REF, 2000, 2),
            Row(ACCEPT, "—", None, error="boom", round=2)]
    cells = _main_line(render(rows, {"date": "today"}), "accept")
    assert cells[1] == "900 ⚠" and cells[3] == "0.45" and cells[6] == "0.45"
