"""Marketplace tables: offerings, availability, bookings with their offers and events, reviews,
suspensions and appeals."""
from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Float, Index, String, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, id_field, json_field, timestamp_field

BOOKING_STATUSES = ("pending_payment", "offered", "accepted", "in_progress", "completed", "cancelled",
                    "expired", "refunded", "disputed")
# Matching treats a worker's slot as taken by a booking in these states (app/services/matching.py,
# app/services/supply.py): conservative, a completed booking's whole slot included.
HOLDING_STATUSES = ("accepted", "in_progress", "completed")
# A worker holds at most one booking at any time among these (the no-overlap rule: PostgreSQL's
# exclusion constraint ex_booking_worker_no_overlap, migration 0011; a serialized check on SQLite).
# A completed booking no longer holds its worker: one finished early frees the rest of its slot.
OVERLAP_GUARDED_STATUSES = ("accepted", "in_progress")
# The longest booking (API.md: duration_minutes <= 720); PostgreSQL also checks a booking's span
# against it (migration 0008), which the supply index's overlap search relies on.
MAX_BOOKING_MINUTES = 12 * 60


class SupplyVersion(SQLModel, table=True):
    """A counter per cooperative that PostgreSQL triggers bump in the same transaction as any change
    to what matching reads from members, their accounts, offerings and availability (migration
    0008). The bump locks the cooperative's row until commit, so versions follow commit order: a
    process whose supply index was loaded at the version it reads now is up to date."""

    __tablename__ = "supply_version"

    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", primary_key=True)
    version: int = Field(sa_type=BigInteger, nullable=False, default=0)


class HeldBookingChange(SQLModel, table=True):
    """One row per cooperative and transaction that changed what matching reads of its bookings (a
    booking entering or leaving the holding states, a held one changing worker or time), written by
    PostgreSQL triggers in that transaction (migration 0010). The supply index compares them with the
    snapshot it loaded the held bookings at (app/services/supply.py). No foreign key: an acceptance
    would lock its cooperative's row for it."""

    __tablename__ = "held_booking_change"

    cooperative_id: uuid.UUID = Field(primary_key=True)
    xact: int = Field(sa_type=BigInteger, primary_key=True)  # pg_current_xact_id() of the transaction
    at: datetime = timestamp_field()


class Offering(SQLModel, table=True):
    """A service a member offers, at the member's own hourly rate (excl. VAT)."""

    __tablename__ = "offering"
    __table_args__ = (UniqueConstraint("member_id", "service_id"),
                      CheckConstraint("hourly_rate_cents > 0", name="hourly_rate_positive"),
                      Index("ix_offering_service_id_cooperative_id", "service_id", "cooperative_id"))

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    member_id: uuid.UUID = Field(foreign_key="member.id", nullable=False)
    service_id: uuid.UUID = Field(foreign_key="service.id", nullable=False)
    hourly_rate_cents: int = Field(nullable=False)
    created_at: datetime = created_at_field()


class AvailabilityWindow(SQLModel, table=True):
    """A window the member publishes: a booking must fit wholly inside one."""

    __tablename__ = "availability_window"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),
                      Index("ix_availability_window_member_id_starts_at", "member_id", "starts_at"))

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    member_id: uuid.UUID = Field(foreign_key="member.id", nullable=False)
    starts_at: datetime = timestamp_field()
    ends_at: datetime = timestamp_field()


