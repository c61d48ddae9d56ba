"""Idempotency keys for money-moving requests (API.md: same key + same body → the first response;
another body → 422), following Stripe's atomic-phase design:

1. `begin` claims the key in its own transaction: replays a finished response, refuses a key reused
   with another body, refuses a concurrent request still holding the key (409), else locks it.
2. The use case records a recovery point (and the resource it created) in the same transaction as
   its first local change, so a retry after a crash resumes from there instead of starting again.
3. `finish` stores the response (errors included: a refused request stays refused) and unlocks.
   An unexpected failure only unlocks: the client may retry with the same key.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, utcnow
from app.errors import Conflict, Invalid
from app.models import IdempotencyKey

# A request holding a key longer than this is presumed dead (its process crashed): the key is
# claimable again and the retry resumes from the recorded recovery point.
LOCK_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Claim:
    record_id: uuid.UUID
    recovery_point: str
    resource_id: uuid.UUID | None
    replay_status: int | None = None
    replay_body: Any = None

    @property
    def is_replay(self) -> bool:
        return self.replay_status is not None


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


async def begin(db: Database, *, user_id: uuid.UUID, key: str, method: str, path: str, body: bytes,
                now: datetime | None = None) -> Claim:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Invalid(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters", code="invalid_idempotency_key")
    now = now or utcnow()
    digest = request_hash(method, path, body)
    async with db.sessionmaker() as session:
        record = await _load(session, user_id, key)
        if record is None:
            record = IdempotencyKey(user_id=user_id, key=key, request_method=method, request_path=path,
                                    request_hash=digest, locked_at=now)
            session.add(record)
            try:
                await session.commit()
                return Claim(record.id, record.recovery_point, None)
            except IntegrityError:  # a concurrent first request inserted it: it holds the key
                await session.rollback()
                record = await _load(session, user_id, key)
        if record.request_hash != digest:
            raise Invalid("This Idempotency-Key was used with another request", code="idempotency_key_reused")
        if record.response_status is not None:
            return Claim(record.id, record.recovery_point, record.resource_id, record.response_status,
                         record.response_body)
        claimed = await session.execute(
            update(IdempotencyKey).where(IdempotencyKey.id == record.id, IdempotencyKey.response_status.is_(None),
                                         (IdempotencyKey.locked_at.is_(None))
                                         | (IdempotencyKey.locked_at < now - LOCK_TIMEOUT))
            .values(locked_at=now))
        await session.commit()
        if claimed.rowcount != 1:
            raise Conflict("A request with this Idempotency-Key is still in progress", code="request_in_progress")
        return Claim(record.id, record.recovery_point, record.resource_id)


async def _load(session: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    return (await session.execute(select(IdempotencyKey).where(
        IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))).scalar_one_or_none()


async def set_recovery_point(session: AsyncSession, claim: Claim | None, point: str,
                             resource_id: uuid.UUID | None = None) -> None:
    """Record progress in the caller's unit of work (committed with the change it marks)."""
    if claim is None:
        return
    values: dict[str, Any] = {"recovery_point": point}
    if resource_id is not None:
        values["resource_id"] = resource_id
    await session.execute(update(IdempotencyKey).where(IdempotencyKey.id == claim.record_id).values(**values))


async def finish(db: Database, claim: Claim, *, status: int, body: Any) -> None:
    async with db.sessionmaker() as session:
        await session.execute(update(IdempotencyKey).where(IdempotencyKey.id == claim.record_id)
                              .values(response_status=status, response_body=body, locked_at=None,
                                      recovery_point="finished"))
        await session.commit()


async def unlock(db: Database, claim: Claim) -> None:
    async with db.sessionmaker() as session:
        await session.execute(update(IdempotencyKey).where(IdempotencyKey.id == claim.record_id)
                              .values(locked_at=None))
        await session.commit()
