"""Reviews of a completed booking, one per side; a client's rating feeds the worker's average.

The worker's `rating_sum`/`rating_count` only ever move by atomic UPDATEs (never read-modify-write
in Python), so concurrent reviews cannot lose an update.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound
from app.models import Booking, Member, Review
from app.services import audit


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


class ReviewPublic(BaseModel):
    id: uuid.UUID
    booking_id: uuid.UUID
    author_role: str
    subject_user_id: uuid.UUID
    rating: int
    comment: str | None
    hidden: bool
    created_at: datetime


def _view(review: Review) -> ReviewPublic:
    return ReviewPublic.model_validate(review, from_attributes=True)


async def _booking_side(session: AsyncSession, *, cooperative_id: uuid.UUID, booking_id: uuid.UUID,
                        user_id: uuid.UUID, member_id: uuid.UUID | None,
                        staff: bool = False) -> tuple[Booking, str | None]:
    """The booking and the caller's side of it; anyone who is neither side (nor staff) gets a 404."""
    booking = (await session.execute(select(Booking).where(
        Booking.id == booking_id, Booking.cooperative_id == cooperative_id))).scalar_one_or_none()
    side = None
    if booking is not None:
        if booking.client_user_id == user_id:
            side = "client"
        elif member_id is not None and booking.worker_member_id == member_id:
            side = "worker"
    if booking is None or (side is None and not staff):
        raise NotFound("No such booking", code="booking_not_found")
    return booking, side


async def create_review(session: AsyncSession, *, cooperative_id: uuid.UUID, booking_id: uuid.UUID,
                        user_id: uuid.UUID, member_id: uuid.UUID | None, body: ReviewIn) -> ReviewPublic:
    """Review the other side of a completed booking, once per side."""
    booking, side = await _booking_side(session, cooperative_id=cooperative_id, booking_id=booking_id,
                                        user_id=user_id, member_id=member_id)
    if booking.status != "completed" or booking.worker_member_id is None:
        raise Conflict("A booking can be reviewed once it is completed", code="booking_not_completed")
    if side == "client":
        subject_user_id = (await session.execute(
            select(Member.user_id).where(Member.id == booking.worker_member_id))).scalar_one()
    else:
        subject_user_id = booking.client_user_id
    already = (await session.execute(select(Review.id).where(
        Review.booking_id == booking.id, Review.author_role == side))).first()
    if already is not None:
        raise Conflict("You have reviewed this booking already", code="already_reviewed")
    review = Review(cooperative_id=cooperative_id, booking_id=booking.id, author_user_id=user_id,
                    author_role=side, subject_user_id=subject_user_id, rating=body.rating,
                    comment=body.comment or None)
    session.add(review)
    try:
        # Two reviews sent at once both pass the check above; the unique (booking_id, author_role)
        # constraint lets exactly one in.
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("You have reviewed this booking already", code="already_reviewed") from None
    if side == "client":
        await session.execute(
            update(Member).where(Member.id == booking.worker_member_id)
            .values(rating_sum=Member.rating_sum + body.rating, rating_count=Member.rating_count + 1)
            .execution_options(synchronize_session=False))
    await session.commit()
    return _view(review)


async def list_reviews(session: AsyncSession, *, cooperative_id: uuid.UUID, booking_id: uuid.UUID,
                       user_id: uuid.UUID, member_id: uuid.UUID | None, staff: bool) -> list[ReviewPublic]:
    """The booking's reviews for either side (hidden ones only for staff, who decided to hide them)."""
    booking, _ = await _booking_side(session, cooperative_id=cooperative_id, booking_id=booking_id,
                                     user_id=user_id, member_id=member_id, staff=staff)
    query = select(Review).where(Review.booking_id == booking.id)
    if not staff:
        query = query.where(Review.hidden.is_(False))
    rows = await session.execute(query.order_by(Review.created_at, Review.author_role))
    return [_view(r) for r in rows.scalars()]


async def review_about(session: AsyncSession, *, cooperative_id: uuid.UUID, review_id: uuid.UUID,
                       subject_user_id: uuid.UUID) -> Review:
    """A review about the given user, locked for the caller's transaction; else a 404."""
    review = (await session.execute(
        select(Review).where(Review.id == review_id, Review.cooperative_id == cooperative_id,
                             Review.subject_user_id == subject_user_id)
        .with_for_update(key_share=True).execution_options(populate_existing=True))).scalar_one_or_none()
    if review is None:
        raise NotFound("No such review", code="review_not_found")
    return review


async def hide(session: AsyncSession, *, cooperative_id: uuid.UUID, review_id: uuid.UUID,
               actor_user_id: uuid.UUID, appeal_id: uuid.UUID | None = None) -> None:
    """Hide a review (an upheld contest) and take a client's rating out of the worker's average.

    Part of the caller's unit of work: the caller commits.
    """
    review = (await session.execute(select(Review).where(
        Review.id == review_id, Review.cooperative_id == cooperative_id))).scalar_one_or_none()
    if review is None:
        raise NotFound("No such review", code="review_not_found")
    hidden = await session.execute(
        update(Review).where(Review.id == review.id, Review.hidden.is_(False)).values(hidden=True)
        .execution_options(synchronize_session=False))
    if hidden.rowcount != 1:
        return  # hidden already: its rating left the average then
    if review.author_role == "client":
        await session.execute(
            update(Member).where(Member.user_id == review.subject_user_id)
            .values(rating_sum=Member.rating_sum - review.rating, rating_count=Member.rating_count - 1)
            .execution_options(synchronize_session=False))
    audit.record(session, action="review.hidden", target_type="review", target_id=review.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"booking_id": str(review.booking_id), "rating": review.rating,
                       **({"appeal_id": str(appeal_id)} if appeal_id else {})})
