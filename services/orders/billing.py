"""What the subscription flows share: the buyer's Stripe Customer, the per-customer invoice
lease, Stripe plans and tax rates, and settling a Stripe invoice into its order.

Settling goes through :mod:`services.orders.settlement` (the same code as webhooks and the
reconciler), so a subscription order is paid or failed exactly once whoever learns first.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from services.orders import settlement
from services.orders.access_client import AccessClient
from services.orders.context import OrdersContext
from services.orders.invoices import tax_rate_key
from services.orders.locking import locked
from services.orders.models import BillingCustomer, Order, PaymentAttempt, StripeObject, Subscription
from services.orders.orders import Who, buyer_of, transition
from services.orders.payments import Intent, PaymentDeclined
from services.orders.stripe_billing import BillingGateway, InvoiceView
from shared.db import utcnow
from shared.errors import Conflict
from shared.outbox import record_event

#: How long one caller may take to build and pay an invoice for a customer.
INVOICE_LEASE = timedelta(seconds=30)


def stripe_billing(ctx: OrdersContext) -> BillingGateway:
    return BillingGateway(ctx.gateway)


def access_client(ctx: OrdersContext) -> AccessClient:
    return AccessClient(ctx.catalog.http, ctx.settings.access_url, ctx.catalog.token)


async def customer_for(ctx: OrdersContext, buyer_org: str) -> str:
    """The organisation's Stripe Customer, created the first time it subscribes."""
    async with ctx.sessionmaker() as s:
        row = await s.get(BillingCustomer, buyer_org)
    if row is not None:
        return row.stripe_customer_id
    customer_id = await stripe_billing(ctx).create_customer(buyer_org)
    try:
        async with ctx.sessionmaker() as s, s.begin():
            now = utcnow()
            s.add(BillingCustomer(buyer_org=buyer_org, stripe_customer_id=customer_id, created_at=now,
                                  updated_at=now))
    except IntegrityError:  # created concurrently: the first one stands
        async with ctx.sessionmaker() as s:
            row = await s.get(BillingCustomer, buyer_org)
        assert row is not None
        return row.stripe_customer_id
    return customer_id


async def save_payment_method(ctx: OrdersContext, buyer_org: str, customer_id: str,
                              payment_method: str) -> str | None:
    """Attach ``payment_method`` as the customer's default (raises PaymentDeclined);
    returns the default it replaced, for :func:`restore_payment_method`."""
    async with ctx.sessionmaker() as s:
        row = await s.get(BillingCustomer, buyer_org)
    previous = row.default_payment_method if row else None
    attached = await stripe_billing(ctx).attach_payment_method(customer_id, payment_method)
    await _set_default(ctx, buyer_org, attached)
    return previous


async def restore_payment_method(ctx: OrdersContext, buyer_org: str, customer_id: str,
                                 previous: str | None) -> None:
    """A card declined on its first charge does not stay the organisation's default: the
    other subscriptions keep renewing with the card that worked."""
    if previous is None:
        return
    await stripe_billing(ctx).set_default_payment_method(customer_id, previous)
    await _set_default(ctx, buyer_org, previous)


async def _set_default(ctx: OrdersContext, buyer_org: str, payment_method: str) -> None:
    async with ctx.sessionmaker() as s, s.begin():
        await s.execute(update(BillingCustomer).where(BillingCustomer.buyer_org == buyer_org)
                        .values(default_payment_method=payment_method, updated_at=utcnow()))


@asynccontextmanager
async def invoice_lease(ctx: OrdersContext, buyer_org: str, *, wait: float = 10.0) -> AsyncIterator[None]:
    """Hold the customer's invoice lease while building an invoice (see BillingCustomer)."""
    deadline = time.monotonic() + wait
    while True:
        now = utcnow()
        async with ctx.sessionmaker() as s, s.begin():
            taken = await s.execute(update(BillingCustomer).where(
                BillingCustomer.buyer_org == buyer_org,
                or_(BillingCustomer.invoice_lease_until.is_(None), BillingCustomer.invoice_lease_until < now))
                .values(invoice_lease_until=now + INVOICE_LEASE))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            break
        if time.monotonic() > deadline:
            raise Conflict(f"Another invoice of {buyer_org} is being made; retry in a few seconds.",
                           problem="billing-busy", headers={"Retry-After": "5"})
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        async with ctx.sessionmaker() as s, s.begin():
            await s.execute(update(BillingCustomer).where(BillingCustomer.buyer_org == buyer_org)
                            .values(invoice_lease_until=None))


async def _remembered(ctx: OrdersContext, key: str) -> str | None:
    async with ctx.sessionmaker() as s:
        row = await s.get(StripeObject, key)
    return row.stripe_id if row else None


