"""Starting, paying, capping and cancelling subscriptions (the flows that talk to Stripe).

Like checkout, each flow is a sequence of explicit steps with the Stripe calls *between*
commits, never inside a transaction:

1. **decide** — one transaction writes the subscription (``incomplete``) and its first order
   (``pending_payment``), consumes the quote and holds the subscription's lease;
2. **Stripe** — Customer (once per organisation), PaymentMethod, Plan, TaxRate and the
   Subscription, whose first invoice localstripe makes and charges at once, all with
   idempotency keys derived from our ids; invoice making holds the customer's lease;
3. **settle** — one transaction records the invoice and its PaymentIntent on the order and
   makes it ``paid`` (the subscription becomes ``active`` and the entitlement is granted)
   or ``payment_failed`` (402 to the buyer, who pays again with another card).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import billing, offers, subscriptions
from services.orders.checkout import PaymentFailed
from services.orders.context import OrdersContext
from services.orders.locking import locked
from services.orders.models import Order, Quote, Subscription
from services.orders.orders import CANCELLED, FAILED, PENDING, Who, buyer_of, new_order_id, transition
from services.orders.payments import PaymentDeclined
from services.orders.pricing import PlanTerms
from services.orders.quotes import require_orderable, require_unexpired
from services.orders.recurring import period_allowance
from services.orders.stripe_billing import InvoiceView
from services.orders.subscriptions import ACTIVE, CANCELED, INCOMPLETE
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import Actor
from shared.outbox import record_event

#: How long the request that holds a subscription may take to talk to Stripe.
SUBSCRIPTION_LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class SubscribeAsk:
    quote_id: str
    purpose: str
    payment_method: str
    spend_cap: int | None = None


def _hash(ask: SubscribeAsk) -> str:
    body = {"quote_id": ask.quote_id, "purpose": ask.purpose, "payment_method": ask.payment_method,
            "spend_cap": ask.spend_cap}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def not_found(subscription_id: str) -> NotFound:
    return NotFound(f"No subscription {subscription_id} that you can see; list them with GET "
                    "/v1/subscriptions.", problem="subscription-not-found")


async def buyers_subscription(ctx: OrdersContext, principal: Principal, subscription_id: str) -> Subscription:
    async with ctx.sessionmaker() as s:
        sub = await s.get(Subscription, subscription_id)
    if sub is None or sub.buyer_org != principal.org_id or "buyer" not in principal.roles:
        raise not_found(subscription_id)
    return sub


async def _reload(ctx: OrdersContext, subscription_id: str) -> Subscription:
    async with ctx.sessionmaker() as s:
        sub = await s.get(Subscription, subscription_id)
    assert sub is not None
    return sub


def check_spend_cap(terms: PlanTerms, cap: int | None) -> int | None:
    """The period's query allowance under ``cap`` (caps apply to metered plans only)."""
    if cap is not None and terms.kind != "metered":
        raise RuleViolation("A spending cap applies to metered plans only; leave spend_cap out.",
                            rule="spend-cap-metered-only")
    return period_allowance(terms, cap)


