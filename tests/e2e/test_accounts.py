"""The member's activity account and the board's ledger export, after real bookings."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.market import Clock, booking_body, make_market


@pytest.fixture
def clock(app):
    app.state.clock = Clock()
    return app.state.clock


def _budget(breakdown: dict) -> int:
    lines = {line["code"]: line["amount_cents"] for line in breakdown["lines"]}
    return lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"]


async def test_member_sees_pending_work_then_turnover_in_their_account(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    empty = (await client.get("/members/me/account", headers=worker.headers)).json()
    assert empty == {"currency": "EUR", "treasury_balance_cents": 0, "pending_cents": 0, "entries": []}
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    accepted = (await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)).json()
    pending = (await client.get("/members/me/account", headers=worker.headers)).json()
    assert pending["pending_cents"] == _budget(accepted["breakdown"]) and pending["treasury_balance_cents"] == 0
    clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    done = (await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 120},
                              headers=worker.headers)).json()
    account = (await client.get("/members/me/account", headers=worker.headers)).json()
    assert account["pending_cents"] == 0
    assert account["treasury_balance_cents"] == _budget(done["breakdown"])
    assert sum(e["amount_cents"] for e in account["entries"]) == account["treasury_balance_cents"]
    kinds = sorted(e["kind"] for e in account["entries"])
    assert kinds == ["capture", "contribution", "processing_recharge"]
    assert (await client.get("/members/me/account", headers=market.client.headers)).status_code == 403


async def test_board_exports_the_period_ledger_as_json_and_csv(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    from tests.factories import make_user
    board = await make_user(client, db, settings, cooperative=market.slug, role="board")
    worker = market.workers[0]
    booking = (await client.post("/bookings", json=booking_body(market), headers=market.client.headers)).json()
    await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)
    clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 180}, headers=worker.headers)
    period = clock().strftime("%Y-%m")
    rows = (await client.get("/audit/ledger", params={"period": period}, headers=board.headers)).json()
    assert rows and sum(r["debit_cents"] for r in rows) == sum(r["credit_cents"] for r in rows)
    assert {r["reference"].split(":")[0] for r in rows} == {"capture", "contribution", "processing_recharge"}
    resp = await client.get("/audit/ledger", params={"period": period, "format": "csv"}, headers=board.headers)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(parsed) == len(rows) and sum(int(r["debit_cents"]) for r in parsed) == sum(
        r["debit_cents"] for r in rows)
    assert (await client.get("/audit/ledger", params={"period": "2026-13"}, headers=board.headers)).status_code == 422
    assert (await client.get("/audit/ledger", params={"period": "1999-01"}, headers=board.headers)).json() == []
    assert (await client.get("/audit/ledger", params={"period": period}, headers=worker.headers)).status_code == 403
