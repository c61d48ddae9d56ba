"""Cooperatives (tenants), users with roles, worker-members, refresh tokens and the audit trail."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr
from pydantic import Field as PField
from sqlalchemy import CheckConstraint, Float, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, id_field, json_field, timestamp_field

Role = Literal["client", "worker", "staff", "board", "admin"]
ROLES: tuple[str, ...] = ("client", "worker", "staff", "board", "admin")
Stage = Literal["cape", "cesa", "associate", "left"]
STAGES: tuple[str, ...] = ("cape", "cesa", "associate", "left")


class Cooperative(SQLModel, table=True):
    __tablename__ = "cooperative"

    id: uuid.UUID = id_field()
    slug: str = Field(sa_type=String(63), unique=True, nullable=False)
    name: str = Field(sa_type=String(200), nullable=False)
    currency: str = Field(default="EUR", sa_type=String(3), nullable=False)
    iban: str | None = Field(default=None, sa_type=String(34))
    bic: str | None = Field(default=None, sa_type=String(11))
    # The members' own choices (matching weights, delays, payroll inputs): see CooperativeSettings.
    settings: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    __table_args__ = (CheckConstraint("role IN ('client','worker','staff','board','admin')", name="role"),)

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False, index=True)
    # Stored lower-cased; unique across the deployment so a login needs no cooperative.
    email: str = Field(sa_type=String(320), unique=True, nullable=False)
    password_hash: str = Field(sa_type=String(255), nullable=False)
    display_name: str = Field(sa_type=String(120), nullable=False)
    role: str = Field(sa_type=String(16), nullable=False)
    is_active: bool = Field(default=True, nullable=False)
    created_at: datetime = created_at_field()


class Member(SQLModel, table=True):
    """A worker-member: the employment side of a `worker` user (stage, later profile and payroll)."""

    __tablename__ = "member"
    __table_args__ = (CheckConstraint("stage IN ('cape','cesa','associate','left')", name="stage"),)

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False, index=True)
    user_id: uuid.UUID = Field(foreign_key="app_user.id", unique=True, nullable=False)
    stage: str = Field(default="cape", sa_type=String(16), nullable=False)
    stage_signed_at: datetime | None = timestamp_field(nullable=True)
    cesa_signed_at: datetime | None = timestamp_field(nullable=True)
    associate_signed_at: datetime | None = timestamp_field(nullable=True)
    bio: str | None = Field(default=None, sa_type=Text)
    lat: float | None = Field(default=None, sa_type=Float)
    lon: float | None = Field(default=None, sa_type=Float)
    radius_km: float | None = Field(default=None, sa_type=Float)
    iban: str | None = Field(default=None, sa_type=String(34))
    # Salary plan (DESIGN.md "Payroll"): `full` converts the whole balance; `fixed` pays a chosen gross.
    salary_mode: str = Field(default="full", sa_type=String(8), nullable=False)
    fixed_monthly_gross_cents: int | None = None
    # Ratings received from clients (hidden reviews excluded), kept as sum and count for matching.
    rating_sum: int = Field(default=0, nullable=False)
    rating_count: int = Field(default=0, nullable=False)
    suspended: bool = Field(default=False, nullable=False)
    created_at: datetime = created_at_field()


class RefreshToken(SQLModel, table=True):
    """A refresh token, stored only as its SHA-256; rotated on use, revocable by family."""

    __tablename__ = "refresh_token"

    id: uuid.UUID = id_field()
    user_id: uuid.UUID = Field(foreign_key="app_user.id", nullable=False, index=True)
    family_id: uuid.UUID = Field(nullable=False, index=True)
    token_hash: str = Field(sa_type=String(64), unique=True, nullable=False)
    expires_at: datetime = timestamp_field()
    revoked_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = created_at_field()


class AuditEvent(SQLModel, table=True):
    """Who did what and when (staff actions, stage changes, fee changes...). Append-only."""

    __tablename__ = "audit_event"

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID | None = Field(default=None, foreign_key="cooperative.id", index=True)
    actor_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    action: str = Field(sa_type=String(64), nullable=False)
    target_type: str = Field(sa_type=String(64), nullable=False)
    target_id: str = Field(sa_type=String(64), nullable=False)
    data: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()


class Service(SQLModel, table=True):
    """A kind of gig a cooperative offers (cleaning, tutoring...), with its VAT rate."""

    __tablename__ = "service"
    __table_args__ = (
        UniqueConstraint("cooperative_id", "name"),
        CheckConstraint("vat_rate_bps >= 0 AND vat_rate_bps <= 10000", name="vat_rate_bps"),
    )

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False, index=True)
    name: str = Field(sa_type=String(120), nullable=False)
    vat_rate_bps: int = Field(nullable=False)
    created_at: datetime = created_at_field()


# ---- API shapes -------------------------------------------------------------------------------


class UserRegister(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr
    password: str = PField(min_length=1, max_length=1024)
    display_name: str = PField(min_length=1, max_length=120)
    role: Literal["client", "worker"]
    cooperative: str = PField(min_length=1, max_length=63)


class UserPublic(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: str
    cooperative: str
    member_id: uuid.UUID | None = None
    membership_stage: str | None = None


class UserProfilePublic(BaseModel):
    """What another user of the same cooperative may see of a user."""

    id: uuid.UUID
    display_name: str
    role: str
    member_id: uuid.UUID | None = None


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = PField(min_length=1, max_length=512)


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = PField(min_length=1, max_length=120)
    vat_rate_bps: int = PField(ge=0, le=10000)


class ServicePublic(BaseModel):
    id: uuid.UUID
    name: str
    vat_rate_bps: int


class CooperativePublic(BaseModel):
    slug: str
    name: str
    currency: str
