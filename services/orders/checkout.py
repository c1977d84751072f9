"""Placing, paying, cancelling and refunding orders (the flows that talk to Stripe).

These flows manage their own transactions because Stripe calls must happen
*between* commits: the order row is committed before a PaymentIntent is created
(so concurrent duplicates of the same ``Idempotency-Key`` find it and wait instead
of creating a second payment), and a refund is made at Stripe before the order
becomes ``refunded``. Each flow is a small state machine whose states are committed
rows, and every Stripe call is the step between two of them:

    place:  commit order (pending_payment) → Stripe: create intent → commit intent id
    pay:    Stripe: confirm intent → commit paid|failed (settlement)
    cancel: Stripe: cancel each intent → commit cancelled (or paid, if Stripe says so)
    refund: commit refund decision (refund_pending) → Stripe: refund → commit refunded

A crash between two commits leaves the earlier state, which a repeated request (same
Idempotency-Key) or the reconciler carries on from. Side effects of each commit (waking
the fulfilment and Stripe relays) are ``shared.db.after_commit`` hooks registered by
``shared.outbox.enqueue``: nothing here wakes a relay by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from services.orders import free_checkout, offers, refunds, settlement
from services.orders.context import OrdersContext
from services.orders.models import Order, PaymentAttempt, Quote, Refund, Trial
from services.orders.orders import (
    CANCELLED,
    FAILED,
    FULFILLED,
    PAID,
    PENDING,
    REFUND_PENDING,
    REFUNDED,
    Who,
    load_for_update,
    new_order_id,
    transition,
)
from services.orders.payments import Intent, PaymentDeclined
from services.orders.quotes import require_orderable, require_unexpired, trial_taken, trial_used
from services.orders.refunds import RefundAsk
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, NotFound, ProblemError, RuleViolation, ServiceUnavailable
from shared.outbox import record_event

#: How long the request that holds the lease may take to create a PaymentIntent.
PAYMENT_LEASE = timedelta(seconds=30)


class PaymentFailed(ProblemError):
    status, problem, title = 402, "payment-failed", "Payment failed"


def request_hash(quote_id: str, purpose: str) -> str:
    canonical = json.dumps({"purpose": purpose, "quote_id": quote_id}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _by_key(ctx: OrdersContext, buyer_org: str, key: str) -> Order | None:
    async with ctx.sessionmaker() as s:
        stmt = select(Order).where(Order.buyer_org == buyer_org, Order.idempotency_key == key)
        return (await s.execute(stmt)).scalar_one_or_none()


async def _reload(ctx: OrdersContext, order_id: str) -> Order:
    async with ctx.sessionmaker() as s:
        order = await s.get(Order, order_id)
    assert order is not None
    return order


async def _buyer_order(ctx: OrdersContext, principal: Principal, order_id: str) -> Order:
    async with ctx.sessionmaker() as s:
        order = await s.get(Order, order_id)
    if order is None or order.buyer_org != principal.org_id:
        raise NotFound(f"No order {order_id} of your organisation; list yours with GET /v1/orders.",
                       problem="order-not-found")
    return order


# --- PaymentIntents ------------------------------------------------------------------

async def _claim_payment(ctx: OrdersContext, order_id: str) -> bool:
    """Take the lease to create the order's PaymentIntent (free, or left by a crashed request)."""
    now = utcnow()
    async with ctx.sessionmaker() as s, s.begin():
        result = await s.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == PENDING, Order.payment_intent_id.is_(None),
                   or_(Order.payment_claimed_until.is_(None), Order.payment_claimed_until < now))
            .values(payment_claimed_until=now + PAYMENT_LEASE)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _attach_new_intent(ctx: OrdersContext, order: Order) -> Order:
    """Create the next PaymentIntent (the caller holds the lease) and store it on the order."""
    attempt = order.payment_attempts + 1
    try:
        intent = await ctx.gateway.create_intent(
            order_id=order.id, attempt=attempt, amount=order.gross, currency=order.currency,
            metadata={"product_id": order.product_id, "buyer_org": order.buyer_org},
        )
    except BaseException:
        async with ctx.sessionmaker() as s, s.begin():
            await s.execute(update(Order).where(Order.id == order.id).values(payment_claimed_until=None))
        raise
    now = utcnow()
    async with ctx.sessionmaker() as s, s.begin():
        s.add(PaymentAttempt(payment_intent_id=intent.id, order_id=order.id, attempt=attempt,
                             amount=order.gross, currency=order.currency, created_at=now))
        await s.execute(
            update(Order).where(Order.id == order.id, Order.payment_intent_id.is_(None)).values(
                payment_intent_id=intent.id, client_secret=intent.client_secret,
                payment_attempts=attempt, last_payment_at=now, payment_claimed_until=None,
                updated_at=now,
            )
        )
        await record_event(s, service="orders", action="orders.payment.created", subject_type="order",
                           subject_id=order.id, details={"payment_intent_id": intent.id,
                                                         "attempt": attempt, "amount": order.gross,
                                                         "currency": order.currency})
    return await _reload(ctx, order.id)


