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
from typing import Any, NamedTuple

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


class Candidate(NamedTuple):
    """One eligible member (immutable; a NamedTuple: built four times faster than a frozen
    dataclass, and a search builds one per member it shows)."""

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


class Ranked(NamedTuple):
    """A candidate with its score and the score's terms (immutable, as `Candidate`)."""

    candidate: Candidate
    distance_km: float
    rating: float | None  # plain average shown to clients (None: no review yet)
    score: float
    distance_term: float
    rating_term: float
    bayesian_rating: float
    fair_share_term: float
    weights: Weights
    # The score's terms, rounded (score and terms to 6 decimals, distance and rating to 3, the
    # Bayesian rating to 4, hours to 2), with the weights and the formula: stored with every offer
    # and shown to the member.
    why: dict[str, Any]


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
    """The ranked candidates, best first; each `Ranked` is built when first read, in chunks (the
    arrays' values turned into Python numbers a slice at a time, not one element at a time)."""

    FIRST_CHUNK, CHUNK = 20, 64  # a search shows twenty by default

    def __init__(self, pool: Pool, order: np.ndarray, terms: dict[str, np.ndarray], weights: Weights) -> None:
        self._pool, self._order, self._terms, self._weights = pool, order, terms, weights
        self._built: list[Ranked] = []

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self._order):
            raise IndexError(k)
        while k >= len(self._built):
            self._build_next()
        return self._built[k]

    def __iter__(self):
        for k in range(len(self._order)):
            if k >= len(self._built):
                self._build_next()
            yield self._built[k]

    def _build_next(self) -> None:
        done = len(self._built)
        at = self._order[done:done + (self.CHUNK if done else self.FIRST_CHUNK)]
        p, t, weights = self._pool, self._terms, self._weights
        names, expected = p.display_names, p.expected_gross
        rating_sum, rating_count = p.rating_sum[at], p.rating_count[at]
        reviewed = rating_count > 0
        average = np.divide(rating_sum, rating_count, out=np.zeros(len(at)), where=reviewed)
        # Rounded a chunk at a time (np.round: the nearest double to the decimal, as round() gives).
        r6 = np.round(np.stack([t["score"][at], t["distance_term"][at], t["rating_term"][at],
                                t["fair_share_term"][at]]), 6).tolist()
        r3 = np.round(np.stack([t["distance_km"][at], average]), 3).tolist()
        r4 = np.round(t["bayesian_rating"][at], 4).tolist()
        r2 = np.round(p.booked_minutes[at] / 60, 2).tolist()
        for k, (i, member_id, lat, lon, radius, rate, rsum, count, booked, distance, score, distance_term,
                rating_term, bayes, fair_share_term, has_rating) in enumerate(zip(
                at.tolist(), p.member_ids[at].tolist(), p.lat[at].tolist(), p.lon[at].tolist(),
                p.radius_km[at].tolist(), p.hourly_rate_cents[at].tolist(), rating_sum.tolist(),
                rating_count.tolist(), p.booked_minutes[at].tolist(), t["distance_km"][at].tolist(),
                t["score"][at].tolist(), t["distance_term"][at].tolist(), t["rating_term"][at].tolist(),
                t["bayesian_rating"][at].tolist(), t["fair_share_term"][at].tolist(), reviewed.tolist(),
                strict=True)):
            candidate = Candidate(member_id, names[i], lat, lon, radius, rate, rsum, count, booked, expected[i])
            why = {"score": r6[0][k], "distance_km": r3[0][k], "distance_term": r6[1][k],
                   "rating": r3[1][k] if has_rating else None, "rating_count": count, "bayesian_rating": r4[k],
                   "rating_term": r6[2][k], "booked_hours_this_month": r2[k], "fair_share_term": r6[3][k],
                   "weights": {"distance": weights.distance, "rating": weights.rating,
                               "fair_share": weights.fair_share},
                   "formula": FORMULA}
            self._built.append(Ranked(candidate, distance, rsum / count if has_rating else None, score,
                                      distance_term, rating_term, bayes, fair_share_term, weights, why))

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
