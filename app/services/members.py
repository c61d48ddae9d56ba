"""Worker-members: profile, salary plan, stage changes, suspensions and appeals (API.md "Worker-members").

Every lookup is scoped by the caller's cooperative: another cooperative's member is a 404, never a 403.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import and_, exists, not_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.domain import membership
from app.errors import Conflict, Invalid, NotFound
from app.models import Appeal, Booking, Member, Suspension, User
from app.services import audit, fee_schedules, reviews

# A signature may be recorded slightly ahead (time zones, a contract signed tonight): never more.
_SIGNED_AT_FUTURE_GRACE = timedelta(days=1)


# ---- API shapes -------------------------------------------------------------------------------
# (They would sit in app/models/members.py; kept beside the use cases that build them.)

_Text = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ServiceArea(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    radius_km: float = Field(gt=0, le=200, allow_inf_nan=False)


class MemberUpdate(BaseModel):
    """PATCH /members/me: only the fields sent change; `null` clears one."""

    model_config = _Text

    bio: str | None = Field(default=None, max_length=2000)
    service_area: ServiceArea | None = None
    iban: str | None = Field(default=None, max_length=64)


class SalaryPlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["full", "fixed"]
    monthly_gross_cents: int | None = Field(default=None, le=10_000_000)


class StageChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["cesa", "associate", "left"]
    signed_at: AwareDatetime


class SuspendIn(BaseModel):
    model_config = _Text

    reason: str = Field(min_length=10, max_length=2000)


class ReinstateIn(BaseModel):
    model_config = _Text

    note: str = Field(min_length=10, max_length=2000)


class AppealIn(BaseModel):
    model_config = _Text

    kind: Literal["suspension", "review"]
    target_id: uuid.UUID
    statement: str = Field(min_length=10, max_length=5000)


class AppealDecisionIn(BaseModel):
    model_config = _Text

    outcome: Literal["upheld", "rejected"]
    note: str = Field(min_length=10, max_length=5000)


class SalaryPlan(BaseModel):
    mode: str
    monthly_gross_cents: int | None


class RatingPublic(BaseModel):
    average: float | None  # plain mean of the visible client reviews; null without any
    count: int


class AppealSummary(BaseModel):
    id: uuid.UUID
    status: str
    decision_note: str | None


class SuspensionPublic(BaseModel):
    id: uuid.UUID
    reason: str
    since: datetime
    appeal: AppealSummary | None


class MemberSelf(BaseModel):
    """What a member sees of itself (GET /members/me). The IBAN is masked: never echoed in full."""

    id: uuid.UUID
    user_id: uuid.UUID
    display_name: str
    stage: str
    active: bool
    stage_signed_at: datetime | None
    cesa_signed_at: datetime | None
    associate_signed_at: datetime | None
    cesa_due: bool
    associate_due_by: date | None
    bio: str | None
    service_area: ServiceArea | None
    iban: str | None
    salary_plan: SalaryPlan
    rating: RatingPublic
    suspension: SuspensionPublic | None
    created_at: datetime


class MemberStaffView(MemberSelf):
    email: str


class MemberProfilePublic(BaseModel):
    """What anyone else in the cooperative sees of a member."""

    id: uuid.UUID
    display_name: str
    bio: str | None
    rating: RatingPublic


class AppealPublic(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    kind: str
    target_id: uuid.UUID
    statement: str
    status: str
    decision_note: str | None
    created_at: datetime
    decided_at: datetime | None


# ---- views ------------------------------------------------------------------------------------


@dataclass
class MemberRecord:
    member: Member
    user: User
    has_paid_work: bool
    suspension: Suspension | None = None
    appeal: Appeal | None = None  # the latest appeal against `suspension`


def mask_iban(iban: str | None) -> str | None:
    """Country and check digits, then the last 4 characters: enough to recognise one's account."""
    if not iban:
        return None
    return f"{iban[:4]} **** **** {iban[-4:]}"


def rating_of(member: Member) -> RatingPublic:
    if member.rating_count <= 0:
        return RatingPublic(average=None, count=0)
    return RatingPublic(average=round(member.rating_sum / member.rating_count, 2), count=member.rating_count)


