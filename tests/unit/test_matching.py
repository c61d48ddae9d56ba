"""The published matching score (app/domain/matching.py)."""
from __future__ import annotations

import pytest

from app.domain.matching import Candidate, Weights, haversine_km, rank

LYON = (45.7640, 4.8357)


def cand(member_id: str, *, km_north: float = 1.0, radius: float = 20.0, rate: int = 3000, ratings=(0, 0),
         minutes: int = 0) -> Candidate:
    return Candidate(member_id, member_id, LYON[0] + km_north / 111.32, LYON[1], radius, rate, ratings[0], ratings[1],
                     minutes)


def test_haversine_paris_lyon_is_about_392_km():
    assert haversine_km(48.8566, 2.3522, *LYON) == pytest.approx(392, abs=3)
    assert haversine_km(*LYON, *LYON) == 0


def test_members_whose_radius_does_not_reach_the_client_are_not_ranked():
    ranked = rank([cand("near", km_north=2, radius=5), cand("far", km_north=8, radius=5)], lat=LYON[0], lon=LYON[1],
                  weights=Weights(30, 20, 50))
    assert [r.candidate.member_id for r in ranked] == ["near"]


def test_fair_share_puts_the_member_with_fewer_hours_first():
    ranked = rank([cand("busy", minutes=40 * 60), cand("idle", minutes=2 * 60)], lat=LYON[0], lon=LYON[1],
                  weights=Weights(0, 0, 100))
    assert [r.candidate.member_id for r in ranked] == ["idle", "busy"]
    assert ranked[0].why["fair_share_term"] > ranked[1].why["fair_share_term"]
    assert ranked[1].why["booked_hours_this_month"] == 40.0


def test_distance_wins_when_it_is_the_only_weight():
    ranked = rank([cand("b", km_north=6), cand("a", km_north=1)], lat=LYON[0], lon=LYON[1], weights=Weights(100, 0, 0))
    assert [r.candidate.member_id for r in ranked] == ["a", "b"]
    assert ranked[0].why["distance_term"] == pytest.approx(1 - ranked[0].distance_km / 30)


def test_one_bad_review_does_not_sink_a_newcomer_below_the_prior():
    # prior 4.0 weighted 3: one 1-star review gives (1 + 12) / 4 = 3.25, not 1.
    ranked = rank([cand("one_bad", ratings=(1, 1)), cand("new")], lat=LYON[0], lon=LYON[1], weights=Weights(0, 100, 0))
    assert [r.candidate.member_id for r in ranked] == ["new", "one_bad"]
    assert ranked[1].why["bayesian_rating"] == 3.25 and ranked[1].rating == 1.0 and ranked[0].rating is None


def test_ties_are_broken_by_fewer_hours_then_member_id_and_scores_stay_in_0_1():
    same = [cand("m2"), cand("m1"), cand("m3", minutes=60)]
    ranked = rank(same, lat=LYON[0], lon=LYON[1], weights=Weights(0, 0, 0))
    assert [r.candidate.member_id for r in ranked] == ["m1", "m2", "m3"]
    assert all(r.score == 0 for r in ranked)
    for r in rank(same, lat=LYON[0], lon=LYON[1], weights=Weights(30, 20, 50)):
        assert 0 <= r.score <= 1 and set(r.why) >= {"formula", "weights", "score"}


def _reference_rank(candidates, *, lat, lon, w: Weights):
    """The published formula, one candidate at a time, as the module docstring states it."""
    import math

    out = []
    for c in candidates:
        p1, p2 = math.radians(lat), math.radians(c.lat)
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(c.lon - lon) / 2) ** 2
        d = 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))
        if d > c.radius_km:
            continue
        k = w.rating_prior_weight
        bayes = (c.rating_sum + w.rating_prior_mean * k) / (c.rating_count + k) if c.rating_count + k else \
            w.rating_prior_mean
        terms = (max(0.0, 1 - d / w.distance_scale_km), (bayes - 1) / 4,
                 1 - min(c.booked_minutes_this_month / 60, w.fair_share_full_hours) / w.fair_share_full_hours)
        total = w.distance + w.rating + w.fair_share
        score = 0.0 if total == 0 else (w.distance * terms[0] + w.rating * terms[1] + w.fair_share * terms[2]) / total
        out.append((score, c.booked_minutes_this_month, c.member_id, d, terms))
    out.sort(key=lambda r: (-r[0], r[1], r[2]))
    return out


