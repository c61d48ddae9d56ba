"""The booking lifecycle: create (quote, match, offer, authorize), accept, decline, start, complete,
cancel, expire. Each transition is checked by app/domain/bookings.py and recorded with who and when.

Calls to the payment processor follow atomic phases: the local state change is committed first
(with a `*_pending` payment status), then the processor is called with a deterministic idempotency
key, then its answer is recorded. A crash in between leaves a pending status that
`retry_pending_payments` completes; the processor never sees an action twice.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg

from pydantic_core import to_json
from sqlalchemy import (ARRAY, BigInteger, and_, bindparam, case, exists, false, func, insert, literal, or_, select,
                        text, true, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import PgStatement, literal_in
from app.domain import bookings as rules
from app.domain import ledger as ledger_rules
from app.domain.errors import PriceTooLow
from app.domain.fees import Breakdown
from app.domain.money import apply_bps
from app.domain.periods import period_of
from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.models import (Booking, BookingEvent, BookingOffer, Cooperative, FeeScheduleVersion, Member, Service,
                        SupplyVersion, User)
from app.models.coop_settings import CooperativeSettings, settings_of
from app.models.marketplace import HOLDING_STATUSES, OVERLAP_GUARDED_STATUSES
from app.payments.port import AuthorizeRequest, PaymentGateway
from app.services import idempotency, ledger, matching, quotes, supply
from app.services.idempotency import Claim

log = logging.getLogger("coopgig.bookings")


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    role: str  # client, worker, staff, system
    member_id: uuid.UUID | None = None


SYSTEM = Actor(None, "system")


def _event(session: AsyncSession, booking: Booking, to_status: str, actor: Actor, now: datetime,
           data: dict[str, Any] | None = None, from_status: str | None = None) -> None:
    session.add(BookingEvent(booking_id=booking.id, from_status=from_status, to_status=to_status,
                             actor_user_id=actor.user_id, actor_role=actor.role, data=data or {}, created_at=now))


def _transition(session: AsyncSession, booking: Booking, to_status: str, actor: Actor, now: datetime,
                data: dict[str, Any] | None = None) -> None:
    rules.check_transition(booking.status, to_status, actor.role)
    _event(session, booking, to_status, actor, now, data, from_status=booking.status)
    booking.status = to_status
    booking.updated_at = now


async def _cooperative(session: AsyncSession, cooperative_id: uuid.UUID) -> tuple[Cooperative, CooperativeSettings]:
    coop = await session.get(Cooperative, cooperative_id)
    return coop, settings_of(coop.settings)


# ---- creation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewBooking:
    service_id: uuid.UUID
    starts_at: datetime
    duration_minutes: int
    lat: float
    lon: float
    address: str
    notes: str | None = None
    worker_id: uuid.UUID | None = None
    max_price_cents: int | None = None


@dataclass(frozen=True)
class PricedCandidate:
    ranked: Any  # matching.Ranked
    quote: quotes.Quote


@dataclass(frozen=True)
class SearchContext:
    """What a search reads besides the supply: the service, its cooperative and the fee schedule in
    force (None if there is none yet)."""

    service: Any  # .id, .vat_rate_bps
    cooperative: Any  # .id, .currency, .settings
    coop_settings: CooperativeSettings
    fee_version: Any | None


def _search_context_statement():
    fee, latest = FeeScheduleVersion.__table__, FeeScheduleVersion.__table__.alias("latest")
    in_force = (select(latest.c.id).where(latest.c.cooperative_id == Cooperative.id,
                                          latest.c.effective_from <= bindparam("p_at", type_=fee.c.effective_from.type))
                .order_by(latest.c.effective_from.desc()).limit(1).correlate(Cooperative).scalar_subquery())
    return (select(Service.id, Service.vat_rate_bps, Cooperative.id, Cooperative.currency, Cooperative.settings,
                   *(fee.c[name] for name in _FEE_COLUMNS))
            .join(Cooperative, Cooperative.id == Service.cooperative_id)
            .outerjoin(fee, fee.c.id == in_force)
            .where(Service.id == bindparam("p_service"), Service.cooperative_id == bindparam("p_cooperative")))


# What quotes read of a fee schedule version (fee_schedules.to_domain).
_FEE_COLUMNS = ("id", "contribution_rate_bps", "contribution_tiers", "processing_fee_payer", "processing_fee_bps",
                "processing_fee_fixed_cents", "min_fixed_monthly_gross_cents")
_SEARCH_CONTEXT = _search_context_statement()


async def search_context(session: AsyncSession, *, service_id: uuid.UUID, cooperative_id: uuid.UUID,
                         at: datetime) -> SearchContext:
    """One round trip; 422 `unknown_service` if the service is not the cooperative's. (GET /matches
    on PostgreSQL reads the same in its own statement: caller_and_search_context.)"""
    row = (await session.execute(_SEARCH_CONTEXT, {"p_service": service_id, "p_cooperative": cooperative_id,
                                                   "p_at": at})).first()
    return _search_context_of(row)


def _search_context_of(row) -> SearchContext:
    if row is None or row[0] is None:
        raise Invalid("No such service in your cooperative", code="unknown_service")
    found_service, vat, coop_id, currency, coop_settings_json = row[:5]
    fee = row[5:]
    raw_settings, coop_settings = _settings_of(coop_settings_json)
    return SearchContext(SimpleNamespace(id=found_service, vat_rate_bps=vat),
                         SimpleNamespace(id=coop_id, currency=currency, settings=raw_settings), coop_settings,
                         None if fee[0] is None else SimpleNamespace(**dict(zip(_FEE_COLUMNS, fee, strict=True))))


def _settings_of(raw: dict | None) -> tuple[dict | None, CooperativeSettings]:
    """A cooperative's settings, validated once per distinct document (a search reads them every
    time; they change when the members vote)."""
    key = None if raw is None else to_json(raw)
    found = _SETTINGS.get(key)
    if found is None:
        if len(_SETTINGS) >= 1_000:
            _SETTINGS.clear()
        found = _SETTINGS[key] = (raw, settings_of(raw))
    return found


_SETTINGS: dict[bytes | None, tuple[dict | None, CooperativeSettings]] = {}


@dataclass(frozen=True)
class MatchesContext:
    """What GET /matches reads in its one statement: the caller's account row (deps.principal_of
    checks it), the search context, and whether the supply index is fresh (supply.SupplyIndex)."""

    caller: Any
    context: SearchContext | None  # None: the service is not the cooperative's
    supply_freshness: tuple[int, bool, Any]  # static version, held bookings changed, those checked


def caller_and_search_context(principal) -> PgStatement:
    """PostgreSQL: `principal` (a one-row select of the caller by `user_id`), the search context, the
    cooperative's static supply version and supply.HELD_CHANGED (parameters `p_held_xmax`,
    `p_held_xip`) in ONE statement (outside any transaction: one snapshot). No row when the account
    does not exist."""
    caller = principal.subquery("caller")
    context = _search_context_statement().subquery("context")
    counters = SupplyVersion.__table__
    held_changed = text(supply.HELD_CHANGED.format(
        coop=":p_cooperative", xmax="CAST(:p_held_xmax AS bigint)", xip="CAST(:p_held_xip AS bigint[])")).bindparams(
        bindparam("p_cooperative", type_=counters.c.cooperative_id.type), bindparam("p_held_xmax", type_=BigInteger),
        bindparam("p_held_xip", type_=ARRAY(BigInteger)))
    return PgStatement(
        select(*caller.c, *context.c, func.coalesce(counters.c.version, 0),
               func.coalesce(held_changed, false()))
        .select_from(caller.outerjoin(context, true())
                     .outerjoin(counters, counters.c.cooperative_id == bindparam("p_cooperative"))))


async def matches_context(db, statement: PgStatement, *, user_id: uuid.UUID, service_id: uuid.UUID,
                          cooperative_id: uuid.UUID, at: datetime) -> MatchesContext | None:
    index = supply.index_for(str(db.engine.url))
    held = index.held_check(cooperative_id)
    xmax, xip = index.check_args(held)
    async with db.driver() as driver:
        row = await statement.fetchrow(driver, {"user_id": user_id, "p_service": service_id,
                                                "p_cooperative": cooperative_id, "p_at": at, "p_held_xmax": xmax,
                                                "p_held_xip": xip})
    if row is None:
        return None
    width = len(row) - len(_FEE_COLUMNS) - 7  # the caller's columns
    context = row[width:-2]
    return MatchesContext(row[:width], None if context[0] is None else _search_context_of(context),
                          (row[-2], row[-1], held))


async def priced_matches(session: AsyncSession, rate_cards, *, cooperative_id: uuid.UUID, service: Service,
                         starts_at: datetime, duration_minutes: int, lat: float, lon: float, now: datetime,
                         only_member: uuid.UUID | None = None, exclude: set[uuid.UUID] | None = None,
                         max_price_cents: int | None = None, limit: int | None = None,
                         context: SearchContext | None = None,
                         snapshot: matching.Snapshot | None = None) -> list[PricedCandidate]:
    """Eligible workers, best first, each with the price of the slot and its breakdown: the first
    `limit` whose price (VAT included) is at most `max_price_cents`. `context`, when the caller
    read it (search_context, at `now`), saves reading the cooperative and the schedule again;
    `snapshot` (the supply counters read with it) lets the search run from memory."""
    if context is None:
        coop, coop_settings = await _cooperative(session, cooperative_id)
    else:
        coop, coop_settings = context.cooperative, context.coop_settings
    ends_at = starts_at + timedelta(minutes=duration_minutes)
    found = await matching.ranked(session, coop_settings=coop_settings, cooperative_id=cooperative_id,
                                  service_id=service.id, starts_at=starts_at, ends_at=ends_at, lat=lat, lon=lon,
                                  only_member=only_member, exclude=exclude, snapshot=snapshot)
    if not found:
        return []
    ctx = await quotes.context(session, rate_cards, cooperative=coop, coop_settings=coop_settings, at=now,
                               period=period_of(starts_at), version=context and context.fee_version)
    turnover = {}
    if ctx.schedule.contribution_tiers:
        turnover = await yearly_turnover(session, member_ids=[uuid.UUID(m) for m in found.member_ids()],
                                         at=starts_at)
    priced = []
    for r in found:
        if max_price_cents is not None:
            # The price incl. VAT needs no breakdown: filter first, split only what is shown.
            excl = quotes.price_excl_vat(r.candidate.hourly_rate_cents, duration_minutes)
            if excl + apply_bps(excl, service.vat_rate_bps) > max_price_cents:
                continue
        try:
            q = quotes.quote(ctx, hourly_rate_cents=r.candidate.hourly_rate_cents, minutes=duration_minutes,
                             vat_rate_bps=service.vat_rate_bps,
                             expected_monthly_gross_cents=r.candidate.expected_monthly_gross_cents,
                             yearly_turnover_before_cents=(turnover.get(uuid.UUID(r.candidate.member_id), 0)
                                                           if turnover else 0))
        except PriceTooLow:
            continue  # a rate too low to leave anything for the member is never offered
        priced.append(PricedCandidate(r, q))
        if limit is not None and len(priced) >= limit:
            break
    return priced


async def yearly_turnover(session: AsyncSession, *, member_ids: list[uuid.UUID], at: datetime) -> dict[uuid.UUID, int]:
    """Each member's turnover excl. VAT so far in `at`'s calendar year (captured payments, less
    refunds pro rata): what tiered contribution rates are applied to (DESIGN.md "Fee schedule")."""
    year_start = at.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    kept = Booking.price_excl_vat_cents - func.coalesce(
        Booking.refunded_cents * Booking.price_excl_vat_cents / func.nullif(Booking.captured_cents, 0), 0)
    rows = await session.execute(
        select(Booking.worker_member_id, func.sum(kept))
        .where(Booking.worker_member_id.in_(member_ids), Booking.captured_cents > 0,
               Booking.starts_at >= year_start, Booking.starts_at < at)
        .group_by(Booking.worker_member_id))
    return {member: int(total or 0) for member, total in rows.all()}


def _validate_slot(body: NewBooking, coop_settings: CooperativeSettings, now: datetime) -> None:
    if body.starts_at.tzinfo is None:
        raise Invalid("starts_at needs a UTC offset (RFC 3339)", code="invalid_time")
    if body.starts_at < now + timedelta(minutes=coop_settings.min_lead_minutes):
        raise Invalid(f"A booking must start at least {coop_settings.min_lead_minutes} minutes from now",
                      code="too_soon")


async def _open_offers(session: AsyncSession, booking: Booking, picks: list[PricedCandidate],
                       coop_settings: CooperativeSettings, now: datetime) -> None:
    expires = min(now + timedelta(minutes=coop_settings.offer_ttl_minutes), booking.starts_at)
    for rank_, pick in enumerate(picks, start=1):
        session.add(BookingOffer(
            booking_id=booking.id, cooperative_id=booking.cooperative_id,
            member_id=uuid.UUID(pick.ranked.candidate.member_id), status="open", rank=rank_,
            score=pick.ranked.score, why=pick.ranked.why, hourly_rate_cents=pick.ranked.candidate.hourly_rate_cents,
            price_cents=pick.quote.breakdown.price_cents, price_excl_vat_cents=pick.quote.price_excl_vat_cents,
            breakdown=pick.quote.breakdown.to_dict(),
            quote_terms=pick.quote.terms, expires_at=expires, created_at=now))
    booking.offers_expire_at = expires


async def create(session: AsyncSession, gateway: PaymentGateway, rate_cards, *, client_user_id: uuid.UUID,
                 cooperative_id: uuid.UUID, cooperative_slug: str, body: NewBooking, now: datetime,
                 claim: Claim | None = None) -> Booking:
    """Quote, pick the worker(s), hold the payment, and offer the booking."""
    if claim is not None and claim.resource_id is not None:
        # A retry after the first phase committed: resume at the payment step, never book twice.
        booking = await session.get(Booking, claim.resource_id)
        if booking.payment_intent_id is None:
            await _authorize(session, gateway, booking, cooperative_slug, now)
        return booking
    coop, coop_settings = await _cooperative(session, cooperative_id)
    _validate_slot(body, coop_settings, now)
    service = await session.get(Service, body.service_id)
    if service is None or service.cooperative_id != cooperative_id:
        raise Invalid("No such service in your cooperative", code="unknown_service")
    if body.worker_id is not None:
        member = await session.get(Member, body.worker_id)
        if member is None or member.cooperative_id != cooperative_id:
            raise Invalid("No such worker in your cooperative", code="unknown_worker")
    direct = body.worker_id is not None
    picks = await priced_matches(session, rate_cards, cooperative_id=cooperative_id, service=service,
                                 starts_at=body.starts_at, duration_minutes=body.duration_minutes, lat=body.lat,
                                 lon=body.lon, now=now, only_member=body.worker_id,
                                 max_price_cents=None if direct else body.max_price_cents,
                                 limit=1 if direct else coop_settings.open_booking_candidates)
    if direct and not picks:
        raise Conflict("That worker is not available for this slot and place", code="worker_unavailable")
    if direct and body.max_price_cents is not None and picks[0].quote.breakdown.price_cents > body.max_price_cents:
        raise Conflict(f"That worker's price ({picks[0].quote.breakdown.price_cents} cents) is above "
                       f"max_price_cents", code="over_max_price")
    if not picks:
        raise Conflict("No worker is available for this slot, place and price", code="no_available_worker")
    # The hold covers the dearest offer; the capture will be the accepting worker's price (never more).
    top = max(picks, key=lambda p: p.quote.breakdown.price_cents)
    booking = Booking(
        cooperative_id=cooperative_id, client_user_id=client_user_id, service_id=service.id,
        requested_member_id=body.worker_id, status="pending_payment", starts_at=body.starts_at,
        ends_at=body.starts_at + timedelta(minutes=body.duration_minutes), duration_minutes=body.duration_minutes,
        lat=body.lat, lon=body.lon, address=body.address, notes=body.notes, max_price_cents=body.max_price_cents,
        currency=coop.currency, vat_rate_bps=service.vat_rate_bps,
        hourly_rate_cents=picks[0].ranked.candidate.hourly_rate_cents if body.worker_id else None,
        price_cents=top.quote.breakdown.price_cents, breakdown=top.quote.breakdown.to_dict(),
        price_excl_vat_cents=top.quote.price_excl_vat_cents, fee_schedule_id=uuid.UUID(top.quote.terms["fee_schedule_id"]), quote_terms=top.quote.terms,
        authorized_cents=top.quote.breakdown.price_cents, payment_provider=gateway.provider,
        payment_status="authorization_pending", created_at=now, updated_at=now)
    session.add(booking)
    await session.flush()
    _event(session, booking, "pending_payment", Actor(client_user_id, "client"), now,
           {"direct": body.worker_id is not None, "candidates": len(picks)})
    await _open_offers(session, booking, picks, coop_settings, now)
    await idempotency.set_recovery_point(session, claim, "booking_created", booking.id)
    await session.commit()  # phase 1: the booking exists before the processor hears of it
    await _authorize(session, gateway, booking, cooperative_slug, now)
    return booking


async def _authorize(session: AsyncSession, gateway: PaymentGateway, booking: Booking, cooperative_slug: str,
                     now: datetime) -> None:
    """Phase 2: hold the amount at the processor (the key makes a retried call return the same intent)."""
    auth = await gateway.authorize(AuthorizeRequest(
        booking_id=str(booking.id), cooperative_slug=cooperative_slug, amount_cents=booking.authorized_cents,
        currency=booking.currency, description=f"coopgig booking {booking.id}",
        idempotency_key=f"booking:{booking.id}:authorize"))
    booking.payment_intent_id = auth.payment_intent_id
    booking.payment_client_secret = auth.client_secret
    booking.payment_status = "requires_confirmation"
    if auth.status == "authorized":
        await mark_authorized(session, booking, now)
    await session.commit()


async def mark_authorized(session: AsyncSession, booking: Booking, now: datetime) -> None:
    """The funds are held: the offers become visible to the workers."""
    booking.payment_status = "authorized"
    if booking.status == "pending_payment":
        _transition(session, booking, "offered", SYSTEM, now, {"payment": "authorized"})
        # Offer delays run from when workers can actually see the offer.
        coop, coop_settings = await _cooperative(session, booking.cooperative_id)
        expires = min(now + timedelta(minutes=coop_settings.offer_ttl_minutes), booking.starts_at)
        await session.execute(update(BookingOffer).where(BookingOffer.booking_id == booking.id,
                                                         BookingOffer.status == "open").values(expires_at=expires))
        booking.offers_expire_at = expires


# ---- reading ----------------------------------------------------------------------------------


def _visible_to(query, *, user_id: uuid.UUID, role: str, member_id: uuid.UUID | None):
    """Limit a booking query to what the caller may see: a client its own bookings, a worker those
    offered to or held by it, staff and board their whole cooperative (the caller filters on it)."""
    if role == "client":
        return query.where(Booking.client_user_id == user_id)
    if role == "worker":
        offered = exists().where(BookingOffer.booking_id == Booking.id, BookingOffer.member_id == member_id)
        return query.where(or_(Booking.worker_member_id == member_id, offered))
    if role in ("staff", "board", "admin"):
        return query
    return None


async def visible_booking(session: AsyncSession, *, booking_id: uuid.UUID, user_id: uuid.UUID, role: str,
                          cooperative_id: uuid.UUID, member_id: uuid.UUID | None, for_update: bool = False,
                          ) -> Booking:
    """The booking if the caller may see it, else a 404 (never a 403: no leaks)."""
    query = _visible_to(select(Booking).where(Booking.id == booking_id, Booking.cooperative_id == cooperative_id),
                        user_id=user_id, role=role, member_id=member_id)
    if query is None:
        raise NotFound("No such booking", code="booking_not_found")
    if for_update:
        query = query.with_for_update()
    booking = (await session.execute(query)).scalar_one_or_none()
    if booking is None:
        raise NotFound("No such booking", code="booking_not_found")
    return booking


async def list_for(session: AsyncSession, *, user_id: uuid.UUID, role: str, cooperative_id: uuid.UUID,
                   member_id: uuid.UUID | None, status: str | None, limit: int = 100) -> list[Booking]:
    query = _visible_to(select(Booking).where(Booking.cooperative_id == cooperative_id),
                        user_id=user_id, role=role, member_id=member_id)
    if query is None:
        return []
    if status:
        query = query.where(Booking.status == status)
    return list((await session.execute(query.order_by(Booking.starts_at.desc()).limit(limit))).scalars())


async def open_offers(session: AsyncSession, *, member_id: uuid.UUID, now: datetime) -> list[tuple[BookingOffer, Booking]]:
    rows = await session.execute(
        select(BookingOffer, Booking).join(Booking, Booking.id == BookingOffer.booking_id)
        .where(BookingOffer.member_id == member_id, BookingOffer.status == "open", BookingOffer.expires_at > now,
               Booking.status == "offered")
        .order_by(BookingOffer.expires_at))
    return list(rows.all())


async def events(session: AsyncSession, booking_id: uuid.UUID) -> list[BookingEvent]:
    return list((await session.execute(select(BookingEvent).where(BookingEvent.booking_id == booking_id)
                                       .order_by(BookingEvent.seq))).scalars())


# ---- worker actions ---------------------------------------------------------------------------


async def _offer_for(session: AsyncSession, booking_id: uuid.UUID, member_id: uuid.UUID,
                     cooperative_id: uuid.UUID) -> BookingOffer:
    offer = (await session.execute(select(BookingOffer).where(
        BookingOffer.booking_id == booking_id, BookingOffer.member_id == member_id,
        BookingOffer.cooperative_id == cooperative_id))).scalar_one_or_none()
    if offer is None:
        raise NotFound("No such offer for you", code="offer_not_found")
    return offer


# ---- acceptance (the hot path: every open booking is raced for) --------------------------------

_ACCEPT_READ = (
    select(BookingOffer.id, BookingOffer.status, BookingOffer.expires_at, BookingOffer.rank,
           BookingOffer.price_cents, BookingOffer.hourly_rate_cents, Booking.status, Booking.starts_at,
           Booking.ends_at, Member.stage, Member.suspended)
    .join(Booking, Booking.id == BookingOffer.booking_id)
    .join(Member, Member.id == BookingOffer.member_id)
    .where(BookingOffer.booking_id == bindparam("p_booking"), BookingOffer.member_id == bindparam("p_member"),
           BookingOffer.cooperative_id == bindparam("p_cooperative"))
)


@dataclass(frozen=True)
class _Acceptable:
    offer_id: uuid.UUID
    rank: int
    offer_price_cents: int
    hourly_rate_cents: int
    starts_at: datetime
    ends_at: datetime


def _acceptable(row, now: datetime) -> _Acceptable:
    """The checks of an acceptance, in the order a worker should hear about them."""
    if row is None:
        raise NotFound("No such offer for you", code="offer_not_found")
    offer_id, offer_status, expires_at, rank, offer_price, rate, status, starts_at, ends_at, stage, suspended = row
    if suspended or stage not in matching.ACTIVE_STAGES:
        raise Forbidden("Your membership does not allow taking gigs right now", code="member_not_active")
    if status in HOLDING_STATUSES:
        raise Conflict("Another worker took this booking first", code="already_taken")
    if status != "offered":
        raise Conflict(f"This booking is {status}", code="wrong_state")
    if offer_status != "open":
        raise Conflict(f"This offer is {offer_status}", code="offer_closed")
    if expires_at <= now:
        raise Conflict("This offer has expired", code="offer_expired")
    return _Acceptable(offer_id, rank, offer_price, rate, starts_at, ends_at)


# What the API shows of a booking (routers/bookings.booking_public): the accepted row is returned
# with these columns only.
PUBLIC_COLUMNS = tuple(Booking.__table__.c[name] for name in (
    "id", "status", "service_id", "starts_at", "ends_at", "duration_minutes", "lat", "lon", "address", "notes",
    "worker_member_id", "price_cents", "currency", "breakdown", "actual_minutes", "final_price_cents",
    "cancelled_by", "cancel_reason", "payment_provider", "payment_intent_id", "payment_client_secret",
    "payment_status", "created_at"))


def _active_worker_account(user) -> tuple:
    """The caller's account (`p_user`, from a verified token) is still an active worker of the
    token's cooperative (`p_cooperative`): the acceptance's check on both databases."""
    return (user.c.id == bindparam("p_user", type_=user.c.id.type), user.c.is_active.is_(True),
            user.c.role == "worker", user.c.cooperative_id == bindparam("p_cooperative"))


def _accept_statement():
    """PostgreSQL: the whole acceptance as ONE statement (so, in autocommit, one atomic round trip).

    The booking takes the offer's terms only if the caller's account is still an active worker of
    the cooperative (the access token is checked against the database here, in the same statement,
    instead of in a read before it), the booking still `offered`, the offer still open and unexpired
    and the member active (a concurrent acceptance waits on the booking's row lock, then finds it
    taken); the other open offers are withdrawn and the event recorded only if that update happened.
    The exclusion constraint refuses a second overlapping hold of the worker. When nothing is
    updated, the caller's account and then the state are read to say why (`explain_refusal`).
    """
    booking, offer, member, user, event = (Booking.__table__, BookingOffer.__table__, Member.__table__,
                                           User.__table__, BookingEvent.__table__)
    now = bindparam("p_now", type_=booking.c.updated_at.type)
    caller = bindparam("p_user", type_=user.c.id.type)  # the same parameter as _active_worker_account's
    accepted = (
        update(booking)
        .where(booking.c.id == bindparam("p_booking"), booking.c.status == "offered",
               *_active_worker_account(user), member.c.user_id == user.c.id,
               member.c.suspended.is_(False), literal_in(member.c.stage, matching.ACTIVE_STAGES),
               offer.c.booking_id == booking.c.id, offer.c.member_id == member.c.id,
               offer.c.cooperative_id == user.c.cooperative_id, offer.c.status == "open", offer.c.expires_at > now)
        .values(status="accepted", worker_member_id=member.c.id, hourly_rate_cents=offer.c.hourly_rate_cents,
                price_cents=offer.c.price_cents, price_excl_vat_cents=offer.c.price_excl_vat_cents,
                breakdown=offer.c.breakdown, quote_terms=offer.c.quote_terms, updated_at=now)
        .returning(*PUBLIC_COLUMNS, offer.c.rank.label("offer_rank"))
        .cte("accepted"))
    mine = offer.c.member_id == select(accepted.c.worker_member_id).scalar_subquery()
    closed = (
        update(offer)
        .where(offer.c.booking_id == bindparam("p_booking"), offer.c.status == "open",
               exists(select(accepted.c.id)))
        .values(status=case((mine, "accepted"), else_="withdrawn"),
                responded_at=case((mine, now), else_=offer.c.responded_at))
        .returning(offer.c.id)
        .cte("closed_offers"))
    recorded = (
        insert(event).from_select(
            ["id", "booking_id", "from_status", "to_status", "actor_user_id", "actor_role", "data", "created_at",
             "seq"],
            select(bindparam("p_event", type_=event.c.id.type), accepted.c.id, literal("offered"),
                   literal("accepted"), caller, literal("worker"),
                   func.jsonb_build_object("offer_rank", accepted.c.offer_rank, "price_cents", accepted.c.price_cents),
                   now, bindparam("p_seq", type_=event.c.seq.type)))
        .returning(event.c.id)
        .cte("recorded"))
    return select(*(accepted.c[c.name] for c in PUBLIC_COLUMNS)).add_cte(closed, recorded)


_ACCEPT = PgStatement(_accept_statement())

# The caller's member record, if their account is still an active worker of the cooperative.
_ACCEPTING_MEMBER = (
    select(Member.id).join(User, User.id == Member.user_id).where(*_active_worker_account(User.__table__))
)


async def accept(db, *, booking_id: uuid.UUID, user_id: uuid.UUID, cooperative_id: uuid.UUID, now: datetime):
    """First worker to accept wins; the database refuses overlapping holds. Returns the booking as
    the API shows it (PUBLIC_COLUMNS), or None when nothing was accepted and nothing said why yet:
    the caller must then check the account behind the token (401 if it is no longer valid) and
    call `explain_refusal`.

    `user_id` and `cooperative_id` come from a verified access token; the account behind them is
    checked here, in the same statement or unit of work as the acceptance.
    PostgreSQL: one statement (_accept_statement) outside any explicit transaction. SQLite: one
    serialized unit of work (_accept_serialized).
    """
    # (Parameter names never match a column name: in an UPDATE, those would become SET values.)
    params = {"p_booking": booking_id, "p_user": user_id, "p_cooperative": cooperative_id}
    if db.settings.is_sqlite:
        async with db.sessionmaker() as session:
            return await _accept_serialized(session, params, now=now)
    for attempt in range(1, _ACCEPT_ATTEMPTS + 1):
        try:
            async with db.driver() as driver:
                row = await _ACCEPT.fetchrow(driver, {**params, "p_now": now, "p_event": uuid.uuid4(),
                                                      "p_seq": time.time_ns()})
            return None if row is None else SimpleNamespace(**row)
        except asyncpg.ExclusionViolationError as exc:
            if exc.constraint_name == "ex_booking_worker_no_overlap":
                raise Conflict("You already hold a booking at that time", code="overlapping_booking") from None
            raise
        except asyncpg.DeadlockDetectedError:
            # One worker accepting two overlapping bookings at the same instant: each statement's
            # exclusion check waits for the other's uncommitted row, and PostgreSQL aborts one of
            # them (after deadlock_timeout). The statement was rolled back whole; run it again: it
            # now sees the winner's committed booking and the constraint refuses it (409 above).
            if attempt == _ACCEPT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


_ACCEPT_ATTEMPTS = 3


async def explain_refusal(db, *, booking_id: uuid.UUID, member_id: uuid.UUID | None, cooperative_id: uuid.UUID,
                          now: datetime):
    """Raise why this member's acceptance changed nothing: the first failed check in the order a
    worker should hear about it, or `already_taken` (a race lost to another worker or an expiry)."""
    async with db.autocommit.connect() as conn:
        row = (await conn.execute(_ACCEPT_READ, {"p_booking": booking_id, "p_member": member_id,
                                                 "p_cooperative": cooperative_id})).first()
    _acceptable(row, now)
    raise Conflict("Another worker took this booking first", code="already_taken")


async def _accept_serialized(session: AsyncSession, params: dict[str, Any], *, now: datetime):
    """SQLite: this unit of work holds the database write lock (BEGIN IMMEDIATE), so the overlap
    check and the updates cannot interleave with another acceptance."""
    member_id = (await session.execute(_ACCEPTING_MEMBER, params)).scalar_one_or_none()
    if member_id is None:
        return None  # the account behind the token is not (or no longer) an active worker here
    params = {**params, "p_member": member_id}
    ok = _acceptable((await session.execute(_ACCEPT_READ, params)).first(), now)
    overlapping = (await session.execute(select(func.count()).select_from(Booking).where(
        Booking.worker_member_id == member_id, Booking.status.in_(OVERLAP_GUARDED_STATUSES),
        Booking.starts_at < ok.ends_at, Booking.ends_at > ok.starts_at))).scalar_one()
    if overlapping:
        raise Conflict("You already hold a booking at that time", code="overlapping_booking")
    offer = await session.get(BookingOffer, ok.offer_id)
    booking = await session.get(Booking, params["p_booking"])
    booking.status, booking.worker_member_id, booking.hourly_rate_cents = "accepted", member_id, ok.hourly_rate_cents
    booking.price_cents, booking.breakdown, booking.quote_terms = offer.price_cents, offer.breakdown, offer.quote_terms
    booking.price_excl_vat_cents = offer.price_excl_vat_cents
    booking.updated_at = now
    mine = BookingOffer.id == ok.offer_id
    await session.execute(
        update(BookingOffer).where(BookingOffer.booking_id == booking.id, BookingOffer.status == "open")
        .values(status=case((mine, "accepted"), else_="withdrawn"),
                responded_at=case((mine, now), else_=BookingOffer.responded_at))
        .execution_options(synchronize_session=False))
    _event(session, booking, "accepted", Actor(params["p_user"], "worker", member_id), now,
           {"offer_rank": ok.rank, "price_cents": ok.offer_price_cents}, from_status="offered")
    await session.commit()
    return booking


async def decline(session: AsyncSession, gateway: PaymentGateway, rate_cards, *, booking_id: uuid.UUID,
                  actor: Actor, cooperative_id: uuid.UUID, now: datetime) -> Booking:
    offer = await _offer_for(session, booking_id, actor.member_id, cooperative_id)
    if offer.status != "open":
        raise Conflict(f"This offer is {offer.status}", code="offer_closed")
    booking = (await session.execute(select(Booking).where(Booking.id == booking_id).with_for_update())).scalar_one()
    offer.status, offer.responded_at = "declined", now
    await session.flush()
    if booking.status == "offered":
        still_open = (await session.execute(select(func.count()).select_from(BookingOffer).where(
            BookingOffer.booking_id == booking_id, BookingOffer.status == "open"))).scalar_one()
        if not still_open:
            await _rematch_or_expire(session, gateway, rate_cards, booking, actor, now)
    await session.commit()
    await _settle_payment(session, gateway, booking, now)
    return booking


async def _rematch_or_expire(session: AsyncSession, gateway: PaymentGateway, rate_cards, booking: Booking,
                             actor: Actor, now: datetime) -> None:
    """Offer the booking to the next best workers not yet asked; with nobody left, it expires.

    A direct booking (the client chose the worker) is never passed to someone else.
    """
    asked = set((await session.execute(select(BookingOffer.member_id).where(
        BookingOffer.booking_id == booking.id))).scalars())
    coop, coop_settings = await _cooperative(session, booking.cooperative_id)
    picks: list[PricedCandidate] = []
    if booking.requested_member_id is None and booking.starts_at > now:
        service = await session.get(Service, booking.service_id)
        # Never above what the client's payment holds.
        picks = await priced_matches(session, rate_cards, cooperative_id=booking.cooperative_id, service=service,
                                     starts_at=booking.starts_at, duration_minutes=booking.duration_minutes,
                                     lat=booking.lat, lon=booking.lon, now=now, exclude=asked,
                                     max_price_cents=booking.authorized_cents,
                                     limit=coop_settings.open_booking_candidates)
    if picks:
        top = max(picks, key=lambda p: p.quote.breakdown.price_cents)
        booking.price_cents, booking.breakdown = top.quote.breakdown.price_cents, top.quote.breakdown.to_dict()
        booking.price_excl_vat_cents = top.quote.price_excl_vat_cents
        booking.quote_terms, booking.hourly_rate_cents = top.quote.terms, None
        booking.worker_member_id = None
        await _open_offers(session, booking, picks, coop_settings, now)
        if booking.status == "offered":  # offered again to new workers: recorded, no state change
            _event(session, booking, "offered", actor, now, {"rematched": len(picks)}, from_status="offered")
        else:
            _transition(session, booking, "offered", actor, now, {"rematched": len(picks)})
    else:
        _transition(session, booking, "expired", actor, now, {"reason": "no worker left to offer it to"})
        booking.payment_status = "release_pending"


async def _held_booking(session: AsyncSession, booking_id: uuid.UUID, actor: Actor,
                        cooperative_id: uuid.UUID) -> Booking:
    """The booking the calling worker holds, row-locked for the transition."""
    booking = (await session.execute(select(Booking).where(
        Booking.id == booking_id, Booking.cooperative_id == cooperative_id).with_for_update())).scalar_one_or_none()
    if booking is None:
        raise NotFound("No such booking", code="booking_not_found")
    if booking.worker_member_id != actor.member_id:
        offered = (await session.execute(select(func.count()).select_from(BookingOffer).where(
            BookingOffer.booking_id == booking_id, BookingOffer.member_id == actor.member_id))).scalar_one()
        if not offered:
            raise NotFound("No such booking", code="booking_not_found")
        raise Forbidden("Another worker holds this booking", code="not_your_booking")
    return booking


async def start(session: AsyncSession, *, booking_id: uuid.UUID, actor: Actor, cooperative_id: uuid.UUID,
                now: datetime) -> Booking:
    booking = await _held_booking(session, booking_id, actor, cooperative_id)
    if booking.status == "accepted" and now < booking.starts_at - rules.START_WINDOW:
        raise Conflict("A booking can be started from 24 hours before its start time", code="too_early")
    _transition(session, booking, "in_progress", actor, now)
    await session.commit()
    return booking


async def _resumed(session: AsyncSession, gateway: PaymentGateway, claim: Claim | None, booking_id: uuid.UUID,
                   now: datetime) -> Booking | None:
    """A retry of a request whose state change committed: finish its payment step and answer."""
    if claim is None or claim.resource_id != booking_id or claim.recovery_point != "transitioned":
        return None
    booking = await session.get(Booking, booking_id)
    await _settle_payment(session, gateway, booking, now)
    return booking


async def complete(session: AsyncSession, gateway: PaymentGateway, *, booking_id: uuid.UUID, actor: Actor,
                   cooperative_id: uuid.UUID, actual_minutes: int, now: datetime,
                   claim: Claim | None = None) -> Booking:
    """Close the gig and charge for the time actually worked (never more than booked)."""
    if (resumed := await _resumed(session, gateway, claim, booking_id, now)) is not None:
        return resumed
    booking = await _held_booking(session, booking_id, actor, cooperative_id)
    if not 1 <= actual_minutes <= booking.duration_minutes:
        raise Invalid(f"actual_minutes must be between 1 and the booked {booking.duration_minutes}",
                      code="invalid_actual_minutes")
    _transition(session, booking, "completed", actor, now, {"actual_minutes": actual_minutes})
    excl = quotes.price_excl_vat(booking.hourly_rate_cents, actual_minutes)
    final = quotes.requote(booking.quote_terms, price_excl_vat_cents=excl)
    booking.actual_minutes = actual_minutes
    booking.final_price_cents = final.price_cents
    booking.price_cents, booking.breakdown = final.price_cents, final.to_dict()
    booking.price_excl_vat_cents = excl
    booking.payment_status = "capture_pending"
    await idempotency.set_recovery_point(session, claim, "transitioned", booking.id)
    await session.commit()  # phase 1
    await _settle_payment(session, gateway, booking, now)
    return booking


async def cancel(session: AsyncSession, gateway: PaymentGateway, rate_cards, *, booking_id: uuid.UUID, actor: Actor,
                 cooperative_id: uuid.UUID, reason: str, now: datetime, claim: Claim | None = None) -> Booking:
    """Client: free before the notice (or before anyone accepted), else a fee for the worker.
    Worker: gives the booking back to matching."""
    if (resumed := await _resumed(session, gateway, claim, booking_id, now)) is not None:
        return resumed
    if actor.role == "worker":
        booking = await _held_booking(session, booking_id, actor, cooperative_id)
        if booking.status != "accepted":
            raise Conflict(f"A {booking.status} booking cannot be given back", code="wrong_state")
        await session.execute(update(BookingOffer).where(BookingOffer.booking_id == booking.id,
                                                         BookingOffer.member_id == actor.member_id)
                              .values(status="withdrawn", responded_at=now))
        _event(session, booking, "accepted", actor, now, {"withdrawn_by_worker": True, "reason": reason},
               from_status="accepted")
        await _rematch_or_expire(session, gateway, rate_cards, booking, actor, now)
        booking.cancel_reason = reason
        await idempotency.set_recovery_point(session, claim, "transitioned", booking.id)
        await session.commit()
        await _settle_payment(session, gateway, booking, now)
        return booking
    booking = (await session.execute(select(Booking).where(
        Booking.id == booking_id, Booking.cooperative_id == cooperative_id,
        Booking.client_user_id == actor.user_id).with_for_update())).scalar_one_or_none()
    if booking is None:
        raise NotFound("No such booking", code="booking_not_found")
    coop, coop_settings = await _cooperative(session, cooperative_id)
    if booking.status not in ("pending_payment", "offered", "accepted"):
        raise Conflict(f"A {booking.status} booking cannot be cancelled", code="wrong_state")
    terms = booking.quote_terms
    outcome = rules.client_cancellation(
        status=booking.status, starts_at=booking.starts_at, now=now,
        price_excl_vat_cents=quotes.price_excl_vat(terms["hourly_rate_cents"], booking.duration_minutes),
        notice_hours=coop_settings.free_cancellation_notice_hours,
        fee_bps=coop_settings.late_cancellation_fee_bps)
    data = {"reason": reason, "policy": outcome.reason, "fee_price_excl_vat_cents": outcome.fee_price_excl_vat_cents}
    _transition(session, booking, "cancelled", actor, now, data)
    booking.cancelled_by, booking.cancel_reason = "client", reason
    await session.execute(update(BookingOffer).where(BookingOffer.booking_id == booking.id,
                                                     BookingOffer.status == "open").values(status="withdrawn"))
    if outcome.fee_price_excl_vat_cents > 0:
        fee = quotes.requote(terms, price_excl_vat_cents=outcome.fee_price_excl_vat_cents)
        booking.final_price_cents = fee.price_cents
        booking.price_cents, booking.breakdown = fee.price_cents, fee.to_dict()
        booking.price_excl_vat_cents = outcome.fee_price_excl_vat_cents
        booking.payment_status = "capture_pending"
    elif booking.payment_intent_id:
        booking.payment_status = "release_pending"
    else:
        booking.payment_status = "none"
    await idempotency.set_recovery_point(session, claim, "transitioned", booking.id)
    await session.commit()
    await _settle_payment(session, gateway, booking, now)
    return booking


# ---- payments ---------------------------------------------------------------------------------


async def _settle_payment(session: AsyncSession, gateway: PaymentGateway, booking: Booking, now: datetime) -> None:
    """Phase 2 and 3: tell the processor what phase 1 decided, then record its answer."""
    if booking.payment_status not in ("capture_pending", "release_pending") or not booking.payment_intent_id:
        return
    try:
        if booking.payment_status == "release_pending":
            await gateway.release(payment_intent_id=booking.payment_intent_id,
                                  idempotency_key=f"booking:{booking.id}:release")
            booking.payment_status = "released"
        else:
            result = await gateway.capture(payment_intent_id=booking.payment_intent_id,
                                           amount_cents=booking.final_price_cents,
                                           idempotency_key=f"booking:{booking.id}:capture")
            booking.payment_status = "capture_requested"
            if result.settled:
                await record_capture(session, booking, processing_fee_cents=result.processing_fee_cents, now=now)
    except AppError:
        raise
    except Exception:  # the processor is unreachable: the pending status is retried later
        log.exception("payment step failed; will retry", extra={"booking_id": str(booking.id)})
        await session.rollback()
        return
    await session.commit()


@dataclass(frozen=True)
class CapturePlan:
    amount_cents: int
    postings: list[ledger_rules.Posting]
    issue: str | None  # for staff: the processor took another amount than the price


def plan_capture(booking: Any, *, processing_fee_cents: int | None, amount_cents: int | None) -> CapturePlan:
    """What a captured payment posts (app/domain/ledger.py's rules, with the booking's frozen breakdown
    and the processor's actual fee when known); `booking` is a Booking or the webhook's read of one."""
    breakdown = breakdown_of(booking)
    amount = breakdown.price_cents if amount_cents is None else amount_cents
    issue = None
    if amount != breakdown.price_cents:
        log.error("captured amount differs from the booking's price",
                  extra={"booking_id": str(booking.id), "captured": amount, "price": breakdown.price_cents})
        issue = f"captured {amount} cents for a price of {breakdown.price_cents}"
    fee = breakdown.processing_fee_cents if processing_fee_cents is None else processing_fee_cents
    postings = ledger_rules.capture_postings(
        payment_intent_id=booking.payment_intent_id, member_id=str(booking.worker_member_id), breakdown=breakdown,
        processing_fee_cents=fee, payer=breakdown.processing_fee_payer, currency=booking.currency)
    return CapturePlan(amount, postings, issue)


async def record_capture(session: AsyncSession, booking: Booking, *, processing_fee_cents: int | None,
                         now: datetime, amount_cents: int | None = None) -> bool:
    """Post a captured payment to the ledger (once: the references are per payment intent).

    VAT, processing, the contribution and the member's turnover are posted exactly as the booking's
    breakdown says; the processor's actual fee replaces the estimate when it is known. (The webhook's
    one-statement capture on PostgreSQL, app/services/payments.py, posts the same `plan_capture`.)
    """
    plan = plan_capture(booking, processing_fee_cents=processing_fee_cents, amount_cents=amount_cents)
    if plan.issue is not None:
        booking.payment_issue = plan.issue
    results = await ledger.post_many(session, cooperative_id=booking.cooperative_id, postings=plan.postings,
                                     occurred_at=now)
    created = any(r.created for r in results)
    booking.payment_status = "captured"
    booking.captured_cents = plan.amount_cents
    return created


def breakdown_of(booking: Booking) -> Breakdown:
    """The booking's current breakdown recomputed from its frozen terms, with the internal figures
    (member budget, processing fee) the ledger needs."""
    return quotes.requote(booking.quote_terms, price_excl_vat_cents=booking.price_excl_vat_cents)


async def expire_due(session: AsyncSession, gateway: PaymentGateway, rate_cards, *, now: datetime) -> int:
    """Close offers past their delay; re-match or expire bookings left without an open offer."""
    await session.execute(update(BookingOffer).where(BookingOffer.status == "open", BookingOffer.expires_at <= now)
                          .values(status="expired"))
    stale = list((await session.execute(select(Booking).where(
        or_(and_(Booking.status == "offered",
                 ~exists().where(BookingOffer.booking_id == Booking.id, BookingOffer.status == "open")),
            and_(Booking.status == "pending_payment", Booking.starts_at <= now)))
        .with_for_update(skip_locked=True))).scalars())
    for booking in stale:
        if booking.status == "pending_payment":
            _transition(session, booking, "expired", SYSTEM, now, {"reason": "payment never authorized"})
            booking.payment_status = "release_pending" if booking.payment_intent_id else "none"
        else:
            await _rematch_or_expire(session, gateway, rate_cards, booking, SYSTEM, now)
    await session.commit()
    for booking in stale:
        await _settle_payment(session, gateway, booking, now)
    return len(stale)


async def retry_pending_payments(session: AsyncSession, gateway: PaymentGateway, *, now: datetime) -> int:
    """Finish payment steps a crash or an outage left pending (idempotent at the processor)."""
    # Only steps left alone for a while: a request may be between its two phases right now.
    pending = list((await session.execute(select(Booking).where(
        Booking.payment_status.in_(("capture_pending", "release_pending")),
        Booking.updated_at < now - timedelta(minutes=1)).with_for_update(skip_locked=True))).scalars())
    for booking in pending:
        await _settle_payment(session, gateway, booking, now)
    return len(pending)
