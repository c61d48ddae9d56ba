"""Worker-members, their suspensions and appeals (API.md "Worker-members")."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.deps import AuditorUser, CurrentUser, NowDep, SessionDep, StaffUser, WorkerUser
from app.services import members
from app.services.members import (
    AppealDecisionIn,
    AppealIn,
    AppealPublic,
    MemberProfilePublic,
    MemberSelf,
    MemberStaffView,
    MemberUpdate,
    ReinstateIn,
    SalaryPlan,
    SalaryPlanIn,
    StageChange,
    SuspendIn,
)

router = APIRouter(tags=["members"])

# ---- the caller's own membership (declared before /members/{id}) ------------------------------


@router.get("/members/me", response_model=MemberSelf)
async def my_membership(user: WorkerUser, session: SessionDep) -> MemberSelf:
    return await members.my_profile(session, cooperative_id=user.cooperative_id, member_id=user.member_id)


@router.patch("/members/me", response_model=MemberSelf)
async def update_my_profile(body: MemberUpdate, user: WorkerUser, session: SessionDep) -> MemberSelf:
    return await members.update_profile(session, cooperative_id=user.cooperative_id, member_id=user.member_id,
                                        actor_user_id=user.user_id, changes=body)


@router.put("/members/me/salary-plan", response_model=SalaryPlan)
async def set_my_salary_plan(body: SalaryPlanIn, user: WorkerUser, session: SessionDep,
                             now: NowDep) -> SalaryPlan:
    return await members.set_salary_plan(session, cooperative_id=user.cooperative_id,
                                         member_id=user.member_id, actor_user_id=user.user_id, plan=body,
                                         now=now)


@router.get("/members/me/appeals", response_model=list[AppealPublic])
async def my_appeals(user: WorkerUser, session: SessionDep) -> list[AppealPublic]:
    return await members.my_appeals(session, cooperative_id=user.cooperative_id, member_id=user.member_id)


@router.post("/members/me/appeals", status_code=201, response_model=AppealPublic)
async def appeal(body: AppealIn, user: WorkerUser, session: SessionDep) -> AppealPublic:
    """Contest one's suspension, or a review about oneself; staff must answer."""
    return await members.create_appeal(session, cooperative_id=user.cooperative_id, member_id=user.member_id,
                                       user_id=user.user_id, body=body)


# ---- staff and board ---------------------------------------------------------------------------


@router.get("/members", response_model=list[MemberStaffView])
async def list_members(
    user: AuditorUser, session: SessionDep,
    stage: Annotated[Literal["cape", "cesa", "associate", "left"] | None, Query()] = None,
    cesa_due: Annotated[bool | None, Query()] = None,
    associate_due_before: Annotated[date | None, Query()] = None,
    suspended: Annotated[bool | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[MemberStaffView]:
    """The onboarding list: `cesa_due=true`, `associate_due_before=YYYY-MM-DD`, `suspended=true`..."""
    return await members.list_members(session, cooperative_id=user.cooperative_id, stage=stage,
                                      cesa_due=cesa_due, associate_due_before=associate_due_before,
                                      suspended=suspended, limit=limit, offset=offset)


@router.get("/members/{member_id}", response_model=MemberStaffView | MemberProfilePublic)
async def get_member(member_id: uuid.UUID, user: CurrentUser,
                     session: SessionDep) -> MemberStaffView | MemberProfilePublic:
    """Staff and board: the member's file; anyone else in the cooperative: the public profile."""
    return await members.member_for_viewer(session, cooperative_id=user.cooperative_id, viewer_role=user.role,
                                           member_id=member_id)


@router.post("/members/{member_id}/stage", response_model=MemberStaffView)
async def change_stage(member_id: uuid.UUID, body: StageChange, user: StaffUser, session: SessionDep,
                       now: NowDep) -> MemberStaffView:
    return await members.change_stage(session, cooperative_id=user.cooperative_id, member_id=member_id,
                                      actor_user_id=user.user_id, change=body, now=now)


@router.post("/members/{member_id}/suspend", response_model=MemberStaffView)
async def suspend(member_id: uuid.UUID, body: SuspendIn, user: StaffUser,
                  session: SessionDep) -> MemberStaffView:
    return await members.suspend(session, cooperative_id=user.cooperative_id, member_id=member_id,
                                 actor_user_id=user.user_id, reason=body.reason)


@router.post("/members/{member_id}/reinstate", response_model=MemberStaffView)
async def reinstate(member_id: uuid.UUID, body: ReinstateIn, user: StaffUser,
                    session: SessionDep) -> MemberStaffView:
    return await members.reinstate(session, cooperative_id=user.cooperative_id, member_id=member_id,
                                   actor_user_id=user.user_id, note=body.note)


@router.get("/appeals", response_model=list[AppealPublic])
async def list_appeals(user: StaffUser, session: SessionDep,
                       status: Annotated[Literal["open", "upheld", "rejected"] | None, Query()] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100,
                       offset: Annotated[int, Query(ge=0)] = 0) -> list[AppealPublic]:
    return await members.list_appeals(session, cooperative_id=user.cooperative_id, status=status,
                                      limit=limit, offset=offset)


@router.post("/appeals/{appeal_id}/decision", response_model=AppealPublic)
async def decide_appeal(appeal_id: uuid.UUID, body: AppealDecisionIn, user: StaffUser,
                        session: SessionDep) -> AppealPublic:
    """Answer an appeal, once: upheld lifts the suspension or hides the review."""
    return await members.decide_appeal(session, cooperative_id=user.cooperative_id, appeal_id=appeal_id,
                                       actor_user_id=user.user_id, decision=body)
