"""The cooperative's catalog of services (API.md "Cooperative, services, fee schedule")."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import SessionDep, StaffUser
from app.errors import NotFound
from app.models import ServiceCreate, ServicePublic
from app.services import tenancy

router = APIRouter(tags=["catalog"])


@router.get("/services", response_model=list[ServicePublic])
async def list_services(session: SessionDep,
                        cooperative: Annotated[str, Query(min_length=1, max_length=63)]) -> list[ServicePublic]:
    coop = await tenancy.cooperative_by_slug(session, cooperative)
    if coop is None:
        raise NotFound("No such cooperative", code="cooperative_not_found")
    return [ServicePublic(id=s.id, name=s.name, vat_rate_bps=s.vat_rate_bps)
            for s in await tenancy.list_services(session, cooperative_id=coop.id)]


@router.post("/services", status_code=201, response_model=ServicePublic)
async def create_service(body: ServiceCreate, user: StaffUser, session: SessionDep) -> ServicePublic:
    service = await tenancy.create_service(session, cooperative_id=user.cooperative_id, name=body.name,
                                           vat_rate_bps=body.vat_rate_bps, actor_user_id=user.user_id)
    return ServicePublic(id=service.id, name=service.name, vat_rate_bps=service.vat_rate_bps)
