"""Matching, bookings and offers (API.md "Matching and bookings")."""
from __future__ import annotations

import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import to_json

from app.deps import (
    BEARER_SECURITY,
    PRINCIPAL,
    ClientUser,
    CurrentUser,
    GatewayDep,
    NowDep,
    RateCardsDep,
    SessionDep,
    WorkerUser,
    bearer_claims,
    load_principal,
    path_model,
    principal_of,
    query_model,
    route_parameters,
    wrong_role,
)
from app.errors import Forbidden, Invalid
from app.models import Booking
from app.models.marketplace import BOOKING_STATUSES
from app.models.marketplace_api import (
    BookingCreate,
    BookingEventPublic,
    BookingPath,
    BookingPublic,
    CancelIn,
    CompleteIn,
    Location,
    Match,
    MatchesQuery,
    OfferPublic,
    PaymentPublic,
)
from app.routers import idempotent
from app.services import bookings, matching
from app.services.bookings import Actor, NewBooking

router = APIRouter(tags=["bookings"])


def booking_public(booking: Booking, *, role: str, member_id: uuid.UUID | None,
                   events: list | None = None) -> BookingPublic:
    holds = role != "worker" or booking.worker_member_id == member_id
    return BookingPublic(
        id=booking.id, status=booking.status, service_id=booking.service_id, starts_at=booking.starts_at,
        ends_at=booking.ends_at, duration_minutes=booking.duration_minutes,
        location=Location(lat=booking.lat, lon=booking.lon), address=booking.address if holds else None,
        notes=booking.notes, worker_id=booking.worker_member_id, price_cents=booking.price_cents,
        currency=booking.currency, breakdown=booking.breakdown, actual_minutes=booking.actual_minutes,
        final_price_cents=booking.final_price_cents, cancelled_by=booking.cancelled_by,
        cancel_reason=booking.cancel_reason,
        payment=PaymentPublic(provider=booking.payment_provider, payment_intent_id=booking.payment_intent_id,
                              # The client secret lets the client's app confirm the payment: theirs only.
                              client_secret=booking.payment_client_secret if role == "client" else None,
                              status=booking.payment_status),
        created_at=booking.created_at,
        events=None if events is None else [
            BookingEventPublic(from_status=e.from_status, to_status=e.to_status, actor_role=e.actor_role,
                               actor_user_id=e.actor_user_id, data=e.data, at=e.created_at) for e in events])


def _actor(user) -> Actor:
    return Actor(user.user_id, user.role, user.member_id)


@router.get("/matches", response_model=list[Match],
            openapi_extra={**BEARER_SECURITY, "parameters": route_parameters(MatchesQuery, "query")})
async def get_matches(request: Request) -> Response:
    """Ranked workers available for the slot, each with the price and where every euro goes.

    A hot path (clients search before every booking): the query is validated as one model
    (`query_model`, no per-parameter work), on PostgreSQL the caller's account, the service, its
    cooperative, the fee schedule in force and the cooperative's supply counters are read in ONE
    statement, and the search then runs from the supply index in memory."""
    q = query_model(request, MatchesQuery)
    state = request.app.state
    claims, db, now = bearer_claims(request), state.db, state.clock()
    # Statements on their own, outside any transaction; it connects only if a step needs it.
    async with db.lazy_session() as session:
        snapshot = None
        if db.settings.is_sqlite:
            user = await load_principal(db, claims)
            _client_only(user)
            context = await bookings.search_context(session, service_id=q.service_id,
                                                    cooperative_id=user.cooperative_id, at=now)
        else:
            found = await bookings.matches_context(db, _MATCHES_CONTEXT, user_id=claims.user_id,
                                                   service_id=q.service_id, cooperative_id=claims.cooperative_id,
                                                   at=now)
            user = principal_of(found and found.caller, claims)
            _client_only(user)
            if found.context is None:
                raise Invalid("No such service in your cooperative", code="unknown_service")
            context = found.context
            snapshot = matching.Snapshot(db, found.supply_freshness, now)
        priced = await bookings.priced_matches(session, state.rate_cards, cooperative_id=user.cooperative_id,
                                               service=context.service, starts_at=q.starts_at,
                                               duration_minutes=q.duration_minutes, lat=q.lat, lon=q.lon, now=now,
                                               max_price_cents=q.max_price_cents,
                                               limit=context.coop_settings.matches_limit, context=context,
                                               snapshot=snapshot)
    # Plain JSON (the fields of `Match`, in its order): every value is already of its API type, and
    # validating twenty nested breakdowns again would cost more than the ranking. Each quote's
    # breakdown was written once, with the quote (quotes are shared between searches).
    return Response(orjson.dumps([{
        "worker_id": p.ranked.candidate.member_id, "display_name": p.ranked.candidate.display_name,
        "rating": p.ranked.rating, "rating_count": p.ranked.candidate.rating_count,
        "distance_km": round(p.ranked.distance_km, 2), "hourly_rate_cents": p.ranked.candidate.hourly_rate_cents,
        "price_cents": p.quote.breakdown.price_cents, "breakdown": p.quote.public_breakdown_json,
        "score": p.ranked.why["score"], "why": p.ranked.why} for p in priced]), media_type="application/json")


