"""Offerings (a member's services and own rates) and availability windows, replaced as a whole."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import BelowFairPayFloor
from app.domain.periods import period_of
from app.errors import Invalid
from app.models import AvailabilityWindow, Cooperative, Offering, Service
from app.models.coop_settings import settings_of
from app.models.marketplace_api import AvailabilityIn, AvailabilityPublic, OfferingIn, OfferingPublic
from app.services import audit, quotes

MAX_WINDOWS = 200


async def _context(session: AsyncSession, rate_cards, cooperative_id: uuid.UUID, now: datetime):
    coop = await session.get(Cooperative, cooperative_id)
    return await quotes.context(session, rate_cards, cooperative=coop, coop_settings=settings_of(coop.settings),
                                at=now, period=period_of(now))


async def list_offerings(session: AsyncSession, rate_cards, *, member_id: uuid.UUID, cooperative_id: uuid.UUID,
                         now: datetime, ctx: quotes.QuoteContext | None = None) -> list[OfferingPublic]:
    ctx = ctx or await _context(session, rate_cards, cooperative_id, now)
    rows = await session.execute(select(Offering, Service).join(Service, Service.id == Offering.service_id)
                                 .where(Offering.member_id == member_id).order_by(Service.name))
    return [OfferingPublic(service_id=s.id, service_name=s.name, hourly_rate_cents=o.hourly_rate_cents,
                           fair_pay_floor_cents=quotes.fair_pay_floor(ctx, vat_rate_bps=s.vat_rate_bps))
            for o, s in rows.all()]


async def replace_offerings(session: AsyncSession, rate_cards, *, member_id: uuid.UUID, cooperative_id: uuid.UUID,
                            items: list[OfferingIn], now: datetime, actor_user_id: uuid.UUID) -> list[OfferingPublic]:
    """Set the member's offerings; every rate must pay at least the legal minimum net hourly wage."""
    if len({i.service_id for i in items}) != len(items):
        raise Invalid("Each service may appear once", code="duplicate_service")
    services = {s.id: s for s in (await session.execute(select(Service).where(
        Service.cooperative_id == cooperative_id, Service.id.in_([i.service_id for i in items])))).scalars()}
    ctx = await _context(session, rate_cards, cooperative_id, now)
    for item in items:
        service = services.get(item.service_id)
        if service is None:
            raise Invalid(f"No service {item.service_id} in your cooperative", code="unknown_service")
        floor = quotes.fair_pay_floor(ctx, vat_rate_bps=service.vat_rate_bps)
        if item.hourly_rate_cents < floor:
            error = BelowFairPayFloor(floor, f"{service.name}: {item.hourly_rate_cents} cents/h excl. VAT cannot pay "
                                             f"the legal minimum net hourly wage after every contribution; the "
                                             f"fair-pay floor is {floor} cents/h")
            error.details = [{"service_id": str(service.id), "floor_cents": floor}]
            raise error
    await session.execute(delete(Offering).where(Offering.member_id == member_id))
    for item in items:
        session.add(Offering(cooperative_id=cooperative_id, member_id=member_id, service_id=item.service_id,
                             hourly_rate_cents=item.hourly_rate_cents))
    audit.record(session, action="member.offerings_set", target_type="member", target_id=member_id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"offerings": [{"service_id": str(i.service_id), "hourly_rate_cents": i.hourly_rate_cents}
                                     for i in items]})
    await session.commit()
    return await list_offerings(session, rate_cards, member_id=member_id, cooperative_id=cooperative_id, now=now,
                                ctx=ctx)


async def list_availability(session: AsyncSession, *, member_id: uuid.UUID, now: datetime) -> list[AvailabilityPublic]:
    rows = await session.execute(select(AvailabilityWindow).where(
        AvailabilityWindow.member_id == member_id, AvailabilityWindow.ends_at > now)
        .order_by(AvailabilityWindow.starts_at))
    return [AvailabilityPublic(starts_at=w.starts_at, ends_at=w.ends_at) for w in rows.scalars()]


async def replace_availability(session: AsyncSession, *, member_id: uuid.UUID, cooperative_id: uuid.UUID,
                               items: list[AvailabilityIn], now: datetime) -> list[AvailabilityPublic]:
    """Replace the member's future windows (past ones are history and stay). Overlaps are merged."""
    if len(items) > MAX_WINDOWS:
        raise Invalid(f"At most {MAX_WINDOWS} windows", code="too_many_windows")
    merged: list[list[datetime]] = []
    for w in sorted(items, key=lambda w: w.starts_at):
        if w.ends_at <= now:
            continue
        if merged and w.starts_at <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], w.ends_at)
        else:
            merged.append([w.starts_at, w.ends_at])
    await session.execute(delete(AvailabilityWindow).where(AvailabilityWindow.member_id == member_id,
                                                           AvailabilityWindow.ends_at > now))
    for start, end in merged:
        session.add(AvailabilityWindow(cooperative_id=cooperative_id, member_id=member_id, starts_at=start,
                                       ends_at=end))
    await session.commit()
    return await list_availability(session, member_id=member_id, now=now)
