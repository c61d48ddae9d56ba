"""The error contract (API.md "Errors"): every 4xx/5xx is {"error": {"code", "message"}};
never a 500 for bad input."""
from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from app.db import Database
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import PASSWORD, make_cooperative


def _assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert set(body["error"]) <= {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"email": "a@b.org", ', b"not json at all", b'{"email": "a@b.org",}'])
async def test_malformed_json_is_422_malformed_json(client, db, raw):
    resp = await client.post("/auth/register", content=raw, headers={"Content-Type": "application/json"})
    _assert_error(resp, 422, "malformed_json")


async def test_missing_fields_are_listed_in_details(client, db):
    resp = await client.post("/auth/register", json={"email": "a@example.org"})
    error = _assert_error(resp, 422, "validation_error")
    missing = {tuple(d["loc"]) for d in error["details"] if d["type"] == "missing"}
    expected = {("body", "password"), ("body", "display_name"), ("body", "role"), ("body", "cooperative")}
    assert expected <= missing
    assert all(set(d) == {"loc", "msg", "type"} for d in error["details"])


async def test_wrong_types_are_422_and_never_echo_the_password(client, db):
    secret = "Sup3r-Secret-Passw0rd-XYZ"
    valid = {"email": "a@example.org", "password": secret, "display_name": "A", "role": "client",
             "cooperative": "x"}
    cases = [
        {**valid, "email": "not-an-email"},
        {**valid, "display_name": ["A"]},
        {**valid, "role": "superuser"},
        {**valid, "is_admin": True},
        {**valid, "password": {"value": secret}},
        {**valid, "password": secret * 50},
    ]
    for body in cases:
        resp = await client.post("/auth/register", json=body)
        error = _assert_error(resp, 422, "validation_error")
        assert error["details"], error
        assert secret not in resp.text, resp.text


async def test_a_json_array_instead_of_an_object_is_422(client, db):
    resp = await client.post("/auth/register", json=[1, 2, 3])
    _assert_error(resp, 422, "validation_error")


async def test_login_form_validation_does_not_echo_the_password(client, db):
    secret = "Sup3r-Secret-Passw0rd-XYZ"
    resp = await client.post("/auth/token", data={"password": secret})
    error = _assert_error(resp, 422, "validation_error")
    assert ["body", "username"] in [d["loc"] for d in error["details"]]
    assert secret not in resp.text
    resp = await client.post("/auth/token", data={"username": "a@example.org", "password": "x" * 1025})
    _assert_error(resp, 422, "validation_error")
    assert "x" * 1025 not in resp.text


async def test_login_with_a_json_body_is_422_not_500(client, db):
    resp = await client.post("/auth/token", json={"username": "a@example.org", "password": PASSWORD})
    _assert_error(resp, 422, "validation_error")


@pytest.mark.parametrize("params", [{}, {"cooperative": ""}, {"cooperative": "x" * 64}])
async def test_query_parameter_validation_is_422(client, db, params):
    resp = await client.get("/services", params=params)
    error = _assert_error(resp, 422, "validation_error")
    assert any(d["loc"] == ["query", "cooperative"] for d in error["details"]), error


# ---- routing ------------------------------------------------------------------------------------


async def test_unknown_route_is_404_in_the_error_shape(client, root_client, db):
    _assert_error(await client.get("/no/such/thing"), 404, "not_found")
    _assert_error(await root_client.get("/nope"), 404, "not_found")


async def test_wrong_method_is_405_in_the_error_shape(client, root_client, db):
    resp = await client.delete("/me")
    _assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers.get("allow", "")
    _assert_error(await client.get("/auth/token"), 405, "method_not_allowed")
    _assert_error(await root_client.post("/healthz"), 405, "method_not_allowed")


# ---- body size ----------------------------------------------------------------------------------


async def test_body_over_the_limit_with_content_length_is_413(client, db, settings):
    resp = await client.post("/auth/register", content=b"x" * (settings.max_body_bytes + 1),
                             headers={"Content-Type": "application/json"})
    _assert_error(resp, 413, "payload_too_large")
    assert resp.headers.get("x-request-id")


async def test_body_just_at_the_limit_is_read(client, db, settings):
    # Exactly max_body_bytes of valid-but-useless JSON gets to validation: the limit is not off by one.
    filler = b'{"pad": "' + b"x" * (settings.max_body_bytes - 11) + b'"}'
    assert len(filler) == settings.max_body_bytes
    resp = await client.post("/auth/register", content=filler, headers={"Content-Type": "application/json"})
    _assert_error(resp, 422, "validation_error")


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("path,content_type", [
    ("/auth/register", "application/json"),
    ("/auth/token", "application/x-www-form-urlencoded"),
])
async def test_streamed_body_over_the_limit_is_413(client, db, settings, path, content_type):
    # No Content-Length (chunked): the limit is enforced while the body is read.
    request = client.build_request("POST", path, content=_chunks(settings.max_body_bytes + 100_000),
                                   headers={"Content-Type": content_type})
    assert "content-length" not in request.headers
    assert request.headers.get("transfer-encoding") == "chunked"
    resp = await client.send(request)
    _assert_error(resp, 413, "payload_too_large")


async def test_streamed_body_under_the_limit_is_accepted(client, db, settings):
    await make_cooperative(db, "streamed")

    async def body() -> AsyncIterator[bytes]:
        yield b'{"email": "streamed@example.org", "password": "'
        yield PASSWORD.encode()
        yield b'", "display_name": "S", "role": "client", "cooperative": "streamed"}'

    resp = await client.post("/auth/register", content=body(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text


# ---- unexpected errors --------------------------------------------------------------------------


@pytest.fixture
async def crashing_client(db, settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=db)
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("connection string postgres://admin:hunter2@db/internal")

    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_an_unexpected_exception_is_a_500_with_the_request_id(crashing_client):
    resp = await crashing_client.get("/boom")
    error = _assert_error(resp, 500, "internal_error")
    rid = resp.headers.get("x-request-id")
    assert rid and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert rid in error["message"]
    for leak in ("Traceback", "RuntimeError", "hunter2", "boom", 'File "'):
        assert leak not in resp.text


async def test_a_supplied_request_id_is_used_for_a_500(crashing_client):
    resp = await crashing_client.get("/boom", headers={"X-Request-ID": "support-ticket-42"})
    error = _assert_error(resp, 500, "internal_error")
    assert resp.headers["x-request-id"] == "support-ticket-42"
    assert "support-ticket-42" in error["message"]


@pytest.fixture
async def conflicting_client(db, settings) -> AsyncIterator[httpx.AsyncClient]:
    """A route whose transaction PostgreSQL really aborts for a concurrent update (SQLSTATE 40001),
    through SQLAlchemy as every service does."""
    from sqlalchemy import text

    slug = await make_cooperative(db)
    app = create_app(settings, database=db)
    router = APIRouter()

    @router.post("/conflict")
    async def conflict() -> None:
        sql = text("UPDATE cooperative SET name = name WHERE slug = :slug")
        async with db.engine.connect() as a, db.engine.connect() as b:
            a = await a.execution_options(isolation_level="REPEATABLE READ")
            await a.execute(text("SELECT 1 FROM cooperative WHERE slug = :slug"), {"slug": slug})  # a's snapshot
            await b.execute(sql, {"slug": slug})
            await b.commit()
            await a.execute(sql, {"slug": slug})  # could not serialize access due to concurrent update

    app.include_router(router)
    # raise_app_exceptions: the error must be answered inside the app (an exception reaching
    # Starlette's outermost middleware would be logged and counted as a 500 even if answered 409)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.mark.postgres
async def test_a_transaction_aborted_by_a_concurrent_one_is_a_409_to_retry_not_a_500(conflicting_client):
    resp = await conflicting_client.post("/conflict")
    error = _assert_error(resp, 409, "concurrent_update")
    assert "retry" in error["message"] and resp.headers["retry-after"] == "1" and resp.headers["x-request-id"]
    from app.middleware import REQUESTS
    assert REQUESTS.labels("POST", "/conflict", "409")._value.get() >= 1
    assert REQUESTS.labels("POST", "/conflict", "500")._value.get() == 0
    assert "serialize" not in resp.text and "Traceback" not in resp.text


@pytest.mark.postgres
async def test_no_database_connection_in_time_is_a_503_to_retry(db, settings):
    """The driver pool's acquire timing out (all connections busy) is an overload, not a bug."""
    small = Database(make_settings(db_driver_pool_size=1))
    app = create_app(settings, database=small)
    router = APIRouter()

    @router.get("/busy")
    async def busy() -> None:
        async with small.driver():
            async with small.driver():  # the only connection is taken: waits, then times out
                pass

    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    try:
        import app.db as app_db

        real_acquire = app_db.asyncpg.pool.Pool.acquire
        app_db.asyncpg.pool.Pool.acquire = lambda self, *, timeout=None: real_acquire(self, timeout=0.2)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            resp = await c.get("/busy")
    finally:
        app_db.asyncpg.pool.Pool.acquire = real_acquire
        await small.dispose()
    error = _assert_error(resp, 503, "database_busy")
    assert resp.headers["retry-after"] == "5" and "retry" in error["message"]