async def _wait_for_intent(ctx: OrdersContext, order: Order) -> Order:
    """Return the order once its PaymentIntent exists, creating it if nobody else is."""
    deadline = time.monotonic() + ctx.settings.idempotency_wait_seconds
    delay = 0.02
    while order.status == PENDING and order.gross > 0 and order.payment_intent_id is None:
        if await _claim_payment(ctx, order.id):
            return await _attach_new_intent(ctx, order)
        if time.monotonic() > deadline:
            raise Conflict(
                f"Order {order.id} is still creating its payment; repeat the request in a second.",
                problem="order-in-progress", headers={"Retry-After": "1"},
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
        order = await _reload(ctx, order.id)
    return order


# --- placing an order ------------------------------------------------------------------

async def _replay(ctx: OrdersContext, order: Order, body_hash: str, key: str) -> Order:
    if order.request_hash != body_hash:
        raise RuleViolation(
            f"Idempotency-Key {key!r} was already used for order {order.id} with a different body. "
            "Use a new key for a new order, or repeat the original body exactly.",
            rule="idempotency-key-reused", order_id=order.id,
        )
    return await _wait_for_intent(ctx, order)


async def place_order(
    ctx: OrdersContext, principal: Principal, *, key: str, quote_id: str, purpose: str
) -> tuple[Order, bool]:
    """Create the order for ``quote_id`` (or return the one this key already made).

    Returns the order and whether this call created it."""
    org = principal.org_id
    if not org:
        raise RuleViolation("Your token has no organisation (org claim); buyers act for an organisation.",
                            rule="buyer-organisation")
    body_hash = request_hash(quote_id, purpose)
    fast = free_checkout.available(ctx.sessionmaker)
    if fast:  # one autocommit statement instead of a session (free_checkout.py)
        quote, existing_id = await free_checkout.read_quote_and_key(ctx.sessionmaker, org, key, quote_id)
        existing = await _by_key(ctx, org, key) if existing_id is not None else None
    else:
        async with ctx.sessionmaker() as s:
            existing = (await s.execute(select(Order).where(
                Order.buyer_org == org, Order.idempotency_key == key))).scalar_one_or_none()
            quote = None if existing is not None else await s.get(Quote, quote_id)
    if existing is not None:
        return await _replay(ctx, existing, body_hash, key), False
    now = utcnow()
    if quote is None or quote.buyer_org != org:
        raise NotFound(f"No quote {quote_id} for your organisation; get one with POST /v1/quotes.",
                       problem="quote-not-found")
    if quote.order_id is not None:
        # A concurrent request with this same key may have used it since our first look.
        existing = await _by_key(ctx, org, key)
        if existing is not None:
            return await _replay(ctx, existing, body_hash, key), False
        raise Conflict(f"Quote {quote_id} was already used by order {quote.order_id}; get a new quote.",
                       problem="quote-used", order_id=quote.order_id)
    require_unexpired(quote, now)
    if quote.mode == "subscription":
        raise RuleViolation(f"Quote {quote_id} is for a subscription; start it with POST /v1/subscriptions.",
                            rule="quote-mode")
    await require_orderable(ctx.catalog, quote, purpose)
    order = Order(
        id=new_order_id(), buyer_org=org, buyer_sub=principal.subject, idempotency_key=key,
        request_hash=body_hash, quote_id=quote.id, product_id=quote.product_id, version=quote.version,
        provider_org=quote.provider_org, plan_id=quote.plan_id, plan_kind=quote.plan_kind, purpose=purpose,
        currency=quote.currency, gross=quote.gross, platform_fee=quote.platform_fee,
        provider_share=quote.provider_share, fee_bps=quote.fee_bps, lines=quote.lines, access=quote.access,
        status=PENDING, payment_attempts=0, created_at=now, updated_at=now,
        payment_claimed_until=now + PAYMENT_LEASE if quote.gross > 0 else None,
        billing_reason="trial" if quote.mode == "trial" else "purchase", tax=quote.tax,
        tax_bps=quote.tax_bps, offer_id=quote.offer_id,
    )
    created_details = {"quote_id": quote.id, "product_id": order.product_id, "version": order.version,
                       "plan_id": order.plan_id, "purpose": purpose, "amount": order.gross,
                       "currency": order.currency, "provider_org": order.provider_org}
    if fast and quote.mode == "prepaid" and quote.gross == 0 and not quote.offer_id:
        try:
            await free_checkout.write_free_order(ctx.sessionmaker, order, Who(principal, "buyer"),
                                                 created_details, now)
        except (free_checkout.KeyTaken, free_checkout.QuoteTaken):
            existing = await _by_key(ctx, org, key)
            if existing is None:
                raise Conflict(f"Quote {quote_id} was just used by another order; get a new quote.",
                               problem="quote-used") from None
            return await _replay(ctx, existing, body_hash, key), False
        return order, True
    try:
        async with ctx.sessionmaker() as s, s.begin():
            if quote.mode == "trial" and (taken := await trial_taken(s, org, quote.product_id)):
                raise trial_used(quote.product_id, taken)
            s.add(order)
            await s.flush()
            used = await s.execute(update(Quote).where(Quote.id == quote.id, Quote.order_id.is_(None))
                                   .values(order_id=order.id))
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"Quote {quote_id} was just used by another order; get a new quote.",
                               problem="quote-used")
            if quote.mode == "trial":
                s.add(Trial(buyer_org=org, product_id=quote.product_id, order_id=order.id, created_at=now))
                await s.flush()
            if quote.offer_id:
                await offers.accept(s, quote.offer_id, order.id, principal)
            await record_event(s, service="orders", action="orders.order.created", subject_type="order",
                               subject_id=order.id, actor=Who(principal, "buyer").actor(),
                               details=created_details)
            if order.gross == 0:
                await transition(s, order, PAID, Who(principal, "buyer"), details={"free": True})
    except IntegrityError:
        existing = await _by_key(ctx, org, key)
        if existing is None and quote.mode == "trial":
            async with ctx.sessionmaker() as s:
                if taken := await trial_taken(s, org, quote.product_id):
                    raise trial_used(quote.product_id, taken) from None
        if existing is None:
            raise Conflict(f"Quote {quote_id} was just used by another order; get a new quote.",
                           problem="quote-used") from None
        return await _replay(ctx, existing, body_hash, key), False
    if order.gross == 0:
        return order, True
    try:
        return await _attach_new_intent(ctx, order), True
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(
            f"Order {order.id} was created but its payment could not be started ({exc.detail}) "
            "Repeat the same request with the same Idempotency-Key to finish it.",
            problem=exc.problem, title=exc.title, order_id=order.id, headers={"Retry-After": "2"},
        ) from exc


