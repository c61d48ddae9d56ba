"""Double-entry ledger tables: accounts, transactions and their entries (append-only, integer cents)."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, id_field, timestamp_field


class LedgerAccount(SQLModel, table=True):
    """One account of a cooperative's chart, per currency (`member:{id}:activity` for each member)."""

    __tablename__ = "ledger_account"
    __table_args__ = (UniqueConstraint("cooperative_id", "currency", "code"),)

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    currency: str = Field(sa_type=String(3), nullable=False)
    code: str = Field(sa_type=String(80), nullable=False)
    kind: str = Field(sa_type=String(16), nullable=False)
    member_id: uuid.UUID | None = Field(default=None, foreign_key="member.id", index=True)
    created_at: datetime = created_at_field()


class LedgerTransaction(SQLModel, table=True):
    """A balanced set of entries for one business event; `reference` makes a retried event post once."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (
        UniqueConstraint("cooperative_id", "reference"),
        Index("ix_ledger_transaction_cooperative_id_occurred_at", "cooperative_id", "occurred_at"),
    )

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    currency: str = Field(sa_type=String(3), nullable=False)
    reference: str = Field(sa_type=String(200), nullable=False)
    kind: str = Field(sa_type=String(40), nullable=False)
    description: str = Field(sa_type=String(500), nullable=False)
    occurred_at: datetime = timestamp_field()
    created_at: datetime = created_at_field()


class LedgerEntry(SQLModel, table=True):
    """One signed line of a transaction: positive = debit, negative = credit."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount_cents <> 0", name="amount_nonzero"),
        Index("ix_ledger_entry_account_id_occurred_at", "account_id", "occurred_at"),
    )

    id: uuid.UUID = id_field()
    transaction_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("ledger_transaction.id"), nullable=False, index=True))
    account_id: uuid.UUID = Field(sa_column=Column(ForeignKey("ledger_account.id"), nullable=False))
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    amount_cents: int = Field(sa_type=BigInteger, nullable=False)
    # Copied from the transaction so balances "as of" a date need no join.
    occurred_at: datetime = timestamp_field()
