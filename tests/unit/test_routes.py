"""The app's routing table: routers are mounted with the hot routes first (app/main.py), which is
only safe because a request that could match two routes only matches routes of one router (whose
own order, `/members/me` before `/members/{member_id}`, mounting keeps). Checked here for every
route, with values that fit every path parameter's converter."""
from __future__ import annotations

import re

from starlette.routing import Match

from app.main import create_app
from tests.conftest import make_settings

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _concrete(path: str) -> list[str]:
    """The route's path with its parameters filled, several ways (an id, a word, a slug)."""
    return [_PARAM.sub(value, path) for value in ("0b6a4d2e-9f1c-4d8e-8a57-3c1f0e9d2b6a", "me", "2026-11")]


def test_routes_of_different_routers_never_match_the_same_request_so_their_order_is_free():
    app = create_app(make_settings(database_url="sqlite+aiosqlite:///:memory:"))
    routes = [r for r in app.routes if getattr(r, "methods", None)]
    assert len(routes) > 30
    for route in routes:
        for path in _concrete(route.path):
            for method in route.methods - {"HEAD"}:
                scope = {"type": "http", "path": path, "method": method, "root_path": ""}
                full = [other for other in routes if other.matches(scope)[0] is Match.FULL]
                if route not in full:
                    continue  # the value does not fit this route's converter
                routers = {other.endpoint.__module__ for other in full}
                assert len(routers) == 1, (method, path, [(r.path, sorted(r.methods)) for r in full])


def test_the_hot_routes_are_tried_first():
    app = create_app(make_settings(database_url="sqlite+aiosqlite:///:memory:"))
    paths = [getattr(r, "path", "") for r in app.routes]
    hot = [paths.index(p) for p in ("/api/v1/matches", "/api/v1/bookings/{booking_id}/accept",
                                    "/api/v1/payments/stripe/webhook")]
    assert max(hot) < paths.index("/api/v1/auth/token") < paths.index("/healthz")