async def _remember(ctx: OrdersContext, key: str, stripe_id: str) -> str:
    try:
        async with ctx.sessionmaker() as s, s.begin():
            s.add(StripeObject(key=key, stripe_id=stripe_id, created_at=utcnow()))
    except IntegrityError:
        return await _remembered(ctx, key) or stripe_id
    return stripe_id


async def tax_rates(ctx: OrdersContext) -> list[str]:
    """The platform's VAT as a Stripe TaxRate (created once); none when VAT is 0."""
    settings = ctx.settings
    if not settings.vat_bps:
        return []
    key = tax_rate_key(settings.vat_bps, settings.vat_jurisdiction)
    known = await _remembered(ctx, key)
    if known is None:
        created = await stripe_billing(ctx).create_tax_rate(
            display_name="VAT", percentage=settings.vat_bps / 100, jurisdiction=settings.vat_jurisdiction)
        known = await _remember(ctx, key, created)
    return [known]


def plan_key(sub: Subscription) -> str:
    """A deterministic Stripe Plan id for the subscription's terms (plans are immutable)."""
    plan = sub.plan
    raw = (f"sluice_{sub.product_id}_v{sub.version}_{plan['id']}_{plan['period']}_{sub.currency}"
           f"_{plan['price']}")
    if len(raw) <= 100:
        return raw
    return "sluice_" + hashlib.sha256(raw.encode()).hexdigest()[:40]


async def ensure_plan(ctx: OrdersContext, sub: Subscription, product_title: str) -> str:
    plan = sub.plan
    return await stripe_billing(ctx).ensure_plan(
        product_id=sub.product_id, product_title=product_title, plan_key=plan_key(sub),
        amount=int(plan["price"]), currency=sub.currency, interval=str(plan["period"]))


async def anomaly(ctx: OrdersContext, order: Order, verb: str, **details: object) -> None:
    async with ctx.sessionmaker() as s, s.begin():
        await record_event(s, service="orders", action=f"orders.payment.{verb}", subject_type="order",
                           subject_id=order.id, outcome="failure", details=dict(details))


async def settle_invoice(ctx: OrdersContext, order: Order, invoice: InvoiceView,
                         declined: PaymentDeclined | None, source: str) -> str:
    """Step 3 of every invoice flow: record the invoice and its PaymentIntent on the order,
    then make the order ``paid`` or ``payment_failed`` (through ``settlement``)."""
    intent: Intent | None = None
    if invoice.payment_intent_id:
        intent = await stripe_billing(ctx).retrieve_intent(invoice.payment_intent_id)
    paid = invoice.status == "paid"
    return await settle_payment(ctx, order, intent, declined, source, invoice_id=invoice.id, paid=paid)


async def fail_without_payment(ctx: OrdersContext, order: Order, error: dict[str, Any],
                               source: str) -> str:
    """Fail a pending order for which Stripe made no payment (a card refused when saved, an
    invoice Stripe got wrong): ``payment_failed``, audited as the buyer's failure."""
    async with ctx.sessionmaker() as s, s.begin():
        row = await locked(s, Order, order.id)
        assert row is not None
        if row.status != "pending_payment":
            return "no_change"
        await transition(s, row, "payment_failed", Who(system=source, on_behalf=buyer_of(order)),
                         outcome="failure", details={"card_error": error},
                         changes={"last_payment_error": error})
    return "payment_failed"


async def settle_payment(ctx: OrdersContext, order: Order, intent: Intent | None,
                         declined: PaymentDeclined | None, source: str, *, invoice_id: str | None = None,
                         paid: bool = False) -> str:
    """Record ``intent`` (and the invoice it pays) on the order, then settle it."""
    if intent is None and declined is not None:
        return await fail_without_payment(ctx, order, declined.card_error, source)
    async with ctx.sessionmaker() as s, s.begin():
        now = utcnow()
        values: dict[str, object] = {"updated_at": now, "last_payment_at": now}
        if invoice_id is not None:
            values["stripe_invoice_id"] = invoice_id
        if intent is not None:
            if await s.get(PaymentAttempt, intent.id) is None:
                s.add(PaymentAttempt(payment_intent_id=intent.id, order_id=order.id,
                                     attempt=order.payment_attempts + 1, amount=intent.amount,
                                     currency=intent.currency, created_at=now))
            values.update(payment_intent_id=intent.id, payment_attempts=order.payment_attempts + 1)
        await s.execute(update(Order).where(Order.id == order.id).values(**values))
        if intent is None:
            return "no_payment"
        if paid or intent.status == "succeeded":
            return await settlement.payment_succeeded(s, intent, source)
        error = declined.card_error if declined else intent.last_payment_error
        return await settlement.payment_failed(
            s, intent, source, error, payer=Who(system=source, on_behalf=buyer_of(order)))
