"""The published matching score: distance, rating and fair share of work, weighted by member vote.

score = (w_d · distance_term + w_r · rating_term + w_f · fair_share_term) / (w_d + w_r + w_f), where
- distance_term   = max(0, 1 − distance_km / distance_scale_km)                       (closer is better)
- rating_term     = (bayesian_rating − 1) / 4, bayesian_rating = (Σ ratings + m·k) / (n + k) with the
                    cooperative's prior mean m and weight k, so one review cannot sink or lift anyone
- fair_share_term = 1 − min(booked_hours_this_month, full_hours) / full_hours  (less work ranks higher)
Ties go to the member with fewer booked minutes this month, then to the lower member id (stable).
Every term is stored with each match and offer, so a member can see why a gig was (not) offered.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
KM_PER_DEGREE_LAT = 111.32
FORMULA = ("score = (w_d*distance_term + w_r*rating_term + w_f*fair_share_term) / (w_d + w_r + w_f); "
           "distance_term = max(0, 1 - km/distance_scale_km); rating_term = (bayesian_rating - 1)/4; "
           "fair_share_term = 1 - min(booked_hours_this_month, full_hours)/full_hours")


@dataclass(frozen=True)
class Weights:
    distance: int
    rating: int
    fair_share: int
    distance_scale_km: float = 30.0
    fair_share_full_hours: int = 140
    rating_prior_mean: float = 4.0
    rating_prior_weight: int = 3


@dataclass(frozen=True)
class Candidate:
    member_id: str
    display_name: str
    lat: float
    lon: float
    radius_km: float
    hourly_rate_cents: int
    rating_sum: int
    rating_count: int
    booked_minutes_this_month: int
    expected_monthly_gross_cents: int | None = None  # the member's salary plan, for their quotes


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    distance_km: float
    rating: float | None  # plain average shown to clients (None: no review yet)
    score: float
    distance_term: float
    rating_term: float
    bayesian_rating: float
    fair_share_term: float
    weights: Weights

    @property
    def why(self) -> dict[str, Any]:
        """The score's terms, as stored with every offer and shown to the member (built on demand:
        a search ranks hundreds of members and shows twenty)."""
        w = self.weights
        return {
            "score": round(self.score, 6),
            "distance_km": round(self.distance_km, 3),
            "distance_term": round(self.distance_term, 6),
            "rating": None if self.rating is None else round(self.rating, 3),
            "rating_count": self.candidate.rating_count,
            "bayesian_rating": round(self.bayesian_rating, 4),
            "rating_term": round(self.rating_term, 6),
            "booked_hours_this_month": round(self.candidate.booked_minutes_this_month / 60, 2),
            "fair_share_term": round(self.fair_share_term, 6),
            "weights": {"distance": w.distance, "rating": w.rating, "fair_share": w.fair_share},
            "formula": FORMULA,
        }


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def km_per_degree_lon(lat: float) -> float:
    """For the SQL bounding-box prefilter (the exact distance is checked afterwards)."""
    return max(KM_PER_DEGREE_LAT * math.cos(math.radians(lat)), 1e-6)


def score(candidate: Candidate, distance_km: float, weights: Weights) -> Ranked:
    distance_term = max(0.0, 1.0 - distance_km / weights.distance_scale_km)
    k = weights.rating_prior_weight
    bayes = (candidate.rating_sum + weights.rating_prior_mean * k) / (candidate.rating_count + k) if (
        candidate.rating_count + k) else weights.rating_prior_mean
    rating_term = (bayes - 1.0) / 4.0
    booked_hours = candidate.booked_minutes_this_month / 60
    fair_share_term = 1.0 - min(booked_hours, weights.fair_share_full_hours) / weights.fair_share_full_hours
    total_weight = weights.distance + weights.rating + weights.fair_share
    value = 0.0 if total_weight == 0 else (
        weights.distance * distance_term + weights.rating * rating_term + weights.fair_share * fair_share_term
    ) / total_weight
    rating = candidate.rating_sum / candidate.rating_count if candidate.rating_count else None
    return Ranked(candidate, distance_km, rating, value, distance_term, rating_term, bayes, fair_share_term, weights)


def rank(candidates: list[Candidate], *, lat: float, lon: float, weights: Weights) -> list[Ranked]:
    """Score the candidates whose own service radius reaches the client, best first."""
    ranked = []
    for c in candidates:
        d = haversine_km(lat, lon, c.lat, c.lon)
        if d <= c.radius_km:
            ranked.append(score(c, d, weights))
    ranked.sort(key=lambda r: (-r.score, r.candidate.booked_minutes_this_month, r.candidate.member_id))
    return ranked