async def subscribe(ctx: OrdersContext, principal: Principal, key: str,
                    ask: SubscribeAsk) -> tuple[Subscription, bool]:
    """Start the subscription of ``ask.quote_id`` (or return the one this key started)."""
    org = principal.org_id
    if not org:
        raise RuleViolation("Your token has no organisation (org claim); buyers act for an organisation.",
                            rule="buyer-organisation")
    async with ctx.sessionmaker() as s:
        existing = (await s.execute(select(Subscription).where(
            Subscription.buyer_org == org, Subscription.idempotency_key == key))).scalar_one_or_none()
        quote = await s.get(Quote, ask.quote_id)
    if existing is not None:
        return await _replay(ctx, existing, ask, key), False
    now = utcnow()
    if quote is None or quote.buyer_org != org:
        raise NotFound(f"No quote {ask.quote_id} for your organisation; get one with POST /v1/quotes "
                       "(mode subscription).", problem="quote-not-found")
    if quote.mode != "subscription":
        raise RuleViolation(f"Quote {quote.id} is not for a subscription; ask for one with mode "
                            "subscription, or order this one with POST /v1/orders.", rule="quote-mode")
    if quote.order_id is not None:
        raise Conflict(f"Quote {quote.id} was already used; get a new quote.", problem="quote-used")
    require_unexpired(quote, now)
    version = await require_orderable(ctx.catalog, quote, ask.purpose)
    allowance = check_spend_cap(PlanTerms.from_catalog(quote.plan), ask.spend_cap)
    sub, order = _new_subscription(ctx, principal, key, ask, quote, allowance)
    try:
        async with ctx.sessionmaker() as s, s.begin():
            s.add_all([sub, order])
            await s.flush()
            used = await s.execute(update(Quote).where(Quote.id == quote.id, Quote.order_id.is_(None))
                                   .values(order_id=order.id))
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"Quote {quote.id} was just used; get a new quote.", problem="quote-used")
            if quote.offer_id:
                await offers.accept(s, quote.offer_id, sub.id, principal)
            await record_event(s, service="orders", action="orders.subscription.created",
                               subject_type="subscription", subject_id=sub.id,
                               actor=Who(principal, "buyer").actor(),
                               details={"quote_id": quote.id, "product_id": sub.product_id,
                                        "plan_id": sub.plan_id, "first_order_id": order.id,
                                        "amount": order.gross, "currency": order.currency,
                                        "spend_cap": sub.spend_cap})
    except IntegrityError:
        async with ctx.sessionmaker() as s:
            again = (await s.execute(select(Subscription).where(
                Subscription.buyer_org == org, Subscription.idempotency_key == key))).scalar_one_or_none()
        if again is None:
            raise Conflict(f"Quote {quote.id} was just used; get a new quote.",
                           problem="quote-used") from None
        return await _replay(ctx, again, ask, key), False
    await _first_payment(ctx, sub, order, ask.payment_method, str(version.get("title") or sub.product_id))
    return await _reload(ctx, sub.id), True


def _new_subscription(ctx: OrdersContext, principal: Principal, key: str, ask: SubscribeAsk, quote: Quote,
                      allowance: int | None) -> tuple[Subscription, Order]:
    now = utcnow()
    sub_id, order_id = subscriptions.new_subscription_id(), new_order_id()
    sub = Subscription(
        id=sub_id, buyer_org=str(principal.org_id), buyer_sub=principal.subject, idempotency_key=key,
        request_hash=_hash(ask), quote_id=quote.id, provider_org=quote.provider_org,
        product_id=quote.product_id, version=quote.version, plan_id=quote.plan_id, plan=quote.plan,
        purpose=ask.purpose, currency=quote.currency, fee_bps=quote.fee_bps, tax_bps=quote.tax_bps,
        offer_id=quote.offer_id, status=INCOMPLETE, first_order_id=order_id, spend_cap=ask.spend_cap,
        grace_days=ctx.settings.grace_days, claimed_until=now + SUBSCRIPTION_LEASE, created_at=now,
        updated_at=now,
    )
    order = Order(
        id=order_id, buyer_org=sub.buyer_org, buyer_sub=sub.buyer_sub, idempotency_key=f"{sub_id}:1",
        request_hash=sub.request_hash, quote_id=quote.id, product_id=quote.product_id, version=quote.version,
        provider_org=quote.provider_org, plan_id=quote.plan_id, plan_kind=quote.plan_kind,
        purpose=ask.purpose, currency=quote.currency, gross=quote.gross, platform_fee=quote.platform_fee,
        provider_share=quote.provider_share, fee_bps=quote.fee_bps, lines=quote.lines,
        access={**quote.access, "query_quota": allowance}, status=PENDING, payment_attempts=0,
        created_at=now, updated_at=now, billing_reason=subscriptions.CREATE, subscription_id=sub_id,
        tax=quote.tax, tax_bps=quote.tax_bps, offer_id=quote.offer_id,
    )
    return sub, order


async def _replay(ctx: OrdersContext, sub: Subscription, ask: SubscribeAsk, key: str) -> Subscription:
    if sub.request_hash != _hash(ask):
        raise RuleViolation(
            f"Idempotency-Key {key!r} was already used for subscription {sub.id} with a different body. "
            "Use a new key for a new subscription, or repeat the original body exactly.",
            rule="idempotency-key-reused", subscription_id=sub.id)
    if sub.status == INCOMPLETE and sub.stripe_subscription_id is None and await _claim(ctx, sub.id):
        async with ctx.sessionmaker() as s:
            order = await s.get(Order, sub.first_order_id)
        assert order is not None
        await _first_payment(ctx, sub, order, ask.payment_method, sub.product_id)
    return await _reload(ctx, sub.id)


