"""The booking lifecycle through the HTTP API: match, book, offer, accept, start, complete, cancel,
expire, with the payment steps behind the port (demo gateway here) and the ledger at the end."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest

from sqlalchemy import select, text, update

from app.domain import ledger as ledger_rules
from app.models import Booking, BookingEvent, BookingOffer, User
from app.models.marketplace_api import BookingPublic, Match
from app.services import bookings, ledger, quotes, tenancy
from tests.factories import make_user
from tests.market import Clock, add_worker, booking_body, make_market, next_day_at, set_coop_settings


@pytest.fixture
def clock(app):
    app.state.clock = Clock()
    return app.state.clock


def _sum_lines(breakdown: dict) -> int:
    return sum(line["amount_cents"] for line in breakdown["lines"])


async def _member_balance(db, slug: str, member_id: str) -> int:
    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, slug)
        return -await ledger.account_balance(s, cooperative_id=coop.id, code=ledger_rules.member_activity(member_id))


async def test_matches_are_ranked_priced_and_explained(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=3)
    resp = await client.get("/matches", headers=market.client.headers, params={
        "service_id": market.service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": 180,
        "lat": 45.7640, "lon": 4.8357})
    assert resp.status_code == 200, resp.text
    matches = resp.json()
    assert [m["worker_id"] for m in matches] == [w.member_id for w in market.workers]  # nearest first here
    for m in matches:
        # exactly the contract's fields (the route writes its JSON itself)
        assert list(m) == list(Match.model_fields) and Match.model_validate(m)
        assert _sum_lines(m["breakdown"]) == m["price_cents"] == m["breakdown"]["price_cents"]
        assert m["why"]["distance_km"] == pytest.approx(m["distance_km"], abs=0.01)
        assert set(m["why"]) >= {"distance_term", "rating_term", "fair_share_term", "weights", "score"}
    # 30.00 €/h × 3 h = 90.00 € excl. VAT + 20% VAT
    assert matches[0]["price_cents"] == 10800


async def test_matching_excludes_ineligible_workers(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    far = await add_worker(client, db, settings, market, offset_km=40.0, radius_km=10.0)
    not_free = await add_worker(client, db, settings, market, windows=[(next_day_at(14), next_day_at(18))])
    suspended = await add_worker(client, db, settings, market)
    from tests.market import place_worker
    await place_worker(db, suspended.member_id, lat=45.7640, lon=4.8357, suspended=True)
    other = await make_market(client, db, settings, workers=1)  # another cooperative, same city
    resp = await client.get("/matches", headers=market.client.headers, params={
        "service_id": market.service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": 120,
        "lat": 45.7640, "lon": 4.8357})
    ids = {m["worker_id"] for m in resp.json()}
    assert ids == {market.workers[0].member_id}
    assert not ids & {far.member_id, not_free.member_id, suspended.member_id, other.workers[0].member_id}
    resp = await client.get("/matches", headers=market.client.headers, params={
        "service_id": other.service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": 120,
        "lat": 45.7640, "lon": 4.8357})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_service"


async def test_fair_share_ranks_the_member_with_less_work_first(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=2)
    busy, idle = market.workers
    await set_coop_settings(db, market.slug, matching_weight_distance=0, matching_weight_rating=0,
                            matching_weight_fair_share=100)
    # busy works an 8-hour gig earlier that day (same month, different hours)
    morning = await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, starts_at=next_day_at(0, 3), minutes=480,
                                                  worker_id=busy.member_id))
    assert morning.status_code == 201, morning.text
    assert (await client.post(f"/bookings/{morning.json()['id']}/accept", headers=busy.headers)).status_code == 200
    resp = await client.get("/matches", headers=market.client.headers, params={
        "service_id": market.service_id, "starts_at": next_day_at(10, 3).isoformat(), "duration_minutes": 60,
        "lat": 45.7640, "lon": 4.8357})
    matches = resp.json()
    if next_day_at(0, 3).month == next_day_at(10, 3).month:
        assert [m["worker_id"] for m in matches] == [idle.member_id, busy.member_id]
        assert matches[1]["why"]["booked_hours_this_month"] == 8.0
        assert matches[0]["why"]["fair_share_term"] > matches[1]["why"]["fair_share_term"]


async def test_direct_booking_full_lifecycle_posts_the_quoted_split_to_the_ledger(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=2)
    worker = market.workers[1]
    resp = await client.post("/bookings", headers=market.client.headers,
                             json=booking_body(market, worker_id=worker.member_id))
    assert resp.status_code == 201, resp.text
    booking = resp.json()
    assert booking["status"] == "offered" and booking["payment"]["provider"] == "demo"
    assert booking["price_cents"] == _sum_lines(booking["breakdown"]) == 11160  # 31 €/h × 3 h + 20% VAT
    offers = (await client.get("/offers", headers=worker.headers)).json()
    assert [o["booking_id"] for o in offers] == [booking["id"]] and offers[0]["why"]["score"] > 0
    assert (await client.get("/offers", headers=market.workers[0].headers)).json() == []

    accepted = await client.post(f"/bookings/{booking['id']}/accept", headers=worker.headers)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert accepted.json()["address"] == "1 place Bellecour, Lyon"
    early = await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)
    assert early.status_code == 409 and early.json()["error"]["code"] == "too_early"
    clock.advance(timedelta(days=1, hours=12))
    assert (await client.post(f"/bookings/{booking['id']}/start", headers=worker.headers)).json()["status"] == "in_progress"
    too_long = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 181},
                                 headers=worker.headers)
    assert too_long.status_code == 422
    done = await client.post(f"/bookings/{booking['id']}/complete", json={"actual_minutes": 150},
                             headers=worker.headers)
    assert done.status_code == 200, done.text
    final = done.json()
    # 31 €/h × 2.5 h = 77.50 € + 15.50 € VAT: never more than booked
    assert final["status"] == "completed" and final["final_price_cents"] == final["price_cents"] == 9300
    assert _sum_lines(final["breakdown"]) == 9300 and final["payment"]["status"] == "captured"
    lines = {line["code"]: line["amount_cents"] for line in final["breakdown"]["lines"]}
    budget = lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"]
    assert await _member_balance(db, market.slug, worker.member_id) == budget
    detail = (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()
    assert [e["to_status"] for e in detail["events"]] == ["pending_payment", "offered", "accepted", "in_progress",
                                                          "completed"]
    assert detail["events"][2]["actor_role"] == "worker"


async def test_open_booking_first_acceptance_wins_and_closes_other_offers(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=3)
    resp = await client.post("/bookings", headers=market.client.headers, json=booking_body(market))
    assert resp.status_code == 201
    booking = resp.json()
    # the hold covers the dearest offer (32 €/h)
    assert booking["price_cents"] == 11520
    for w in market.workers:
        assert [o["booking_id"] for o in (await client.get("/offers", headers=w.headers)).json()] == [booking["id"]]
    second = market.workers[1]
    won = await client.post(f"/bookings/{booking['id']}/accept", headers=second.headers)
    assert won.status_code == 200 and won.json()["worker_id"] == second.member_id
    assert won.json()["price_cents"] == 11160  # the accepting worker's own rate
    lost = await client.post(f"/bookings/{booking['id']}/accept", headers=market.workers[0].headers)
    assert lost.status_code == 409 and lost.json()["error"]["code"] == "already_taken"
    assert (await client.get("/offers", headers=market.workers[2].headers)).json() == []


async def test_acceptance_changes_exactly_the_booking_its_offers_and_records_who(client, db, settings, clock):
    """What an acceptance writes, row by row: the winner's terms on the booking, the winner's offer
    accepted and the others withdrawn (each still the same worker's), one event with who and what."""
    market = await make_market(client, db, settings, workers=3)
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    other = (await client.post("/bookings", headers=market.client.headers,
                               json=booking_body(market, starts_at=next_day_at(16)))).json()
    winner = market.workers[2]
    clock.advance(timedelta(minutes=3))
    before = clock()
    won = await client.post(f"/bookings/{booking['id']}/accept", headers=winner.headers)
    after = clock()
    assert won.status_code == 200, won.text
    async with db.sessionmaker() as s:
        rows = {str(o.member_id): o for o in (await s.execute(
            select(BookingOffer).where(BookingOffer.booking_id == uuid.UUID(booking["id"])))).scalars()}
        b = await s.get(Booking, uuid.UUID(booking["id"]))
        untouched = list((await s.execute(select(BookingOffer.status, BookingOffer.member_id).where(
            BookingOffer.booking_id == uuid.UUID(other["id"])))).all())
        events = list((await s.execute(select(BookingEvent).where(
            BookingEvent.booking_id == b.id, BookingEvent.to_status == "accepted"))).scalars())
    assert set(rows) == {w.member_id for w in market.workers}
    assert rows[winner.member_id].status == "accepted" and before <= rows[winner.member_id].responded_at <= after
    assert {rows[w.member_id].status for w in market.workers[:2]} == {"withdrawn"}
    assert all(rows[w.member_id].responded_at is None for w in market.workers[:2])
    assert str(b.worker_member_id) == winner.member_id and b.hourly_rate_cents == rows[winner.member_id].hourly_rate_cents
    assert b.price_cents == rows[winner.member_id].price_cents == won.json()["price_cents"]
    assert b.breakdown == rows[winner.member_id].breakdown and b.quote_terms == rows[winner.member_id].quote_terms
    assert b.price_excl_vat_cents == quotes.price_excl_vat(b.hourly_rate_cents, b.duration_minutes)
    assert str(b.cooperative_id) == str(rows[winner.member_id].cooperative_id) and before <= b.updated_at <= after
    # the other booking's offers are still open, each with its own worker
    assert sorted((st, str(m)) for st, m in untouched) == sorted(("open", w.member_id) for w in market.workers)
    assert [(e.from_status, str(e.actor_user_id), e.actor_role, e.data) for e in events] == [
        ("offered", winner.id, "worker", {"offer_rank": rows[winner.member_id].rank,
                                                "price_cents": rows[winner.member_id].price_cents})]


async def _set_user(db, user_id: str, **values) -> None:
    async with db.sessionmaker() as s:
        await s.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))
        await s.commit()