def _self_fields(record: MemberRecord) -> dict:
    m, s = record.member, record.suspension
    area = (ServiceArea(lat=m.lat, lon=m.lon, radius_km=m.radius_km)
            if m.lat is not None and m.lon is not None and m.radius_km is not None else None)
    suspension = None
    if s is not None:
        appeal = record.appeal
        suspension = SuspensionPublic(
            id=s.id, reason=s.reason, since=s.created_at,
            appeal=AppealSummary(id=appeal.id, status=appeal.status, decision_note=appeal.decision_note)
            if appeal else None)
    return dict(
        id=m.id, user_id=m.user_id, display_name=record.user.display_name, stage=m.stage,
        active=membership.is_active(m.stage, m.suspended), stage_signed_at=m.stage_signed_at,
        cesa_signed_at=m.cesa_signed_at, associate_signed_at=m.associate_signed_at,
        cesa_due=membership.cesa_due(m.stage, record.has_paid_work),
        associate_due_by=membership.associate_due_by(m.cesa_signed_at)
        if m.stage == membership.CESA and m.cesa_signed_at else None,
        bio=m.bio, service_area=area, iban=mask_iban(m.iban),
        salary_plan=SalaryPlan(mode=m.salary_mode, monthly_gross_cents=m.fixed_monthly_gross_cents),
        rating=rating_of(m), suspension=suspension, created_at=m.created_at)


def self_view(record: MemberRecord) -> MemberSelf:
    return MemberSelf(**_self_fields(record))


def staff_view(record: MemberRecord) -> MemberStaffView:
    return MemberStaffView(**_self_fields(record), email=record.user.email)


def _has_paid_work():
    # DESIGN.md: a CAPE member with a completed, paid gig is "CESA due" (first sales happened).
    return exists().where(Booking.worker_member_id == Member.id, Booking.status == "completed",
                          Booking.final_price_cents > 0)


async def _records(session: AsyncSession, *, cooperative_id: uuid.UUID, where=(), order=True,
                   limit: int | None = None, offset: int = 0) -> list[MemberRecord]:
    query = (select(Member, User, _has_paid_work().label("has_paid_work"))
             .join(User, User.id == Member.user_id)
             .where(Member.cooperative_id == cooperative_id, *where))
    if order:
        query = query.order_by(Member.created_at, Member.id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    records = [MemberRecord(m, u, bool(paid)) for m, u, paid in (await session.execute(query)).all()]
    suspended = {r.member.id: r for r in records if r.member.suspended}
    if suspended:
        rows = await session.execute(select(Suspension).where(Suspension.member_id.in_(suspended),
                                                              Suspension.lifted_at.is_(None)))
        by_id = {}
        for s in rows.scalars():
            suspended[s.member_id].suspension = s
            by_id[s.id] = suspended[s.member_id]
        if by_id:
            appeals = await session.execute(
                select(Appeal).where(Appeal.kind == "suspension", Appeal.target_id.in_(by_id))
                .order_by(Appeal.created_at))
            for a in appeals.scalars():  # oldest first: the latest one stays
                by_id[a.target_id].appeal = a
    return records


async def _record(session: AsyncSession, *, cooperative_id: uuid.UUID,
                  member_id: uuid.UUID | None) -> MemberRecord:
    found = [] if member_id is None else await _records(
        session, cooperative_id=cooperative_id, where=[Member.id == member_id], order=False)
    if not found:
        raise NotFound("No such member", code="member_not_found")
    return found[0]


async def _lock_member(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID) -> Member:
    # FOR NO KEY UPDATE serialises concurrent staff actions on one member (PostgreSQL; SQLite
    # serialises every write transaction anyway) without blocking rows that merely reference it.
    member = (await session.execute(
        select(Member).where(Member.id == member_id, Member.cooperative_id == cooperative_id)
        .with_for_update(key_share=True).execution_options(populate_existing=True))).scalar_one_or_none()
    if member is None:
        raise NotFound("No such member", code="member_not_found")
    return member


# ---- the member's own profile -----------------------------------------------------------------


async def my_profile(session: AsyncSession, *, cooperative_id: uuid.UUID,
                     member_id: uuid.UUID | None) -> MemberSelf:
    """The caller's own member view."""
    return self_view(await _record(session, cooperative_id=cooperative_id, member_id=member_id))


def _compact_iban(raw: str) -> str:
    try:
        iban = IBAN(raw)
    except SchwiftyException as exc:
        # The library's message may quote the input: name the kind of fault, never the IBAN.
        reason = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).lower()
        raise Invalid(f"The IBAN is not valid ({reason})", code="invalid_iban") from None
    # Salaries leave as a SEPA credit transfer (pain.001, DESIGN.md "Payroll"): other accounts
    # would only fail later, at the payroll run.
    if not iban.in_sepa_zone:
        raise Invalid("The IBAN is outside the SEPA zone: salaries are paid by SEPA transfer",
                      code="invalid_iban")
    return iban.compact


