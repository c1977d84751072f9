"""The order state machine: every status change goes through :func:`transition`.

::

    pending_payment ──paid──▶ paid ──fulfilled──▶ fulfilled
        │  ▲                   │                     │
  failed│  │retried            └──refund_requested───┴──▶ refund_pending ──refunded──▶ refunded
        ▼  │                                              │ (partially_refunded | refund_failed)
    payment_failed ──paid (a late success of an earlier attempt)──▶ paid        ▼
    pending_payment | payment_failed ──cancelled──▶ cancelled          paid | fulfilled

A refund is decided (``refund_pending``, committed) *before* Stripe is called, so it
and the fulfilment of the same order are serialized by this one compare-and-set: a
fulfilment that lands while the refund is at Stripe only records the entitlement id.
Free orders move no money and go straight from ``paid``/``fulfilled`` to ``refunded``.

The guard is a compare-and-set on the status (``UPDATE ... WHERE status = <from>``),
so two concurrent deliveries of the same news (a webhook and the reconciler, two
webhook retries) cannot both apply it. The side effects that must agree with the
status are written in the same transaction: the audit event (outbox), the ledger
entries and the grant/revoke entitlement command (outbox).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import invoices, ledger, subscriptions
from services.orders.locking import locked
from services.orders.models import Order
from services.orders.pricing import Access
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.events import Actor, Outcome
from shared.outbox import enqueue, record_event

PENDING, PAID, FULFILLED = "pending_payment", "paid", "fulfilled"
FAILED, CANCELLED, REFUNDED = "payment_failed", "cancelled", "refunded"
REFUND_PENDING = "refund_pending"
STATUSES = (PENDING, PAID, FULFILLED, FAILED, CANCELLED, REFUND_PENDING, REFUNDED)

#: (from, to) → the verbs of the audit action ``orders.order.<verb>`` (the first is the default).
TRANSITIONS: dict[tuple[str, str], tuple[str, ...]] = {
    (PENDING, PAID): ("paid",),
    (FAILED, PAID): ("paid",),
    (PAID, FULFILLED): ("fulfilled",),
    (PENDING, FAILED): ("payment_failed",),
    (FAILED, PENDING): ("payment_retried",),
    (PENDING, CANCELLED): ("cancelled",),
    (FAILED, CANCELLED): ("cancelled",),
    (PAID, REFUND_PENDING): ("refund_requested",),
    (FULFILLED, REFUND_PENDING): ("refund_requested",),
    (REFUND_PENDING, REFUNDED): ("refunded",),
    (REFUND_PENDING, PAID): ("partially_refunded", "refund_failed"),
    (REFUND_PENDING, FULFILLED): ("partially_refunded", "refund_failed"),
    # Free orders: nothing to give back at Stripe.
    (PAID, REFUNDED): ("refunded",),
    (FULFILLED, REFUNDED): ("refunded",),
}

ACCESS_DESTINATION = "access"
GRANT, REVOKE = "grant_entitlement", "revoke_entitlement"
#: Orders whose payment creates an entitlement (a subscription's later orders change the
#: one its first order created).
GRANTING = ("purchase", "trial", "subscription_create")


def new_order_id() -> str:
    return "ord_" + secrets.token_hex(12)


class StaleOrder(Conflict):
    """Someone else changed the order between our read and our write."""

    problem = "order-changed"
    title = "The order changed meanwhile"


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def grant_payload(order: Order) -> dict[str, Any]:
    """The body of ``POST {access}/v1/entitlements`` (docs/contracts.md)."""
    assert order.valid_from is not None and order.valid_until is not None
    body: dict[str, Any] = {
        "order_id": order.id, "buyer_org": order.buyer_org, "product_id": order.product_id,
        "version": order.version, "plan_id": order.plan_id, "purpose": order.purpose,
        "valid_from": rfc3339(order.valid_from), "valid_until": rfc3339(order.valid_until),
    }
    # What the buyer paid for (e.g. a metered plan's bought queries), so access
    # does not have to re-derive it from the plan.
    quota = (order.access or {}).get("query_quota")
    if quota is not None:
        body["query_quota"] = int(quota)
    epsilon = (order.access or {}).get("epsilon_budget")
    if epsilon is not None:  # L3: the privacy budget the order bought
        body["epsilon_budget"] = float(epsilon)
    return body


@dataclass(frozen=True)
class Who:
    """Who caused a transition: a person/client (principal), or the system (Stripe, reconciler).

    ``on_behalf`` names the party whose act the system reports (the buyer whose card a
    webhook says was declined), so the audit event has the right actor."""

    principal: Principal | None = None
    role: str | None = None
    system: str | None = None  # "stripe-webhook", "reconciler", "fulfilment", "stripe-confirm"
    on_behalf: Actor | None = None

    def actor(self) -> Actor | Principal | None:
        if self.principal is None:
            return self.on_behalf
        p = self.principal
        return Actor(sub=p.subject, org=p.org_id, role=self.role or (sorted(p.roles)[0] if p.roles else None))


def buyer_of(order: Order) -> Actor:
    """The buyer who placed ``order``, as an audit actor."""
    return Actor(sub=order.buyer_sub, org=order.buyer_org, role="buyer")


async def transition(
    session: AsyncSession,
    order: Order,
    to: str,
    who: Who,
    *,
    details: dict[str, Any] | None = None,
    changes: dict[str, Any] | None = None,
    verb: str | None = None,
    outcome: Outcome = "success",
) -> Order:
    """Move ``order`` to ``to`` or raise; writes the audit event and the side effects."""
    frm = order.status
    verbs = TRANSITIONS.get((frm, to))
    if verbs is None:
        raise Conflict(
            f"Order {order.id} is {frm}; it cannot become {to}. "
            f"From {frm} it can become: {', '.join(t for f, t in TRANSITIONS if f == frm) or 'nothing'}.",
            problem="order-transition-refused",
            status_now=frm,
        )
    if verb is not None and verb not in verbs:
        raise ValueError(f"{verb!r} does not name the transition {frm} -> {to}")
    verb = verb or verbs[0]
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now, **(changes or {})}
    if to == PAID and frm in (PENDING, FAILED):
        values.update(paid_values(order, now))
    elif to == FULFILLED and frm == PAID:
        values["fulfilled_at"] = now
    elif to == CANCELLED:
        values["cancelled_at"] = now
    elif to == REFUNDED:
        values["refunded_at"] = now
    result = await session.execute(
        update(Order).where(Order.id == order.id, Order.status == frm).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleOrder(f"Order {order.id} changed while this request ran; GET it and retry.")
    for key, value in values.items():
        setattr(order, key, value)
    if to == PAID and frm in (PENDING, FAILED):
        await ledger.book_payment(session, order)
        await invoices.issue(session, order)
        if order.billing_reason in GRANTING:
            await enqueue(session, kind=GRANT, destination=ACCESS_DESTINATION,
                          message_id=f"grant:{order.id}", payload=grant_payload(order))
    elif to == REFUNDED and order.subscription_id is None:
        # The ledger reversal is booked by the refund itself (services.orders.refunds),
        # in this same transaction: it knows how much was given back. (A subscription's
        # entitlement outlives its orders: refunding one changes it, see subscriptions.)
        await enqueue(session, kind=REVOKE, destination=ACCESS_DESTINATION,
                      message_id=f"revoke:{order.id}",
                      payload={"order_id": order.id, "reason": "refund"})
    if order.subscription_id is not None:
        await subscriptions.order_moved(session, order, frm, to)
    await record_event(session, service="orders", action=f"orders.order.{verb}", subject_type="order",
                       subject_id=order.id, actor=who.actor(), outcome=outcome,
                       details=transition_details(order, frm, to, who, details))
    return order


def paid_values(order: Order, now: datetime) -> dict[str, Any]:
    """What becoming ``paid`` (from pending or failed) sets besides the status: the access
    window starts now (or is the subscription period being paid)."""
    if order.period_start is not None and order.period_end is not None:
        valid_from, valid_until = order.period_start, order.period_end  # a subscription period
    else:
        valid_from = now
        valid_until = Access(str(order.access["unit"]), int(order.access["count"])).end(now)
    values: dict[str, Any] = dict(paid_at=now, valid_from=valid_from, valid_until=valid_until,
                                  last_payment_error=None)
    if order.subscription_id is not None and order.period_start is None:
        values.update(period_start=valid_from, period_end=valid_until)  # a first period starts now
    return values


def transition_details(order: Order, frm: str, to: str, who: Who,
                       details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The details of a transition's audit event (``orders.order.<verb>``)."""
    event_details: dict[str, Any] = {
        "from": frm, "to": to, "product_id": order.product_id, "version": order.version,
        "buyer_org": order.buyer_org, "provider_org": order.provider_org, "amount": order.gross,
        "currency": order.currency}
    if who.system:
        event_details["by"] = who.system
    event_details.update(details or {})
    return event_details


