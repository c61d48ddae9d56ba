"""Reviews of a completed booking (API.md "Matching and bookings": `POST /bookings/{id}/review`)."""
from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.deps import CurrentUser, SessionDep
from app.services import reviews
from app.services.reviews import ReviewIn, ReviewPublic

router = APIRouter(tags=["reviews"])


@router.post("/bookings/{booking_id}/review", status_code=201, response_model=ReviewPublic)
async def review_booking(booking_id: uuid.UUID, body: ReviewIn, user: CurrentUser,
                         session: SessionDep) -> ReviewPublic:
    """The client reviews the worker, or the worker the client: once each, after completion."""
    return await reviews.create_review(session, cooperative_id=user.cooperative_id, booking_id=booking_id,
                                       user_id=user.user_id, member_id=user.member_id, body=body)


@router.get("/bookings/{booking_id}/reviews", response_model=list[ReviewPublic])
async def booking_reviews(booking_id: uuid.UUID, user: CurrentUser,
                          session: SessionDep) -> list[ReviewPublic]:
    return await reviews.list_reviews(session, cooperative_id=user.cooperative_id, booking_id=booking_id,
                                      user_id=user.user_id, member_id=user.member_id,
                                      staff=user.role in ("staff", "board", "admin"))
