"""A cooperative's own settings: choices its members make (matching weights, delays, payroll inputs).

Stored as JSON on the cooperative and read through this model, so every value has a documented
default and a range; a setting is never a constant in code (DESIGN.md).
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CooperativeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Matching (DESIGN.md "Matching"): weights of the published score, in percent of the total.
    matching_weight_distance: int = Field(default=30, ge=0, le=100)
    matching_weight_rating: int = Field(default=20, ge=0, le=100)
    matching_weight_fair_share: int = Field(default=50, ge=0, le=100)
    # Booked hours in the month at which the fair-share term reaches 0 (about a full-time month).
    fair_share_full_hours: int = Field(default=140, ge=1, le=400)
    # Bayesian prior of ratings, so a new member is not ranked below a member with one bad review.
    rating_prior_mean_tenths: int = Field(default=40, ge=10, le=50)
    rating_prior_weight: int = Field(default=3, ge=0, le=100)
    open_booking_candidates: int = Field(default=5, ge=1, le=50)
    matches_limit: int = Field(default=20, ge=1, le=100)
    offer_ttl_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    min_lead_minutes: int = Field(default=30, ge=0, le=7 * 24 * 60)
    # Cancellation policy: free until this notice; later, a client owes the worker this share.
    free_cancellation_notice_hours: int = Field(default=24, ge=0, le=24 * 30)
    late_cancellation_fee_bps: int = Field(default=5000, ge=0, le=10000)
    # Quotes split the member budget at the member's expected monthly gross (when they set none).
    default_expected_monthly_gross_cents: int = Field(default=200_000, ge=0)
    # Payments: cover a failed capture of completed work from the guarantee fund.
    guarantee_fund_enabled: bool = True
    # Payroll inputs that change the figures (DESIGN.md "Payroll"): never hidden defaults.
    headcount: int = Field(default=100, ge=1, le=1_000_000)
    work_accident_rate_bps: int | None = Field(default=None, ge=0, le=10000)
    transport_levy_rate_bps: int | None = Field(default=None, ge=0, le=10000)
    salary_category: str = Field(default="prive_non_cadre", pattern="^prive_(non_)?cadre$")
    health_cover_monthly_cents: int = Field(default=0, ge=0, le=100_000)
    # Matching distance scale: at this distance the distance term reaches 0.
    distance_scale_km: int = Field(default=30, ge=1, le=500)


def settings_of(raw: dict | None) -> CooperativeSettings:
    return CooperativeSettings(**(raw or {}))