async def test_acceptance_checks_the_account_behind_the_token_and_says_why_it_refuses(client, db, settings, clock):
    """The acceptance checks the caller's account in its own statement: a stale token is a 401
    before anything else, and every refusal names its reason; none of them changes the booking."""
    market = await make_market(client, db, settings, workers=4)
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    url = f"/bookings/{booking['id']}/accept"
    gone, demoted, suspended, declining = market.workers

    async def refused(account, status: int, code: str, still: tuple = ("offered", None)) -> None:
        resp = await client.post(url, headers=account.headers)
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
        async with db.sessionmaker() as s:
            seen = await s.get(Booking, uuid.UUID(booking["id"]))
        assert (seen.status, seen.worker_member_id) == still

    await _set_user(db, gone.id, is_active=False)
    await refused(gone, 401, "invalid_token")
    await _set_user(db, demoted.id, role="client")  # the token still says worker
    await refused(demoted, 401, "invalid_token")
    await _set_user(db, market.client.id, is_active=False)  # a stale client token: 401, not 403
    await refused(market.client, 401, "invalid_token")
    await _set_user(db, market.client.id, is_active=True)
    await refused(market.client, 403, "wrong_role")
    await client.post(f"/members/{suspended.member_id}/suspend", headers=market.staff.headers,
                      json={"reason": "Repeated no-shows reported by clients."})
    await refused(suspended, 403, "member_not_active")
    assert (await client.post(f"/bookings/{booking['id']}/decline", headers=declining.headers)).status_code == 200
    await refused(declining, 409, "offer_closed")
    # once the account is valid again, the same token works, and the booking is taken
    await _set_user(db, gone.id, is_active=True)
    won = await client.post(url, headers=gone.headers)
    assert won.status_code == 200 and won.json()["worker_id"] == gone.member_id
    assert set(won.json()) == set(BookingPublic.model_fields) and won.json()["address"] is not None
    assert won.json()["payment"]["client_secret"] is None  # the client's only
    # byte for byte what every other route shows the worker of this booking (booking_public)
    from app.routers.bookings import booking_public
    async with db.sessionmaker() as s:
        held = await s.get(Booking, uuid.UUID(booking["id"]))
    assert won.content == booking_public(held, role="worker", member_id=held.worker_member_id).model_dump_json().encode()
    shown = (await client.get(f"/bookings/{booking['id']}", headers=gone.headers)).json()
    assert {k: v for k, v in shown.items() if k != "events"} == {k: v for k, v in won.json().items() if k != "events"}
    await _set_user(db, demoted.id, role="worker")
    await refused(demoted, 409, "already_taken", still=("accepted", uuid.UUID(gone.member_id)))
    cancelled = (await client.post("/bookings", headers=market.client.headers,
                                   json=booking_body(market, starts_at=next_day_at(16)))).json()
    assert (await client.post(f"/bookings/{cancelled['id']}/cancel", headers=market.client.headers,
                              json={"reason": "plans changed"})).status_code == 200
    resp = await client.post(f"/bookings/{cancelled['id']}/accept", headers=demoted.headers)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "wrong_state"


