"""Billing changes orders makes to an entitlement, and usage summaries it bills from
(no FastAPI here).

A subscription keeps one entitlement for its whole life: each paid period moves its
window and resets its query allowance, a failed renewal extends it by the grace period,
and a grace period that runs out puts it on a *billing hold* (``billing_suspended``), a
suspension of its own that lifting any other suspension never lifts. Partial refunds
may shorten it. Every change is stored by its id, so a repeated delivery from orders'
outbox is answered from the stored result and changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.access import revocation
from services.access.audit_events import audit
from services.access.catalog_client import CatalogClient
from services.access.entitlement_status import EntitlementStatus, Shown
from services.access.entitlements import effective_status, find_plan, org_statuses
from services.access.models import Entitlement, EntitlementChange, UsageRecord
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation


@dataclass(frozen=True)
class Change:
    change_id: str
    reason: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    query_allowance: int | None = None
    unlimited_queries: bool | None = None
    epsilon_allowance: float | None = None
    plan_id: str | None = None
    billing_hold: bool | None = None
    spend_cap: dict[str, Any] | None = None


async def _entitlement_of_order(session: AsyncSession, order_id: str) -> Entitlement:
    ent = await session.scalar(select(Entitlement).where(Entitlement.order_id == order_id)
                               .with_for_update())
    if ent is None:
        raise NotFound(f"No entitlement was granted for order {order_id!r}; a change follows the grant.",
                       problem="entitlement-not-found")
    if ent.status == EntitlementStatus.REVOKED:
        raise Conflict(f"Entitlement {ent.id} is revoked ({ent.status_reason}); billing changes no "
                       "longer apply to it.", problem="entitlement-revoked")
    return ent


async def _usable(session: AsyncSession, ent: Entitlement) -> bool:
    orgs = await org_statuses(session, (ent.buyer_org, ent.provider_org))
    return effective_status(ent, orgs) == Shown.ACTIVE


async def _announce(session: AsyncSession, ent: Entitlement, was_usable: bool, reason: str) -> None:
    """Tell data services (the revocation feed) when a change makes the entitlement
    unusable or usable again; live tokens stop within a poll."""
    now_usable = await _usable(session, ent)
    if was_usable == now_usable:
        return
    ended = ent.valid_until <= utcnow()
    event = "reinstated" if now_usable else ("revoked" if ended else "suspended")
    await revocation.add_entry(session, kind="entitlement", subject_id=ent.id, event=event,
                               reason=reason, entitlement_id=ent.id)


async def apply_change(session: AsyncSession, catalog: CatalogClient, order_id: str, change: Change,
                       actor: Principal) -> tuple[Entitlement, bool]:
    """Apply ``change`` to the order's entitlement once; (entitlement, applied now)."""
    known = await session.get(EntitlementChange, change.change_id)
    if known is not None:
        ent = await session.get(Entitlement, known.entitlement_id)
        assert ent is not None
        return ent, False
    ent = await _entitlement_of_order(session, order_id)
    await revocation.lock_feed(session)  # before changing the row: see revocation.lock_feed
    was_usable = await _usable(session, ent)
    valid_from = change.valid_from or ent.valid_from
    valid_until = change.valid_until or ent.valid_until
    if valid_until <= valid_from:
        raise RuleViolation("valid_until must be after valid_from.", problem="invalid-validity",
                            rule="validity-window-not-empty")
    ent.valid_from, ent.valid_until = valid_from, valid_until
    if change.plan_id is not None and change.plan_id != ent.plan_id:
        plan = find_plan(await catalog.product_version(ent.product_id, ent.version), change.plan_id)
        ent.plan_id, ent.plan, ent.plan_kind = change.plan_id, plan, str(plan.get("kind", ""))
    if change.query_allowance is not None:
        ent.query_quota = ent.queries_used + change.query_allowance
    elif change.unlimited_queries:
        ent.query_quota = None
    if change.epsilon_allowance is not None:  # L3: a new period's privacy budget
        ent.epsilon_budget = ent.epsilon_used + change.epsilon_allowance
    if change.billing_hold is not None:
        ent.billing_suspended = change.billing_hold
    if change.spend_cap is not None:
        ent.spend_cap = change.spend_cap or None
    ent.updated_at = utcnow()
    await session.flush()
    await _announce(session, ent, was_usable, change.reason)
    result: dict[str, Any] = {"valid_from": ent.valid_from.isoformat(),
                              "valid_until": ent.valid_until.isoformat(),
              "query_quota": ent.query_quota, "billing_suspended": ent.billing_suspended,
              "plan_id": ent.plan_id}
    session.add(EntitlementChange(change_id=change.change_id, entitlement_id=ent.id, reason=change.reason,
                                  request=_request_of(change), result=result, applied_at=utcnow()))
    await session.flush()
    if change.billing_hold is not None:
        await audit(session, "entitlement.suspended" if change.billing_hold else "entitlement.reinstated",
                    subject_type="entitlement", subject_id=ent.id, actor=actor, reason=change.reason,
                    source="billing", order_id=order_id, change_id=change.change_id)
    await audit(session, "entitlement.changed", subject_type="entitlement", subject_id=ent.id,
                actor=actor, reason=change.reason, order_id=order_id, change_id=change.change_id,
                result=result)
    return ent, True


def _request_of(change: Change) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in change.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Summary:
    entitlement_id: str
    after_seq: int
    queries: int
    last_seq: int
    epsilon: float


async def usage_summary(session: AsyncSession, entitlement_id: str, after_seq: int) -> Summary:
    """Queries recorded on an entitlement after ``after_seq``: what orders bills for a
    period. Counting by sequence number (not by time) bills every record exactly once,
    however late a data service reports it."""
    row = (await session.execute(
        select(func.count(UsageRecord.seq), func.max(UsageRecord.seq),
               func.coalesce(func.sum(UsageRecord.epsilon_spent), 0.0))
        .where(UsageRecord.entitlement_id == entitlement_id, UsageRecord.seq > after_seq)
    )).one()
    return Summary(entitlement_id, after_seq, int(row[0]), int(row[1] or after_seq), float(row[2]))