_MATCHES_CONTEXT = bookings.caller_and_search_context(PRINCIPAL)


def _client_only(user) -> None:
    if user.role != "client":
        raise wrong_role("client")


@router.post("/bookings", status_code=201, response_model=BookingPublic)
async def create_booking(body: BookingCreate, request: Request, user: ClientUser, session: SessionDep,
                         gateway: GatewayDep, rate_cards: RateCardsDep, now: NowDep) -> JSONResponse:
    async def handler(claim):
        booking = await bookings.create(
            session, gateway, rate_cards, client_user_id=user.user_id, cooperative_id=user.cooperative_id,
            cooperative_slug=user.cooperative_slug, now=now, claim=claim,
            body=NewBooking(service_id=body.service_id, starts_at=body.starts_at,
                            duration_minutes=body.duration_minutes, lat=body.location.lat, lon=body.location.lon,
                            address=body.address, notes=body.notes, worker_id=body.worker_id,
                            max_price_cents=body.max_price_cents))
        return booking_public(booking, role="client", member_id=None)

    return await idempotent.run(request, session=session, user_id=user.user_id, status_code=201, handler=handler)


@router.get("/bookings", response_model=list[BookingPublic])
async def list_bookings(user: CurrentUser, session: SessionDep,
                        status: Annotated[str | None, Query(max_length=20)] = None) -> list[BookingPublic]:
    if status is not None and status not in BOOKING_STATUSES:
        raise Invalid(f"status must be one of {', '.join(BOOKING_STATUSES)}", code="invalid_status")
    found = await bookings.list_for(session, user_id=user.user_id, role=user.role, cooperative_id=user.cooperative_id,
                                    member_id=user.member_id, status=status)
    return [booking_public(b, role=user.role, member_id=user.member_id) for b in found]


