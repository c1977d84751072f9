"""Audit events of the access service (written through its outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import Database
from shared.events import Actor, AuditEvent, Outcome
from shared.outbox import record_event, record_event_now


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


async def audit_now(
    db: Database,
    action: str,
    *,
    subject_type: str,
    subject_id: str,
    actor: Principal | Actor | None,
    outcome: Outcome = "success",
    **details: Any,
) -> AuditEvent:
    """:func:`audit` as its own autocommit write, for a request that writes nothing else
    (data-token issue; ``shared.outbox.record_event_now``)."""
    return await record_event_now(
        db,
        service="access",
        action=f"access.{action}",
        subject_type=subject_type,
        subject_id=subject_id,
        actor=actor,
        outcome=outcome,
        details={k: v for k, v in details.items() if v is not None},
    )
