"""The entitlement *change* command orders sends to access through its outbox (the
grant and the revoke are written by the order state machine, ``orders.transition``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.outbox import enqueue

ACCESS_DESTINATION = "access"
CHANGE = "entitlement_change"


async def enqueue_change(session: AsyncSession, entitlement_order_id: str, change_id: str, reason: str,
                         *, fulfils: str | None = None, **change: Any) -> None:
    """Queue a change of the entitlement granted for ``entitlement_order_id`` (a renewal, a
    grace period, a hold, a plan, a cap, a refund that shortens access); delivered in order
    after its grant and applied once by ``change_id``. A change that ``fulfils`` an order
    makes that order ``fulfilled`` when access confirms it."""
    body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in change.items()}
    payload = {"order_id": entitlement_order_id, "change_id": change_id, "reason": reason, **body}
    if fulfils:
        payload["fulfils"] = fulfils
    await enqueue(session, kind=CHANGE, destination=ACCESS_DESTINATION, message_id=f"change:{change_id}",
                  payload=payload)