async def _claim(ctx: OrdersContext, subscription_id: str) -> bool:
    """Take the subscription's lease (free, or left by a crashed request)."""
    now = utcnow()
    async with ctx.sessionmaker() as s, s.begin():
        taken = await s.execute(update(Subscription).where(
            Subscription.id == subscription_id,
            (Subscription.claimed_until.is_(None)) | (Subscription.claimed_until < now))
            .values(claimed_until=now + SUBSCRIPTION_LEASE))
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


async def _release(ctx: OrdersContext, subscription_id: str) -> None:
    async with ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Subscription).where(Subscription.id == subscription_id)
                        .values(claimed_until=None))


def buyer_actor_of(principal: Principal) -> Actor:
    return Actor(sub=principal.subject, org=principal.org_id, role="buyer")


def payment_failed_problem(sub: Subscription, order_id: str,
                           error: dict[str, object] | None) -> PaymentFailed:
    error = error or {}
    return PaymentFailed(
        f"The payment was declined ({error.get('decline_code') or error.get('code')}: "
        f"{error.get('message')}). "
        f"Subscription {sub.id} is {sub.status}; pay with another payment method at "
        f"POST /v1/subscriptions/{sub.id}/payment-method.",
        card_error=error, order_id=order_id, subscription_id=sub.id, order_status=FAILED)


async def _first_payment(ctx: OrdersContext, sub: Subscription, order: Order, payment_method: str,
                         title: str) -> None:
    """Steps 2 and 3 for a new subscription (the caller holds its lease)."""
    try:
        customer = await billing.customer_for(ctx, sub.buyer_org)
        try:
            previous = await billing.save_payment_method(ctx, sub.buyer_org, customer, payment_method)
        except PaymentDeclined as declined:
            await billing.fail_without_payment(ctx, order, declined.card_error, "stripe-setup")
            raise payment_failed_problem(sub, order.id, declined.card_error) from None
        plan = await billing.ensure_plan(ctx, sub, title)
        rates = await billing.tax_rates(ctx)
        async with billing.invoice_lease(ctx, sub.buyer_org):
            stripe_sub, _status, invoice_id = await billing.stripe_billing(ctx).create_subscription(
                customer_id=customer, plan_id=plan, tax_rates=rates, subscription_id=sub.id)
            async with ctx.sessionmaker() as s, s.begin():
                await s.execute(update(Subscription).where(Subscription.id == sub.id).values(
                    stripe_subscription_id=stripe_sub, stripe_plan_id=plan, updated_at=utcnow()))
            assert invoice_id is not None
            invoice = await billing.stripe_billing(ctx).retrieve_invoice(invoice_id)
        try:
            await settle_checked(ctx, sub, order, invoice, None)
        except PaymentFailed:
            await billing.restore_payment_method(ctx, sub.buyer_org, customer, previous)
            raise
    finally:
        await _release(ctx, sub.id)


async def settle_checked(ctx: OrdersContext, sub: Subscription, order: Order, invoice: InvoiceView,
                         declined: PaymentDeclined | None) -> str:
    """Settle ``invoice`` into ``order`` after checking Stripe billed what we priced; a
    decline raises 402 for the buyer."""
    if invoice.total != order.gross or invoice.currency != order.currency:
        await billing.anomaly(ctx, order, "amount_mismatched", stripe_invoice_id=invoice.id,
                              invoice_total=invoice.total, expected=order.gross)
        raise Conflict(f"Stripe's invoice {invoice.id} totals {invoice.total} {invoice.currency}, not the "
                       f"{order.gross} {order.currency} of order {order.id}; it is recorded as an anomaly "
                       "for an operator and nothing was accepted.", problem="invoice-mismatch")
    outcome = await billing.settle_invoice(ctx, order, invoice, declined, "stripe-invoice")
    return await raise_if_failed(ctx, sub, order, outcome)


async def raise_if_failed(ctx: OrdersContext, sub: Subscription, order: Order, outcome: str) -> str:
    """A buyer-facing flow answers 402 when the payment it made failed."""
    if outcome == "payment_failed":
        async with ctx.sessionmaker() as s:
            failed = await s.get(Order, order.id)
        assert failed is not None
        raise payment_failed_problem(await _reload(ctx, sub.id), failed.id, failed.last_payment_error)
    return outcome


async def unpaid_order(ctx: OrdersContext, sub: Subscription) -> Order | None:
    """The subscription's latest order still waiting for money, if any."""
    async with ctx.sessionmaker() as s:
        return (await s.execute(
            select(Order).where(Order.subscription_id == sub.id, Order.status.in_((PENDING, FAILED)))
            .order_by(Order.created_at.desc()).limit(1))).scalar_one_or_none()