async def update_profile(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID | None,
                         actor_user_id: uuid.UUID, changes: MemberUpdate) -> MemberSelf:
    """Change the bio, service area or IBAN (stored compact); audited without the IBAN itself."""
    record = await _record(session, cooperative_id=cooperative_id, member_id=member_id)
    member, fields = record.member, sorted(changes.model_fields_set)
    if "bio" in fields:
        member.bio = changes.bio or None
    if "service_area" in fields:
        area = changes.service_area
        member.lat, member.lon, member.radius_km = \
            (area.lat, area.lon, area.radius_km) if area else (None, None, None)
    if "iban" in fields:
        member.iban = _compact_iban(changes.iban) if changes.iban else None
    if fields:
        audit.record(session, action="member.profile_updated", target_type="member", target_id=member.id,
                     cooperative_id=cooperative_id, actor_user_id=actor_user_id, data={"fields": fields})
        await session.commit()
    return self_view(record)


async def set_salary_plan(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID | None,
                          actor_user_id: uuid.UUID, plan: SalaryPlanIn,
                          now: datetime | None = None) -> SalaryPlan:
    """Choose `full` (convert the whole balance) or `fixed` (a monthly gross at least the voted minimum)."""
    record = await _record(session, cooperative_id=cooperative_id, member_id=member_id)
    gross = plan.monthly_gross_cents
    if plan.mode == "full" and gross is not None:
        raise Invalid("A full salary plan converts the whole balance: it takes no monthly_gross_cents",
                      code="invalid_salary_plan")
    if plan.mode == "fixed":
        schedule = await fee_schedules.in_force(session, cooperative_id=cooperative_id, at=now or utcnow())
        minimum = max(schedule.min_fixed_monthly_gross_cents, 1)
        if gross is None or gross < minimum:
            raise Invalid(f"A fixed salary plan needs monthly_gross_cents of at least {minimum} "
                          "(the cooperative's minimum fixed part)", code="invalid_salary_plan")
    member = record.member
    member.salary_mode, member.fixed_monthly_gross_cents = plan.mode, gross
    audit.record(session, action="member.salary_plan_changed", target_type="member", target_id=member.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"mode": plan.mode, "monthly_gross_cents": gross})
    await session.commit()
    return SalaryPlan(mode=member.salary_mode, monthly_gross_cents=member.fixed_monthly_gross_cents)


# ---- what others see ---------------------------------------------------------------------------


async def member_for_viewer(session: AsyncSession, *, cooperative_id: uuid.UUID, viewer_role: str,
                            member_id: uuid.UUID) -> MemberStaffView | MemberProfilePublic:
    """Staff and board get the full file; anyone else in the cooperative the public profile."""
    if viewer_role in ("staff", "board", "admin"):
        return staff_view(await _record(session, cooperative_id=cooperative_id, member_id=member_id))
    row = (await session.execute(
        select(Member, User.display_name).join(User, User.id == Member.user_id)
        .where(Member.id == member_id, Member.cooperative_id == cooperative_id))).first()
    if row is None:
        raise NotFound("No such member", code="member_not_found")
    member, name = row
    return MemberProfilePublic(id=member.id, display_name=name, bio=member.bio, rating=rating_of(member))


async def list_members(session: AsyncSession, *, cooperative_id: uuid.UUID, stage: str | None = None,
                       cesa_due: bool | None = None, associate_due_before: date | None = None,
                       suspended: bool | None = None, limit: int = 100,
                       offset: int = 0) -> list[MemberStaffView]:
    """The onboarding team's list: who is CESA due, who approaches the 3-year associate deadline."""
    where = []
    if stage is not None:
        where.append(Member.stage == stage)
    if cesa_due is not None:
        due = and_(Member.stage == membership.CAPE, _has_paid_work())
        where.append(due if cesa_due else not_(due))
    if associate_due_before is not None:
        threshold = membership.cesa_signed_before(associate_due_before)
        where += [Member.stage == membership.CESA,
                  Member.cesa_signed_at < datetime.combine(threshold, time(), tzinfo=UTC)]
    if suspended is not None:
        where.append(Member.suspended == suspended)
    records = await _records(session, cooperative_id=cooperative_id, where=where, limit=limit, offset=offset)
    return [staff_view(r) for r in records]


# ---- stage changes (staff) ---------------------------------------------------------------------


