"""GET /matches and POST /bookings/{id}/accept validate their parameters themselves
(`deps.query_model`, `deps.path_model`: one model instead of FastAPI's per-parameter work): their
answers to bad input must stay exactly those FastAPI gives for the same parameters declared the
usual way, and the OpenAPI document must still list them."""
from __future__ import annotations

import uuid
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, Query
from pydantic import AwareDatetime

from app.models.marketplace import MAX_BOOKING_MINUTES
from tests.market import booking_body, make_market, next_day_at


def _declared_the_usual_way() -> FastAPI:
    """The route's parameters as FastAPI parameters (what GET /matches declared before)."""
    reference = FastAPI()

    @reference.post("/bookings/{booking_id}/accept")
    async def accept(booking_id: uuid.UUID) -> dict:
        return {}

    @reference.get("/matches")
    async def matches(service_id: uuid.UUID, starts_at: AwareDatetime,
                      duration_minutes: Annotated[int, Query(ge=15, le=MAX_BOOKING_MINUTES)],
                      lat: Annotated[float, Query(ge=-90, le=90)], lon: Annotated[float, Query(ge=-180, le=180)],
                      max_price_cents: Annotated[int | None, Query(gt=0)] = None) -> dict:
        return {}

    return reference


def _details(errors: list[dict]) -> list[dict]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def _bad_queries(service_id: str) -> list[str]:
    ok = {"service_id": service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": "60",
          "lat": "45.764", "lon": "4.8357"}

    def q(**changes) -> str:
        values = {**ok, **changes}
        return str(httpx.QueryParams({k: v for k, v in values.items() if v is not None}))

    return [
        "",  # everything missing
        q(service_id=None, lat=None),
        q(service_id="not-a-uuid"),
        q(service_id=""),
        q(starts_at="2026-12-01T10:00:00"),  # no time zone
        q(starts_at="tomorrow"),
        q(duration_minutes="5"), q(duration_minutes=str(MAX_BOOKING_MINUTES + 1)), q(duration_minutes="1.5"),
        q(duration_minutes="abc"), q(duration_minutes=""),
        q(lat="91"), q(lon="-180.5"), q(lat="north"), q(lat="nan"), q(lon="inf"),
        q(max_price_cents="0"), q(max_price_cents="-5"), q(max_price_cents="ten"),
        q() + "&duration_minutes=5",  # repeated: the last one counts
        q(lat="100", lon="200", duration_minutes="0", max_price_cents="0"),  # several errors, in order
    ]


async def test_bad_queries_get_the_same_422_as_fastapi_parameters(client, db, settings):
    market = await make_market(client, db, settings, workers=1)
    reference = httpx.AsyncClient(transport=httpx.ASGITransport(app=_declared_the_usual_way()), base_url="http://ref")
    async with reference:
        for query in _bad_queries(market.service_id):
            expected = await reference.get(f"/matches?{query}")
            assert expected.status_code == 422, query
            resp = await client.get(f"/matches?{query}", headers=market.client.headers)
            assert resp.status_code == 422, (query, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "validation_error"
            assert error["details"] == _details(expected.json()["detail"]), query


async def test_a_good_query_with_unknown_or_repeated_keys_is_answered(client, db, settings):
    market = await make_market(client, db, settings, workers=1)
    query = str(httpx.QueryParams({
        "service_id": market.service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": "5",
        "lat": "45.764", "lon": "4.8357", "utm_source": "app"})) + "&duration_minutes=120"
    resp = await client.get(f"/matches?{query}", headers=market.client.headers)
    assert resp.status_code == 200, resp.text
    assert [m["worker_id"] for m in resp.json()] == [market.workers[0].member_id]
    assert resp.json()[0]["price_cents"] == 7200  # 30.00 €/h × 2 h (the last duration given) + 20% VAT


@pytest.mark.parametrize(("headers", "code"), [({}, "not_authenticated"),
                                               ({"Authorization": "Bearer not-a-token"}, "invalid_token")])
async def test_a_good_query_without_a_valid_token_is_401(client, db, settings, headers, code):
    market = await make_market(client, db, settings, workers=1)
    resp = await client.get("/matches", headers=headers, params={
        "service_id": market.service_id, "starts_at": next_day_at(10).isoformat(), "duration_minutes": 60,
        "lat": 45.764, "lon": 4.8357})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == code


async def test_the_openapi_document_lists_the_query_parameters(root_client, db):
    operation = (await root_client.get("/openapi.json")).json()["paths"]["/api/v1/matches"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert list(params) == ["service_id", "starts_at", "duration_minutes", "lat", "lon", "max_price_cents"]
    assert all(p["in"] == "query" for p in params.values())
    assert {n for n, p in params.items() if p["required"]} == set(params) - {"max_price_cents"}
    assert params["duration_minutes"]["schema"]["minimum"] == 15
    assert params["service_id"]["schema"]["format"] == "uuid"
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "200" in operation["responses"]


@pytest.mark.parametrize("booking_id", ["not-a-uuid", "123", "0b6a4d2e-9f1c-4d8e-8a57-3c1f0e9d2b6", "%20",
                                        "0b6a4d2e-9f1c-4d8e-8a57-3c1f0e9d2b6g"])
async def test_a_malformed_booking_id_to_accept_gets_the_same_422_as_a_fastapi_parameter(client, db, booking_id):
    reference = httpx.AsyncClient(transport=httpx.ASGITransport(app=_declared_the_usual_way()), base_url="http://ref")
    async with reference:
        expected = await reference.post(f"/bookings/{booking_id}/accept")
    assert expected.status_code == 422
    resp = await client.post(f"/bookings/{booking_id}/accept")  # (before the token, as FastAPI would)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["details"] == _details(expected.json()["detail"])
    assert resp.json()["error"]["details"][0]["loc"] == ["path", "booking_id"]


async def test_a_booking_id_in_another_accepted_spelling_is_the_same_booking(client, db, settings):
    # pydantic reads a UUID without hyphens (or in capitals) too, as FastAPI's parameter did.
    market = await make_market(client, db, settings, workers=1)
    worker = market.workers[0]
    created = await client.post("/bookings", headers=market.client.headers,
                                json=booking_body(market, worker_id=worker.member_id))
    assert created.status_code == 201, created.text
    spelled = uuid.UUID(created.json()["id"]).hex.upper()
    resp = await client.post(f"/bookings/{spelled}/accept", headers=worker.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == created.json()["id"] and resp.json()["status"] == "accepted"


async def test_the_openapi_document_lists_the_booking_id_of_accept(root_client, db):
    operation = (await root_client.get("/openapi.json")).json()["paths"]["/api/v1/bookings/{booking_id}/accept"]
    assert [(p["name"], p["in"], p["required"], p["schema"].get("format")) for p in operation["post"]["parameters"]] \
        == [("booking_id", "path", True, "uuid")]
    assert operation["post"]["security"] == [{"HTTPBearer": []}]
