"""Login, token refresh (rotation with reuse detection) and logout."""
from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.errors import Unauthorized
from app.models import RefreshToken, TokenPair, User
from app.security import hash_refresh_token, make_access_token, new_refresh_token, verify_password


async def _issue(session: AsyncSession, settings: Settings, user: User, family_id: uuid.UUID) -> TokenPair:
    now = utcnow()
    refresh = new_refresh_token()
    session.add(RefreshToken(user_id=user.id, family_id=family_id, token_hash=hash_refresh_token(refresh),
                             expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds)))
    access = make_access_token(user_id=user.id, role=user.role, cooperative_id=user.cooperative_id,
                               settings=settings, now=now)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_token_ttl_seconds)


async def login(session: AsyncSession, settings: Settings, *, email: str, password: str) -> TokenPair:
    """Exchange a password for a token pair. Unknown emails cost the same hashing work as known ones."""
    user = (await session.execute(select(User).where(User.email == email.strip().lower()))).scalar_one_or_none()
    ok = await run_in_threadpool(verify_password, password, user.password_hash if user else None, settings)
    if not ok or user is None or not user.is_active:
        raise Unauthorized("Wrong email or password", code="invalid_credentials")
    pair = await _issue(session, settings, user, uuid.uuid4())
    await session.commit()
    return pair


async def refresh(session: AsyncSession, settings: Settings, *, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting a used one again revokes its whole family (likely theft)."""
    now = utcnow()
    token_hash = hash_refresh_token(refresh_token)
    stored = (await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash)))\
        .scalar_one_or_none()
    if stored is None or stored.expires_at <= now:
        raise Unauthorized("The refresh token is invalid or expired", code="invalid_refresh_token")
    # Claim the token atomically: of two concurrent refreshes with one token, exactly one wins.
    claimed = await session.execute(
        update(RefreshToken).where(RefreshToken.id == stored.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if claimed.rowcount != 1:
        await session.execute(update(RefreshToken).where(RefreshToken.family_id == stored.family_id,
                                                         RefreshToken.revoked_at.is_(None)).values(revoked_at=now))
        await session.commit()
        raise Unauthorized("The refresh token was already used; sign in again", code="refresh_token_reused")
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active:
        await session.commit()
        raise Unauthorized("The account is disabled", code="invalid_refresh_token")
    pair = await _issue(session, settings, user, stored.family_id)
    await session.commit()
    return pair


async def logout(session: AsyncSession, *, refresh_token: str) -> None:
    """Revoke the refresh token's family (this device's session). Unknown tokens are ignored."""
    stored = (await session.execute(select(RefreshToken).where(
        RefreshToken.token_hash == hash_refresh_token(refresh_token)))).scalar_one_or_none()
    if stored is not None:
        await session.execute(update(RefreshToken).where(RefreshToken.family_id == stored.family_id,
                                                         RefreshToken.revoked_at.is_(None))
                              .values(revoked_at=utcnow()))
        await session.commit()