@router.get("/bookings/{booking_id}", response_model=BookingPublic)
async def get_booking(booking_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> BookingPublic:
    booking = await bookings.visible_booking(session, booking_id=booking_id, user_id=user.user_id, role=user.role,
                                             cooperative_id=user.cooperative_id, member_id=user.member_id)
    return booking_public(booking, role=user.role, member_id=user.member_id,
                          events=await bookings.events(session, booking.id))


@router.get("/offers", response_model=list[OfferPublic])
async def get_offers(user: WorkerUser, session: SessionDep, now: NowDep) -> list[OfferPublic]:
    """Open offers for the caller, with `why`: the score terms that made each offer."""
    return [OfferPublic(booking_id=b.id, service_id=b.service_id, starts_at=b.starts_at,
                        duration_minutes=b.duration_minutes, price_cents=o.price_cents,
                        hourly_rate_cents=o.hourly_rate_cents, breakdown=o.breakdown, expires_at=o.expires_at,
                        why=o.why, rank=o.rank, location=Location(lat=b.lat, lon=b.lon))
            for o, b in await bookings.open_offers(session, member_id=user.member_id, now=now)]


@router.post("/bookings/{booking_id}/accept", response_model=BookingPublic,
             openapi_extra={**BEARER_SECURITY, "parameters": route_parameters(BookingPath, "path")})
async def accept(request: Request) -> Response:
    """The hot path of open bookings: no dependency to solve and no parameter for FastAPI to
    validate (`path_model`; the app's state is read directly, the token verified by
    `bearer_claims`); the account behind the token is checked by the acceptance's own statement,
    and read again only to explain a refusal (a stale token is a 401 before anything else, as on
    every route)."""
    booking_id = path_model(request, BookingPath).booking_id
    state = request.app.state
    claims, db, now = bearer_claims(request), state.db, state.clock()
    if claims.role != "worker":
        await load_principal(db, claims)
        raise wrong_role("worker")
    booking = await bookings.accept(db, booking_id=booking_id, user_id=claims.user_id,
                                    cooperative_id=claims.cooperative_id, now=now)
    if booking is None:
        user = await load_principal(db, claims)
        await bookings.explain_refusal(db, booking_id=booking_id, member_id=user.member_id,
                                       cooperative_id=user.cooperative_id, now=now)
    return Response(accepted_json(booking), media_type="application/json")


def accepted_json(booking) -> bytes:
    """The accepting worker's view of the booking they now hold: exactly `booking_public(booking,
    role="worker", member_id=booking.worker_member_id)` as JSON (a test compares them), written
    from a dict by pydantic's core without building the models."""
    return to_json({
        "id": booking.id, "status": booking.status, "service_id": booking.service_id,
        "starts_at": booking.starts_at, "ends_at": booking.ends_at, "duration_minutes": booking.duration_minutes,
        "location": {"lat": booking.lat, "lon": booking.lon}, "address": booking.address, "notes": booking.notes,
        "worker_id": booking.worker_member_id, "price_cents": booking.price_cents, "currency": booking.currency,
        "breakdown": booking.breakdown, "actual_minutes": booking.actual_minutes,
        "final_price_cents": booking.final_price_cents, "cancelled_by": booking.cancelled_by,
        "cancel_reason": booking.cancel_reason,
        "payment": {"provider": booking.payment_provider, "payment_intent_id": booking.payment_intent_id,
                    "client_secret": None, "status": booking.payment_status},
        "created_at": booking.created_at, "events": None})


@router.post("/bookings/{booking_id}/decline", response_model=BookingPublic)
async def decline(booking_id: uuid.UUID, user: WorkerUser, session: SessionDep, gateway: GatewayDep,
                  rate_cards: RateCardsDep, now: NowDep) -> BookingPublic:
    booking = await bookings.decline(session, gateway, rate_cards, booking_id=booking_id, actor=_actor(user),
                                     cooperative_id=user.cooperative_id, now=now)
    return booking_public(booking, role=user.role, member_id=user.member_id)


@router.post("/bookings/{booking_id}/start", response_model=BookingPublic)
async def start(booking_id: uuid.UUID, user: WorkerUser, session: SessionDep, now: NowDep) -> BookingPublic:
    booking = await bookings.start(session, booking_id=booking_id, actor=_actor(user),
                                   cooperative_id=user.cooperative_id, now=now)
    return booking_public(booking, role=user.role, member_id=user.member_id)


@router.post("/bookings/{booking_id}/complete", response_model=BookingPublic)
async def complete(booking_id: uuid.UUID, body: CompleteIn, request: Request, user: WorkerUser, session: SessionDep,
                   gateway: GatewayDep, now: NowDep) -> JSONResponse:
    async def handler(claim):
        booking = await bookings.complete(session, gateway, booking_id=booking_id, actor=_actor(user),
                                          cooperative_id=user.cooperative_id, actual_minutes=body.actual_minutes,
                                          now=now, claim=claim)
        return booking_public(booking, role=user.role, member_id=user.member_id)

    return await idempotent.run(request, session=session, user_id=user.user_id, status_code=200, handler=handler)


@router.post("/bookings/{booking_id}/cancel", response_model=BookingPublic)
async def cancel(booking_id: uuid.UUID, body: CancelIn, request: Request, user: CurrentUser, session: SessionDep,
                 gateway: GatewayDep, rate_cards: RateCardsDep, now: NowDep) -> JSONResponse:
    if user.role not in ("client", "worker"):
        raise Forbidden("Only the booking's client or worker can cancel it", code="wrong_role")

    async def handler(claim):
        booking = await bookings.cancel(session, gateway, rate_cards, booking_id=booking_id, actor=_actor(user),
                                        cooperative_id=user.cooperative_id, reason=body.reason, now=now, claim=claim)
        return booking_public(booking, role=user.role, member_id=user.member_id)

    return await idempotent.run(request, session=session, user_id=user.user_id, status_code=200, handler=handler)