# --- paying ------------------------------------------------------------------------------

async def pay_order(
    ctx: OrdersContext, principal: Principal, order_id: str, payment_method: str | None
) -> tuple[Order, dict[str, Any] | None]:
    """Start a new attempt if the last one failed; confirm with ``payment_method`` if given."""
    order = await _buyer_order(ctx, principal, order_id)
    if order.status in (PAID, FULFILLED, REFUND_PENDING):
        return order, None
    if order.status in (CANCELLED, REFUNDED):
        raise Conflict(f"Order {order.id} is {order.status}; it cannot be paid. Place a new order.",
                       problem="order-not-payable", status_now=order.status)
    if order.status == FAILED:
        claimed = False
        async with ctx.sessionmaker() as s, s.begin():
            locked = await load_for_update(s, order.id)
            assert locked is not None
            now = utcnow()
            lease = locked.payment_claimed_until
            if locked.status == FAILED and (lease is None or lease < now):
                await transition(s, locked, PENDING, Who(principal, "buyer"),
                                 details={"previous_payment_intent_id": locked.payment_intent_id},
                                 changes={"payment_intent_id": None, "client_secret": None,
                                          "payment_claimed_until": now + PAYMENT_LEASE})
                claimed = True
        order = await _attach_new_intent(ctx, order) if claimed else await _reload(ctx, order.id)
    order = await _wait_for_intent(ctx, order)
    if payment_method is None or order.status != PENDING or order.payment_intent_id is None:
        return order, None
    try:
        intent = await ctx.gateway.confirm(order.payment_intent_id, payment_method)
    except PaymentDeclined as declined:
        failed = Intent(id=declined.payment_intent_id, status="requires_payment_method",
                        amount=order.gross, currency=order.currency, client_secret=None,
                        metadata={"order_id": order.id})
        async with ctx.sessionmaker() as s, s.begin():
            await settlement.payment_failed(s, failed, "stripe-confirm", declined.card_error,
                                            payer=Who(principal, "buyer", system="stripe-confirm"))
        error = declined.card_error
        raise PaymentFailed(
            f"The payment was declined ({error.get('decline_code') or error.get('code')}: "
            f"{error.get('message')}). Order {order.id} is payment_failed; pay again with another "
            f"payment method at POST /v1/orders/{order.id}/pay.",
            card_error=error, order_id=order.id, order_status=FAILED,
        ) from None
    async with ctx.sessionmaker() as s, s.begin():
        if intent.status == "succeeded":
            await settlement.payment_succeeded(s, intent, "stripe-confirm")
        elif intent.status == "requires_payment_method" and intent.last_payment_error:
            await settlement.payment_failed(s, intent, "stripe-confirm",
                                            payer=Who(principal, "buyer", system="stripe-confirm"))
    return await _reload(ctx, order.id), intent.next_action


