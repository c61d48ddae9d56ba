"""Candidate search in SQL (eligibility) and ranking by the published score (app/domain/matching.py).

Eligible: offers the service, active stage (cape, cesa, associate), not suspended, an availability
window holding the whole slot, no overlapping booking held, and the client inside the member's own
service radius (bounding box in SQL, exact great-circle distance in Python).
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import matching
from app.domain.periods import month_bounds
from app.models import AvailabilityWindow, Booking, Member, Offering, User
from app.models.coop_settings import CooperativeSettings
from app.models.marketplace import HOLDING_STATUSES

ACTIVE_STAGES = ("cape", "cesa", "associate")


def weights_of(s: CooperativeSettings) -> matching.Weights:
    return matching.Weights(distance=s.matching_weight_distance, rating=s.matching_weight_rating,
                            fair_share=s.matching_weight_fair_share, distance_scale_km=float(s.distance_scale_km),
                            fair_share_full_hours=s.fair_share_full_hours,
                            rating_prior_mean=s.rating_prior_mean_tenths / 10,
                            rating_prior_weight=s.rating_prior_weight)


async def candidates(session: AsyncSession, *, cooperative_id: uuid.UUID, service_id: uuid.UUID,
                     starts_at: datetime, ends_at: datetime, lat: float, lon: float,
                     only_member: uuid.UUID | None = None, exclude: set[uuid.UUID] | None = None,
                     ) -> list[matching.Candidate]:
    """Eligible members for the slot, with what ranking needs (booked minutes of the slot's month)."""
    kmlon = matching.km_per_degree_lon(lat)
    available = exists().where(AvailabilityWindow.member_id == Member.id, AvailabilityWindow.starts_at <= starts_at,
                               AvailabilityWindow.ends_at >= ends_at)
    if session.get_bind().dialect.name == "postgresql":
        # The same overlap test as the exclusion constraint, so its GiST index answers it directly
        # instead of reading each worker's whole booking history.
        overlaps = func.tstzrange(Booking.starts_at, Booking.ends_at, "[)").op("&&")(
            func.tstzrange(starts_at, ends_at, "[)"))
    else:
        overlaps = and_(Booking.starts_at < ends_at, Booking.ends_at > starts_at)
    busy = exists().where(Booking.worker_member_id == Member.id, Booking.status.in_(HOLDING_STATUSES), overlaps)
    month_start, month_end = month_bounds(starts_at)
    # Evaluated only for the members that pass every filter (index on worker, start time).
    booked_minutes = (select(func.coalesce(func.sum(Booking.duration_minutes), 0))
                      .where(Booking.worker_member_id == Member.id, Booking.status.in_(HOLDING_STATUSES),
                             Booking.starts_at >= month_start, Booking.starts_at < month_end)
                      .scalar_subquery())
    query = (
        select(Member.id, User.display_name, Member.lat, Member.lon, Member.radius_km, Offering.hourly_rate_cents,
               Member.rating_sum, Member.rating_count, booked_minutes, Member.fixed_monthly_gross_cents)
        .join(User, User.id == Member.user_id)
        .join(Offering, and_(Offering.member_id == Member.id, Offering.service_id == service_id))
        .where(Member.cooperative_id == cooperative_id, Member.stage.in_(ACTIVE_STAGES),
               Member.suspended.is_(False), User.is_active.is_(True), Member.lat.is_not(None),
               func.abs(Member.lat - lat) * matching.KM_PER_DEGREE_LAT <= Member.radius_km,
               func.abs(Member.lon - lon) * kmlon <= Member.radius_km,
               available, ~busy)
    )
    if only_member is not None:
        query = query.where(Member.id == only_member)
    if exclude:
        query = query.where(Member.id.not_in(exclude))
    rows = (await session.execute(query)).all()
    return [matching.Candidate(str(mid), name, mlat, mlon, radius, rate, rsum, rcount, int(booked), expected)
            for mid, name, mlat, mlon, radius, rate, rsum, rcount, booked, expected in rows]


async def ranked(session: AsyncSession, *, coop_settings: CooperativeSettings, **search) -> list[matching.Ranked]:
    found = await candidates(session, **search)
    return matching.rank(found, lat=search["lat"], lon=search["lon"], weights=weights_of(coop_settings))
