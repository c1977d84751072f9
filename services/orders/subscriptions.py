"""The subscription state machine, and what a subscription's orders do to it.

::

    incomplete ──activated──▶ active ──renewal_failed──▶ past_due ──suspended──▶ suspended
        │                      ▲ ▲                          │                      │
        │                      │ └─────────renewed──────────┘                      │
        │                      └───────────────renewed (paid late)─────────────────┘
        └──canceled──▶ canceled ◀──canceled── active | past_due | suspended

Every period is an order (``subscription_create`` for the first, ``subscription_cycle``
for each renewal, ``subscription_update`` for a plan upgrade's prorated charge), and the
order state machine (:func:`services.orders.orders.transition`) calls :func:`order_moved`
in the same transaction, so whichever source settles an order (the flow's own Stripe
call, a webhook, the reconciler) moves the subscription and the entitlement with it:

* a paid first order grants the entitlement (the usual grant command);
* a paid renewal moves the entitlement's window to the new period and resets its query
  allowance, lifting a billing hold (an ``entitlement_change`` command);
* a failed renewal starts the grace period: the entitlement stays usable until
  ``grace_until``; when that passes, :func:`hold_overdue` suspends it for non-payment;
* a refund of the current period's order ends access now and cancels the subscription.

Each change of state writes an ``orders.subscription.<verb>`` audit event.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.entitlement_commands import enqueue_change
from services.orders.locking import locked
from services.orders.models import Order, Subscription
from services.orders.pricing import Access, PlanTerms
from services.orders.recurring import period_allowance
from shared.db import utcnow
from shared.errors import Conflict
from shared.events import Actor, Outcome
from shared.outbox import record_event

INCOMPLETE, ACTIVE, PAST_DUE = "incomplete", "active", "past_due"
SUSPENDED, CANCELED = "suspended", "canceled"
STATUSES = (INCOMPLETE, ACTIVE, PAST_DUE, SUSPENDED, CANCELED)
CREATE, CYCLE, UPDATE = "subscription_create", "subscription_cycle", "subscription_update"

#: (from, to) → the verb of the audit action ``orders.subscription.<verb>``.
TRANSITIONS: dict[tuple[str, str], str] = {
    (INCOMPLETE, ACTIVE): "activated",
    (ACTIVE, ACTIVE): "renewed",
    (ACTIVE, PAST_DUE): "renewal_failed",
    (PAST_DUE, ACTIVE): "renewed",
    (PAST_DUE, SUSPENDED): "suspended",
    (SUSPENDED, ACTIVE): "renewed",
    (INCOMPLETE, CANCELED): "canceled",
    (ACTIVE, CANCELED): "canceled",
    (PAST_DUE, CANCELED): "canceled",
    (SUSPENDED, CANCELED): "canceled",
}

def new_subscription_id() -> str:
    return "sbs_" + secrets.token_hex(12)


def buyer_actor(sub: Subscription) -> Actor:
    return Actor(sub=sub.buyer_sub, org=sub.buyer_org, role="buyer")


def terms_of(sub: Subscription) -> PlanTerms:
    return PlanTerms.from_catalog(sub.plan)


def period_end(sub: Subscription, periods: int) -> datetime:
    """The end of the subscription's ``periods``-th period (from its anchor: no drift)."""
    assert sub.billing_anchor is not None
    return Access(str(sub.plan["period"]), periods).end(sub.billing_anchor)


async def transition(session: AsyncSession, sub: Subscription, to: str, actor: Actor | None, *,
                     details: dict[str, Any] | None = None, changes: dict[str, Any] | None = None,
                     outcome: Outcome = "success") -> None:
    """Move ``sub`` to ``to`` (compare-and-set on its status) and audit it."""
    frm = sub.status
    verb = TRANSITIONS.get((frm, to))
    if verb is None:
        raise Conflict(f"Subscription {sub.id} is {frm}; it cannot become {to}.",
                       problem="subscription-transition-refused", status_now=frm)
    values = {"status": to, "updated_at": utcnow(), **(changes or {})}
    if to == CANCELED:
        values["canceled_at"] = values["updated_at"]
    result = await session.execute(update(Subscription).where(Subscription.id == sub.id,
                                                              Subscription.status == frm)
                                   .values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"Subscription {sub.id} changed while this request ran; GET it and retry.",
                       problem="subscription-changed")
    for key, value in values.items():
        setattr(sub, key, value)
    await record_event(session, service="orders", action=f"orders.subscription.{verb}",
                       subject_type="subscription", subject_id=sub.id, actor=actor, outcome=outcome,
                       details={"from": frm, "to": to, "product_id": sub.product_id, "plan_id": sub.plan_id,
                                "buyer_org": sub.buyer_org, "provider_org": sub.provider_org,
                                **(details or {})})


async def change_entitlement(session: AsyncSession, sub: Subscription, change_id: str, reason: str,
                             *, fulfils: str | None = None, **change: Any) -> None:
    """Queue a change of the subscription's entitlement (the one its first order created)."""
    await enqueue_change(session, sub.first_order_id, change_id, reason, fulfils=fulfils, **change)