async def change_stage(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID,
                       actor_user_id: uuid.UUID, change: StageChange,
                       now: datetime | None = None) -> MemberStaffView:
    """Record a signed contract (CESA, associate) or a departure; illegal moves are 409s; audited."""
    if change.signed_at > (now or utcnow()) + _SIGNED_AT_FUTURE_GRACE:
        raise Invalid("signed_at is in the future", code="signed_at_in_future")
    member = await _lock_member(session, cooperative_id=cooperative_id, member_id=member_id)
    previous = member.stage
    membership.check_transition(previous, change.stage)
    if member.stage_signed_at is not None and change.signed_at < member.stage_signed_at:
        raise Invalid("signed_at is before the signature of the current stage",
                      code="signed_at_before_current_stage")
    member.stage, member.stage_signed_at = change.stage, change.signed_at
    if change.stage == membership.CESA:
        member.cesa_signed_at = change.signed_at
    elif change.stage == membership.ASSOCIATE:
        member.associate_signed_at = change.signed_at
    audit.record(session, action="member.stage_changed", target_type="member", target_id=member.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"from": previous, "to": change.stage, "signed_at": change.signed_at.isoformat()})
    await session.commit()
    return staff_view(await _record(session, cooperative_id=cooperative_id, member_id=member_id))


# ---- suspensions and appeals -------------------------------------------------------------------


async def suspend(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID,
                  actor_user_id: uuid.UUID, reason: str) -> MemberStaffView:
    """Suspend a member (no more gigs) with a stated reason the member sees and may contest."""
    member = await _lock_member(session, cooperative_id=cooperative_id, member_id=member_id)
    if member.suspended:
        raise Conflict("This member is already suspended", code="already_suspended")
    suspension = Suspension(cooperative_id=cooperative_id, member_id=member.id, reason=reason,
                            suspended_by_user_id=actor_user_id)
    session.add(suspension)
    member.suspended = True
    try:
        await session.flush()
    except IntegrityError:  # uq_suspension_active_member: one in force already (the lock makes it rare)
        await session.rollback()
        raise Conflict("This member is already suspended", code="already_suspended") from None
    audit.record(session, action="member.suspended", target_type="member", target_id=member.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"suspension_id": str(suspension.id), "reason": reason})
    await session.commit()
    return staff_view(await _record(session, cooperative_id=cooperative_id, member_id=member_id))


async def _lift(session: AsyncSession, *, member: Member, suspension: Suspension, actor_user_id: uuid.UUID,
                note: str, appeal_id: uuid.UUID | None = None) -> None:
    suspension.lifted_at, suspension.lifted_by_user_id, suspension.lift_note = utcnow(), actor_user_id, note
    member.suspended = False
    audit.record(session, action="member.reinstated", target_type="member", target_id=member.id,
                 cooperative_id=member.cooperative_id, actor_user_id=actor_user_id,
                 data={"suspension_id": str(suspension.id), "note": note,
                       **({"appeal_id": str(appeal_id)} if appeal_id else {})})


async def _active_suspension(session: AsyncSession, member_id: uuid.UUID) -> Suspension | None:
    return (await session.execute(
        select(Suspension).where(Suspension.member_id == member_id, Suspension.lifted_at.is_(None))
        .with_for_update(key_share=True))).scalars().first()


async def reinstate(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID,
                    actor_user_id: uuid.UUID, note: str) -> MemberStaffView:
    """Lift a member's suspension (staff)."""
    member = await _lock_member(session, cooperative_id=cooperative_id, member_id=member_id)
    suspension = await _active_suspension(session, member.id) if member.suspended else None
    if suspension is None:
        raise Conflict("This member is not suspended", code="not_suspended")
    await _lift(session, member=member, suspension=suspension, actor_user_id=actor_user_id, note=note)
    await session.commit()
    return staff_view(await _record(session, cooperative_id=cooperative_id, member_id=member_id))


def appeal_view(appeal: Appeal) -> AppealPublic:
    return AppealPublic.model_validate(appeal, from_attributes=True)


