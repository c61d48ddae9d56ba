"""Cooperatives, users and services: creation and tenant-scoped lookups."""
from __future__ import annotations

import re
import uuid

from fastapi.concurrency import run_in_threadpool
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain.money import validate_currency
from app.errors import Conflict, Invalid, NotFound
from app.models import Cooperative, Member, Service, User
from app.security import check_password_strength, hash_password
from app.services import audit, fee_schedules

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


async def create_cooperative(session: AsyncSession, *, slug: str, name: str, currency: str = "EUR",
                             iban: str | None = None, bic: str | None = None,
                             actor_user_id: uuid.UUID | None = None) -> Cooperative:
    """Create a tenant; the slug is its public name in URLs."""
    if not _SLUG.match(slug):
        raise Invalid("A slug is 1-63 lower-case letters, digits and dashes", code="invalid_slug")
    validate_currency(currency)
    try:
        iban_value = IBAN(iban).compact if iban else None
        bic_value = str(BIC(bic)) if bic else None
    except SchwiftyException as exc:
        raise Invalid(f"Invalid bank details: {exc}", code="invalid_bank_details") from None
    coop = Cooperative(slug=slug, name=name.strip(), currency=currency, iban=iban_value, bic=bic_value)
    session.add(coop)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"A cooperative with slug {slug!r} exists already", code="slug_taken") from None
    fee_schedules.add_version(session, cooperative_id=coop.id, effective_from=coop.created_at,
                              decided_by="founding default (until the members vote)",
                              created_by_user_id=actor_user_id, **fee_schedules.FOUNDING_SCHEDULE)
    audit.record(session, action="cooperative.created", target_type="cooperative", target_id=coop.id,
                 cooperative_id=coop.id, actor_user_id=actor_user_id, data={"slug": slug})
    await session.commit()
    return coop


async def cooperative_by_slug(session: AsyncSession, slug: str) -> Cooperative | None:
    return (await session.execute(select(Cooperative).where(Cooperative.slug == slug))).scalar_one_or_none()


async def create_user(session: AsyncSession, settings: Settings, *, cooperative_slug: str, email: str,
                      password: str, display_name: str, role: str,
                      actor_user_id: uuid.UUID | None = None) -> tuple[User, Member | None, Cooperative]:
    """Create a user (and its member record for workers, who start in stage `cape`)."""
    email = email.strip().lower()
    check_password_strength(password, email=email)
    coop = await cooperative_by_slug(session, cooperative_slug)
    if coop is None:
        raise Invalid(f"No cooperative {cooperative_slug!r}", code="unknown_cooperative")
    # Hashing is deliberately slow CPU work: keep it off the event loop.
    password_hash = await run_in_threadpool(hash_password, password, settings)
    user = User(cooperative_id=coop.id, email=email, password_hash=password_hash,
                display_name=display_name.strip(), role=role)
    session.add(user)
    member = None
    try:
        await session.flush()
        if role == "worker":
            member = Member(cooperative_id=coop.id, user_id=user.id, stage="cape")
            session.add(member)
            await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict("An account with this email exists already", code="email_taken") from None
    audit.record(session, action="user.created", target_type="user", target_id=user.id,
                 cooperative_id=coop.id, actor_user_id=actor_user_id or user.id,
                 data={"role": role, **({"member_id": str(member.id)} if member else {})})
    await session.commit()
    return user, member, coop


async def visible_user(session: AsyncSession, *, caller_role: str, caller_id: uuid.UUID,
                       caller_cooperative_id: uuid.UUID, user_id: uuid.UUID) -> tuple[User, Member | None]:
    """A user the caller may see: itself, a worker of its cooperative, or anyone there for staff/board.

    Anything else — another cooperative's user above all — is a 404, never a 403 (no leaks).
    """
    row = (await session.execute(
        select(User, Member).outerjoin(Member, Member.user_id == User.id)
        .where(User.id == user_id, User.cooperative_id == caller_cooperative_id)
    )).first()
    if row is None:
        raise NotFound("No such user", code="user_not_found")
    user, member = row
    if user.id != caller_id and caller_role not in ("staff", "board", "admin") and user.role != "worker":
        raise NotFound("No such user", code="user_not_found")
    return user, member


async def list_services(session: AsyncSession, *, cooperative_id: uuid.UUID) -> list[Service]:
    rows = await session.execute(select(Service).where(Service.cooperative_id == cooperative_id)
                                 .order_by(Service.name))
    return list(rows.scalars())


async def create_service(session: AsyncSession, *, cooperative_id: uuid.UUID, name: str, vat_rate_bps: int,
                         actor_user_id: uuid.UUID | None) -> Service:
    """Add a service to a cooperative's catalog (staff)."""
    service = Service(cooperative_id=cooperative_id, name=name, vat_rate_bps=vat_rate_bps)
    session.add(service)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"The service {name!r} exists already", code="service_exists") from None
    audit.record(session, action="service.created", target_type="service", target_id=service.id,
                 cooperative_id=cooperative_id, actor_user_id=actor_user_id,
                 data={"name": name, "vat_rate_bps": vat_rate_bps})
    await session.commit()
    return service
