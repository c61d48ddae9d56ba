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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """One distance (the ranking itself uses `_haversine_km`, the same formula on arrays)."""
    return float(_haversine_km(lat1, lon1, np.array([lat2], dtype=float), np.array([lon2], dtype=float))[0])


def _haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    p1, p2 = math.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def km_per_degree_lon(lat: float) -> float:
    """For the SQL bounding-box prefilter (the exact distance is checked afterwards)."""
    return max(KM_PER_DEGREE_LAT * math.cos(math.radians(lat)), 1e-6)


@dataclass(frozen=True)
class Pool:
    """Candidates as columns (position i is one member): a search ranks hundreds of members and
    shows twenty, so the score is computed on arrays and a `Candidate` is built only for those shown."""

    member_ids: np.ndarray  # str
    display_names: Sequence[str]
    lat: np.ndarray
    lon: np.ndarray
    radius_km: np.ndarray
    hourly_rate_cents: np.ndarray
    rating_sum: np.ndarray
    rating_count: np.ndarray
    booked_minutes: np.ndarray
    expected_gross: Sequence[int | None]

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> Pool:
        def column(name: str, dtype) -> np.ndarray:
            return np.array([getattr(c, name) for c in candidates], dtype=dtype)

        return cls(np.array([c.member_id for c in candidates], dtype=str), [c.display_name for c in candidates],
                   column("lat", float), column("lon", float), column("radius_km", float),
                   column("hourly_rate_cents", np.int64), column("rating_sum", np.int64),
                   column("rating_count", np.int64), column("booked_minutes_this_month", np.int64),
                   [c.expected_monthly_gross_cents for c in candidates])

    def __len__(self) -> int:
        return len(self.member_ids)

    def candidate(self, i: int) -> Candidate:
        return Candidate(str(self.member_ids[i]), self.display_names[i], float(self.lat[i]), float(self.lon[i]),
                         float(self.radius_km[i]), int(self.hourly_rate_cents[i]), int(self.rating_sum[i]),
                         int(self.rating_count[i]), int(self.booked_minutes[i]), self.expected_gross[i])


class Ranking(Sequence[Ranked]):
    """The ranked candidates, best first; each `Ranked` is built when first read."""

    def __init__(self, pool: Pool, order: np.ndarray, terms: dict[str, np.ndarray], weights: Weights) -> None:
        self._pool, self._order, self._terms, self._weights = pool, order, terms, weights
        self._built: dict[int, Ranked] = {}

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        built = self._built.get(k)
        if built is None:
            i, t = int(self._order[k]), self._terms
            count = int(self._pool.rating_count[i])
            built = self._built[k] = Ranked(
                self._pool.candidate(i), float(t["distance_km"][i]),
                int(self._pool.rating_sum[i]) / count if count else None, float(t["score"][i]),
                float(t["distance_term"][i]), float(t["rating_term"][i]), float(t["bayesian_rating"][i]),
                float(t["fair_share_term"][i]), self._weights)
        return built

    def member_ids(self) -> list[str]:
        return self._pool.member_ids[self._order].tolist()


def rank_pool(pool: Pool, *, lat: float, lon: float, weights: Weights) -> Ranking:
    """Score the candidates whose own service radius reaches the client, best first (ties: fewer
    booked minutes, then the lower member id)."""
    distance = _haversine_km(lat, lon, pool.lat, pool.lon)
    distance_term = np.maximum(0.0, 1.0 - distance / weights.distance_scale_km)
    k = weights.rating_prior_weight
    count = pool.rating_count + k
    bayes = np.where(count > 0, (pool.rating_sum + weights.rating_prior_mean * k) / np.maximum(count, 1),
                     weights.rating_prior_mean)
    rating_term = (bayes - 1.0) / 4.0
    booked_hours = pool.booked_minutes / 60
    fair_share_term = 1.0 - np.minimum(booked_hours, weights.fair_share_full_hours) / weights.fair_share_full_hours
    total_weight = weights.distance + weights.rating + weights.fair_share
    score = (np.zeros(len(pool)) if total_weight == 0 else (
        weights.distance * distance_term + weights.rating * rating_term + weights.fair_share * fair_share_term
    ) / total_weight)
    reach = np.flatnonzero(distance <= pool.radius_km)
    # np.lexsort: the last key is the primary one
    order = reach[np.lexsort((pool.member_ids[reach], pool.booked_minutes[reach], -score[reach]))]
    return Ranking(pool, order, {"distance_km": distance, "distance_term": distance_term, "rating_term": rating_term,
                                 "bayesian_rating": bayes, "fair_share_term": fair_share_term, "score": score},
                   weights)


def rank(candidates: Sequence[Candidate], *, lat: float, lon: float, weights: Weights) -> list[Ranked]:
    """Score the candidates whose own service radius reaches the client, best first."""
    return list(rank_pool(Pool.of(candidates), lat=lat, lon=lon, weights=weights))
