"""Stripe Billing webhooks, applied inside the webhook's transaction (no Stripe calls):
``invoice.payment_succeeded`` / ``invoice.paid``, ``invoice.payment_failed`` and
``customer.subscription.deleted``.

An invoice event is matched to its order by the invoice id the billing flow stored before
it paid the invoice, and settled through :mod:`services.orders.settlement` like a
PaymentIntent event, so a webhook that arrives first, last or twice changes the order once.
(localstripe sends ``invoice.payment_succeeded`` for paid invoices but no
``invoice.payment_failed`` when a renewal is declined: the billing flow learns that from
the answer to its own call, and the reconciler from the invoice.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import settlement
from services.orders.models import Order, PaymentAttempt, Subscription
from services.orders.orders import FAILED, PENDING
from services.orders.payments import Intent
from services.orders.subscribe import cancel_now
from services.orders.subscriptions import CANCELED
from shared.db import utcnow

INVOICE_PAID = ("invoice.payment_succeeded", "invoice.paid")
INVOICE_FAILED = "invoice.payment_failed"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
HANDLED = (*INVOICE_PAID, INVOICE_FAILED, SUBSCRIPTION_DELETED)


async def _order_of_invoice(session: AsyncSession, invoice: dict[str, Any]) -> Order | None:
    stmt = select(Order).where(Order.stripe_invoice_id == str(invoice.get("id")))
    return (await session.execute(stmt)).scalar_one_or_none()


async def _remember_intent(session: AsyncSession, order: Order, intent: Intent) -> None:
    """The invoice's PaymentIntent becomes the order's current payment attempt."""
    if await session.get(PaymentAttempt, intent.id) is None:
        session.add(PaymentAttempt(payment_intent_id=intent.id, order_id=order.id,
                                   attempt=order.payment_attempts + 1, amount=intent.amount,
                                   currency=intent.currency, created_at=utcnow()))
        await session.execute(update(Order).where(Order.id == order.id, Order.status.in_((PENDING, FAILED)))
                              .values(payment_intent_id=intent.id,
                                      payment_attempts=order.payment_attempts + 1))
        await session.flush()


async def invoice_event(session: AsyncSession, etype: str, invoice: dict[str, Any]) -> str:
    order = await _order_of_invoice(session, invoice)
    if order is None:
        return "unknown_invoice"
    pi = invoice.get("payment_intent")
    if not isinstance(pi, str) or not pi:
        return "no_payment"
    paid = etype in INVOICE_PAID
    failure = None if paid else {"code": "invoice_payment_failed", "decline_code": None,
                                 "message": "Stripe could not collect the invoice."}
    intent = Intent(id=pi, status="succeeded" if paid else "requires_payment_method",
                    amount=int(invoice.get("total") or 0),
                    currency=str(invoice.get("currency") or "").upper(),
                    client_secret=None, metadata={"order_id": order.id}, last_payment_error=failure)
    await _remember_intent(session, order, intent)
    if paid:
        return await settlement.payment_succeeded(session, intent, "stripe-webhook")
    return await settlement.payment_failed(session, intent, "stripe-webhook")


async def subscription_deleted(session: AsyncSession, stripe_subscription: dict[str, Any]) -> str:
    """Stripe ended the subscription (dunning gave up, or someone cancelled it at Stripe)."""
    stripe_id = str(stripe_subscription.get("id"))
    stmt = select(Subscription).where(Subscription.stripe_subscription_id == stripe_id)
    sub = (await session.execute(stmt.with_for_update())).scalar_one_or_none()
    if sub is None:
        return "unknown_subscription"
    await session.execute(update(Subscription).where(Subscription.id == sub.id).values(stripe_canceled=True))
    if sub.status == CANCELED:
        return "already_canceled"
    await cancel_now(session, sub, None)
    return "subscription_canceled"


async def handle(session: AsyncSession, etype: str, obj: dict[str, Any]) -> str:
    if etype == SUBSCRIPTION_DELETED:
        return await subscription_deleted(session, obj)
    return await invoice_event(session, etype, obj)
