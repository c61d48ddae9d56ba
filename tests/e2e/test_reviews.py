"""Reviews of completed bookings (API.md `POST /bookings/{id}/review`): once per side, ratings that add up.

The booking flow is built separately: bookings are inserted here as rows in the state a test needs.
"""
from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.db import utcnow
from app.models import Booking, Member
from app.services import fee_schedules, tenancy
from tests.factories import Account, assert_error, make_cooperative, make_people, make_user

_day = itertools.count(2)


async def insert_booking(db, *, cooperative: str, client: Account, worker: Account | None,
                         status: str = "completed", final_price_cents: int | None = 18_000) -> str:
    """A booking row as the booking flow would leave it (3 h at 50 €/h excl. VAT, 20 % VAT)."""
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, cooperative)
        schedule = await fee_schedules.in_force(s, cooperative_id=coop.id, at=utcnow())
        service = await tenancy.create_service(s, cooperative_id=coop.id, name=f"Cleaning {uuid.uuid4().hex[:8]}",
                                               vat_rate_bps=2000, actor_user_id=None)
        # A day apart each: a worker never holds two overlapping bookings (an exclusion constraint).
        starts_at = utcnow() - timedelta(days=next(_day))
        values = dict(
            cooperative_id=coop.id, client_user_id=uuid.UUID(client.id), service_id=service.id,
            worker_member_id=uuid.UUID(worker.member_id) if worker else None, status=status,
            starts_at=starts_at, ends_at=starts_at + timedelta(hours=3), duration_minutes=180,
            lat=48.8566, lon=2.3522, address="1 rue de Rivoli, Paris", currency="EUR", vat_rate_bps=2000,
            hourly_rate_cents=5000, price_cents=18_000, authorized_cents=18_000, price_excl_vat_cents=15_000,
            breakdown={}, fee_schedule_id=schedule.id, quote_terms={},
            actual_minutes=180 if status == "completed" else None,
            final_price_cents=final_price_cents if status == "completed" else None,
            payment_provider="stripe", payment_status="captured" if status == "completed" else "authorized")
        # The booking model is still growing in the booking flow's branch: set only the fields it has.
        booking = Booking(**{k: v for k, v in values.items() if k in Booking.model_fields})
        s.add(booking)
        await s.commit()
        return str(booking.id)


async def member_rating(db, member_id: str) -> tuple[int, int]:
    async with db.sessionmaker() as s:
        m = (await s.execute(select(Member).where(Member.id == uuid.UUID(member_id)))).scalar_one()
        return m.rating_sum, m.rating_count


@dataclass
class Coop:
    slug: str
    client: Account
    client2: Account
    worker: Account
    worker2: Account
    staff: Account
    board: Account


@pytest.fixture
async def coop(client, db, settings) -> Coop:
    slug, people = await make_people(client, db, settings, [
        ("client", "client"), ("client2", "client"), ("worker", "worker"), ("worker2", "worker"),
        ("staff", "staff"), ("board", "board")])
    return Coop(slug=slug, **people)


_error = assert_error


async def _review(client, booking_id: str, who: Account, rating: int, comment: str | None = None):
    body = {"rating": rating} if comment is None else {"rating": rating, "comment": comment}
    return await client.post(f"/bookings/{booking_id}/review", json=body, headers=who.headers)


# ---- once per side, after completion ------------------------------------------------------------


async def test_each_side_reviews_the_other_once(client, db, coop):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)

    by_client = await _review(client, booking, coop.client, 5, "  Spotless, on time.  ")
    assert by_client.status_code == 201, by_client.text
    body = by_client.json()
    assert body["author_role"] == "client" and body["rating"] == 5 and body["comment"] == "Spotless, on time."
    assert body["subject_user_id"] == coop.worker.id and body["booking_id"] == booking

    by_worker = await _review(client, booking, coop.worker, 4)
    assert by_worker.status_code == 201, by_worker.text
    assert by_worker.json()["author_role"] == "worker" and by_worker.json()["subject_user_id"] == coop.client.id
    assert by_worker.json()["comment"] is None

    _error(await _review(client, booking, coop.client, 1), 409, "already_reviewed")
    _error(await _review(client, booking, coop.worker, 1), 409, "already_reviewed")

    for side in (coop.client, coop.worker):
        listed = await client.get(f"/bookings/{booking}/reviews", headers=side.headers)
        assert listed.status_code == 200
        assert sorted((r["author_role"], r["rating"]) for r in listed.json()) == [("client", 5), ("worker", 4)]
    # The refused second reviews changed nothing: only the client's first rating counts for the worker.
    assert await member_rating(db, coop.worker.member_id) == (5, 1)


