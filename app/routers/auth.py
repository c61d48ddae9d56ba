"""Registration, tokens and the caller's identity (API.md "Auth")."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.errors import Invalid
from app.models import RefreshRequest, TokenPair, UserProfilePublic, UserPublic, UserRegister
from app.services import auth as auth_service
from app.services import tenancy

router = APIRouter(tags=["auth"])


@router.post("/auth/register", status_code=201, response_model=UserPublic)
async def register(body: UserRegister, session: SessionDep, settings: SettingsDep) -> UserPublic:
    user, member, coop = await tenancy.create_user(
        session, settings, cooperative_slug=body.cooperative, email=str(body.email), password=body.password,
        display_name=body.display_name, role=body.role)
    return UserPublic(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
                      cooperative=coop.slug, member_id=member.id if member else None,
                      membership_stage=member.stage if member else None)


@router.post("/auth/token", response_model=TokenPair)
async def token(
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    session: SessionDep,
    settings: SettingsDep,
    grant_type: Annotated[str | None, Form()] = None,
) -> TokenPair:
    if grant_type not in (None, "password"):
        raise Invalid("Only the password grant is supported here", code="unsupported_grant_type")
    return await auth_service.login(session, settings, email=username, password=password)


@router.post("/auth/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    return await auth_service.refresh(session, settings, refresh_token=body.refresh_token)


@router.post("/auth/logout", status_code=204)
async def logout(body: RefreshRequest, session: SessionDep) -> None:
    await auth_service.logout(session, refresh_token=body.refresh_token)


@router.get("/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic(id=user.user_id, email=user.email, display_name=user.display_name, role=user.role,
                      cooperative=user.cooperative_slug, member_id=user.member_id,
                      membership_stage=user.membership_stage)


@router.get("/users/{user_id}", response_model=UserProfilePublic)
async def get_user(user_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> UserProfilePublic:
    found, member = await tenancy.visible_user(session, caller_role=user.role, caller_id=user.user_id,
                                               caller_cooperative_id=user.cooperative_id, user_id=user_id)
    return UserProfilePublic(id=found.id, display_name=found.display_name, role=found.role,
                             member_id=member.id if member else None)
