"""Typed dependencies: settings, the session (one unit of work), the authenticated caller, role guards.

Routes are authenticated unless they declare no `CurrentUser`; the public ones are listed in
app/routers/__init__.py (PUBLIC_ROUTES).
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import Database, PgStatement
from app.errors import Forbidden, Unauthorized
from app.models import Cooperative, Member, User
from app.payments.port import PaymentGateway
from app.security import AccessClaims, decode_access_token


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.db.sessionmaker() as session:
        yield session


async def get_clock(request: Request) -> Callable[[], datetime]:
    return request.app.state.clock


async def get_now(request: Request) -> datetime:
    """The current instant, from the app's clock (tests move it to check expiry and policies)."""
    return request.app.state.clock()


async def get_gateway(request: Request) -> PaymentGateway:
    return request.app.state.gateway


async def get_rate_cards(request: Request):
    return request.app.state.rate_cards


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
NowDep = Annotated[datetime, Depends(get_now)]
GatewayDep = Annotated[PaymentGateway, Depends(get_gateway)]
RateCardsDep = Annotated[object, Depends(get_rate_cards)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as loaded from the database on each request."""

    user_id: uuid.UUID
    email: str
    display_name: str
    role: str
    cooperative_id: uuid.UUID
    cooperative_slug: str
    member_id: uuid.UUID | None
    membership_stage: str | None

    @property
    def is_staff(self) -> bool:
        return self.role in ("staff", "admin")


# Only the columns a request needs (never the password hash). Built once: every request runs it.
PRINCIPAL = (
    select(User.id, User.email, User.display_name, User.role, User.cooperative_id, User.is_active,
           Cooperative.slug, Member.id, Member.stage)
    .join(Cooperative, Cooperative.id == User.cooperative_id)
    .outerjoin(Member, Member.user_id == User.id)
    .where(User.id == bindparam("user_id"))
)
_PG_PRINCIPAL = PgStatement(PRINCIPAL)


async def get_claims(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    """The access token's verified claims, without reading the account (get_current_user does)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized()
    return decode_access_token(credentials.credentials, settings)


def bearer_claims(request: Request) -> AccessClaims:
    """`get_claims` as a plain call, for a hot route that solves no dependency (the acceptance):
    the `Authorization: Bearer` header parsed as HTTPBearer parses it, the token verified, the
    account NOT read. Such a route checks the account in its own statement and calls
    `load_principal` before answering anything but success; it declares `BEARER_SECURITY` so the
    OpenAPI document still says it needs a token."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    return decode_access_token(token, request.app.state.settings)


# What `Depends(HTTPBearer())` adds to a route's OpenAPI operation.
BEARER_SECURITY = {"security": [{"HTTPBearer": []}]}

ParamsModel = TypeVar("ParamsModel", bound=BaseModel)


def query_model(request: Request, model: type[ParamsModel]) -> ParamsModel:
    """The query string validated as `model`, for a hot route that declares no parameter: FastAPI
    re-derives each declared parameter's kind on every request (a tenth of GET /matches' time),
    while one model validation does the same checks at once. Read as Starlette parses it (the
    last of repeated keys wins, blank values kept, unknown keys ignored), and a failure is the same
    RequestValidationError as FastAPI's, each error located at ("query", name).
    `route_parameters(model, "query")` documents the parameters in the OpenAPI operation."""
    # (FastAPI parsed the query string already, for the parameters it has none of.)
    return _validated(model, dict(request.query_params), "query")


def path_model(request: Request, model: type[ParamsModel]) -> ParamsModel:
    """The path parameters validated as `model`, as `query_model` does the query (the route's path
    declares them; `route_parameters(model, "path")` documents them)."""
    return _validated(model, request.path_params, "path")


def _validated(model: type[ParamsModel], values: Any, where: str) -> ParamsModel:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": (where, *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None


def route_parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    """The OpenAPI `parameters` of `model`'s fields, in the query or the path (for `openapi_extra`)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


async def load_principal(db: Database, claims: AccessClaims) -> Principal:
    """The account behind verified claims, or 401 if it is gone, deactivated or changed role or
    cooperative since the token was issued."""
    # One statement outside any transaction (one round trip): the use case, if it needs the
    # database, opens its own unit of work afterwards.
    values = {"user_id": claims.user_id}
    if db.settings.is_sqlite:
        async with db.autocommit.connect() as conn:
            row = (await conn.execute(PRINCIPAL, values)).first()
    else:
        async with db.driver() as driver:
            row = await _PG_PRINCIPAL.fetchrow(driver, values)
    return principal_of(row, claims)


def principal_of(row, claims: AccessClaims) -> Principal:
    """The caller from a row of PRINCIPAL (None: no such account), or 401 if the account no
    longer matches the token. (A hot route may read the row in its own statement.)"""
    if row is None or row[0] is None:
        raise Unauthorized("The access token is invalid", code="invalid_token")
    user_id, email, display_name, role, cooperative_id, is_active, slug, member_id, stage = row
    # A token is only as good as the account behind it: deactivation or a role change takes effect now.
    if not is_active or cooperative_id != claims.cooperative_id or role != claims.role:
        raise Unauthorized("The access token is no longer valid", code="invalid_token")
    return Principal(user_id, email, display_name, role, cooperative_id, slug, member_id, stage)


TokenClaims = Annotated[AccessClaims, Depends(get_claims)]


async def get_current_user(request: Request, claims: TokenClaims) -> Principal:
    return await load_principal(request.app.state.db, claims)


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def wrong_role(*roles: str) -> Forbidden:
    return Forbidden(f"This action is for {' or '.join(roles)} accounts", code="wrong_role")


def require_roles(*roles: str):
    async def guard(user: CurrentUser) -> Principal:
        if user.role not in roles:
            raise wrong_role(*roles)
        return user

    return guard


StaffUser = Annotated[Principal, Depends(require_roles("staff", "admin"))]
AuditorUser = Annotated[Principal, Depends(require_roles("board", "staff", "admin"))]
ClientUser = Annotated[Principal, Depends(require_roles("client"))]
WorkerUser = Annotated[Principal, Depends(require_roles("worker"))]