@pytest.mark.parametrize("status", ["offered", "accepted", "in_progress", "cancelled", "refunded"])
async def test_a_booking_that_is_not_completed_cannot_be_reviewed(client, db, coop, status):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker,
                                   status=status)
    _error(await _review(client, booking, coop.client, 5), 409, "booking_not_completed")
    _error(await _review(client, booking, coop.worker, 5), 409, "booking_not_completed")
    assert (await client.get(f"/bookings/{booking}/reviews", headers=coop.client.headers)).json() == []
    assert await member_rating(db, coop.worker.member_id) == (0, 0)


async def test_only_the_two_sides_may_review_anyone_else_gets_404(client, db, settings, coop):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    other_slug = await make_cooperative(db)
    foreign_client = await make_user(client, db, settings, cooperative=other_slug, role="client")
    for outsider in (coop.client2, coop.worker2, coop.staff, coop.board, foreign_client):
        _error(await _review(client, booking, outsider, 5), 404, "booking_not_found")
    for outsider in (coop.client2, coop.worker2, foreign_client):
        _error(await client.get(f"/bookings/{booking}/reviews", headers=outsider.headers), 404, "booking_not_found")
    _error(await _review(client, str(uuid.uuid4()), coop.client, 5), 404, "booking_not_found")
    assert await member_rating(db, coop.worker.member_id) == (0, 0)
    assert (await client.post(f"/bookings/{booking}/review", json={"rating": 5})).status_code == 401


@pytest.mark.parametrize("body", [{"rating": 0}, {"rating": 6}, {"rating": 2.5}, {"rating": "five"}, {},
                                  {"rating": 4, "comment": "x" * 2001}, {"rating": 4, "author_role": "worker"}])
async def test_invalid_reviews_are_422(client, db, coop, body):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    resp = await client.post(f"/bookings/{booking}/review", json=body, headers=coop.client.headers)
    _error(resp, 422, "validation_error")
    assert (await _review(client, booking, coop.client, 4, "x" * 2000)).status_code == 201


# ---- races ----------------------------------------------------------------------------------------


async def test_a_double_review_sent_at_once_is_one_201_and_one_409(client, db, coop):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    first, second = await asyncio.gather(_review(client, booking, coop.client, 4),
                                         _review(client, booking, coop.client, 2))
    assert sorted([first.status_code, second.status_code]) == [201, 409], (first.text, second.text)
    loser = first if first.status_code == 409 else second
    winner = second if loser is first else first
    assert loser.json()["error"]["code"] == "already_reviewed"
    assert await member_rating(db, coop.worker.member_id) == (winner.json()["rating"], 1)
    listed = (await client.get(f"/bookings/{booking}/reviews", headers=coop.worker.headers)).json()
    assert [r["id"] for r in listed] == [winner.json()["id"]]


async def test_concurrent_reviews_of_one_worker_never_lose_an_update(client, db, settings, coop):
    ratings = [5, 4, 3, 5, 1, 2, 5, 4]
    clients = [await make_user(client, db, settings, cooperative=coop.slug, role="client") for _ in ratings]
    bookings = [await insert_booking(db, cooperative=coop.slug, client=c, worker=coop.worker) for c in clients]
    results = await asyncio.gather(*[_review(client, b, c, r) for b, c, r in zip(bookings, clients, ratings)])
    assert [r.status_code for r in results] == [201] * len(ratings)
    assert await member_rating(db, coop.worker.member_id) == (sum(ratings), len(ratings))


# ---- what people see -----------------------------------------------------------------------------


async def test_the_rating_average_shows_on_the_public_profile(client, db, settings, coop):
    profile = (await client.get(f"/members/{coop.worker.member_id}", headers=coop.client2.headers)).json()
    assert profile["rating"] == {"average": None, "count": 0}

    first = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    second = await insert_booking(db, cooperative=coop.slug, client=coop.client2, worker=coop.worker)
    third = await insert_booking(db, cooperative=coop.slug, client=coop.client2, worker=coop.worker)
    assert (await _review(client, first, coop.client, 5)).status_code == 201
    assert (await _review(client, second, coop.client2, 2)).status_code == 201
    assert (await _review(client, third, coop.client2, 4)).status_code == 201
    # The worker's opinion of a client is not the worker's own rating.
    assert (await _review(client, first, coop.worker, 1)).status_code == 201

    for viewer in (coop.client2, coop.worker2, coop.staff):
        profile = (await client.get(f"/members/{coop.worker.member_id}", headers=viewer.headers)).json()
        assert profile["rating"] == {"average": 3.67, "count": 3}, viewer.role
    mine = (await client.get("/members/me", headers=coop.worker.headers)).json()
    assert mine["rating"] == {"average": 3.67, "count": 3}
    other = (await client.get(f"/members/{coop.worker2.member_id}", headers=coop.client.headers)).json()
    assert other["rating"] == {"average": None, "count": 0}


# ---- contesting a review -------------------------------------------------------------------------


