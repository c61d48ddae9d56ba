"""The audit trail: who did what and when. Rows are only ever added."""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditEvent


def record(session: AsyncSession, *, action: str, target_type: str, target_id: uuid.UUID | str,
           cooperative_id: uuid.UUID | None, actor_user_id: uuid.UUID | None,
           data: dict[str, Any] | None = None) -> AuditEvent:
    """Add an audit event to the current unit of work (committed with the action it records)."""
    event = AuditEvent(cooperative_id=cooperative_id, actor_user_id=actor_user_id, action=action,
                       target_type=target_type, target_id=str(target_id), data=data or {})
    session.add(event)
    return event
