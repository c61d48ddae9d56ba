"""Payment records: idempotency keys of money-moving requests, processed Stripe events, refunds."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, created_at_field, id_field, timestamp_field


class IdempotencyKey(SQLModel, table=True):
    """One money-moving request per (user, key): its body hash, a lock while in flight, the
    recovery point reached (atomic phases) and, once finished, the response to replay."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False)
    key: str = Field(sa_type=String(200), nullable=False)
    request_method: str = Field(sa_type=String(8), nullable=False)
    request_path: str = Field(sa_type=String(300), nullable=False)
    request_hash: str = Field(sa_type=String(64), nullable=False)
    locked_at: datetime | None = timestamp_field(nullable=True)
    recovery_point: str = Field(default="started", sa_type=String(40), nullable=False)
    resource_id: uuid.UUID | None = None  # e.g. the booking created in the first atomic phase
    response_status: int | None = None
    response_body: Any | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = created_at_field()


class StripeEvent(SQLModel, table=True):
    """A Stripe event processed once: inserted in the same transaction as its effect."""

    __tablename__ = "stripe_event"

    id: str = Field(sa_type=String(255), primary_key=True)
    type: str = Field(sa_type=String(100), nullable=False)
    payment_intent_id: str | None = Field(default=None, sa_type=String(120), index=True)
    outcome: str = Field(sa_type=String(200), nullable=False)
    received_at: datetime = created_at_field()


class Refund(SQLModel, table=True):
    """A refund of a booking's payment (partial or whole), by staff or seen at the processor."""

    __tablename__ = "refund"

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    booking_id: uuid.UUID = Field(foreign_key="booking.id", nullable=False, index=True)
    provider_refund_id: str = Field(sa_type=String(120), unique=True, nullable=False)
    amount_cents: int = Field(nullable=False)
    reason: str = Field(sa_type=Text, nullable=False)
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = created_at_field()