async def _reviewed_twice(client, db, coop) -> tuple[str, str]:
    """The worker gets a 5 and a 1 from clients; returns (booking of the 1, id of the 1-star review)."""
    good = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    bad = await insert_booking(db, cooperative=coop.slug, client=coop.client2, worker=coop.worker)
    assert (await _review(client, good, coop.client, 5)).status_code == 201
    resp = await _review(client, bad, coop.client2, 1, "Never came back to finish.")
    assert resp.status_code == 201
    return bad, resp.json()["id"]


async def _appeal_review(client, worker: Account, review_id: str):
    return await client.post("/members/me/appeals", headers=worker.headers, json={
        "kind": "review", "target_id": review_id, "statement": "The client cancelled the second visit herself."})


async def test_an_upheld_review_appeal_hides_it_and_removes_it_from_the_rating(client, db, coop):
    bad, review_id = await _reviewed_twice(client, db, coop)
    assert (await client.get(f"/members/{coop.worker.member_id}", headers=coop.client.headers)).json()["rating"] \
        == {"average": 3.0, "count": 2}

    appeal = await _appeal_review(client, coop.worker, review_id)
    assert appeal.status_code == 201, appeal.text
    assert appeal.json()["kind"] == "review" and appeal.json()["status"] == "open"
    _error(await _appeal_review(client, coop.worker, review_id), 409, "appeal_already_open")

    decided = await client.post(f"/appeals/{appeal.json()['id']}/decision", headers=coop.staff.headers,
                                json={"outcome": "upheld", "note": "The booking log shows the client cancelled."})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "upheld"

    assert (await client.get(f"/members/{coop.worker.member_id}", headers=coop.client.headers)).json()["rating"] \
        == {"average": 5.0, "count": 1}
    assert await member_rating(db, coop.worker.member_id) == (5, 1)
    # Hidden from both sides; staff still sees it, marked hidden.
    for side in (coop.client2, coop.worker):
        assert (await client.get(f"/bookings/{bad}/reviews", headers=side.headers)).json() == []
    staff_view = (await client.get(f"/bookings/{bad}/reviews", headers=coop.staff.headers)).json()
    assert [(r["id"], r["hidden"]) for r in staff_view] == [(review_id, True)]
    # Nothing left to contest, and the decision stands.
    _error(await _appeal_review(client, coop.worker, review_id), 409, "review_already_hidden")
    mine = (await client.get("/members/me/appeals", headers=coop.worker.headers)).json()
    assert [(a["status"], a["decision_note"]) for a in mine] == [
        ("upheld", "The booking log shows the client cancelled.")]
    events = (await client.get("/audit/events", params={"action": "review.hidden"}, headers=coop.board.headers)).json()
    assert [e["target_id"] for e in events] == [review_id]


async def test_a_rejected_review_appeal_keeps_the_review_and_the_rating(client, db, coop):
    bad, review_id = await _reviewed_twice(client, db, coop)
    appeal = (await _appeal_review(client, coop.worker, review_id)).json()
    decided = await client.post(f"/appeals/{appeal['id']}/decision", headers=coop.staff.headers,
                                json={"outcome": "rejected", "note": "The client's account is consistent."})
    assert decided.status_code == 200 and decided.json()["status"] == "rejected"
    assert await member_rating(db, coop.worker.member_id) == (6, 2)
    assert [r["id"] for r in (await client.get(f"/bookings/{bad}/reviews", headers=coop.worker.headers)).json()] \
        == [review_id]
    _error(await client.post(f"/appeals/{appeal['id']}/decision", headers=coop.staff.headers,
                             json={"outcome": "upheld", "note": "Changed my mind after all."}),
           409, "appeal_already_decided")
    assert await member_rating(db, coop.worker.member_id) == (6, 2)


async def test_only_reviews_about_oneself_can_be_contested(client, db, coop):
    booking = await insert_booking(db, cooperative=coop.slug, client=coop.client, worker=coop.worker)
    by_worker = (await _review(client, booking, coop.worker, 2)).json()   # about the client
    by_client = (await _review(client, booking, coop.client, 2)).json()   # about coop.worker
    _error(await _appeal_review(client, coop.worker, by_worker["id"]), 404, "review_not_found")
    _error(await _appeal_review(client, coop.worker2, by_client["id"]), 404, "review_not_found")
    _error(await _appeal_review(client, coop.worker, str(uuid.uuid4())), 404, "review_not_found")
    # Clients are not members: the appeal route is the worker's.
    _error(await client.post("/members/me/appeals", headers=coop.client.headers, json={
        "kind": "review", "target_id": by_worker["id"], "statement": "I did pay on time, see receipt."}),
        403, "wrong_role")
    assert (await _appeal_review(client, coop.worker, by_client["id"])).status_code == 201
