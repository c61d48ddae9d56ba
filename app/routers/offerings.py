"""A member's offerings (own hourly rates, never below the fair-pay floor) and availability."""
from __future__ import annotations

from fastapi import APIRouter

from app.deps import NowDep, RateCardsDep, SessionDep, WorkerUser
from app.models.marketplace_api import AvailabilityIn, AvailabilityPublic, OfferingIn, OfferingPublic
from app.services import offerings

router = APIRouter(tags=["members"])


@router.get("/members/me/offerings", response_model=list[OfferingPublic])
async def get_offerings(user: WorkerUser, session: SessionDep, rate_cards: RateCardsDep,
                        now: NowDep) -> list[OfferingPublic]:
    return await offerings.list_offerings(session, rate_cards, member_id=user.member_id,
                                          cooperative_id=user.cooperative_id, now=now)


@router.put("/members/me/offerings", response_model=list[OfferingPublic])
async def put_offerings(body: list[OfferingIn], user: WorkerUser, session: SessionDep, rate_cards: RateCardsDep,
                        now: NowDep) -> list[OfferingPublic]:
    return await offerings.replace_offerings(session, rate_cards, member_id=user.member_id,
                                             cooperative_id=user.cooperative_id, items=body, now=now,
                                             actor_user_id=user.user_id)


@router.get("/members/me/availability", response_model=list[AvailabilityPublic])
async def get_availability(user: WorkerUser, session: SessionDep, now: NowDep) -> list[AvailabilityPublic]:
    return await offerings.list_availability(session, member_id=user.member_id, now=now)


@router.put("/members/me/availability", response_model=list[AvailabilityPublic])
async def put_availability(body: list[AvailabilityIn], user: WorkerUser, session: SessionDep,
                           now: NowDep) -> list[AvailabilityPublic]:
    return await offerings.replace_availability(session, member_id=user.member_id,
                                                cooperative_id=user.cooperative_id, items=body, now=now)