async def create_appeal(session: AsyncSession, *, cooperative_id: uuid.UUID, member_id: uuid.UUID | None,
                        user_id: uuid.UUID, body: AppealIn) -> AppealPublic:
    """A member contests its suspension or a review about it; one open appeal per target."""
    if member_id is None:
        raise NotFound("No such member", code="member_not_found")
    # Locking the contested row serialises two appeals sent at once (the "one open" check below).
    if body.kind == "suspension":
        target = (await session.execute(
            select(Suspension).where(Suspension.id == body.target_id, Suspension.member_id == member_id,
                                     Suspension.cooperative_id == cooperative_id)
            .with_for_update(key_share=True).execution_options(populate_existing=True)
        )).scalar_one_or_none()
        if target is None:
            raise NotFound("No such suspension", code="suspension_not_found")
        if target.lifted_at is not None:
            raise Conflict("This suspension was lifted already", code="suspension_lifted")
    else:
        target = await reviews.review_about(session, cooperative_id=cooperative_id, review_id=body.target_id,
                                            subject_user_id=user_id)
        if target.hidden:
            raise Conflict("This review is hidden already", code="review_already_hidden")
    open_one = (await session.execute(select(Appeal.id).where(
        Appeal.target_id == body.target_id, Appeal.kind == body.kind, Appeal.status == "open"))).first()
    if open_one is not None:
        raise Conflict("An appeal against this is already open", code="appeal_already_open")
    appeal = Appeal(cooperative_id=cooperative_id, member_id=member_id, kind=body.kind,
                    target_id=body.target_id, statement=body.statement)
    session.add(appeal)
    try:
        await session.flush()
    except IntegrityError:  # uq_appeal_open_target: another appeal got there first
        await session.rollback()
        raise Conflict("An appeal against this is already open", code="appeal_already_open") from None
    audit.record(session, action="appeal.created", target_type="appeal", target_id=appeal.id,
                 cooperative_id=cooperative_id, actor_user_id=user_id,
                 data={"kind": body.kind, "target_id": str(body.target_id)})
    await session.commit()
    return appeal_view(appeal)


async def my_appeals(session: AsyncSession, *, cooperative_id: uuid.UUID,
                     member_id: uuid.UUID | None) -> list[AppealPublic]:
    """The member's appeals, newest first, with staff's decisions."""
    rows = await session.execute(select(Appeal).where(Appeal.cooperative_id == cooperative_id,
                                                      Appeal.member_id == member_id)
                                 .order_by(Appeal.created_at.desc()))
    return [appeal_view(a) for a in rows.scalars()]


async def list_appeals(session: AsyncSession, *, cooperative_id: uuid.UUID, status: str | None,
                       limit: int = 100, offset: int = 0) -> list[AppealPublic]:
    """The appeals staff must answer (oldest first, so none waits forever)."""
    query = select(Appeal).where(Appeal.cooperative_id == cooperative_id)
    if status is not None:
        query = query.where(Appeal.status == status)
    rows = await session.execute(query.order_by(Appeal.created_at, Appeal.id).limit(limit).offset(offset))
    return [appeal_view(a) for a in rows.scalars()]


async def decide_appeal(session: AsyncSession, *, cooperative_id: uuid.UUID, appeal_id: uuid.UUID,
                        actor_user_id: uuid.UUID, decision: AppealDecisionIn) -> AppealPublic:
    """Answer an appeal once. Upheld: the suspension is lifted, or the review hidden and unrated."""
    appeal = (await session.execute(
        select(Appeal).where(Appeal.id == appeal_id, Appeal.cooperative_id == cooperative_id)
        .with_for_update(key_share=True).execution_options(populate_existing=True))).scalar_one_or_none()
    if appeal is None:
        raise NotFound("No such appeal", code="appeal_not_found")
    if appeal.status != "open":
        raise Conflict("This appeal was decided already", code="appeal_already_decided")
    appeal.status, appeal.decision_note = decision.outcome, decision.note
    appeal.decided_by_user_id, appeal.decided_at = actor_user_id, utcnow()
    if decision.outcome == "upheld":
        if appeal.kind == "suspension":
            member = await _lock_member(session, cooperative_id=cooperative_id, member_id=appeal.member_id)
            suspension = await _active_suspension(session, member.id)
            # Staff may have reinstated the member meanwhile: then there is nothing left to lift.
            if suspension is not None and suspension.id == appeal.target_id:
                await _lift(session, member=member, suspension=suspension, actor_user_id=actor_user_id,
                            note=f"appeal upheld: {decision.note}", appeal_id=appeal.id)
        else:
            await reviews.hide(session, cooperative_id=cooperative_id, review_id=appeal.target_id,
                               actor_user_id=actor_user_id, appeal_id=appeal.id)
    audit.record(session, action="appeal.decided", target_type="appeal", target_id=appeal.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"outcome": decision.outcome, "kind": appeal.kind, "target_id": str(appeal.target_id),
                       "member_id": str(appeal.member_id), "note": decision.note})
    await session.commit()
    return appeal_view(appeal)
