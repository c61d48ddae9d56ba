"""Tenancy and roles (API.md "Tenancy and roles"): a role sees only its own cooperative, 404 never leaks."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.factories import Account, make_cooperative, make_user


@dataclass
class Coop:
    slug: str
    client: Account
    client2: Account
    worker: Account
    staff: Account
    board: Account
    admin: Account


async def _populate(client, db, settings, slug: str) -> Coop:
    await make_cooperative(db, slug)
    people = {}
    for name, role in [("client", "client"), ("client2", "client"), ("worker", "worker"), ("staff", "staff"),
                       ("board", "board"), ("admin", "admin")]:
        people[name] = await make_user(client, db, settings, cooperative=slug, role=role)
    return Coop(slug=slug, **people)


@pytest.fixture
async def two_coops(client, db, settings) -> tuple[Coop, Coop]:
    return (await _populate(client, db, settings, "alpha"), await _populate(client, db, settings, "beta"))


def _assert_error(resp, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


# ---- GET /users/{id} ----------------------------------------------------------------------------


async def test_another_cooperatives_user_is_a_404_like_a_random_id(client, two_coops):
    a, b = two_coops
    foreign = await client.get(f"/users/{b.worker.id}", headers=a.client.headers)
    absent = await client.get(f"/users/{uuid.uuid4()}", headers=a.client.headers)
    _assert_error(foreign, 404, "user_not_found")
    assert foreign.json() == absent.json()
    assert b.worker.id not in foreign.text


@pytest.mark.parametrize("caller", ["client", "worker", "staff", "board", "admin"])
async def test_no_role_sees_across_cooperatives(client, two_coops, caller):
    a, b = two_coops
    headers = getattr(a, caller).headers
    for target in (b.client, b.worker, b.staff):
        _assert_error(await client.get(f"/users/{target.id}", headers=headers), 404, "user_not_found")


async def test_a_client_sees_a_worker_of_its_cooperative(client, two_coops):
    a, _ = two_coops
    resp = await client.get(f"/users/{a.worker.id}", headers=a.client.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == a.worker.id and body["role"] == "worker" and body["member_id"] == a.worker.member_id
    assert body["display_name"]
    # another user's email is not part of what a client may see
    assert "email" not in body and a.worker.email not in resp.text


async def test_a_client_does_not_see_another_client(client, two_coops):
    a, _ = two_coops
    _assert_error(await client.get(f"/users/{a.client2.id}", headers=a.client.headers), 404, "user_not_found")
    _assert_error(await client.get(f"/users/{a.staff.id}", headers=a.client.headers), 404, "user_not_found")


async def test_a_worker_does_not_see_clients(client, two_coops):
    a, _ = two_coops
    _assert_error(await client.get(f"/users/{a.client.id}", headers=a.worker.headers), 404, "user_not_found")


async def test_a_user_sees_itself(client, two_coops):
    a, _ = two_coops
    resp = await client.get(f"/users/{a.client.id}", headers=a.client.headers)
    assert resp.status_code == 200 and resp.json()["id"] == a.client.id


@pytest.mark.parametrize("caller", ["staff", "board", "admin"])
async def test_staff_board_and_admin_see_every_user_of_their_cooperative(client, two_coops, caller):
    a, _ = two_coops
    headers = getattr(a, caller).headers
    for target in (a.client, a.client2, a.worker, a.staff, a.board, a.admin):
        resp = await client.get(f"/users/{target.id}", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == target.id and resp.json()["role"] == target.role


async def test_users_needs_authentication_and_a_uuid(client, two_coops):
    a, _ = two_coops
    _assert_error(await client.get(f"/users/{a.worker.id}"), 401, "not_authenticated")
    _assert_error(await client.get("/users/not-a-uuid", headers=a.client.headers), 422, "validation_error")


# ---- services -----------------------------------------------------------------------------------


async def test_services_are_listed_per_cooperative(client, two_coops):
    a, b = two_coops
    for coop, names in ((a, ["Gardening", "Cleaning"]), (b, ["Tutoring"])):
        for name in names:
            resp = await client.post("/services", json={"name": name, "vat_rate_bps": 2000},
                                     headers=coop.staff.headers)
            assert resp.status_code == 201, resp.text

    listed_a = await client.get("/services", params={"cooperative": "alpha"})
    assert listed_a.status_code == 200
    assert [s["name"] for s in listed_a.json()] == ["Cleaning", "Gardening"]
    assert all(set(s) == {"id", "name", "vat_rate_bps"} for s in listed_a.json())
    listed_b = (await client.get("/services", params={"cooperative": "beta"})).json()
    assert [s["name"] for s in listed_b] == ["Tutoring"]
    assert not {s["id"] for s in listed_a.json()} & {s["id"] for s in listed_b}


async def test_a_cooperative_with_no_services_lists_none(client, db):
    await make_cooperative(db, "empty")
    resp = await client.get("/services", params={"cooperative": "empty"})
    assert resp.status_code == 200 and resp.json() == []


async def test_unknown_cooperative_on_services_is_404(client, db):
    resp = await client.get("/services", params={"cooperative": "nowhere"})
    _assert_error(resp, 404, "cooperative_not_found")


@pytest.mark.parametrize("role", ["client", "worker", "board"])
async def test_only_staff_creates_services(client, two_coops, role):
    a, _ = two_coops
    resp = await client.post("/services", json={"name": "Plumbing", "vat_rate_bps": 2000},
                             headers=getattr(a, role).headers)
    _assert_error(resp, 403, "wrong_role")
    assert (await client.get("/services", params={"cooperative": "alpha"})).json() == []


async def test_creating_a_service_needs_authentication(client, two_coops):
    resp = await client.post("/services", json={"name": "Plumbing", "vat_rate_bps": 2000})
    _assert_error(resp, 401, "not_authenticated")


@pytest.mark.parametrize("role", ["staff", "admin"])
async def test_staff_creates_a_service_in_its_own_cooperative(client, two_coops, role):
    a, _ = two_coops
    resp = await client.post("/services", json={"name": "  Plumbing ", "vat_rate_bps": 550},
                             headers=getattr(a, role).headers)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    uuid.UUID(body["id"])
    assert body["name"] == "Plumbing" and body["vat_rate_bps"] == 550
    assert (await client.get("/services", params={"cooperative": "alpha"})).json() == [body]
    assert (await client.get("/services", params={"cooperative": "beta"})).json() == []


async def test_duplicate_service_name_is_409_within_a_cooperative_only(client, two_coops):
    a, b = two_coops
    body = {"name": "Gardening", "vat_rate_bps": 2000}
    assert (await client.post("/services", json=body, headers=a.staff.headers)).status_code == 201
    _assert_error(await client.post("/services", json=body, headers=a.staff.headers), 409, "service_exists")
    # the same name in another cooperative is fine
    assert (await client.post("/services", json=body, headers=b.staff.headers)).status_code == 201
    assert len((await client.get("/services", params={"cooperative": "alpha"})).json()) == 1


@pytest.mark.parametrize("payload", [
    {"name": "Gardening", "vat_rate_bps": -1},
    {"name": "Gardening", "vat_rate_bps": 10001},
    {"name": "Gardening", "vat_rate_bps": "twenty"},
    {"name": "Gardening", "vat_rate_bps": 20.5},
    {"name": "", "vat_rate_bps": 2000},
    {"name": "Gardening"},
])
async def test_invalid_service_is_422(client, two_coops, payload):
    a, _ = two_coops
    resp = await client.post("/services", json=payload, headers=a.staff.headers)
    _assert_error(resp, 422, "validation_error")
    assert resp.json()["error"]["details"]
    assert (await client.get("/services", params={"cooperative": "alpha"})).json() == []
