"""A first walk through the API: register, sign in, read /me."""
from tests.factories import make_cooperative, make_user


async def test_register_login_me_for_a_worker(client, db, settings):
    coop = await make_cooperative(db)
    worker = await make_user(client, db, settings, cooperative=coop, role="worker")
    resp = await client.get("/me", headers=worker.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["role"] == "worker" and body["cooperative"] == coop
    assert body["membership_stage"] == "cape" and body["member_id"] == worker.member_id
