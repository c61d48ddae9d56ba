"""The fee schedule of a cooperative, with its history: what a quote at a given instant uses."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PField
from sqlalchemy import CheckConstraint, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, id_field, timestamp_field
from app.models.base import JSONType


class FeeScheduleVersion(SQLModel, table=True):
    """One version of the schedule, in force from `effective_from` until the next version."""

    __tablename__ = "fee_schedule"
    __table_args__ = (
        UniqueConstraint("cooperative_id", "effective_from"),
        CheckConstraint("contribution_rate_bps BETWEEN 0 AND 10000", name="contribution_rate_bps"),
        CheckConstraint("processing_fee_bps BETWEEN 0 AND 10000", name="processing_fee_bps"),
        CheckConstraint("processing_fee_fixed_cents >= 0", name="processing_fee_fixed_cents"),
        CheckConstraint("min_fixed_monthly_gross_cents >= 0", name="min_fixed_monthly_gross_cents"),
        CheckConstraint("processing_fee_payer IN ('member','cooperative')", name="processing_fee_payer"),
    )

    id: uuid.UUID = id_field()
    cooperative_id: uuid.UUID = Field(foreign_key="cooperative.id", nullable=False, index=True)
    effective_from: datetime = timestamp_field()
    contribution_rate_bps: int = Field(nullable=False)
    # [{"above_yearly_turnover_cents": int, "rate_bps": int}, ...] ascending, marginal rates.
    contribution_tiers: list[dict[str, int]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    processing_fee_payer: str = Field(sa_type=String(16), nullable=False)
    processing_fee_bps: int = Field(nullable=False)
    processing_fee_fixed_cents: int = Field(nullable=False)
    min_fixed_monthly_gross_cents: int = Field(default=0, nullable=False)
    decided_by: str = Field(sa_type=String(200), nullable=False)
    created_by_user_id: uuid.UUID | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = created_at_field()


class ContributionTierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    above_yearly_turnover_cents: int = PField(gt=0)
    rate_bps: int = PField(ge=0, le=10000)


class FeeScheduleChange(BaseModel):
    """A staff change of the schedule (audited). Governance votes will produce the same shape."""

    model_config = ConfigDict(extra="forbid")

    contribution_rate_bps: int = PField(ge=0, le=10000)
    contribution_tiers: list[ContributionTierIn] = PField(default_factory=list, max_length=10)
    processing_fee_payer: Literal["member", "cooperative"]
    processing_fee_bps: int = PField(ge=0, le=10000)
    processing_fee_fixed_cents: int = PField(ge=0, le=100_000)
    min_fixed_monthly_gross_cents: int = PField(default=0, ge=0, le=10_000_000)
    effective_from: datetime | None = None
    reason: str = PField(min_length=3, max_length=500)

    @model_validator(mode="after")
    def _tiers_ascending(self) -> "FeeScheduleChange":
        thresholds = [t.above_yearly_turnover_cents for t in self.contribution_tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("contribution tiers must have strictly ascending thresholds")
        if self.effective_from is not None and self.effective_from.tzinfo is None:
            raise ValueError("effective_from needs a UTC offset (RFC 3339)")
        return self


class FeeSchedulePublic(BaseModel):
    contribution_rate_bps: int
    contribution_tiers: list[dict[str, Any]]
    processing_fee_payer: str
    processing_fee_bps: int
    processing_fee_fixed_cents: int
    min_fixed_monthly_gross_cents: int
    effective_from: datetime
    decided_by: str


class FeeScheduleWithHistory(FeeSchedulePublic):
    history: list[FeeSchedulePublic]
    upcoming: list[FeeSchedulePublic]
