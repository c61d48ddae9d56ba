"""Candidate search in SQL (eligibility) and ranking by the published score (app/domain/matching.py).

Eligible: offers the service, active stage (cape, cesa, associate), not suspended, an availability
window holding the whole slot, no overlapping booking held, and the client inside the member's own
service radius (bounding box in SQL, exact great-circle distance in Python).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, bindparam, exists, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import driver_of, literal_in
from app.domain import matching, membership
from app.domain.periods import month_bounds
from app.models import AvailabilityWindow, Booking, Member, Offering, User
from app.models.coop_settings import CooperativeSettings
from app.models.marketplace import HOLDING_STATUSES
from app.services import supply

# In a fixed order: written into the SQL text (literal_in).
ACTIVE_STAGES = tuple(sorted(membership.ACTIVE_STAGES))


def weights_of(s: CooperativeSettings) -> matching.Weights:
    return matching.Weights(distance=s.matching_weight_distance, rating=s.matching_weight_rating,
                            fair_share=s.matching_weight_fair_share, distance_scale_km=float(s.distance_scale_km),
                            fair_share_full_hours=s.fair_share_full_hours,
                            rating_prior_mean=s.rating_prior_mean_tenths / 10,
                            rating_prior_weight=s.rating_prior_weight)


def _candidate_search(dialect: str):
    """The eligibility query, built once per dialect (it runs on every matches request: building and
    cache-keying a statement this size costs more than PostgreSQL takes to run it).

    Parameters: c_coop, c_service, c_start, c_end, c_lat, c_lon, c_kmlon (km per degree of longitude
    at the client's latitude), c_month_start, c_month_end.
    """
    starts_at = bindparam("c_start", type_=Booking.__table__.c.starts_at.type)
    ends_at = bindparam("c_end", type_=Booking.__table__.c.ends_at.type)
    lat, lon = bindparam("c_lat", type_=Float), bindparam("c_lon", type_=Float)
    available = exists().where(AvailabilityWindow.member_id == Member.id, AvailabilityWindow.starts_at <= starts_at,
                               AvailabilityWindow.ends_at >= ends_at)
    if dialect == "postgresql":
        # The same overlap test as the exclusion constraint, so its GiST index answers it directly
        # instead of reading each worker's whole booking history.
        overlaps = func.tstzrange(Booking.starts_at, Booking.ends_at, literal_column("'[)'")).op("&&")(
            func.tstzrange(starts_at, ends_at, literal_column("'[)'")))
    else:
        overlaps = and_(Booking.starts_at < ends_at, Booking.ends_at > starts_at)
    holding = literal_in(Booking.status, HOLDING_STATUSES)
    busy = exists().where(Booking.worker_member_id == Member.id, holding, overlaps)
    # Evaluated only for the members that pass every filter (index on worker, start time).
    booked_minutes = (select(func.coalesce(func.sum(Booking.duration_minutes), 0))
                      .where(Booking.worker_member_id == Member.id, holding,
                             Booking.starts_at >= bindparam("c_month_start", type_=starts_at.type),
                             Booking.starts_at < bindparam("c_month_end", type_=starts_at.type))
                      .scalar_subquery())
    return (
        select(Member.id, User.display_name, Member.lat, Member.lon, Member.radius_km, Offering.hourly_rate_cents,
               Member.rating_sum, Member.rating_count, booked_minutes, Member.fixed_monthly_gross_cents)
        .join(User, User.id == Member.user_id)
        .join(Offering, and_(Offering.member_id == Member.id, Offering.service_id == bindparam("c_service")))
        .where(Member.cooperative_id == bindparam("c_coop"), literal_in(Member.stage, ACTIVE_STAGES),
               Member.suspended.is_(False), User.is_active.is_(True), Member.lat.is_not(None),
               func.abs(Member.lat - lat) * literal_column(repr(matching.KM_PER_DEGREE_LAT)) <= Member.radius_km,
               func.abs(Member.lon - lon) * bindparam("c_kmlon", type_=Float) <= Member.radius_km,
               available, ~busy)
    )


_SEARCH = {"postgresql": _candidate_search("postgresql"), "sqlite": _candidate_search("sqlite")}


@dataclass(frozen=True)
class Snapshot:
    """What a search read outside any transaction, in its caller's own statement (GET /matches):
    the cooperative's static supply version and whether its held bookings changed since the index
    read them, so the search can run from memory (SupplyIndex.search)."""

    db: Any  # app.db.Database
    freshness: tuple[int, bool, Any]  # static version, held bookings changed, the held bookings checked
    now: datetime


async def pool(session: AsyncSession, *, cooperative_id: uuid.UUID, service_id: uuid.UUID,
               starts_at: datetime, ends_at: datetime, lat: float, lon: float,
               only_member: uuid.UUID | None = None, exclude: set[uuid.UUID] | None = None,
               snapshot: Snapshot | None = None) -> matching.Pool:
    """Eligible members for the slot, with what ranking needs (booked minutes of the slot's month).
    PostgreSQL: from the supply index (app/services/supply.py), from memory alone given a
    `snapshot`; SQLite: one SQL search."""
    search = dict(cooperative_id=cooperative_id, service_id=service_id, starts_at=starts_at, ends_at=ends_at,
                  lat=lat, lon=lon)
    if session.get_bind().dialect.name == "postgresql":
        index = supply.index_for(str(session.bind.url))
        if snapshot is not None and only_member is None and not exclude:
            found = await index.search(snapshot.db, freshness=snapshot.freshness, now=snapshot.now, **search)
            if found is not None:
                return found
        return await index.pool(await driver_of(session), only_member=only_member, exclude=exclude, **search)
    return matching.Pool.of(await sql_candidates(session, only_member=only_member, exclude=exclude, **search))


async def candidates(session: AsyncSession, **search) -> list[matching.Candidate]:
    found = await pool(session, **search)
    return [found.candidate(i) for i in range(len(found))]


async def sql_candidates(session: AsyncSession, *, cooperative_id: uuid.UUID, service_id: uuid.UUID,
                         starts_at: datetime, ends_at: datetime, lat: float, lon: float,
                         only_member: uuid.UUID | None = None, exclude: set[uuid.UUID] | None = None,
                         ) -> list[matching.Candidate]:
    """The candidate search in SQL (both databases; the supply index must agree with it)."""
    query = _SEARCH[session.get_bind().dialect.name]
    if only_member is not None:
        query = query.where(Member.id == only_member)
    if exclude:
        query = query.where(Member.id.not_in(exclude))
    month_start, month_end = month_bounds(starts_at)
    rows = (await session.execute(query, {
        "c_coop": cooperative_id, "c_service": service_id, "c_start": starts_at, "c_end": ends_at, "c_lat": lat,
        "c_lon": lon, "c_kmlon": matching.km_per_degree_lon(lat), "c_month_start": month_start,
        "c_month_end": month_end})).all()
    return [matching.Candidate(str(mid), name, mlat, mlon, radius, rate, rsum, rcount, int(booked), expected)
            for mid, name, mlat, mlon, radius, rate, rsum, rcount, booked, expected in rows]


async def ranked(session: AsyncSession, *, coop_settings: CooperativeSettings, **search) -> matching.Ranking:
    found = await pool(session, **search)
    return matching.rank_pool(found, lat=search["lat"], lon=search["lon"], weights=weights_of(coop_settings))
