"""Operations endpoints (API.md "Operations"): liveness, readiness, Prometheus metrics, request ids."""
from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.db import Database
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import make_cooperative, make_user


async def test_healthz(root_client):
    resp = await root_client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_healthz_and_readyz_need_no_authentication_and_are_not_under_the_api_prefix(client):
    assert (await client.get("/healthz")).status_code == 404  # /api/v1/healthz


async def test_readyz_when_the_database_answers(root_client, db):
    resp = await root_client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready", "database": db.engine.dialect.name}


@pytest.fixture(params=["postgres_closed_port", "sqlite_missing_directory"])
async def unreachable_client(request, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "postgres_closed_port":
        url = "postgresql+asyncpg://nobody:nothing@127.0.0.1:1/nothing"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    settings = make_settings(database_url=url)
    database = Database(settings)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        await database.dispose()


async def test_readyz_is_503_when_the_database_is_unreachable(unreachable_client):
    resp = await unreachable_client.get("/readyz")
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "database_unavailable"
    assert "127.0.0.1" not in resp.text and "nothing" not in resp.text  # no connection details leak
    # the process itself is alive
    assert (await unreachable_client.get("/healthz")).status_code == 200


# ---- metrics ------------------------------------------------------------------------------------


async def _samples(root_client) -> dict[tuple[str, frozenset], float]:
    resp = await root_client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_requests_by_route_template(client, root_client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    before = await _samples(root_client)

    ids = [str(uuid.uuid4()) for _ in range(3)]
    for user_id in ids:
        assert (await client.get(f"/users/{user_id}", headers=account.headers)).status_code == 404
    assert (await client.get(f"/users/{account.id}", headers=account.headers)).status_code == 200

    resp = await root_client.get("/metrics")
    after = await _samples(root_client)
    template = "/api/v1/users/{user_id}"
    name = "coopgig_http_requests_total"
    assert _value(after, name, method="GET", route=template, status="404") \
        - _value(before, name, method="GET", route=template, status="404") == 3
    assert _value(after, name, method="GET", route=template, status="200") \
        - _value(before, name, method="GET", route=template, status="200") == 1
    # The raw paths (one per id) never become labels: that would grow without bound.
    for user_id in ids + [account.id]:
        assert user_id not in resp.text

    hist = "coopgig_http_request_duration_seconds"
    assert _value(after, f"{hist}_count", method="GET", route=template) \
        - _value(before, f"{hist}_count", method="GET", route=template) == 4
    assert _value(after, f"{hist}_bucket", method="GET", route=template, le="+Inf") \
        == _value(after, f"{hist}_count", method="GET", route=template)
    assert _value(after, f"{hist}_sum", method="GET", route=template) > 0


async def test_unmatched_paths_share_one_label(client, root_client, db):
    before = await _samples(root_client)
    for i in range(2):
        assert (await client.get(f"/random-{uuid.uuid4()}")).status_code == 404
    resp = await root_client.get("/metrics")
    after = await _samples(root_client)
    name = "coopgig_http_requests_total"
    assert _value(after, name, method="GET", route="<unmatched>", status="404") \
        - _value(before, name, method="GET", route="<unmatched>", status="404") == 2
    assert "/random-" not in resp.text


async def test_metrics_record_the_status_of_rejected_bodies(client, root_client, db, settings):
    before = await _samples(root_client)
    resp = await client.post("/auth/register", content=b"x" * (settings.max_body_bytes + 1),
                             headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    after = await _samples(root_client)
    total = sum(v for (n, labels), v in after.items()
                if n == "coopgig_http_requests_total" and ("status", "413") in labels)
    total_before = sum(v for (n, labels), v in before.items()
                       if n == "coopgig_http_requests_total" and ("status", "413") in labels)
    assert total - total_before == 1


# ---- request ids --------------------------------------------------------------------------------


async def test_a_supplied_request_id_is_echoed(root_client, client, db):
    resp = await root_client.get("/healthz", headers={"X-Request-ID": "abc-123.trace_ID"})
    assert resp.headers["x-request-id"] == "abc-123.trace_ID"
    # also on errors
    resp = await client.get("/me", headers={"X-Request-ID": "req-401"})
    assert resp.status_code == 401 and resp.headers["x-request-id"] == "req-401"


async def test_a_request_id_is_generated_otherwise(root_client):
    first = (await root_client.get("/healthz")).headers["x-request-id"]
    second = (await root_client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second


@pytest.mark.parametrize("unsafe", ["has space", "x" * 65, "new\\nline", "<script>", ""])
async def test_an_unsafe_request_id_is_replaced(root_client, unsafe):
    resp = await root_client.get("/healthz", headers={"X-Request-ID": unsafe})
    assert resp.status_code == 200
    rid = resp.headers["x-request-id"]
    assert rid != unsafe and re.fullmatch(r"[0-9a-f]{32}", rid)
