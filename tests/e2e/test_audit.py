"""Board audit endpoints: the trial balance and the audit trail, for board and staff only."""
from __future__ import annotations

from app.domain import ledger as rules
from app.services import ledger, tenancy
from tests.factories import make_cooperative, make_user


async def test_trial_balance_shows_balanced_accounts_to_the_board_only(client, db, settings):
    slug = await make_cooperative(db)
    board = await make_user(client, db, settings, cooperative=slug, role="board")
    client_user = await make_user(client, db, settings, cooperative=slug, role="client")
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, slug)
        await ledger.post(s, cooperative_id=coop.id, posting=rules.Posting(
            "capture:pi_x", "capture", "test", (rules.Entry(rules.PROCESSOR_CLEARING, 12000),
                                                rules.Entry(rules.VAT_COLLECTED, -2000),
                                                rules.Entry(rules.COOP_CONTRIBUTION, -10000)), "EUR"))
        await s.commit()
    resp = await client.get("/audit/trial-balance", headers=board.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["balanced"] is True and body["total_debit_cents"] == body["total_credit_cents"] == 12000
    assert {a["account"]: a["balance_cents"] for a in body["accounts"]} == {
        rules.PROCESSOR_CLEARING: 12000, rules.VAT_COLLECTED: -2000, rules.COOP_CONTRIBUTION: -10000}
    before = await client.get("/audit/trial-balance", params={"at": "2000-01-01T00:00:00Z"}, headers=board.headers)
    assert before.json()["total_debit_cents"] == 0
    resp = await client.get("/audit/trial-balance", headers=client_user.headers)
    assert resp.status_code == 403
    resp = await client.get("/audit/trial-balance", params={"at": "yesterday"}, headers=board.headers)
    assert resp.status_code == 422


async def test_audit_events_are_scoped_to_the_callers_cooperative(client, db, settings):
    a, b = await make_cooperative(db), await make_cooperative(db)
    staff_a = await make_user(client, db, settings, cooperative=a, role="staff")
    await make_user(client, db, settings, cooperative=b, role="worker")
    events = (await client.get("/audit/events", headers=staff_a.headers)).json()
    assert events and all(e["target_type"] in ("cooperative", "user") for e in events)
    # Only cooperative A's creation and A's users appear: B's worker registration is not leaked.
    user_events = [e for e in events if e["action"] == "user.created"]
    assert [e["target_id"] for e in user_events] == [staff_a.id]