async def pay_again(ctx: OrdersContext, principal: Principal, subscription_id: str,
                    payment_method: str) -> Subscription:
    """Save a new payment method and pay what the subscription owes with it."""
    sub = await buyers_subscription(ctx, principal, subscription_id)
    if sub.status == CANCELED:
        raise Conflict(f"Subscription {sub.id} is canceled; start a new one.",
                       problem="subscription-canceled")
    customer = await billing.customer_for(ctx, sub.buyer_org)
    order = await unpaid_order(ctx, sub)
    try:
        previous = await billing.save_payment_method(ctx, sub.buyer_org, customer, payment_method)
    except PaymentDeclined as refused:
        owed = order.id if order else sub.first_order_id
        raise payment_failed_problem(sub, owed, refused.card_error) from None
    if order is None:
        return sub
    if order.stripe_invoice_id is None and sub.stripe_subscription_id is None:
        if await _claim(ctx, sub.id):  # the first payment never reached Stripe: start it now
            await _first_payment(ctx, sub, order, payment_method, sub.product_id)
        return await _reload(ctx, sub.id)
    if order.stripe_invoice_id is None:
        raise Conflict(f"The renewal of {sub.id} is being billed right now; retry in a moment.",
                       problem="billing-busy", headers={"Retry-After": "5"})
    stripe = billing.stripe_billing(ctx)
    declined: PaymentDeclined | None = None
    async with billing.invoice_lease(ctx, sub.buyer_org):
        try:
            invoice = await stripe.pay_invoice(order.stripe_invoice_id)
        except PaymentDeclined as exc:
            declined, invoice = exc, await stripe.retrieve_invoice(order.stripe_invoice_id)
    try:
        await settle_checked(ctx, sub, order, invoice, declined)
    except PaymentFailed:
        await billing.restore_payment_method(ctx, sub.buyer_org, customer, previous)
        raise
    return await _reload(ctx, sub.id)


async def cancel(ctx: OrdersContext, principal: Principal, subscription_id: str) -> Subscription:
    """An active subscription ends at its period's end (access until then); one that owes
    money ends now, with its unpaid order cancelled."""
    sub = await buyers_subscription(ctx, principal, subscription_id)
    who = Who(principal, "buyer")
    if sub.status == CANCELED or (sub.status == ACTIVE and sub.cancel_at_period_end):
        return sub
    async with ctx.sessionmaker() as s, s.begin():
        row = await locked(s, Subscription, sub.id)
        assert row is not None
        if row.status == ACTIVE:
            await s.execute(update(Subscription).where(Subscription.id == sub.id).values(
                cancel_at_period_end=True, updated_at=utcnow()))
            await record_event(s, service="orders", action="orders.subscription.cancel_scheduled",
                               subject_type="subscription", subject_id=sub.id, actor=who.actor(),
                               details={"ends_at": subscriptions.iso(row.current_period_end)})
        else:
            await cancel_now(s, row, buyer_actor_of(principal))
    return await _reload(ctx, sub.id)


async def cancel_now(s: AsyncSession, sub: Subscription, actor: Actor | None) -> None:
    """In the caller's transaction: cancel the subscription and its unpaid orders (the
    billing clock then cancels it at Stripe and voids their invoices)."""
    unpaid = (await s.execute(select(Order).where(Order.subscription_id == sub.id,
                                                  Order.status.in_((PENDING, FAILED)))
                              .with_for_update())).scalars().all()
    for order in unpaid:
        await transition(s, order, CANCELLED, Who(system="subscription-cancel", on_behalf=buyer_of(order)))
    await subscriptions.transition(s, sub, CANCELED, actor,
                                   details={"unpaid_orders_cancelled": [o.id for o in unpaid]})


async def resume(ctx: OrdersContext, principal: Principal, subscription_id: str) -> Subscription:
    """Undo a cancellation scheduled for the period's end."""
    sub = await buyers_subscription(ctx, principal, subscription_id)
    if sub.status != ACTIVE or not sub.cancel_at_period_end:
        raise Conflict(f"Subscription {sub.id} is {sub.status} and not set to end; nothing to resume.",
                       problem="no-state-change")
    async with ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Subscription).where(Subscription.id == sub.id, Subscription.status == ACTIVE)
                        .values(cancel_at_period_end=False, updated_at=utcnow()))
        await record_event(s, service="orders", action="orders.subscription.resumed",
                           subject_type="subscription", subject_id=sub.id,
                           actor=Who(principal, "buyer").actor())
    return await _reload(ctx, sub.id)