class Booking(SQLModel, table=True):
    """A client's booking; price and breakdown are frozen when quoted (fee schedule in force then)."""

    __tablename__ = "booking"
    __table_args__ = (
        CheckConstraint("status IN ('" + "','".join(BOOKING_STATUSES) + "')", name="status"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("price_cents >= 0", name="price_nonnegative"),
        Index("ix_booking_client_user_id_created_at", "client_user_id", "created_at"),
        Index("ix_booking_worker_member_id_starts_at", "worker_member_id", "starts_at"),
        Index("ix_booking_cooperative_id_status", "cooperative_id", "status"),
        # The supply index's per-request read (app/services/supply.py): a cooperative's bookings by
        # start time, answered from the index alone.
        Index("ix_booking_cooperative_id_starts_at", "cooperative_id", "starts_at",
              postgresql_include=["status", "worker_member_id", "ends_at", "duration_minutes"]),
        # For the background sweeper (app/background.py): only the few rows it looks for.
        Index("ix_booking_pending_payment_updated_at", "updated_at",
              postgresql_where=text("payment_status IN ('capture_pending', 'release_pending', 'capture_requested')"),
              sqlite_where=text("payment_status IN ('capture_pending', 'release_pending', 'capture_requested')")),
        Index("ix_booking_live_status", "status", postgresql_where=text("status IN ('pending_payment', 'offered')"),
              sqlite_where=text("status IN ('pending_payment', 'offered')")),
    )

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    client_user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False)
    service_id: uuid.UUID = Field(foreign_key="service.id", nullable=False)
    worker_member_id: uuid.UUID | None = Field(default=None, foreign_key="member.id")
    requested_member_id: uuid.UUID | None = Field(default=None, foreign_key="member.id")  # direct booking
    status: str = Field(sa_type=String(20), nullable=False)
    starts_at: datetime = timestamp_field()
    ends_at: datetime = timestamp_field()
    duration_minutes: int = Field(nullable=False)
    lat: float = Field(sa_type=Float, nullable=False)
    lon: float = Field(sa_type=Float, nullable=False)
    address: str = Field(sa_type=String(300), nullable=False)
    notes: str | None = Field(default=None, sa_type=Text)
    max_price_cents: int | None = None
    currency: str = Field(sa_type=String(3), nullable=False)
    vat_rate_bps: int = Field(nullable=False)
    hourly_rate_cents: int | None = None  # the accepted (or requested) worker's rate
    price_cents: int = Field(nullable=False)  # incl. VAT; the authorized amount until a worker accepts
    authorized_cents: int = Field(nullable=False)  # what the client's payment holds (capture <= this)
    price_excl_vat_cents: int = Field(nullable=False)  # the amount `price_cents` was split from
    breakdown: dict[str, Any] = json_field()
    fee_schedule_id: uuid.UUID = Field(foreign_key="fee_schedule.id", nullable=False)
    # The quote's frozen terms: schedule, salary rates and turnover so the split can be recomputed
    # exactly for a shorter actual duration or a cancellation fee.
    quote_terms: dict[str, Any] = json_field()
    actual_minutes: int | None = None
    final_price_cents: int | None = None  # captured amount (completion or late-cancellation fee)
    payment_provider: str = Field(sa_type=String(16), nullable=False)
    payment_intent_id: str | None = Field(default=None, sa_type=String(120), unique=True)
    payment_client_secret: str | None = Field(default=None, sa_type=String(200))
    payment_status: str = Field(default="none", sa_type=String(24), nullable=False)
    captured_cents: int = Field(default=0, nullable=False)  # what the processor actually took
    refunded_cents: int = Field(default=0, nullable=False)
    # Something staff must look at (a failed capture covered by the guarantee fund, a dispute...).
    payment_issue: str | None = Field(default=None, sa_type=String(200))
    cancelled_by: str | None = Field(default=None, sa_type=String(16))
    cancel_reason: str | None = Field(default=None, sa_type=String(500))
    offers_expire_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class BookingOffer(SQLModel, table=True):
    """A booking offered to one worker, with its own price and the score terms that made it."""

    __tablename__ = "booking_offer"
    __table_args__ = (
        UniqueConstraint("booking_id", "member_id"),
        CheckConstraint("status IN ('open','accepted','declined','expired','withdrawn')", name="status"),
        Index("ix_booking_offer_member_id_status", "member_id", "status"),
        Index("ix_booking_offer_open_expires_at", "expires_at", postgresql_where=text("status = 'open'"),
              sqlite_where=text("status = 'open'")),
    )

    id: uuid.UUID = id_field()
    # (Looked up by booking through uq_booking_offer_booking_id_member_id's leading column.)
    booking_id: uuid.UUID = Field(foreign_key="booking.id", nullable=False)
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    member_id: uuid.UUID = Field(foreign_key="member.id", nullable=False)
    status: str = Field(default="open", sa_type=String(12), nullable=False)
    rank: int = Field(nullable=False)
    score: float = Field(sa_type=Float, nullable=False)
    why: dict[str, Any] = json_field()
    hourly_rate_cents: int = Field(nullable=False)
    price_cents: int = Field(nullable=False)  # incl. VAT
    price_excl_vat_cents: int = Field(nullable=False)  # what `breakdown` splits
    breakdown: dict[str, Any] = json_field()
    quote_terms: dict[str, Any] = json_field()
    expires_at: datetime = timestamp_field()
    responded_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = created_at_field()


