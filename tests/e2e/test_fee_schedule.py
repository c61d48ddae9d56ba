"""The public fee schedule, its history, and staff changes (audited) through the HTTP API."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.services import fee_schedules, tenancy
from tests.factories import make_cooperative, make_user

CHANGE = {"contribution_rate_bps": 800, "processing_fee_payer": "cooperative", "processing_fee_bps": 140,
          "processing_fee_fixed_cents": 25, "reason": "general assembly of 2026-11-20"}


async def test_a_new_cooperative_publishes_its_founding_schedule(client, db):
    slug = await make_cooperative(db, name="Vélo Coop")
    resp = await client.get(f"/cooperatives/{slug}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["slug"] == slug and body["name"] == "Vélo Coop" and body["currency"] == "EUR"
    assert body["fee_schedule"]["contribution_rate_bps"] == 1000
    assert body["fee_schedule"]["processing_fee_payer"] == "member"
    schedule = (await client.get(f"/cooperatives/{slug}/fee-schedule")).json()
    assert schedule["decided_by"].startswith("founding") and len(schedule["history"]) == 1
    assert schedule["upcoming"] == []


async def test_unknown_cooperative_is_404(client, db):
    for path in ("/cooperatives/nope", "/cooperatives/nope/fee-schedule"):
        resp = await client.get(path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "cooperative_not_found"


async def test_staff_change_takes_effect_keeps_history_and_is_audited(client, db, settings):
    slug = await make_cooperative(db)
    staff = await make_user(client, db, settings, cooperative=slug, role="staff")
    board = await make_user(client, db, settings, cooperative=slug, role="board")
    resp = await client.post(f"/cooperatives/{slug}/fee-schedule", json=CHANGE, headers=staff.headers)
    assert resp.status_code == 201, resp.text
    schedule = (await client.get(f"/cooperatives/{slug}/fee-schedule")).json()
    assert schedule["contribution_rate_bps"] == 800 and schedule["processing_fee_payer"] == "cooperative"
    assert schedule["decided_by"] == "staff decision: general assembly of 2026-11-20"
    assert [v["contribution_rate_bps"] for v in schedule["history"]] == [1000, 800]
    events = (await client.get("/audit/events", headers=board.headers)).json()
    changed = [e for e in events if e["action"] == "fee_schedule.changed"]
    assert len(changed) == 1 and changed[0]["actor_user_id"] == staff.id
    assert changed[0]["data"]["contribution_rate_bps"] == 800


async def test_a_future_change_is_upcoming_and_quotes_before_it_use_the_old_one(client, db, settings):
    slug = await make_cooperative(db)
    staff = await make_user(client, db, settings, cooperative=slug, role="staff")
    start = datetime.now(UTC) + timedelta(days=30)
    resp = await client.post(f"/cooperatives/{slug}/fee-schedule",
                             json={**CHANGE, "effective_from": start.isoformat()}, headers=staff.headers)
    assert resp.status_code == 201
    schedule = (await client.get(f"/cooperatives/{slug}/fee-schedule")).json()
    assert schedule["contribution_rate_bps"] == 1000
    assert [v["contribution_rate_bps"] for v in schedule["upcoming"]] == [800]
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, slug)
        now = await fee_schedules.in_force(s, cooperative_id=coop.id, at=datetime.now(UTC))
        later = await fee_schedules.in_force(s, cooperative_id=coop.id, at=start + timedelta(seconds=1))
    assert now.contribution_rate_bps == 1000 and later.contribution_rate_bps == 800


async def test_changes_are_refused_in_the_past_out_of_range_or_twice_at_one_instant(client, db, settings):
    slug = await make_cooperative(db)
    staff = await make_user(client, db, settings, cooperative=slug, role="staff")
    url = f"/cooperatives/{slug}/fee-schedule"
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    resp = await client.post(url, json={**CHANGE, "effective_from": past}, headers=staff.headers)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "retroactive_change"
    resp = await client.post(url, json={**CHANGE, "contribution_rate_bps": 10001}, headers=staff.headers)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_error"
    tiers = [{"above_yearly_turnover_cents": 5_000_000, "rate_bps": 800},
             {"above_yearly_turnover_cents": 3_500_000, "rate_bps": 600}]
    resp = await client.post(url, json={**CHANGE, "contribution_tiers": tiers}, headers=staff.headers)
    assert resp.status_code == 422
    at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert (await client.post(url, json={**CHANGE, "effective_from": at}, headers=staff.headers)).status_code == 201
    resp = await client.post(url, json={**CHANGE, "effective_from": at}, headers=staff.headers)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "fee_schedule_exists"
    assert len((await client.get(url)).json()["upcoming"]) == 1


async def test_only_the_cooperatives_own_staff_may_change_it(client, db, settings):
    slug, other = await make_cooperative(db), await make_cooperative(db)
    url = f"/cooperatives/{slug}/fee-schedule"
    for role in ("client", "worker", "board"):
        user = await make_user(client, db, settings, cooperative=slug, role=role)
        resp = await client.post(url, json=CHANGE, headers=user.headers)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "wrong_role"
    foreign_staff = await make_user(client, db, settings, cooperative=other, role="staff")
    resp = await client.post(url, json=CHANGE, headers=foreign_staff.headers)
    assert resp.status_code == 404
    assert (await client.post(url, json=CHANGE)).status_code == 401
    assert (await client.get(url)).json()["contribution_rate_bps"] == 1000


async def test_tiered_schedule_is_published_with_its_tiers(client, db, settings):
    slug = await make_cooperative(db)
    staff = await make_user(client, db, settings, cooperative=slug, role="staff")
    tiers = [{"above_yearly_turnover_cents": 3_500_000, "rate_bps": 800}]
    resp = await client.post(f"/cooperatives/{slug}/fee-schedule",
                             json={**CHANGE, "contribution_rate_bps": 1000, "contribution_tiers": tiers},
                             headers=staff.headers)
    assert resp.status_code == 201
    assert (await client.get(f"/cooperatives/{slug}")).json()["fee_schedule"]["contribution_tiers"] == tiers
