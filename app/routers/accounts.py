"""The member's own activity account, and the board's full ledger export (API.md)."""
from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from app.deps import AuditorUser, SessionDep, WorkerUser
from app.domain import ledger as rules
from app.domain.periods import period_bounds
from app.models import Booking
from app.services import ledger
from app.services.bookings import breakdown_of

router = APIRouter(tags=["accounts"])


class AccountEntry(BaseModel):
    reference: str
    kind: str
    description: str
    amount_cents: int  # positive: money the cooperative now holds for the member
    occurred_at: datetime


class MemberAccount(BaseModel):
    currency: str
    treasury_balance_cents: int
    pending_cents: int
    entries: list[AccountEntry]


@router.get("/members/me/account", response_model=MemberAccount)
async def my_account(user: WorkerUser, session: SessionDep,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> MemberAccount:
    """The member's treasury (what the cooperative holds for them), work not yet paid, and the entries."""
    code = rules.member_activity(str(user.member_id))
    balance = await ledger.account_balance(session, cooperative_id=user.cooperative_id, code=code)
    rows = await ledger.entries(session, cooperative_id=user.cooperative_id, account=code, limit=limit,
                                newest_first=True)
    # Pending: accepted or finished gigs whose payment has not reached the ledger yet (estimate at quote).
    pending_bookings = (await session.execute(select(Booking).where(
        Booking.worker_member_id == user.member_id,
        Booking.status.in_(("accepted", "in_progress", "completed")),
        Booking.payment_status.not_in(("captured", "failed"))))).scalars()
    pending = sum(breakdown_of(b).member_budget_cents for b in pending_bookings)
    return MemberAccount(currency="EUR", treasury_balance_cents=-balance, pending_cents=pending, entries=[
        AccountEntry(reference=r.reference, kind=r.kind, description=r.description, amount_cents=-r.amount_cents,
                     occurred_at=r.occurred_at) for r in rows])


class LedgerEntryPublic(BaseModel):
    transaction_id: str
    reference: str
    kind: str
    description: str
    account: str
    currency: str
    debit_cents: int
    credit_cents: int
    occurred_at: datetime


@router.get("/audit/ledger", response_model=list[LedgerEntryPublic])
async def ledger_export(user: AuditorUser, session: SessionDep, period: str,
                        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json"):
    """Every ledger entry of the period (JSON, or CSV with `?format=csv`), debits and credits apart."""
    start, end = period_bounds(period)
    rows = [LedgerEntryPublic(transaction_id=str(r.transaction_id), reference=r.reference, kind=r.kind,
                              description=r.description, account=r.account, currency=r.currency,
                              debit_cents=max(r.amount_cents, 0), credit_cents=max(-r.amount_cents, 0),
                              occurred_at=r.occurred_at)
            for r in await ledger.entries(session, cooperative_id=user.cooperative_id, start=start, end=end)]
    if format == "json":
        return rows
    out = io.StringIO()
    writer = csv.writer(out)
    fields = list(LedgerEntryPublic.model_fields)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([getattr(row, f).isoformat() if f == "occurred_at" else getattr(row, f) for f in fields])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="ledger-{period}.csv"'})
