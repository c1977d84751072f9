"""Audit events of the access service (written through its outbox)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import Database
from shared.events import Actor, AuditEvent, Outcome, new_event
from shared.logging import request_id_var
from shared.outbox import actor_of, enqueue_events, record_event


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


async def audit_many(session: AsyncSession, action: str, *, subject_type: str,
                     actor: Principal | Actor | None,
                     subjects: list[tuple[str, dict[str, Any]]]) -> None:
    """Record ``access.<action>`` once per (subject id, details), as :func:`audit` writes each
    one, in one multi-row ``INSERT`` in the session's transaction (a batch of grants)."""
    who = actor if isinstance(actor, Actor) else actor_of(actor)
    request_id = request_id_var.get()
    await enqueue_events(session, [
        new_event(service="access", action=f"access.{action}", subject_type=subject_type,
                  subject_id=subject_id, actor=who, outcome="success", request_id=request_id,
                  details={k: v for k, v in details.items() if v is not None})
        for subject_id, details in subjects])