async def load_for_update(session: AsyncSession, order_id: str) -> Order | None:
    """The order, locked for the rest of the transaction (on both back ends)."""
    return await locked(session, Order, order_id)


def parties_filter(principal: Principal, buyer_org: Any, provider_org: Any) -> Any:
    """What a principal may see of rows between a buyer and a provider organisation (orders,
    subscriptions, offers, invoices): buyers their organisation's, providers their own sales,
    regulators and operators all (None); several roles see the union, none sees nothing."""
    if principal.has_any(("regulator", "operator")):
        return None
    org = principal.org_id or "\x00no-org"
    clauses = []
    if "buyer" in principal.roles:
        clauses.append(buyer_org == org)
    if "provider" in principal.roles:
        clauses.append(provider_org == org)
    if not clauses:
        return false()  # sees nothing
    return or_(*clauses)


def visibility_filter(principal: Principal) -> Any:
    """The orders a principal may see (see :func:`parties_filter`)."""
    return parties_filter(principal, Order.buyer_org, Order.provider_org)


async def get_visible(session: AsyncSession, principal: Principal, order_id: str,
                      *, for_update: bool = False) -> Order:
    stmt = select(Order).where(Order.id == order_id)
    where = visibility_filter(principal)
    if where is not None:
        stmt = stmt.where(where)
    if for_update:
        stmt = stmt.with_for_update()
    order = (await session.execute(stmt)).scalar_one_or_none()
    if order is None:
        raise NotFound(
            f"No order {order_id} that you can see; list yours with GET /v1/orders.",
            problem="order-not-found",
        )
    return order
