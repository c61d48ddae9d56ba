"""Public cooperative pages and the fee schedule (API.md "Cooperative, services, fee schedule")."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import SessionDep, StaffUser
from app.errors import NotFound
from app.models.fees import FeeScheduleChange, FeeSchedulePublic, FeeScheduleWithHistory
from app.services import fee_schedules, tenancy

router = APIRouter(tags=["cooperatives"])


class CooperativeWithSchedule(BaseModel):
    slug: str
    name: str
    currency: str
    fee_schedule: FeeSchedulePublic


async def _coop(session, slug: str):
    coop = await tenancy.cooperative_by_slug(session, slug)
    if coop is None:
        raise NotFound("No such cooperative", code="cooperative_not_found")
    return coop


@router.get("/cooperatives/{slug}", response_model=CooperativeWithSchedule)
async def get_cooperative(slug: str, session: SessionDep) -> CooperativeWithSchedule:
    coop = await _coop(session, slug)
    view = await fee_schedules.public_view(session, cooperative_id=coop.id)
    return CooperativeWithSchedule(slug=coop.slug, name=coop.name, currency=coop.currency,
                                   fee_schedule=FeeSchedulePublic(**view.model_dump(exclude={"history", "upcoming"})))


@router.get("/cooperatives/{slug}/fee-schedule", response_model=FeeScheduleWithHistory)
async def get_fee_schedule(slug: str, session: SessionDep) -> FeeScheduleWithHistory:
    coop = await _coop(session, slug)
    return await fee_schedules.public_view(session, cooperative_id=coop.id)


@router.post("/cooperatives/{slug}/fee-schedule", status_code=201, response_model=FeeSchedulePublic)
async def change_fee_schedule(slug: str, body: FeeScheduleChange, user: StaffUser,
                              session: SessionDep) -> FeeSchedulePublic:
    """Staff change of the schedule (until governance votes land); audited."""
    if slug != user.cooperative_slug:
        raise NotFound("No such cooperative", code="cooperative_not_found")
    version = await fee_schedules.change(session, cooperative_id=user.cooperative_id, body=body,
                                         actor_user_id=user.user_id)
    return fee_schedules.to_public(version)
