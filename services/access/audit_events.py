"""Audit events of the access service (written through its outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.events import Actor, AuditEvent, Outcome
from shared.outbox import record_event


async def audit(
    session: AsyncSession,
    action: str,
    *,
    subject_type: str,
    subject_id: str,
    actor: Principal | Actor | None,
    outcome: Outcome = "success",
    **details: Any,
) -> AuditEvent:
    return await record_event(
        session,
        service="access",
        action=f"access.{action}",
        subject_type=subject_type,
        subject_id=subject_id,
        actor=actor,
        outcome=outcome,
        details={k: v for k, v in details.items() if v is not None},
    )