async def test_max_price_limits_who_is_offered(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=3)
    resp = await client.post("/bookings", headers=market.client.headers, json=booking_body(market, max_price_cents=11000))
    assert resp.status_code == 201
    assert [len((await client.get("/offers", headers=w.headers)).json()) for w in market.workers] == [1, 0, 0]
    resp = await client.post("/bookings", headers=market.client.headers,
                             json=booking_body(market, max_price_cents=100, starts_at=next_day_at(15)))
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "no_available_worker"


async def test_offers_expire_and_an_open_booking_without_taker_expires(client, db, settings, app, clock):
    market = await make_market(client, db, settings, workers=1)
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    clock.advance(timedelta(minutes=31))
    late = await client.post(f"/bookings/{booking['id']}/accept", headers=market.workers[0].headers)
    assert late.status_code == 409 and late.json()["error"]["code"] == "offer_expired"
    assert (await client.get("/offers", headers=market.workers[0].headers)).json() == []
    async with db.sessionmaker() as s:
        assert await bookings.expire_due(s, app.state.gateway, app.state.rate_cards, now=clock()) == 1
    after = (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()
    assert after["status"] == "expired" and after["payment"]["status"] == "released"


async def _same_rate_market(client, db, settings):
    """Two workers at one rate, offers one at a time: the payment hold covers either of them."""
    market = await make_market(client, db, settings, workers=0)
    await set_coop_settings(db, market.slug, open_booking_candidates=1)
    for km in (1.0, 2.0):
        await add_worker(client, db, settings, market, rate=3000, offset_km=km)
    return market


async def test_a_pricier_worker_is_not_offered_more_than_the_payment_holds(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=2)  # 30 €/h then 31 €/h
    await set_coop_settings(db, market.slug, open_booking_candidates=1)
    first, second = market.workers
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    declined = await client.post(f"/bookings/{booking['id']}/decline", headers=first.headers)
    assert declined.json()["status"] == "expired" and declined.json()["payment"]["status"] == "released"
    assert (await client.get("/offers", headers=second.headers)).json() == []


async def test_decline_passes_the_booking_on_and_a_declined_direct_booking_expires(client, db, settings, clock):
    market = await _same_rate_market(client, db, settings)
    first, second = market.workers
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    assert (await client.post(f"/bookings/{booking['id']}/decline", headers=first.headers)).status_code == 200
    offers = (await client.get("/offers", headers=second.headers)).json()
    assert [o["booking_id"] for o in offers] == [booking["id"]]
    direct = (await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=first.member_id, starts_at=next_day_at(15)))).json()
    declined = await client.post(f"/bookings/{direct['id']}/decline", headers=first.headers)
    assert declined.json()["status"] == "expired"
    again = await client.post(f"/bookings/{direct['id']}/decline", headers=first.headers)
    assert again.status_code == 409