class BookingEvent(SQLModel, table=True):
    """Each transition of a booking: from, to, who and when."""

    __tablename__ = "booking_event"

    id: uuid.UUID = id_field()
    booking_id: uuid.UUID = Field(foreign_key="booking.id", nullable=False, index=True)
    from_status: str | None = Field(default=None, sa_type=String(20))
    to_status: str = Field(sa_type=String(20), nullable=False)
    actor_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    actor_role: str = Field(sa_type=String(16), nullable=False)
    data: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()
    # Orders the events of one booking (several can share a `created_at`: one request, one instant).
    # Transitions of a booking are serialized by its row lock, so wall-clock nanoseconds increase.
    seq: int = Field(default_factory=time.time_ns, sa_type=BigInteger, nullable=False)


class Review(SQLModel, table=True):
    """One review per side per completed booking."""

    __tablename__ = "review"
    __table_args__ = (UniqueConstraint("booking_id", "author_role"),
                      CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
                      CheckConstraint("author_role IN ('client','worker')", name="author_role"))

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    booking_id: uuid.UUID = Field(foreign_key="booking.id", nullable=False)
    author_user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False)
    author_role: str = Field(sa_type=String(8), nullable=False)
    subject_user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False, index=True)
    rating: int = Field(nullable=False)
    comment: str | None = Field(default=None, sa_type=Text)
    hidden: bool = Field(default=False, nullable=False)  # set when staff upholds a contest
    created_at: datetime = created_at_field()


class Appeal(SQLModel, table=True):
    """A member contesting a suspension or a review; staff must answer it."""

    __tablename__ = "appeal"
    __table_args__ = (CheckConstraint("kind IN ('suspension','review')", name="kind"),
                      CheckConstraint("status IN ('open','upheld','rejected')", name="status"),
                      Index("ix_appeal_cooperative_id_status", "cooperative_id", "status"),
                      # One open appeal per contested suspension or review (the service checks it
                      # under a row lock; the database refuses a second one whatever the path).
                      Index("uq_appeal_open_target", "kind", "target_id", unique=True,
                            postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")))

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    member_id: uuid.UUID = Field(foreign_key="member.id", nullable=False, index=True)
    kind: str = Field(sa_type=String(16), nullable=False)
    target_id: uuid.UUID = Field(nullable=False)  # the suspension or review contested
    statement: str = Field(sa_type=Text, nullable=False)
    status: str = Field(default="open", sa_type=String(12), nullable=False)
    decided_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    decision_note: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_at_field()
    decided_at: datetime | None = timestamp_field(nullable=True)


class Suspension(SQLModel, table=True):
    """A suspension of a member by staff, with its reason; lifted by staff (or an upheld appeal)."""

    __tablename__ = "suspension"
    # At most one suspension in force per member (lifted ones are history).
    __table_args__ = (Index("uq_suspension_active_member", "member_id", unique=True,
                            postgresql_where=text("lifted_at IS NULL"), sqlite_where=text("lifted_at IS NULL")),)

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False)
    member_id: uuid.UUID = Field(foreign_key="member.id", nullable=False, index=True)
    reason: str = Field(sa_type=Text, nullable=False)
    suspended_by_user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False)
    created_at: datetime = created_at_field()
    lifted_at: datetime | None = timestamp_field(nullable=True)
    lifted_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    lift_note: str | None = Field(default=None, sa_type=Text)
