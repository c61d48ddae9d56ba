"""API shapes of the marketplace (API.md "Worker-members", "Matching and bookings")."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from app.models.marketplace import MAX_BOOKING_MINUTES


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class OfferingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_id: uuid.UUID
    hourly_rate_cents: int = Field(gt=0, le=1_000_000)


class OfferingPublic(BaseModel):
    service_id: uuid.UUID
    service_name: str
    hourly_rate_cents: int
    fair_pay_floor_cents: int


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> "AvailabilityIn":
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > timedelta(days=31):
            raise ValueError("a window lasts at most 31 days")
        return self


class AvailabilityPublic(BaseModel):
    starts_at: datetime
    ends_at: datetime


class Match(BaseModel):
    worker_id: uuid.UUID
    display_name: str
    rating: float | None
    rating_count: int
    distance_km: float
    hourly_rate_cents: int
    price_cents: int
    breakdown: dict[str, Any]
    score: float
    why: dict[str, Any]


class BookingPath(BaseModel):
    """The path of the hot routes on one booking (parsed by `deps.path_model`)."""

    booking_id: uuid.UUID


class MatchesQuery(BaseModel):
    """GET /matches' query (parsed by `deps.query_model`; unknown parameters are ignored, as for
    any route's query)."""

    service_id: uuid.UUID
    starts_at: AwareDatetime
    duration_minutes: int = Field(ge=15, le=MAX_BOOKING_MINUTES)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    max_price_cents: int | None = Field(default=None, gt=0)


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    service_id: uuid.UUID
    starts_at: AwareDatetime
    duration_minutes: int = Field(ge=15, le=MAX_BOOKING_MINUTES)
    location: Location
    address: str = Field(min_length=3, max_length=300)
    notes: str | None = Field(default=None, max_length=2000)
    worker_id: uuid.UUID | None = None
    max_price_cents: int | None = Field(default=None, gt=0, le=100_000_000)


class PaymentPublic(BaseModel):
    provider: str
    payment_intent_id: str | None
    client_secret: str | None
    status: str


class BookingEventPublic(BaseModel):
    from_status: str | None
    to_status: str
    actor_role: str
    actor_user_id: uuid.UUID | None
    data: dict[str, Any]
    at: datetime


class BookingPublic(BaseModel):
    id: uuid.UUID
    status: str
    service_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    duration_minutes: int
    location: Location
    address: str | None  # shown to a worker once they hold the booking
    notes: str | None
    worker_id: uuid.UUID | None
    price_cents: int
    currency: str
    breakdown: dict[str, Any]
    actual_minutes: int | None
    final_price_cents: int | None
    cancelled_by: str | None
    cancel_reason: str | None
    payment: PaymentPublic
    created_at: datetime
    events: list[BookingEventPublic] | None = None


class OfferPublic(BaseModel):
    booking_id: uuid.UUID
    service_id: uuid.UUID
    starts_at: datetime
    duration_minutes: int
    price_cents: int
    hourly_rate_cents: int
    breakdown: dict[str, Any]
    expires_at: datetime
    why: dict[str, Any]
    rank: int
    location: Location


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actual_minutes: int = Field(ge=1, le=MAX_BOOKING_MINUTES)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=1, max_length=500)
