"""Audit events of the access service (written through its outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import Database
from shared.events import Actor, AuditEvent, Outcome
from shared.outbox import record_event


async def audit(
    target: AsyncSession | Database,
    action: str,
    *,
    subject_type: str,
    subject_id: str,
    actor: Principal | Actor | None,
    outcome: Outcome = "success",
    **details: Any,
) -> AuditEvent:
    """Record ``access.<action>`` (details that are None are left out). Given a session, the
    event is part of its transaction (``shared.outbox.record_event``); given the
    :class:`Database`, it is its own autocommit write, for a request that writes nothing
    else: the data-token issue and its refusals (``shared.outbox.record_event``)."""
    return await record_event(
        target, service="access", action=f"access.{action}", subject_type=subject_type,
        subject_id=subject_id, actor=actor, outcome=outcome,
        details={k: v for k, v in details.items() if v is not None},
    )
