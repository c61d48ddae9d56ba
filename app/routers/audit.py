"""Board audit: trial balance and the audit trail of staff actions (API.md "Board audit")."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import select

from app.deps import AuditorUser, SessionDep
from app.models import AuditEvent
from app.services import ledger

router = APIRouter(tags=["audit"])


class AccountBalancePublic(BaseModel):
    account: str
    kind: str
    currency: str
    debit_cents: int
    credit_cents: int
    balance_cents: int  # signed: debit positive, credit negative


class TrialBalance(BaseModel):
    at: datetime | None
    accounts: list[AccountBalancePublic]
    total_debit_cents: int
    total_credit_cents: int
    balanced: bool


class AuditEventPublic(BaseModel):
    id: uuid.UUID
    action: str
    target_type: str
    target_id: str
    actor_user_id: uuid.UUID | None
    data: dict[str, Any]
    created_at: datetime


@router.get("/audit/trial-balance", response_model=TrialBalance)
async def trial_balance(user: AuditorUser, session: SessionDep,
                        at: Annotated[AwareDatetime | None, Query()] = None) -> TrialBalance:
    rows = await ledger.balances(session, cooperative_id=user.cooperative_id, at=at)
    accounts = [AccountBalancePublic(account=r.code, kind=r.kind, currency=r.currency,
                                     debit_cents=max(r.balance_cents, 0), credit_cents=max(-r.balance_cents, 0),
                                     balance_cents=r.balance_cents) for r in rows]
    debit = sum(a.debit_cents for a in accounts)
    credit = sum(a.credit_cents for a in accounts)
    return TrialBalance(at=at, accounts=accounts, total_debit_cents=debit, total_credit_cents=credit,
                        balanced=debit == credit)


@router.get("/audit/events", response_model=list[AuditEventPublic])
async def audit_events(user: AuditorUser, session: SessionDep,
                       action: Annotated[str | None, Query(max_length=64)] = None,
                       before: Annotated[AwareDatetime | None, Query()] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[AuditEventPublic]:
    """Newest first; page with `before` = the last event's created_at."""
    query = select(AuditEvent).where(AuditEvent.cooperative_id == user.cooperative_id)
    if action:
        query = query.where(AuditEvent.action == action)
    if before:
        query = query.where(AuditEvent.created_at < before)
    rows = await session.execute(query.order_by(AuditEvent.created_at.desc()).limit(limit))
    return [AuditEventPublic.model_validate(e, from_attributes=True) for e in rows.scalars()]
