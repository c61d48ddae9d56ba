"""The fee schedule in force at an instant, its history, and staff changes (audited).

Governance (member votes) will add versions through `add_version` with `decided_by` naming the vote.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.domain import fees
from app.errors import Conflict, Invalid, NotFound
from app.models.fees import FeeScheduleChange, FeeSchedulePublic, FeeScheduleVersion, FeeScheduleWithHistory
from app.services import audit

# The schedule a new cooperative starts with until its members vote another: a 10% contribution
# (the usual CAE figure), Stripe's standard EEA card pricing (1.5% + 0.25 €) borne by the member.
FOUNDING_SCHEDULE = dict(contribution_rate_bps=1000, contribution_tiers=[], processing_fee_payer="member",
                         processing_fee_bps=150, processing_fee_fixed_cents=25, min_fixed_monthly_gross_cents=0)
# A change may not take effect in the past: bookings already quoted keep their schedule anyway,
# and history is never rewritten. A small grace absorbs clock skew between client and server.
_RETROACTIVE_GRACE = timedelta(minutes=5)


def to_domain(version: FeeScheduleVersion) -> fees.FeeSchedule:
    return fees.FeeSchedule(
        contribution_rate_bps=version.contribution_rate_bps,
        contribution_tiers=tuple(fees.ContributionTier(int(t["above_yearly_turnover_cents"]), int(t["rate_bps"]))
                                 for t in version.contribution_tiers),
        processing_fee_payer=version.processing_fee_payer,  # type: ignore[arg-type]
        processing_fee_bps=version.processing_fee_bps,
        processing_fee_fixed_cents=version.processing_fee_fixed_cents,
        min_fixed_monthly_gross_cents=version.min_fixed_monthly_gross_cents,
    )


def to_public(version: FeeScheduleVersion) -> FeeSchedulePublic:
    return FeeSchedulePublic(
        contribution_rate_bps=version.contribution_rate_bps, contribution_tiers=version.contribution_tiers,
        processing_fee_payer=version.processing_fee_payer, processing_fee_bps=version.processing_fee_bps,
        processing_fee_fixed_cents=version.processing_fee_fixed_cents,
        min_fixed_monthly_gross_cents=version.min_fixed_monthly_gross_cents,
        effective_from=version.effective_from, decided_by=version.decided_by)


def add_version(session: AsyncSession, *, cooperative_id: uuid.UUID, effective_from: datetime, decided_by: str,
                created_by_user_id: uuid.UUID | None, **terms) -> FeeScheduleVersion:
    """Add a version to the unit of work after checking it with the domain rules."""
    version = FeeScheduleVersion(cooperative_id=cooperative_id, effective_from=effective_from,
                                 decided_by=decided_by, created_by_user_id=created_by_user_id, **terms)
    to_domain(version)  # raises InvalidFeeSchedule on out-of-range terms
    session.add(version)
    return version


async def in_force(session: AsyncSession, *, cooperative_id: uuid.UUID, at: datetime) -> FeeScheduleVersion:
    """The version in force at `at` (the latest that took effect at or before it)."""
    version = (await session.execute(
        select(FeeScheduleVersion).where(FeeScheduleVersion.cooperative_id == cooperative_id,
                                         FeeScheduleVersion.effective_from <= at)
        .order_by(FeeScheduleVersion.effective_from.desc()).limit(1))).scalar_one_or_none()
    if version is None:
        raise NotFound("This cooperative has no fee schedule in force at that date", code="no_fee_schedule")
    return version


async def history(session: AsyncSession, *, cooperative_id: uuid.UUID) -> list[FeeScheduleVersion]:
    rows = await session.execute(select(FeeScheduleVersion).where(
        FeeScheduleVersion.cooperative_id == cooperative_id).order_by(FeeScheduleVersion.effective_from))
    return list(rows.scalars())


async def public_view(session: AsyncSession, *, cooperative_id: uuid.UUID,
                      now: datetime | None = None) -> FeeScheduleWithHistory:
    """The current schedule, every past version (oldest first) and the versions scheduled ahead."""
    now = now or utcnow()
    versions = await history(session, cooperative_id=cooperative_id)
    past = [v for v in versions if v.effective_from <= now]
    if not past:
        raise NotFound("This cooperative has no fee schedule in force", code="no_fee_schedule")
    return FeeScheduleWithHistory(**to_public(past[-1]).model_dump(),
                                  history=[to_public(v) for v in past],
                                  upcoming=[to_public(v) for v in versions if v.effective_from > now])


async def change(session: AsyncSession, *, cooperative_id: uuid.UUID, body: FeeScheduleChange,
                 actor_user_id: uuid.UUID) -> FeeScheduleVersion:
    """A staff change of the schedule, effective now or later; recorded in the audit trail."""
    now = utcnow()
    effective_from = body.effective_from or now
    if effective_from < now - _RETROACTIVE_GRACE:
        raise Invalid("A fee schedule cannot take effect in the past", code="retroactive_change")
    terms = body.model_dump(exclude={"effective_from", "reason"})
    version = add_version(session, cooperative_id=cooperative_id, effective_from=effective_from,
                          decided_by=f"staff decision: {body.reason}", created_by_user_id=actor_user_id,
                          **terms)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("A version already takes effect at that instant", code="fee_schedule_exists") from None
    audit.record(session, action="fee_schedule.changed", target_type="fee_schedule", target_id=version.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={**terms, "effective_from": effective_from.isoformat(), "reason": body.reason})
    await session.commit()
    return version