@pytest.mark.parametrize("weights", [Weights(30, 20, 50), Weights(0, 0, 0), Weights(1, 0, 0),
                                     Weights(10, 10, 10, rating_prior_weight=0)])
def test_the_ranking_computes_the_published_formula_for_every_candidate(weights):
    import random

    rng = random.Random(7)
    candidates = [cand(f"m{i:03d}", km_north=rng.uniform(-25, 25), radius=rng.choice([5.0, 15.0, 30.0]),
                       ratings=rng.choice([(0, 0), (5, 1), (37, 9), (12, 4)]),
                       minutes=rng.choice([0, 0, 90, 600, 9000]))
                  for i in range(300)]
    ranked = rank(candidates, lat=LYON[0], lon=LYON[1], weights=weights)
    expected = _reference_rank(candidates, lat=LYON[0], lon=LYON[1], w=weights)
    assert [r.candidate.member_id for r in ranked] == [e[2] for e in expected]
    for r, (score, _, _, d, terms) in zip(ranked, expected):
        assert r.score == pytest.approx(score, abs=1e-12) and r.distance_km == pytest.approx(d, abs=1e-9)
        assert (r.distance_term, r.rating_term, r.fair_share_term) == pytest.approx(terms, abs=1e-12)
    assert 50 < len(ranked) < 300  # some are out of their radius, most are not


def _ranking(n: int, seed: int = 11):
    import random

    from app.domain.matching import Pool, rank_pool

    rng = random.Random(seed)
    candidates = [cand(f"m{i:03d}", km_north=rng.uniform(-9, 9), radius=30.0,
                       ratings=rng.choice([(0, 0), (5, 1), (37, 9), (12, 4), (101, 23)]),
                       minutes=rng.choice([0, 45, 90, 600, 9001]))
                  for i in range(n)]
    return candidates, rank_pool(Pool.of(candidates), lat=LYON[0], lon=LYON[1], weights=Weights(30, 20, 50))


def test_why_is_each_term_rounded_as_documented_for_every_rank():
    # The terms are rounded a chunk of members at a time (numpy): the same numbers round() gives.
    candidates, ranking = _ranking(150)
    by_id = {c.member_id: c for c in candidates}
    assert len(ranking) == 150
    for r in ranking:  # past the first chunks too
        c = by_id[r.candidate.member_id]
        assert r.candidate == c
        assert r.why == {
            "score": round(r.score, 6), "distance_km": round(r.distance_km, 3),
            "distance_term": round(r.distance_term, 6),
            "rating": None if c.rating_count == 0 else round(c.rating_sum / c.rating_count, 3),
            "rating_count": c.rating_count, "bayesian_rating": round(r.bayesian_rating, 4),
            "rating_term": round(r.rating_term, 6), "booked_hours_this_month": round(c.booked_minutes_this_month / 60, 2),
            "fair_share_term": round(r.fair_share_term, 6), "weights": {"distance": 30, "rating": 20, "fair_share": 50},
            "formula": r.why["formula"]}
        assert r.rating == (None if c.rating_count == 0 else c.rating_sum / c.rating_count)


def test_the_ranking_reads_the_same_by_index_as_by_iteration():
    _, ranking = _ranking(120)
    by_index = [ranking[k] for k in (119, 0, 85, 20, 19, 84, 21)]  # out of order, across chunk edges
    listed = list(ranking)
    assert by_index == [listed[k] for k in (119, 0, 85, 20, 19, 84, 21)]
    assert ranking[-1] == listed[-1] and ranking[10:13] == listed[10:13]
    with pytest.raises(IndexError):
        ranking[120]
    with pytest.raises(IndexError):
        ranking[-121]
    _, fresh = _ranking(120)
    assert list(fresh) == listed  # the same input ranks the same way