def spend_cap_note(sub: Subscription) -> dict[str, Any]:
    """What access shows when the cap stops queries ({} clears it)."""
    if sub.spend_cap is None:
        return {}
    return {"amount": sub.spend_cap, "currency": sub.currency, "subscription_id": sub.id}


async def _locked(session: AsyncSession, subscription_id: str) -> Subscription:
    sub = await locked(session, Subscription, subscription_id)
    assert sub is not None
    return sub


async def order_moved(session: AsyncSession, order: Order, frm: str, to: str) -> None:
    """Called by the order state machine, in its transaction, for a subscription's order."""
    assert order.subscription_id is not None
    sub = await _locked(session, order.subscription_id)
    if to == "paid" and frm in ("pending_payment", "payment_failed"):
        await _period_paid(session, sub, order)
    elif to == "payment_failed" and order.billing_reason == CYCLE:
        await _renewal_failed(session, sub, order)
    elif to == "refunded" and order.period_end is not None and order.period_end > utcnow():
        await _current_period_refunded(session, sub, order)


async def _period_paid(session: AsyncSession, sub: Subscription, order: Order) -> None:
    actor = buyer_actor(sub)
    details = {"order_id": order.id, "period_start": iso(order.period_start),
               "period_end": iso(order.period_end)}
    if order.billing_reason == CREATE:
        await transition(session, sub, ACTIVE, actor, details=details, changes={
            "billing_anchor": order.period_start, "current_period_start": order.period_start,
            "current_period_end": order.period_end, "periods_paid": 1})
        return  # the grant command (orders.transition) creates the entitlement
    if order.billing_reason == UPDATE:
        new_plan = dict(order.access.get("new_plan") or {})
        await session.execute(update(Subscription).where(Subscription.id == sub.id).values(
            plan=new_plan, plan_id=str(new_plan["id"]), updated_at=utcnow()))
        await record_event(session, service="orders", action="orders.subscription.plan_changed",
                           subject_type="subscription", subject_id=sub.id, actor=actor,
                           details={"order_id": order.id, "from_plan": sub.plan_id,
                                    "to_plan": new_plan["id"]})
        await change_entitlement(session, sub, f"plan:{order.id}", "plan changed", fulfils=order.id,
                                 plan_id=order.access.get("catalog_plan_id") or new_plan["id"],
                                 query_allowance=order.access.get("query_quota"))
        return
    changes = {"current_period_start": order.period_start, "current_period_end": order.period_end,
               "periods_paid": sub.periods_paid + 1, "grace_until": None}
    if sub.status == CANCELED:  # paid after a cancellation: honour the period paid for
        await session.execute(update(Subscription).where(Subscription.id == sub.id).values(**changes))
    else:
        await transition(session, sub, ACTIVE, actor, details=details, changes=changes)
    epsilon = (order.access or {}).get("epsilon_budget")
    await change_entitlement(
        session, sub, f"period:{order.id}", "subscription renewed", fulfils=order.id,
        valid_from=order.period_start, valid_until=order.period_end, billing_hold=False,
        query_allowance=period_allowance(terms_of(sub), sub.spend_cap), spend_cap=spend_cap_note(sub),
        **({"epsilon_allowance": float(epsilon)} if epsilon is not None else {}))


async def _renewal_failed(session: AsyncSession, sub: Subscription, order: Order) -> None:
    if sub.status != ACTIVE:
        return  # already past due (a second failure of the same renewal) or canceled
    grace_until = utcnow() + timedelta(days=sub.grace_days)
    await transition(session, sub, PAST_DUE, buyer_actor(sub), outcome="failure",
                     details={"order_id": order.id, "grace_until": grace_until.isoformat(),
                              "card_error": order.last_payment_error},
                     changes={"grace_until": grace_until})
    await change_entitlement(session, sub, f"grace:{order.id}", "renewal unpaid: grace period",
                             valid_until=grace_until)


async def _current_period_refunded(session: AsyncSession, sub: Subscription, order: Order) -> None:
    """Giving back the current period's money ends its access now, and the subscription."""
    ends = max(utcnow(), (order.period_start or utcnow()) + timedelta(seconds=1))
    await change_entitlement(session, sub, f"refund:{order.id}", "current period refunded", valid_until=ends)
    if sub.status != CANCELED:
        await transition(session, sub, CANCELED, None, details={"order_id": order.id, "by": "refund"})


async def hold_overdue(session: AsyncSession, sub: Subscription) -> None:
    """The grace period ran out unpaid: suspend the entitlement for non-payment."""
    await transition(session, sub, SUSPENDED, None, outcome="failure",
                     details={"grace_until": iso(sub.grace_until), "by": "billing-clock"})
    await change_entitlement(session, sub, f"hold:{sub.id}:{sub.periods_paid}", "renewal unpaid after "
                             "the grace period", billing_hold=True)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
