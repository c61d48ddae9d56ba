"""Run a money-moving route under its Idempotency-Key header (app/services/idempotency.py)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import DomainError
from app.errors import AppError, error_body
from app.services import idempotency
from app.services.idempotency import Claim

Handler = Callable[[Claim | None], Awaitable[Any]]


async def run(request: Request, *, session: AsyncSession, user_id, status_code: int,
              handler: Handler) -> JSONResponse:
    """`session` is the request's unit of work: it is closed before the key is updated, so that the
    key's own short transactions never wait on it (SQLite has one writer at a time)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return JSONResponse(jsonable_encoder(await handler(None)), status_code=status_code)
    db = request.app.state.db
    claim = await idempotency.begin(db, user_id=user_id, key=key, method=request.method, path=request.url.path,
                                    body=await request.body(), now=request.app.state.clock())
    if claim.is_replay:
        return JSONResponse(claim.replay_body, status_code=claim.replay_status,
                            headers={"Idempotent-Replayed": "true"})
    try:
        result = await handler(claim)
    except (AppError, DomainError) as exc:
        await session.rollback()
        if exc.status >= 500:  # an outage, not an answer: the same key may be retried
            await idempotency.unlock(db, claim)
        else:  # a refused request stays refused for this key
            await idempotency.finish(db, claim, status=exc.status, body=error_body(exc.code, exc.message))
        raise
    except BaseException:
        await session.rollback()
        await idempotency.unlock(db, claim)
        raise
    await session.rollback()  # the use case committed its work; release anything still open
    body = jsonable_encoder(result)
    await idempotency.finish(db, claim, status=status_code, body=body)
    return JSONResponse(body, status_code=status_code)
