"""Worker-members (API.md "Worker-members"): profile, salary plan, stages, suspension and appeals."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.test_reviews import insert_booking
from tests.factories import Account, assert_error, make_people, make_user

VALID_IBAN = "FR76 3000 6000 0112 3456 7890 189"
COMPACT_IBAN = "FR7630006000011234567890189"
MASKED_IBAN = "FR76 **** **** 0189"


@dataclass
class Coop:
    slug: str
    client: Account
    worker: Account
    worker2: Account
    staff: Account
    board: Account


ROLES = [("client", "client"), ("worker", "worker"), ("worker2", "worker"), ("staff", "staff"), ("board", "board")]


@pytest.fixture
async def coop(client, db, settings) -> Coop:
    slug, people = await make_people(client, db, settings, ROLES)
    return Coop(slug=slug, **people)


@pytest.fixture
async def other(client, db, settings) -> Coop:
    slug, people = await make_people(client, db, settings, ROLES)
    return Coop(slug=slug, **people)


_error = assert_error


async def _me(client, who: Account) -> dict:
    resp = await client.get("/members/me", headers=who.headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _stage(client, staff: Account, member_id: str, stage: str, signed_at: str = "2025-03-14T10:00:00+01:00"):
    return await client.post(f"/members/{member_id}/stage", headers=staff.headers,
                             json={"stage": stage, "signed_at": signed_at})


async def _events(client, staff: Account, action: str) -> list[dict]:
    resp = await client.get("/audit/events", params={"action": action}, headers=staff.headers)
    assert resp.status_code == 200
    return resp.json()


# ---- GET /members/me --------------------------------------------------------------------------


async def test_a_new_worker_is_an_active_cape_member_with_an_empty_profile(client, db, coop):
    me = await _me(client, coop.worker)
    assert me["id"] == coop.worker.member_id and me["user_id"] == coop.worker.id
    assert me["display_name"] == coop.worker.email.split("@")[0]
    assert me["stage"] == "cape" and me["active"] is True
    assert me["cesa_signed_at"] is None and me["associate_signed_at"] is None
    assert me["cesa_due"] is False and me["associate_due_by"] is None
    assert me["bio"] is None and me["service_area"] is None and me["iban"] is None
    assert me["salary_plan"] == {"mode": "full", "monthly_gross_cents": None}
    assert me["rating"] == {"average": None, "count": 0}
    assert me["suspension"] is None
    assert "email" not in me


async def test_members_me_is_for_workers_only(client, db, coop):
    for who in (coop.client, coop.staff, coop.board):
        _error(await client.get("/members/me", headers=who.headers), 403, "wrong_role")
        _error(await client.patch("/members/me", json={"bio": "hi"}, headers=who.headers), 403, "wrong_role")
        _error(await client.put("/members/me/salary-plan", json={"mode": "full"}, headers=who.headers),
               403, "wrong_role")
    _error(await client.get("/members/me"), 401, "not_authenticated")


# ---- PATCH /members/me ------------------------------------------------------------------------


async def test_a_valid_iban_is_stored_and_only_ever_shown_masked(client, db, coop):
    resp = await client.patch("/members/me", json={"iban": "  fr76 3000 6000 0112 3456 7890 189 "},
                              headers=coop.worker.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["iban"] == MASKED_IBAN
    views = [resp, await client.get("/members/me", headers=coop.worker.headers),
             await client.get(f"/members/{coop.worker.member_id}", headers=coop.staff.headers),
             await client.get(f"/members/{coop.worker.member_id}", headers=coop.board.headers),
             await client.get("/members", headers=coop.staff.headers),
             await client.get("/audit/events", headers=coop.staff.headers)]
    for view in views:
        assert view.status_code == 200
        for form in (COMPACT_IBAN, VALID_IBAN, "3000 6000 0112", "30006000011234567890"):
            assert form not in view.text
    assert views[2].json()["iban"] == MASKED_IBAN
    assert "iban" not in (await client.get(f"/members/{coop.worker.member_id}", headers=coop.client.headers)).json()
    event = (await _events(client, coop.staff, "member.profile_updated"))[0]
    assert event["target_id"] == coop.worker.member_id and event["data"] == {"fields": ["iban"]}


@pytest.mark.parametrize("iban", ["FR76 3000 6000 0112 3456 7890 188",  # wrong checksum
                                  "FR76 3000 6000 0112 3456 7890 1890",  # wrong length
                                  "XX00 1234 5678", "not an iban", "12345",
                                  "BR18 0036 0305 0000 1000 9795 493C 1"])  # valid, but no SEPA transfer
async def test_an_invalid_iban_is_422_and_not_echoed(client, db, coop, iban):
    assert (await client.patch("/members/me", json={"iban": VALID_IBAN}, headers=coop.worker.headers)).status_code \
        == 200
    resp = await client.patch("/members/me", json={"iban": iban}, headers=coop.worker.headers)
    _error(resp, 422, "invalid_iban")
    assert iban not in resp.text and iban.replace(" ", "") not in resp.text
    assert (await _me(client, coop.worker))["iban"] == MASKED_IBAN  # the good one is kept


async def test_bio_and_service_area_update_alone_and_null_clears(client, db, coop):
    area = {"lat": 48.8566, "lon": 2.3522, "radius_km": 15}
    resp = await client.patch("/members/me", json={"bio": "Plumber, 10 years.", "service_area": area,
                                                   "iban": VALID_IBAN}, headers=coop.worker.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["bio"] == "Plumber, 10 years." and resp.json()["service_area"] == area

    resp = await client.patch("/members/me", json={"bio": "Plumber and tiler."}, headers=coop.worker.headers)
    me = resp.json()
    assert me["bio"] == "Plumber and tiler." and me["service_area"] == area and me["iban"] == MASKED_IBAN

    resp = await client.patch("/members/me", json={"service_area": None}, headers=coop.worker.headers)
    assert resp.json()["service_area"] is None and resp.json()["bio"] == "Plumber and tiler."
    assert (await _me(client, coop.worker))["service_area"] is None
    # Another worker's profile is untouched.
    assert (await _me(client, coop.worker2))["bio"] is None
    fields = [e["data"]["fields"] for e in await _events(client, coop.staff, "member.profile_updated")]
    assert fields == [["service_area"], ["bio"], ["bio", "iban", "service_area"]]  # newest first


async def test_any_sepa_iban_is_accepted(client, db, coop):
    for iban, masked in [("DE89 3704 0044 0532 0130 00", "DE89 **** **** 3000"),
                         ("GB33BUKB20201555555555", "GB33 **** **** 5555")]:
        resp = await client.patch("/members/me", json={"iban": iban}, headers=coop.worker.headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["iban"] == masked and iban.replace(" ", "") not in resp.text
    resp = await client.patch("/members/me", json={"iban": None}, headers=coop.worker.headers)
    assert resp.status_code == 200 and resp.json()["iban"] is None


@pytest.mark.parametrize("area", [
    {"lat": 90.5, "lon": 2.0, "radius_km": 10}, {"lat": -91, "lon": 2.0, "radius_km": 10},
    {"lat": 48.0, "lon": 180.5, "radius_km": 10}, {"lat": 48.0, "lon": -181, "radius_km": 10},
    {"lat": 48.0, "lon": 2.0, "radius_km": 0}, {"lat": 48.0, "lon": 2.0, "radius_km": -5},
    {"lat": 48.0, "lon": 2.0, "radius_km": 200.1}, {"lat": 48.0, "lon": 2.0},
    {"lat": "north", "lon": 2.0, "radius_km": 10}, {"lat": 48.0, "lon": 2.0, "radius_km": 10, "alt": 3},
])
async def test_an_invalid_service_area_is_422_and_changes_nothing(client, db, coop, area):
    resp = await client.patch("/members/me", json={"service_area": area}, headers=coop.worker.headers)
    _error(resp, 422, "validation_error")
    assert (await _me(client, coop.worker))["service_area"] is None


async def test_service_area_bounds_are_inclusive_where_the_contract_says(client, db, coop):
    edge = {"lat": -90, "lon": 180, "radius_km": 200}
    resp = await client.patch("/members/me", json={"service_area": edge}, headers=coop.worker.headers)
    assert resp.status_code == 200 and resp.json()["service_area"] == edge


async def test_unknown_or_mistyped_profile_fields_are_422(client, db, coop):
    for body in ({"stage": "associate"}, {"rating_sum": 500}, {"bio": ["x"]}, {"bio": "x" * 2001}):
        _error(await client.patch("/members/me", json=body, headers=coop.worker.headers), 422, "validation_error")
    me = await _me(client, coop.worker)
    assert me["stage"] == "cape" and me["bio"] is None and me["rating"]["count"] == 0


# ---- PUT /members/me/salary-plan --------------------------------------------------------------


async def test_salary_plan_full_and_fixed(client, db, coop):
    resp = await client.put("/members/me/salary-plan", json={"mode": "fixed", "monthly_gross_cents": 180_000},
                            headers=coop.worker.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"mode": "fixed", "monthly_gross_cents": 180_000}
    assert (await _me(client, coop.worker))["salary_plan"] == {"mode": "fixed", "monthly_gross_cents": 180_000}
    resp = await client.put("/members/me/salary-plan", json={"mode": "full"}, headers=coop.worker.headers)
    assert resp.json() == {"mode": "full", "monthly_gross_cents": None}
    assert (await _me(client, coop.worker))["salary_plan"] == {"mode": "full", "monthly_gross_cents": None}
    assert [e["data"]["mode"] for e in await _events(client, coop.staff, "member.salary_plan_changed")] \
        == ["full", "fixed"]


@pytest.mark.parametrize("body,code", [
    ({"mode": "full", "monthly_gross_cents": 150_000}, "invalid_salary_plan"),
    ({"mode": "fixed"}, "invalid_salary_plan"),
    ({"mode": "fixed", "monthly_gross_cents": None}, "invalid_salary_plan"),
    ({"mode": "fixed", "monthly_gross_cents": 0}, "invalid_salary_plan"),
    ({"mode": "fixed", "monthly_gross_cents": -100}, "invalid_salary_plan"),
    ({"mode": "fixed", "monthly_gross_cents": 1500.5}, "validation_error"),
    ({"mode": "half"}, "validation_error"),
])
async def test_invalid_salary_plans_are_422(client, db, coop, body, code):
    _error(await client.put("/members/me/salary-plan", json=body, headers=coop.worker.headers), 422, code)
    assert (await _me(client, coop.worker))["salary_plan"] == {"mode": "full", "monthly_gross_cents": None}


async def test_a_fixed_plan_must_reach_the_cooperatives_minimum_in_force(client, db, coop):
    change = await client.post(f"/cooperatives/{coop.slug}/fee-schedule", headers=coop.staff.headers, json={
        "contribution_rate_bps": 1000, "processing_fee_payer": "member", "processing_fee_bps": 150,
        "processing_fee_fixed_cents": 25, "min_fixed_monthly_gross_cents": 150_000, "reason": "vote of 2026"})
    assert change.status_code == 201, change.text
    resp = await client.put("/members/me/salary-plan", json={"mode": "fixed", "monthly_gross_cents": 149_999},
                            headers=coop.worker.headers)
    _error(resp, 422, "invalid_salary_plan")
    assert "150000" in resp.json()["error"]["message"]
    resp = await client.put("/members/me/salary-plan", json={"mode": "fixed", "monthly_gross_cents": 150_000},
                            headers=coop.worker.headers)
    assert resp.status_code == 200 and resp.json()["monthly_gross_cents"] == 150_000


# ---- stages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [["cesa", "associate", "left"], ["cesa", "left"], ["left"]])
async def test_every_legal_stage_path_is_recorded_and_audited(client, db, coop, path):
    signed = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
    previous = "cape"
    for n, stage in enumerate(path):
        at = (signed + timedelta(days=200 * n)).isoformat()
        resp = await _stage(client, coop.staff, coop.worker.member_id, stage, at)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["stage"] == stage and body["email"] == coop.worker.email
        assert datetime.fromisoformat(body["stage_signed_at"]) == datetime.fromisoformat(at)
        event = (await _events(client, coop.staff, "member.stage_changed"))[0]
        assert event["target_id"] == coop.worker.member_id and event["actor_user_id"] == coop.staff.id
        assert event["data"]["from"] == previous and event["data"]["to"] == stage
        assert datetime.fromisoformat(event["data"]["signed_at"]) == datetime.fromisoformat(at)
        me = await _me(client, coop.worker)
        assert me["stage"] == stage and me["active"] is (stage != "left")
        previous = stage
    me = await _me(client, coop.worker)
    if "cesa" in path:
        assert datetime.fromisoformat(me["cesa_signed_at"]) == signed
    if "associate" in path:
        assert datetime.fromisoformat(me["associate_signed_at"]) == signed + timedelta(days=200)
    assert len(await _events(client, coop.staff, "member.stage_changed")) == len(path)
    assert (await _me(client, coop.worker2))["stage"] == "cape"


@pytest.mark.parametrize("path,target", [
    ([], "associate"),                                              # cape skips the CESA
    (["cesa"], "cesa"), (["cesa", "associate"], "cesa"),            # same, backwards
    (["cesa", "associate"], "associate"),
    (["left"], "cesa"), (["left"], "associate"), (["left"], "left"), (["cesa", "left"], "associate"),
])
async def test_every_illegal_stage_transition_is_409_and_changes_nothing(client, db, coop, path, target):
    for stage in path:
        assert (await _stage(client, coop.staff, coop.worker.member_id, stage)).status_code == 200
    before = await _me(client, coop.worker)
    resp = await _stage(client, coop.staff, coop.worker.member_id, target)
    _error(resp, 409, "illegal_transition")
    assert await _me(client, coop.worker) == before
    assert len(await _events(client, coop.staff, "member.stage_changed")) == len(path)


async def test_no_way_back_to_cape(client, db, coop):
    assert (await _stage(client, coop.staff, coop.worker.member_id, "cesa")).status_code == 200
    _error(await _stage(client, coop.staff, coop.worker.member_id, "cape"), 422, "validation_error")
    assert (await _me(client, coop.worker))["stage"] == "cesa"


@pytest.mark.parametrize("signed_at,code", [
    ("2025-03-14T10:00:00", "validation_error"),   # no offset
    ("2025-03-14", "validation_error"),
    ("yesterday", "validation_error"),
    (None, "validation_error"),
])
async def test_signed_at_needs_an_rfc3339_instant(client, db, coop, signed_at, code):
    _error(await _stage(client, coop.staff, coop.worker.member_id, "cesa", signed_at), 422, code)
    assert (await _me(client, coop.worker))["stage"] == "cape"


async def test_signed_at_may_not_be_more_than_a_day_ahead_nor_before_the_current_stage(client, db, coop):
    now = datetime.now(UTC)
    _error(await _stage(client, coop.staff, coop.worker.member_id, "cesa", (now + timedelta(days=2)).isoformat()),
           422, "signed_at_in_future")
    assert (await _me(client, coop.worker))["stage"] == "cape"
    resp = await _stage(client, coop.staff, coop.worker.member_id, "cesa", (now + timedelta(hours=12)).isoformat())
    assert resp.status_code == 200, resp.text
    _error(await _stage(client, coop.staff, coop.worker.member_id, "associate", (now - timedelta(days=1)).isoformat()),
           422, "signed_at_before_current_stage")
    assert (await _me(client, coop.worker))["stage"] == "cesa"


async def test_associate_due_by_is_three_years_after_the_cesa_signature(client, db, coop):
    resp = await _stage(client, coop.staff, coop.worker.member_id, "cesa", "2025-03-14T10:00:00+01:00")
    assert resp.json()["associate_due_by"] == "2028-03-14"
    me = await _me(client, coop.worker)
    assert me["associate_due_by"] == "2028-03-14"
    assert datetime.fromisoformat(me["cesa_signed_at"]) == datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    # Once an associate, there is no deadline left to show.
    assert (await _stage(client, coop.staff, coop.worker.member_id, "associate",
                         "2026-01-05T10:00:00+01:00")).json()["associate_due_by"] is None
    assert (await _me(client, coop.worker))["associate_due_by"] is None


async def test_cesa_due_appears_after_a_completed_paid_booking(client, db, coop):
    # Unpaid or unfinished work does not count.
    await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker, final_price_cents=0)
    await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker, status="accepted")
    await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker2)
    assert (await _me(client, coop.worker))["cesa_due"] is False

    await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    assert (await _me(client, coop.worker))["cesa_due"] is True
    listed = (await client.get("/members", params={"cesa_due": "true"}, headers=coop.staff.headers)).json()
    assert sorted(m["id"] for m in listed) == sorted([coop.worker.member_id, coop.worker2.member_id])
    assert all(m["cesa_due"] for m in listed)

    assert (await _stage(client, coop.staff, coop.worker.member_id, "cesa")).json()["cesa_due"] is False
    assert (await _me(client, coop.worker))["cesa_due"] is False
    listed = (await client.get("/members", params={"cesa_due": "true"}, headers=coop.staff.headers)).json()
    assert [m["id"] for m in listed] == [coop.worker2.member_id]
    not_due = (await client.get("/members", params={"cesa_due": "false"}, headers=coop.staff.headers)).json()
    assert [m["id"] for m in not_due] == [coop.worker.member_id]


# ---- the onboarding list and member files -----------------------------------------------------


async def test_the_onboarding_list_filters_by_stage_deadline_and_suspension(client, db, settings, coop, other):
    third = await make_user(client, db, settings, cooperative=coop.slug, role="worker")
    await _stage(client, coop.staff, coop.worker.member_id, "cesa", "2023-06-01T09:00:00+00:00")   # due 2026-06-01
    await _stage(client, coop.staff, coop.worker2.member_id, "cesa", "2024-06-01T09:00:00+00:00")  # due 2027-06-01
    await _stage(client, other.staff, other.worker.member_id, "cesa", "2020-01-01T09:00:00+00:00")
    await client.post(f"/members/{third.member_id}/suspend", headers=coop.staff.headers,
                      json={"reason": "Repeated no-shows reported by clients."})

    async def ids(**params) -> list[str]:
        resp = await client.get("/members", params=params, headers=coop.board.headers)
        assert resp.status_code == 200, resp.text
        return sorted(m["id"] for m in resp.json())

    assert await ids() == sorted([coop.worker.member_id, coop.worker2.member_id, third.member_id])
    assert await ids(stage="cesa") == sorted([coop.worker.member_id, coop.worker2.member_id])
    assert await ids(stage="cape") == [third.member_id]
    assert await ids(associate_due_before="2026-06-01") == []          # strictly before
    assert await ids(associate_due_before="2026-06-02") == [coop.worker.member_id]
    assert await ids(associate_due_before="2030-01-01") == sorted([coop.worker.member_id, coop.worker2.member_id])
    assert await ids(suspended="true") == [third.member_id]
    assert await ids(suspended="false", stage="cesa") == sorted([coop.worker.member_id, coop.worker2.member_id])
    listed = (await client.get("/members", params={"stage": "cesa"}, headers=coop.staff.headers)).json()
    assert {m["id"]: m["associate_due_by"] for m in listed} == {
        coop.worker.member_id: "2026-06-01", coop.worker2.member_id: "2027-06-01"}
    assert {m["email"] for m in listed} == {coop.worker.email, coop.worker2.email}
    for params in ({"stage": "boss"}, {"associate_due_before": "soon"}, {"cesa_due": "maybe"}, {"limit": 0}):
        _error(await client.get("/members", params=params, headers=coop.staff.headers), 422, "validation_error")


async def test_the_member_list_is_for_staff_and_board(client, db, coop):
    for who in (coop.client, coop.worker):
        _error(await client.get("/members", headers=who.headers), 403, "wrong_role")


async def test_a_member_file_for_staff_a_public_profile_for_everyone_else(client, db, coop, other):
    await client.patch("/members/me", json={"bio": "Gardener.", "iban": VALID_IBAN,
                                            "service_area": {"lat": 45.0, "lon": 5.0, "radius_km": 20}},
                       headers=coop.worker.headers)
    for who in (coop.staff, coop.board):
        body = (await client.get(f"/members/{coop.worker.member_id}", headers=who.headers)).json()
        assert body["email"] == coop.worker.email and body["stage"] == "cape" and body["iban"] == MASKED_IBAN
        assert body["service_area"] == {"lat": 45.0, "lon": 5.0, "radius_km": 20}
    for who in (coop.client, coop.worker2, coop.worker):
        resp = await client.get(f"/members/{coop.worker.member_id}", headers=who.headers)
        assert resp.status_code == 200
        assert resp.json() == {"id": coop.worker.member_id, "display_name": coop.worker.email.split("@")[0],
                               "bio": "Gardener.", "rating": {"average": None, "count": 0}}
        assert coop.worker.email not in resp.text
    absent = await client.get(f"/members/{uuid.uuid4()}", headers=other.staff.headers)
    for who in (other.staff, other.board, other.client, other.worker):
        foreign = await client.get(f"/members/{coop.worker.member_id}", headers=who.headers)
        _error(foreign, 404, "member_not_found")
        assert foreign.json() == absent.json()
    _error(await client.get("/members/not-a-uuid", headers=coop.staff.headers), 422, "validation_error")


# ---- who may do what --------------------------------------------------------------------------


async def test_staff_routes_refuse_other_roles_with_403_and_other_cooperatives_with_404(client, db, coop, other):
    member = coop.worker.member_id
    calls = [
        ("post", f"/members/{member}/stage", {"stage": "cesa", "signed_at": "2025-01-01T10:00:00Z"}),
        ("post", f"/members/{member}/suspend", {"reason": "Repeated no-shows reported."}),
        ("post", f"/members/{member}/reinstate", {"note": "Issue resolved with the client."}),
        ("post", f"/appeals/{uuid.uuid4()}/decision", {"outcome": "upheld", "note": "Fair enough, upheld."}),
        ("get", "/appeals", None),
    ]
    for who in (coop.client, coop.worker, coop.board):
        for method, path, body in calls:
            resp = await client.request(method, path, json=body, headers=who.headers)
            _error(resp, 403, "wrong_role")
    for method, path, body in calls[:3]:
        _error(await client.request(method, path, json=body, headers=other.staff.headers), 404, "member_not_found")
    me = await _me(client, coop.worker)
    assert me["stage"] == "cape" and me["suspension"] is None
    assert await _events(client, coop.staff, "member.stage_changed") == []
    assert await _events(client, coop.staff, "member.suspended") == []


# ---- suspension, appeal, decision -------------------------------------------------------------


async def _suspend(client, staff: Account, member_id: str, reason: str = "Two clients reported no-shows."):
    return await client.post(f"/members/{member_id}/suspend", headers=staff.headers, json={"reason": reason})


async def _appeal(client, worker: Account, suspension_id: str,
                  statement: str = "I was in hospital both days; certificate attached."):
    return await client.post("/members/me/appeals", headers=worker.headers,
                             json={"kind": "suspension", "target_id": suspension_id, "statement": statement})


async def _decide(client, staff: Account, appeal_id: str, outcome: str,
                  note: str = "Checked the certificate with the member."):
    return await client.post(f"/appeals/{appeal_id}/decision", headers=staff.headers,
                             json={"outcome": outcome, "note": note})


async def test_suspension_appeal_upheld_lifts_the_suspension(client, db, coop):
    _error(await _suspend(client, coop.staff, coop.worker.member_id, "too short"), 422, "validation_error")
    resp = await _suspend(client, coop.staff, coop.worker.member_id)
    assert resp.status_code == 200, resp.text
    suspension = resp.json()["suspension"]
    assert suspension["reason"] == "Two clients reported no-shows." and suspension["appeal"] is None
    _error(await _suspend(client, coop.staff, coop.worker.member_id), 409, "already_suspended")

    me = await _me(client, coop.worker)
    assert me["active"] is False and me["suspension"]["id"] == suspension["id"]
    assert me["suspension"]["reason"] == "Two clients reported no-shows." and me["suspension"]["since"]

    _error(await _appeal(client, coop.worker, suspension["id"], "short"), 422, "validation_error")
    appeal = await _appeal(client, coop.worker, suspension["id"])
    assert appeal.status_code == 201, appeal.text
    appeal = appeal.json()
    assert appeal["status"] == "open" and appeal["kind"] == "suspension"
    assert appeal["target_id"] == suspension["id"] and appeal["member_id"] == coop.worker.member_id
    _error(await _appeal(client, coop.worker, suspension["id"]), 409, "appeal_already_open")
    assert (await _me(client, coop.worker))["suspension"]["appeal"] == {
        "id": appeal["id"], "status": "open", "decision_note": None}

    open_ones = (await client.get("/appeals", params={"status": "open"}, headers=coop.staff.headers)).json()
    assert [(a["id"], a["statement"]) for a in open_ones] == [(appeal["id"], appeal["statement"])]

    _error(await _decide(client, coop.staff, appeal["id"], "upheld", "ok"), 422, "validation_error")
    _error(await _decide(client, coop.staff, appeal["id"], "maybe"), 422, "validation_error")
    decided = await _decide(client, coop.staff, appeal["id"], "upheld")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "upheld" and decided.json()["decided_at"]
    _error(await _decide(client, coop.staff, appeal["id"], "rejected"), 409, "appeal_already_decided")

    me = await _me(client, coop.worker)
    assert me["suspension"] is None and me["active"] is True
    mine = (await client.get("/members/me/appeals", headers=coop.worker.headers)).json()
    assert [(a["id"], a["status"], a["decision_note"]) for a in mine] == [
        (appeal["id"], "upheld", "Checked the certificate with the member.")]
    assert (await client.get("/appeals", params={"status": "open"}, headers=coop.staff.headers)).json() == []
    assert [a["id"] for a in (await client.get("/appeals", params={"status": "upheld"},
                                               headers=coop.staff.headers)).json()] == [appeal["id"]]
    # The lifted suspension can be neither contested again nor reinstated twice.
    _error(await _appeal(client, coop.worker, suspension["id"]), 409, "suspension_lifted")
    _error(await client.post(f"/members/{coop.worker.member_id}/reinstate", headers=coop.staff.headers,
                             json={"note": "Lifting it once more."}), 409, "not_suspended")
    for action in ("member.suspended", "appeal.created", "appeal.decided", "member.reinstated"):
        assert len(await _events(client, coop.staff, action)) == 1, action
    assert (await _events(client, coop.staff, "appeal.decided"))[0]["data"]["outcome"] == "upheld"
    assert (await _events(client, coop.staff, "member.reinstated"))[0]["data"]["appeal_id"] == appeal["id"]


async def test_suspension_appeal_rejected_keeps_it_and_the_member_sees_why(client, db, coop):
    suspension = (await _suspend(client, coop.staff, coop.worker.member_id)).json()["suspension"]
    appeal = (await _appeal(client, coop.worker, suspension["id"])).json()
    decided = await _decide(client, coop.staff, appeal["id"], "rejected", "The clients' reports are consistent.")
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    _error(await _decide(client, coop.staff, appeal["id"], "upheld"), 409, "appeal_already_decided")

    me = await _me(client, coop.worker)
    assert me["active"] is False and me["suspension"]["id"] == suspension["id"]
    assert me["suspension"]["appeal"] == {"id": appeal["id"], "status": "rejected",
                                          "decision_note": "The clients' reports are consistent."}
    suspended = (await client.get("/members", params={"suspended": "true"}, headers=coop.staff.headers)).json()
    assert [m["id"] for m in suspended] == [coop.worker.member_id]
    # Once answered, nothing is open against it: the member may appeal again with new facts.
    again = await _appeal(client, coop.worker, suspension["id"], "New facts: the client apologised in writing.")
    assert again.status_code == 201
    assert (await _me(client, coop.worker))["suspension"]["appeal"]["id"] == again.json()["id"]


async def test_staff_reinstate_lifts_a_suspension(client, db, coop):
    _error(await client.post(f"/members/{coop.worker.member_id}/reinstate", headers=coop.staff.headers,
                             json={"note": "Nothing to lift here."}), 409, "not_suspended")
    suspension = (await _suspend(client, coop.staff, coop.worker.member_id)).json()["suspension"]
    _error(await client.post(f"/members/{coop.worker.member_id}/reinstate", headers=coop.staff.headers,
                             json={"note": "ok"}), 422, "validation_error")
    resp = await client.post(f"/members/{coop.worker.member_id}/reinstate", headers=coop.staff.headers,
                             json={"note": "Spoke with both clients; misunderstanding."})
    assert resp.status_code == 200 and resp.json()["suspension"] is None
    assert (await _me(client, coop.worker))["active"] is True
    _error(await _appeal(client, coop.worker, suspension["id"]), 409, "suspension_lifted")
    event = (await _events(client, coop.staff, "member.reinstated"))[0]
    assert event["data"]["suspension_id"] == suspension["id"] and event["actor_user_id"] == coop.staff.id
    # A second suspension is a new one, contested on its own.
    second = (await _suspend(client, coop.staff, coop.worker.member_id, "A third no-show this month.")).json()
    assert second["suspension"]["id"] != suspension["id"]


async def test_an_appeal_is_only_against_ones_own_suspension(client, db, coop, other):
    theirs = (await _suspend(client, coop.staff, coop.worker2.member_id)).json()["suspension"]
    foreign = (await _suspend(client, other.staff, other.worker.member_id)).json()["suspension"]
    for target in (theirs["id"], foreign["id"], str(uuid.uuid4())):
        _error(await _appeal(client, coop.worker, target), 404, "suspension_not_found")
    _error(await client.post("/members/me/appeals", headers=coop.client.headers,
                             json={"kind": "suspension", "target_id": theirs["id"],
                                   "statement": "Please reinstate this worker."}), 403, "wrong_role")
    _error(await client.post("/members/me/appeals", headers=coop.worker.headers,
                             json={"kind": "booking", "target_id": theirs["id"],
                                   "statement": "Please reinstate this worker."}), 422, "validation_error")
    assert (await client.get("/appeals", headers=coop.staff.headers)).json() == []


async def test_appeals_stay_within_their_cooperative(client, db, coop, other):
    suspension = (await _suspend(client, coop.staff, coop.worker.member_id)).json()["suspension"]
    appeal = (await _appeal(client, coop.worker, suspension["id"])).json()
    assert (await client.get("/appeals", headers=other.staff.headers)).json() == []
    _error(await _decide(client, other.staff, appeal["id"], "upheld"), 404, "appeal_not_found")
    _error(await _decide(client, coop.staff, str(uuid.uuid4()), "upheld"), 404, "appeal_not_found")
    assert (await _me(client, coop.worker))["suspension"]["appeal"]["status"] == "open"
    _error(await _suspend(client, other.staff, coop.worker.member_id), 404, "member_not_found")
    assert (await client.get("/members/me/appeals", headers=coop.worker2.headers)).json() == []


# ---- races ------------------------------------------------------------------------------------


async def test_two_staff_recording_the_cesa_at_once_make_one_change(client, db, settings, coop):
    staff2 = await make_user(client, db, settings, cooperative=coop.slug, role="staff")
    results = await asyncio.gather(_stage(client, coop.staff, coop.worker.member_id, "cesa"),
                                   _stage(client, staff2, coop.worker.member_id, "cesa"))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    assert len(await _events(client, coop.staff, "member.stage_changed")) == 1


async def test_two_suspensions_at_once_make_one(client, db, settings, coop):
    staff2 = await make_user(client, db, settings, cooperative=coop.slug, role="staff")
    results = await asyncio.gather(_suspend(client, coop.staff, coop.worker.member_id),
                                   _suspend(client, staff2, coop.worker.member_id))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    assert len(await _events(client, coop.staff, "member.suspended")) == 1


async def test_two_appeals_at_once_make_one_and_two_decisions_at_once_make_one(client, db, settings, coop):
    suspension = (await _suspend(client, coop.staff, coop.worker.member_id)).json()["suspension"]
    appeals = await asyncio.gather(_appeal(client, coop.worker, suspension["id"]),
                                   _appeal(client, coop.worker, suspension["id"]))
    assert sorted(r.status_code for r in appeals) == [201, 409], [r.text for r in appeals]
    assert len((await client.get("/appeals", headers=coop.staff.headers)).json()) == 1
    appeal_id = next(r for r in appeals if r.status_code == 201).json()["id"]

    staff2 = await make_user(client, db, settings, cooperative=coop.slug, role="staff")
    decisions = await asyncio.gather(_decide(client, coop.staff, appeal_id, "upheld"),
                                     _decide(client, staff2, appeal_id, "rejected"))
    assert sorted(r.status_code for r in decisions) == [200, 409], [r.text for r in decisions]
    winner = next(r for r in decisions if r.status_code == 200).json()
    assert [(a["id"], a["status"]) for a in (await client.get("/members/me/appeals",
                                                              headers=coop.worker.headers)).json()] \
        == [(appeal_id, winner["status"])]
    assert (await _me(client, coop.worker))["active"] is (winner["status"] == "upheld")
    assert len(await _events(client, coop.staff, "appeal.decided")) == 1


async def test_the_database_refuses_a_second_open_appeal_or_suspension_in_force(client, db, coop):
    """The services check "one open appeal per target" and "one suspension in force" under row locks;
    the partial unique indexes (migration 0007) refuse a second one whatever writes it."""
    from sqlalchemy.exc import IntegrityError

    from app.models import Appeal, Suspension

    suspension = (await _suspend(client, coop.staff, coop.worker.member_id)).json()["suspension"]
    appeal = (await _appeal(client, coop.worker, suspension["id"])).json()
    async with db.sessionmaker() as s:
        first = await s.get(Suspension, uuid.UUID(suspension["id"]))
        s.add(Suspension(cooperative_id=first.cooperative_id, member_id=first.member_id, reason="again",
                         suspended_by_user_id=first.suspended_by_user_id))
        with pytest.raises(IntegrityError):
            await s.flush()
        await s.rollback()
        open_one = await s.get(Appeal, uuid.UUID(appeal["id"]))
        s.add(Appeal(cooperative_id=open_one.cooperative_id, member_id=open_one.member_id, kind="suspension",
                     target_id=open_one.target_id, statement="A second appeal against the same suspension."))
        with pytest.raises(IntegrityError):
            await s.flush()
        await s.rollback()
    # once decided, the member may be suspended again and appeal again
    assert (await _decide(client, coop.staff, appeal["id"], "upheld")).status_code == 200
    again = await _suspend(client, coop.staff, coop.worker.member_id)
    assert again.status_code == 200, again.text
    second = await _appeal(client, coop.worker, again.json()["suspension"]["id"])
    assert second.status_code == 201, second.text