async def test_client_cancellation_is_free_early_and_pays_the_worker_late(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    early = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    await client.post(f"/bookings/{early['id']}/accept", headers=worker.headers)
    resp = await client.post(f"/bookings/{early['id']}/cancel", json={"reason": "plans changed"},
                             headers=market.client.headers)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "cancelled" and body["final_price_cents"] is None
    assert body["payment"]["status"] == "released" and body["cancelled_by"] == "client"

    late = (await client.post("/bookings", headers=market.client.headers,
                              json=booking_body(market, starts_at=next_day_at(15)))).json()
    await client.post(f"/bookings/{late['id']}/accept", headers=worker.headers)
    # 20 hours before the start: inside the 24 h notice (whatever the time of day the test runs at)
    clock.advance(datetime.fromisoformat(late["starts_at"]) - timedelta(hours=20) - clock())
    resp = await client.post(f"/bookings/{late['id']}/cancel", json={"reason": "sick"}, headers=market.client.headers)
    body = resp.json()
    # half of 30 €/h × 3 h = 45.00 € + VAT goes to the worker as turnover
    assert body["status"] == "cancelled" and body["final_price_cents"] == 5400 == _sum_lines(body["breakdown"])
    lines = {line["code"]: line["amount_cents"] for line in body["breakdown"]["lines"]}
    assert await _member_balance(db, market.slug, worker.member_id) == (
        lines["employer_contributions"] + lines["employee_contributions"] + lines["net_salary"])
    twice = await client.post(f"/bookings/{late['id']}/cancel", json={"reason": "again"}, headers=market.client.headers)
    assert twice.status_code == 409


async def test_a_worker_giving_a_booking_back_sends_it_to_others(client, db, settings, clock):
    market = await _same_rate_market(client, db, settings)
    first, second = market.workers
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    await client.post(f"/bookings/{booking['id']}/accept", headers=first.headers)
    resp = await client.post(f"/bookings/{booking['id']}/cancel", json={"reason": "bike broke"}, headers=first.headers)
    assert resp.status_code == 200
    assert (await client.get(f"/bookings/{booking['id']}", headers=market.client.headers)).json()["status"] == "offered"
    assert [o["booking_id"] for o in (await client.get("/offers", headers=second.headers)).json()] == [booking["id"]]
    assert (await client.get("/offers", headers=first.headers)).json() == []
    assert (await client.post(f"/bookings/{booking['id']}/accept", headers=second.headers)).status_code == 200


async def test_authorization_and_tenancy_of_bookings(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=2)
    other = await make_market(client, db, settings, workers=1)
    booking = (await client.post("/bookings", headers=market.client.headers,
                                 json=booking_body(market, worker_id=market.workers[0].member_id))).json()
    stranger = await make_user(client, db, settings, cooperative=market.slug, role="client")
    for headers in (stranger.headers, other.client.headers, other.workers[0].headers, market.workers[1].headers):
        resp = await client.get(f"/bookings/{booking['id']}", headers=headers)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "booking_not_found"
    resp = await client.post(f"/bookings/{booking['id']}/accept", headers=market.workers[1].headers)
    assert resp.status_code == 404
    resp = await client.post(f"/bookings/{booking['id']}/accept", headers=other.workers[0].headers)
    assert resp.status_code == 404
    resp = await client.post(f"/bookings/{booking['id']}/accept", headers=market.client.headers)
    assert resp.status_code == 403
    assert (await client.get("/offers", headers=other.workers[0].headers)).json() == []
    resp = await client.post("/bookings", headers=market.workers[0].headers, json=booking_body(market))
    assert resp.status_code == 403
    resp = await client.post("/bookings", headers=market.client.headers,
                             json=booking_body(market, worker_id=other.workers[0].member_id))
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_worker"
    assert (await client.get(f"/bookings/{uuid.uuid4()}", headers=market.client.headers)).status_code == 404
    resp = await client.get("/bookings", headers=market.workers[0].headers)
    assert [b["id"] for b in resp.json()] == [booking["id"]] and resp.json()[0]["address"] is None
    assert resp.json()[0]["payment"]["client_secret"] is None


async def test_bad_booking_input_is_a_clear_4xx(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    past = booking_body(market, starts_at=next_day_at(10, -1))
    resp = await client.post("/bookings", headers=market.client.headers, json=past)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "too_soon"
    resp = await client.post("/bookings", headers=market.client.headers, json={**booking_body(market),
                                                                              "duration_minutes": 5})
    assert resp.status_code == 422
    naive = {**booking_body(market), "starts_at": "2030-01-01T10:00:00"}
    assert (await client.post("/bookings", headers=market.client.headers, json=naive)).status_code == 422
    resp = await client.post("/bookings", headers=market.client.headers,
                             json={**booking_body(market), "service_id": str(uuid.uuid4())})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "unknown_service"


async def test_offerings_below_the_fair_pay_floor_are_refused(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    offered = (await client.get("/members/me/offerings", headers=worker.headers)).json()
    floor = offered[0]["fair_pay_floor_cents"]
    assert 1200 < floor < 2500  # net SMIC ≈ 9.5 €/h after VAT, processing, contribution, contributions
    resp = await client.put("/members/me/offerings", headers=worker.headers,
                            json=[{"service_id": market.service_id, "hourly_rate_cents": floor - 1}])
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "below_fair_pay_floor" and str(floor) in error["message"]
    resp = await client.put("/members/me/offerings", headers=worker.headers,
                            json=[{"service_id": market.service_id, "hourly_rate_cents": floor}])
    assert resp.status_code == 200 and resp.json()[0]["hourly_rate_cents"] == floor


@pytest.mark.postgres
async def test_twenty_workers_racing_for_one_booking_exactly_one_wins(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=0)
    await set_coop_settings(db, market.slug, open_booking_candidates=20)
    for i in range(20):
        await add_worker(client, db, settings, market, rate=3000, offset_km=0.5 + i * 0.1)
    booking = (await client.post("/bookings", headers=market.client.headers, json=booking_body(market))).json()
    results = await asyncio.gather(*(client.post(f"/bookings/{booking['id']}/accept", headers=w.headers)
                                     for w in market.workers))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * 19
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {"already_taken"}


async def _two_overlapping_offers(client, db, settings, **coop_settings):
    """One worker, offered two direct bookings that overlap (10:00-13:00 and 11:00-14:00)."""
    market = await make_market(client, db, settings, workers=1)
    if coop_settings:
        await set_coop_settings(db, market.slug, **coop_settings)
    worker = market.workers[0]
    a = (await client.post("/bookings", headers=market.client.headers,
                           json=booking_body(market, worker_id=worker.member_id))).json()
    b = (await client.post("/bookings", headers=market.client.headers,
                           json=booking_body(market, worker_id=worker.member_id, starts_at=next_day_at(11)))).json()
    return market, worker, a, b


@pytest.mark.postgres
async def test_one_worker_accepting_two_overlapping_bookings_at_once_gets_one(client, db, settings, clock):
    market, worker, a, b = await _two_overlapping_offers(client, db, settings)
    results = await asyncio.gather(*(client.post(f"/bookings/{x['id']}/accept", headers=worker.headers) for x in (a, b)))
    assert sorted(r.status_code for r in results) == [200, 409]
    assert [r.json()["error"]["code"] for r in results if r.status_code == 409] == ["overlapping_booking"]


async def test_a_booking_finished_early_no_longer_holds_the_rest_of_its_slot(client, db, settings, clock):
    """The no-overlap rule is about bookings a worker holds (accepted, in progress): on both
    databases, an overlapping offer is refused while the first booking is held, and can be
    accepted once that booking is completed (here at 10:30, half an hour into 10:00-13:00, before
    the second one starts at 11:00)."""
    market, worker, a, b = await _two_overlapping_offers(client, db, settings, offer_ttl_minutes=3 * 24 * 60)
    assert (await client.post(f"/bookings/{a['id']}/accept", headers=worker.headers)).status_code == 200
    held = await client.post(f"/bookings/{b['id']}/accept", headers=worker.headers)
    assert held.status_code == 409 and held.json()["error"]["code"] == "overlapping_booking"
    clock.advance(datetime.fromisoformat(a["starts_at"]) + timedelta(minutes=30) - clock())
    assert (await client.post(f"/bookings/{a['id']}/start", headers=worker.headers)).status_code == 200
    held = await client.post(f"/bookings/{b['id']}/accept", headers=worker.headers)
    assert held.status_code == 409 and held.json()["error"]["code"] == "overlapping_booking"
    done = await client.post(f"/bookings/{a['id']}/complete", json={"actual_minutes": 30}, headers=worker.headers)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    resp = await client.post(f"/bookings/{b['id']}/accept", headers=worker.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "accepted" and resp.json()["worker_id"] == worker.member_id
    mine = (await client.get("/bookings", headers=worker.headers)).json()
    assert sorted((x["id"], x["status"]) for x in mine) == sorted([(a["id"], "completed"), (b["id"], "accepted")])


@pytest.mark.postgres
async def test_an_acceptance_aborted_by_a_deadlock_is_retried_and_refused_cleanly(client, db, settings, clock):
    """The deadlock the race above can hit, made to happen every time: another transaction holds
    an overlapping booking of the worker (uncommitted), the acceptance's exclusion check waits for
    it, and that transaction then waits for the booking the acceptance has locked. PostgreSQL
    aborts the acceptance; it must be run again (not answered 500) and then be refused because the
    other booking committed."""
    market, worker, a, b = await _two_overlapping_offers(client, db, settings)
    async with db.engine.connect() as other, db.engine.connect() as watcher:
        await other.execute(update(Booking).where(Booking.id == uuid.UUID(a["id"])).values(
            status="accepted", worker_member_id=uuid.UUID(worker.member_id)))
        accepting = asyncio.create_task(client.post(f"/bookings/{b['id']}/accept", headers=worker.headers))
        for _ in range(200):  # until the acceptance waits for `other`
            waiting = (await watcher.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%accepted%'"
            ))).scalar_one()
            await watcher.rollback()
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting, "the acceptance never waited for the other transaction"
        # `other` now waits for the acceptance's lock on b: a cycle, and the acceptance is aborted.
        await other.execute(select(Booking.id).where(Booking.id == uuid.UUID(b["id"])).with_for_update())
        await other.commit()
        resp = await accepting
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "overlapping_booking"
    got = (await client.get(f"/bookings/{b['id']}", headers=market.client.headers)).json()
    assert got["status"] == "offered" and got["worker_id"] is None


async def test_tiered_contributions_apply_to_the_members_yearly_turnover(client, db, settings, clock):
    market = await make_market(client, db, settings, workers=2)  # 30 €/h and 31 €/h
    veteran, newcomer = market.workers
    # 10% up to 100 € of yearly turnover, 5% above: the veteran already made 90 € this year.
    resp = await client.post(f"/cooperatives/{market.slug}/fee-schedule", headers=market.staff.headers, json={
        "contribution_rate_bps": 1000, "contribution_tiers": [{"above_yearly_turnover_cents": 10_000, "rate_bps": 500}],
        "processing_fee_payer": "member", "processing_fee_bps": 150, "processing_fee_fixed_cents": 25,
        "reason": "tiers voted in assembly"})
    assert resp.status_code == 201
    first = (await client.post("/bookings", headers=market.client.headers,
                               json=booking_body(market, worker_id=veteran.member_id))).json()
    await client.post(f"/bookings/{first['id']}/accept", headers=veteran.headers)
    clock.advance(timedelta(days=2))
    await client.post(f"/bookings/{first['id']}/start", headers=veteran.headers)
    done = await client.post(f"/bookings/{first['id']}/complete", json={"actual_minutes": 180}, headers=veteran.headers)
    assert done.json()["payment"]["status"] == "captured"
    later = next_day_at(10, 3)
    if later.year != clock().year:
        pytest.skip("the year turns during the test")
    matches = (await client.get("/matches", headers=market.client.headers, params={
        "service_id": market.service_id, "starts_at": later.isoformat(), "duration_minutes": 180,
        "lat": 45.7640, "lon": 4.8357})).json()
    contribution = {m["worker_id"]: next(line["amount_cents"] for line in m["breakdown"]["lines"]
                                         if line["code"] == "coop_contribution") for m in matches}
    # veteran: 10 € at 10% then 80 € at 5% = 5.00 €; newcomer: 93 € all at 10% = 9.30 €
    assert contribution == {veteran.member_id: 500, newcomer.member_id: 930}


@pytest.mark.postgres
async def test_postgres_the_acceptance_statement_keeps_one_generic_plan(client, db, settings, clock):
    """The one-statement acceptance is not planned again on every execution (planning it costs about
    what running it does): PostgreSQL's plan cache settles on a generic plan. A change that made its
    custom plans look cheaper (e.g. array parameters whose lengths the planner sees, as the
    webhook's capture had) would fail this."""
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    async with db.sessionmaker() as s:
        coop_id = (await tenancy.cooperative_by_slug(s, market.slug)).id
    booking_ids = []
    for day in range(8):
        resp = await client.post("/bookings", headers=market.client.headers,
                                 json=booking_body(market, starts_at=next_day_at(10 + day % 2 * 4, days=2 + day // 2),
                                                   minutes=60))
        assert resp.status_code == 201, resp.text
        booking_ids.append(uuid.UUID(resp.json()["id"]))
    async with db.driver() as conn:
        for booking_id in booking_ids:
            row = await bookings._ACCEPT.fetchrow(conn, {
                "p_booking": booking_id, "p_user": uuid.UUID(worker.id), "p_cooperative": coop_id, "p_now": clock(),
                "p_event": uuid.uuid4(), "p_seq": 0})
            assert row is not None and row["status"] == "accepted"
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", bookings._ACCEPT.sql)
    assert generic >= 3 and custom <= 5
