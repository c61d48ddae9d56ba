"""The supply index (app/services/supply.py): matching from memory on PostgreSQL must give exactly
the SQL search's candidates, and see every change to members, accounts, offerings, availability and
bookings in the very next search (no stale worker is ever offered work)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from app.models import Member, User
from app.services import matching, supply, tenancy
from tests.market import LYON, Clock, add_worker, booking_body, make_market, next_day_at, place_worker

pytestmark = pytest.mark.postgres


@pytest.fixture
def clock(app):
    app.state.clock = Clock()
    return app.state.clock


@pytest.fixture
def index(db):
    return supply.index_for(str(db.engine.url))


def _params(market, *, hour: int = 10, minutes: int = 120, lat: float = LYON[0], lon: float = LYON[1]) -> dict:
    return {"service_id": market.service_id, "starts_at": next_day_at(hour).isoformat(),
            "duration_minutes": minutes, "lat": lat, "lon": lon}


async def _ids(client, market, **params) -> list[str]:
    resp = await client.get("/matches", headers=market.client.headers, params=_params(market, **params))
    assert resp.status_code == 200, resp.text
    return [m["worker_id"] for m in resp.json()]


async def _set(db, model, row_id: str, **values) -> None:
    async with db.sessionmaker() as s:
        await s.execute(update(model).where(model.id == uuid.UUID(row_id)).values(**values))
        await s.commit()


async def test_the_index_finds_exactly_what_the_sql_search_finds(client, db, settings, index):
    market = await make_market(client, db, settings, workers=4)
    await add_worker(client, db, settings, market, offset_km=12.0, radius_km=10.0)   # reaches Lyon's north only
    await add_worker(client, db, settings, market, windows=[(next_day_at(9), next_day_at(12))])
    await add_worker(client, db, settings, market, windows=[(next_day_at(13), next_day_at(20))])
    late = await add_worker(client, db, settings, market, rate=4200)
    suspended = await add_worker(client, db, settings, market)
    await place_worker(db, suspended.member_id, lat=LYON[0], lon=LYON[1], suspended=True)
    gone = await add_worker(client, db, settings, market)
    await _set(db, User, gone.id, is_active=False)
    await make_market(client, db, settings, workers=2)  # another cooperative, same city
    # booked work: one held slot (10:00-13:00) and minutes booked this month
    booked = (await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=late.member_id, minutes=180))).json()
    assert (await client.post(f"/bookings/{booked['id']}/accept", headers=late.headers)).status_code == 200
    async with db.sessionmaker() as s:
        coop_id = (await tenancy.cooperative_by_slug(s, market.slug)).id
    slots = [(10, 120), (11, 60), (13, 240), (9, 180), (14, 30), (8, 720)]
    places = [LYON, (LYON[0] + 0.12, LYON[1]), (LYON[0], LYON[1] + 0.2), (LYON[0] - 0.5, LYON[1])]
    compared = 0
    async with db.sessionmaker() as s:
        for hour, minutes in slots:
            for lat, lon in places:
                start = next_day_at(hour)
                search = dict(cooperative_id=coop_id, service_id=uuid.UUID(market.service_id), starts_at=start,
                              ends_at=start + timedelta(minutes=minutes), lat=lat, lon=lon)
                from_index = await matching.candidates(s, **search)
                from_sql = await matching.sql_candidates(s, **search)
                assert sorted(from_index, key=lambda c: c.member_id) == sorted(from_sql, key=lambda c: c.member_id)
                compared += bool(from_sql)
                excluded = {uuid.UUID(market.workers[0].member_id)}
                assert sorted(await matching.candidates(s, **search, exclude=excluded), key=lambda c: c.member_id) \
                    == sorted(await matching.sql_candidates(s, **search, exclude=excluded), key=lambda c: c.member_id)
                only = uuid.UUID(market.workers[1].member_id)
                assert await matching.candidates(s, **search, only_member=only) \
                    == await matching.sql_candidates(s, **search, only_member=only)
        found = await matching.candidates(s, cooperative_id=coop_id, service_id=uuid.UUID(market.service_id),
                                          starts_at=next_day_at(15), ends_at=next_day_at(16), lat=LYON[0], lon=LYON[1])
    assert compared >= 10  # most searches found someone: the comparison is not of empty lists
    assert {c.member_id: c.booked_minutes_this_month for c in found}[late.member_id] == 180


async def test_every_change_shows_in_the_next_search_and_nothing_else_reloads(client, db, settings, index):
    market = await make_market(client, db, settings, workers=2)
    watched = market.workers[1]
    assert await _ids(client, market) == [w.member_id for w in market.workers]
    loads = index.loads
    assert await _ids(client, market) == [w.member_id for w in market.workers]
    assert index.loads == loads  # nothing changed: served from memory

    async def without_watched_then_back(change, undo) -> None:
        await change()
        assert watched.member_id not in await _ids(client, market)
        await undo()
        assert watched.member_id in await _ids(client, market)

    put_windows = lambda windows: client.put(  # noqa: E731
        "/members/me/availability", headers=watched.headers,
        json=[{"starts_at": a.isoformat(), "ends_at": b.isoformat()} for a, b in windows])
    await without_watched_then_back(lambda: put_windows([(next_day_at(14), next_day_at(18))]),
                                    lambda: put_windows([(next_day_at(0, 1), next_day_at(0, 6))]))
    put_offering = lambda offerings: client.put(  # noqa: E731
        "/members/me/offerings", headers=watched.headers, json=offerings)
    await without_watched_then_back(
        lambda: put_offering([]), lambda: put_offering([{"service_id": market.service_id, "hourly_rate_cents": 3100}]))
    await without_watched_then_back(
        lambda: client.post(f"/members/{watched.member_id}/suspend", headers=market.staff.headers,
                            json={"reason": "Repeated no-shows reported by clients."}),
        lambda: client.post(f"/members/{watched.member_id}/reinstate", headers=market.staff.headers,
                            json={"note": "Appeal upheld after review."}))
    await without_watched_then_back(lambda: _set(db, User, watched.id, is_active=False),
                                    lambda: _set(db, User, watched.id, is_active=True))
    move = lambda lat: client.patch("/members/me", headers=watched.headers, json={  # noqa: E731
        "service_area": {"lat": lat, "lon": LYON[1], "radius_km": 15}})
    await without_watched_then_back(lambda: move(LYON[0] + 1.0), lambda: move(LYON[0] + 0.01))
    await without_watched_then_back(lambda: _set(db, Member, watched.member_id, stage="left"),
                                    lambda: _set(db, Member, watched.member_id, stage="cesa"))
    # a new rate, a new name: shown at once
    await put_offering([{"service_id": market.service_id, "hourly_rate_cents": 3900}])
    await _set(db, User, watched.id, display_name="Renamed Worker")
    resp = await client.get("/matches", headers=market.client.headers, params=_params(market))
    mine = next(m for m in resp.json() if m["worker_id"] == watched.member_id)
    assert (mine["hourly_rate_cents"], mine["display_name"]) == (3900, "Renamed Worker")
    # a booking held over the slot (dynamic half, read on every search) and a new worker
    booked = (await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=watched.member_id, minutes=120))).json()
    assert (await client.post(f"/bookings/{booked['id']}/accept", headers=watched.headers)).status_code == 200
    assert watched.member_id not in await _ids(client, market)
    assert watched.member_id in await _ids(client, market, hour=14)
    newcomer = await add_worker(client, db, settings, market, offset_km=0.5)
    assert newcomer.member_id in await _ids(client, market)


async def test_an_uncommitted_change_is_not_seen_and_a_committed_one_is(client, db, settings, index):
    market = await make_market(client, db, settings, workers=2)
    watched = market.workers[0]
    assert watched.member_id in await _ids(client, market)
    async with db.sessionmaker() as s:
        await s.execute(update(Member).where(Member.id == uuid.UUID(watched.member_id)).values(suspended=True))
        await s.flush()
        # the change holds the cooperative's version row until it commits; a search meanwhile
        # sees the committed state, and is not blocked by it
        assert watched.member_id in await _ids(client, market)
        await s.commit()
    assert watched.member_id not in await _ids(client, market)


# ---- held bookings in memory (GET /matches: SupplyIndex.search) ----------------------------------


async def _hold(db, market, member_id: str, start, minutes: int, status: str = "accepted") -> uuid.UUID:
    """A booking of `member_id` in `status`, inserted as the booking flow leaves it."""
    from app.models import Booking
    from app.services import fee_schedules

    async with db.sessionmaker() as s:
        coop = await tenancy.cooperative_by_slug(s, market.slug)
        schedule = await fee_schedules.in_force(s, cooperative_id=coop.id, at=datetime.now(UTC))
        booking = Booking(
            cooperative_id=coop.id, client_user_id=uuid.UUID(market.client.id), service_id=uuid.UUID(market.service_id),
            worker_member_id=uuid.UUID(member_id), status=status, starts_at=start,
            ends_at=start + timedelta(minutes=minutes), duration_minutes=minutes, lat=LYON[0], lon=LYON[1],
            address="1 place Bellecour, Lyon", currency="EUR", vat_rate_bps=2000, hourly_rate_cents=3000,
            price_cents=0, authorized_cents=0, price_excl_vat_cents=0, breakdown={}, fee_schedule_id=schedule.id,
            quote_terms={}, payment_provider="demo", payment_status="authorized")
        s.add(booking)
        await s.commit()
        return booking.id


def _by_member(candidates) -> list:
    return sorted(candidates, key=lambda c: c.member_id)


async def test_held_bookings_in_memory_give_exactly_the_sql_search(client, db, settings, index):
    market = await make_market(client, db, settings, workers=5)
    w = market.workers
    day = next_day_at(0)
    await _hold(db, market, w[0].member_id, day.replace(hour=10), 120)                    # over 10-12
    await _hold(db, market, w[1].member_id, day.replace(hour=8), 150, "in_progress")      # ends 10:30
    await _hold(db, market, w[2].member_id, day.replace(hour=12), 60, "completed")        # starts when 11-12 ends
    await _hold(db, market, w[3].member_id, day.replace(hour=10), 240, "cancelled")       # not held
    await _hold(db, market, w[3].member_id, day.replace(hour=10), 240, "offered")         # not held
    await _hold(db, market, w[4].member_id, day - timedelta(hours=20), 720, "completed")  # the day before, 12 h
    first_of_month = day.replace(day=1, hour=0)
    await _hold(db, market, w[4].member_id, first_of_month, 60, "completed")               # earlier this month
    next_month = (first_of_month + timedelta(days=32)).replace(day=1)
    await _hold(db, market, w[0].member_id, next_month, 300, "accepted")                   # next month
    async with db.sessionmaker() as s:
        coop_id = (await tenancy.cooperative_by_slug(s, market.slug)).id
    compared = 0
    async with db.sessionmaker() as s:
        for start, minutes in [(day.replace(hour=10), 60), (day.replace(hour=11), 60), (day.replace(hour=9), 90),
                               (day.replace(hour=13), 120), (day.replace(hour=0), 480), (next_month, 60),
                               (next_month + timedelta(hours=5), 60)]:
            for lat, lon in [LYON, (LYON[0] + 0.3, LYON[1])]:
                search = dict(cooperative_id=coop_id, service_id=uuid.UUID(market.service_id), starts_at=start,
                              ends_at=start + timedelta(minutes=minutes), lat=lat, lon=lon)
                found = await index.search(db, now=next_day_at(0, 0), **search)
                assert found is not None  # answered from memory
                from_sql = await matching.sql_candidates(s, **search)
                assert _by_member(found.candidate(i) for i in range(len(found))) == _by_member(from_sql)
                compared += len(from_sql)
    assert compared >= 20
    # the minutes of the slot's month are those of held bookings only, by the slot's month
    async with db.sessionmaker() as s:
        at_14 = day.replace(hour=14)
        found = await index.search(db, now=next_day_at(0, 0), cooperative_id=coop_id,
                                   service_id=uuid.UUID(market.service_id), starts_at=at_14,
                                   ends_at=at_14 + timedelta(hours=1), lat=LYON[0], lon=LYON[1])
    booked = {found.candidate(i).member_id: found.candidate(i).booked_minutes_this_month for i in range(len(found))}
    same_month = (day - timedelta(hours=20)).month == day.month
    assert booked[w[0].member_id] == 120 and booked[w[1].member_id] == 150 and booked[w[3].member_id] == 0
    assert booked[w[4].member_id] == 60 + (720 if same_month else 0)


async def test_a_slot_before_the_horizon_is_searched_in_sql(client, db, settings, index):
    market = await make_market(client, db, settings, workers=2)
    async with db.sessionmaker() as s:
        coop_id = (await tenancy.cooperative_by_slug(s, market.slug)).id
    long_ago = next_day_at(10) - timedelta(days=100)
    search = dict(cooperative_id=coop_id, service_id=uuid.UUID(market.service_id), starts_at=long_ago,
                  ends_at=long_ago + timedelta(hours=1), lat=LYON[0], lon=LYON[1])
    assert await index.search(db, now=next_day_at(0, 0), **search) is None
    # one worker was available then, and held another booking of that month: the route finds them
    # (the SQL per-search read), with the minutes of that month
    from app.models import AvailabilityWindow

    available = market.workers[1]
    async with db.sessionmaker() as s:
        s.add(AvailabilityWindow(cooperative_id=coop_id, member_id=uuid.UUID(available.member_id),
                                 starts_at=long_ago - timedelta(hours=2), ends_at=long_ago + timedelta(hours=3)))
        await s.commit()
    await _hold(db, market, available.member_id, long_ago - timedelta(hours=2), 90, "completed")
    resp = await client.get("/matches", headers=market.client.headers, params={
        **_params(market, minutes=60), "starts_at": long_ago.isoformat()})
    assert resp.status_code == 200
    assert [(m["worker_id"], m["why"]["booked_hours_this_month"]) for m in resp.json()] \
        == [(available.member_id, 1.5)]


async def test_only_what_matching_sees_of_bookings_reloads_them(client, db, settings, index, clock):
    market = await make_market(client, db, settings, workers=2)
    watched = market.workers[1]
    assert watched.member_id in await _ids(client, market)
    loads, held_loads = index.loads, index.held_loads
    booked = (await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=watched.member_id, minutes=120))).json()
    assert index.held_loads == held_loads  # offered: not held yet
    assert watched.member_id in await _ids(client, market)
    assert (await client.post(f"/bookings/{booked['id']}/accept", headers=watched.headers)).status_code == 200
    assert watched.member_id not in await _ids(client, market)  # held over the slot, at once
    assert index.held_loads == held_loads + 1 and index.loads == loads  # the static half did not reload
    resp = await client.get("/matches", headers=market.client.headers, params=_params(market, hour=14))
    mine = next(m for m in resp.json() if m["worker_id"] == watched.member_id)
    assert mine["why"]["booked_hours_this_month"] == 2.0
    # starting and completing the work change nothing matching reads: nothing reloads
    clock.advance(next_day_at(10) + timedelta(minutes=5) - clock())
    assert (await client.post(f"/bookings/{booked['id']}/start", headers=watched.headers)).status_code == 200
    assert (await client.post(f"/bookings/{booked['id']}/complete", headers=watched.headers,
                              json={"actual_minutes": 120})).status_code == 200
    assert watched.member_id not in await _ids(client, market)
    assert index.held_loads == held_loads + 1
    # a worker giving a booking back frees the slot at once
    other = (await client.post("/bookings", headers=market.client.headers,
                               json=booking_body(market, worker_id=watched.member_id, minutes=60,
                                                 starts_at=next_day_at(16)))).json()
    assert (await client.post(f"/bookings/{other['id']}/accept", headers=watched.headers)).status_code == 200
    assert watched.member_id not in await _ids(client, market, hour=16, minutes=60)
    cancelled = await client.post(f"/bookings/{other['id']}/cancel", headers=watched.headers,
                                  json={"reason": "I am ill"})
    assert cancelled.status_code == 200, cancelled.text
    assert watched.member_id in await _ids(client, market, hour=16, minutes=60)


async def test_an_uncommitted_acceptance_is_not_seen_and_does_not_block_a_search(client, db, settings, index,
                                                                                  monkeypatch):
    from app.models import Booking

    market = await make_market(client, db, settings, workers=2)
    watched = market.workers[0]
    booked = (await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=watched.member_id, minutes=120))).json()
    assert watched.member_id in await _ids(client, market)
    async with db.sessionmaker() as s:
        await s.execute(update(Booking).where(Booking.id == uuid.UUID(booked["id"])).values(
            status="accepted", worker_member_id=uuid.UUID(watched.member_id)))
        await s.flush()  # logged in held_booking_change, in this open transaction
        # a later transaction commits meanwhile: a snapshot taken now lists the acceptance as in
        # progress (below its xmax), the case a check of "newer than the snapshot" alone would miss
        other = (await client.post("/bookings", headers=market.client.headers,
                                   json=booking_body(market, worker_id=market.workers[1].member_id))).json()
        assert other["status"] == "offered"
        # a search now reloads the held bookings (made to, here) while the acceptance is in
        # progress: its snapshot does not see it, and neither does the search
        held_loads = index.held_loads
        monkeypatch.setattr(supply, "HELD_TTL_SECONDS", -1.0)
        assert watched.member_id in await _ids(client, market)
        assert index.held_loads == held_loads + 1
        monkeypatch.setattr(supply, "HELD_TTL_SECONDS", 600.0)
        await s.commit()
    # the acceptance was in progress when those held bookings were read: once it commits, the next
    # search sees it changed them, reloads, and leaves the worker out
    assert watched.member_id not in await _ids(client, market)
    assert index.held_loads == held_loads + 2


async def test_held_bookings_older_than_their_ttl_are_reloaded(client, db, settings, index, monkeypatch):
    market = await make_market(client, db, settings, workers=1)
    await _ids(client, market)
    held_loads = index.held_loads
    await _ids(client, market)
    assert index.held_loads == held_loads  # fresh: served from memory
    monkeypatch.setattr(supply, "HELD_TTL_SECONDS", -1.0)
    await _ids(client, market)
    assert index.held_loads == held_loads + 1


async def test_the_sweeper_deletes_day_old_change_rows_only(client, db, settings, app):
    from sqlalchemy import select

    from app import background
    from app.models import HeldBookingChange

    now = datetime.now(UTC)
    async with db.sessionmaker() as s:
        coop = uuid.uuid4()
        s.add_all([HeldBookingChange(cooperative_id=coop, xact=1, at=now - timedelta(days=1, minutes=1)),
                   HeldBookingChange(cooperative_id=coop, xact=2, at=now - timedelta(hours=23))])
        await s.commit()
    assert await background.prune_held_booking_changes(app) == 1
    async with db.sessionmaker() as s:
        left = (await s.execute(select(HeldBookingChange.xact).where(HeldBookingChange.cooperative_id == coop))).all()
    assert [x for (x,) in left] == [2]