# --- cancelling and refunding ----------------------------------------------------------------

async def cancel_order(ctx: OrdersContext, principal: Principal, order_id: str) -> Order:
    order = await _buyer_order(ctx, principal, order_id)
    if order.status == CANCELLED:
        return order
    if order.status not in (PENDING, FAILED):
        raise Conflict(f"Order {order.id} is {order.status}; only unpaid orders can be cancelled"
                       + (" (ask the provider or an operator for a refund)." if order.status in
                          (PAID, FULFILLED) else "."),
                       problem="order-not-cancellable", status_now=order.status)
    lease = order.payment_claimed_until
    if order.payment_intent_id is None and lease is not None and lease > utcnow():
        raise Conflict(f"Order {order.id} is creating its payment; retry in a second.",
                       problem="order-in-progress", headers={"Retry-After": "1"})
    async with ctx.sessionmaker() as s:
        attempts = (await s.execute(select(PaymentAttempt.payment_intent_id)
                                    .where(PaymentAttempt.order_id == order.id))).scalars().all()
    # Stop every attempt at Stripe first, so no payment can succeed after the cancellation.
    for pi in attempts:
        intent = await ctx.gateway.cancel(pi)
        if intent.status == "succeeded":
            async with ctx.sessionmaker() as s, s.begin():
                await settlement.payment_succeeded(s, intent, "stripe-cancel")
            raise Conflict(f"Order {order.id} was paid meanwhile, so it cannot be cancelled; "
                           "ask the provider or an operator for a refund.",
                           problem="order-not-cancellable", status_now=PAID)
    async with ctx.sessionmaker() as s, s.begin():
        locked = await load_for_update(s, order.id)
        assert locked is not None
        await transition(s, locked, CANCELLED, Who(principal, "buyer"))
    return await _reload(ctx, order.id)


async def refund_order(ctx: OrdersContext, principal: Principal, order_id: str, ask: RefundAsk) -> Order:
    """Refund all or part of a paid order (see :mod:`services.orders.refunds` for the steps)."""
    async with ctx.sessionmaker() as s:
        order = await s.get(Order, order_id)
    is_operator = "operator" in principal.roles
    if order is None or not (is_operator or order.provider_org == principal.org_id
                             or order.buyer_org == principal.org_id):
        raise NotFound(f"No order {order_id} that you can see; list them with GET /v1/orders.",
                       problem="order-not-found")
    if not is_operator and not ("provider" in principal.roles and order.provider_org == principal.org_id):
        raise Forbidden("Only an operator, or the provider of the product, can refund an order.")
    who = Who(principal, "operator" if is_operator else "provider")
    # Step 1 commits the decision (order refund_pending) before Stripe hears of it.
    async with ctx.sessionmaker() as s, s.begin():
        decision = await refunds.decide(s, order_id, who, ask)
    if decision is not None:
        if not decision.leased:
            async with ctx.sessionmaker() as s, s.begin():
                claimed = await refunds.claim(s, decision.refund.id)
            if not claimed:
                raise refunds.RefundInProgress(
                    f"Refund {decision.refund.id} of order {order_id} is at Stripe right now; GET the "
                    "order in a moment.", headers={"Retry-After": "1"}, refund_id=decision.refund.id)
            async with ctx.sessionmaker() as s:
                refund = await s.get(Refund, decision.refund.id)
            assert refund is not None
        else:
            refund = decision.refund
        try:
            await refunds.carry_out(ctx.sessionmaker, ctx.gateway, refund, source="refund-request")
        except ServiceUnavailable as exc:
            raise ServiceUnavailable(
                f"Refund {refund.id} of order {order_id} is decided but Stripe could not confirm it "
                f"({exc.detail}) Repeat the same request to finish it (it will not refund twice); the "
                "reconciler also finishes it.", problem=exc.problem, title=exc.title,
                refund_id=refund.id, headers={"Retry-After": "2"},
            ) from exc
    return await _reload(ctx, order_id)
