"""The billing clock: renewals, grace-period holds, cancellations at the period's end, and
the Stripe side of cancellations; plus plan changes with proration and spending caps.

localstripe never renews anything by itself (its subscription periods do not advance), so
Sluice drives each period: :func:`renew` writes the period's order (``subscription_cycle``,
with the previous period's metered usage), then — holding the customer's invoice lease —
adds the usage lines as InvoiceItems, makes the subscription's next Invoice and pays it,
and settles the outcome into the order (paid → the entitlement moves to the new period;
failed → grace period). :func:`run_clock` runs every reconciler interval; tests and
operators call :func:`renew` with ``force`` to bill the next period now.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.orders import billing, refunds, subscriptions
from services.orders.context import OrdersContext
from services.orders.locking import locked
from services.orders.models import BillingCustomer, Order, Subscription
from services.orders.orders import FULFILLED, PAID, PENDING, Who, new_order_id
from services.orders.payments import PaymentDeclined
from services.orders.pricing import Access, Line, PlanTerms, tax_of, total_of
from services.orders.quotes import find_plan, require_listed
from services.orders.recurring import period_allowance, price_period, proration, require_recurring
from services.orders.stripe_billing import InvoiceView
from services.orders.subscribe import (
    buyer_actor_of,
    buyers_subscription,
    check_spend_cap,
    raise_if_failed,
)
from services.orders.subscriptions import ACTIVE, CANCELED, CYCLE, PAST_DUE, UPDATE
from shared.auth import Principal
from shared.db import utcnow
from shared.errors import Conflict, ProblemError, RuleViolation
from shared.outbox import record_event

logger = logging.getLogger("sluice.orders")


async def _reload(ctx: OrdersContext, subscription_id: str) -> Subscription:
    async with ctx.sessionmaker() as s:
        sub = await s.get(Subscription, subscription_id)
    assert sub is not None
    return sub


async def _entitlement_id(ctx: OrdersContext, sub: Subscription) -> str | None:
    async with ctx.sessionmaker() as s:
        first = await s.get(Order, sub.first_order_id)
    return first.entitlement_id if first else None


async def _usage(ctx: OrdersContext, sub: Subscription) -> tuple[int, int] | None:
    """(queries since the last bill, last usage seq) for metered plans; None when the
    entitlement is not granted yet (the renewal waits for it)."""
    if sub.plan.get("kind") != "metered":
        return 0, sub.usage_billed_seq
    entitlement_id = await _entitlement_id(ctx, sub)
    if entitlement_id is None:
        return None
    return await billing.access_client(ctx).usage_since(entitlement_id, sub.usage_billed_seq)


# --- renewals ------------------------------------------------------------------------------

async def _renewal_order(ctx: OrdersContext, sub: Subscription, now: datetime) -> Order | None:
    """Step 1: the order of the subscription's next period (written once)."""
    n = sub.periods_paid + 1
    key = f"{sub.id}:{n}"
    async with ctx.sessionmaker() as s:
        existing = (await s.execute(select(Order).where(Order.buyer_org == sub.buyer_org,
                                                        Order.idempotency_key == key))).scalar_one_or_none()
    if existing is not None:
        return existing
    usage = await _usage(ctx, sub)
    if usage is None:
        return None
    queries, last_seq = usage
    async with ctx.sessionmaker() as s:
        first = await s.get(Order, sub.first_order_id)
    epsilon = (first.access or {}).get("epsilon_budget") if first else None  # ε per period, as bought
    priced = price_period(PlanTerms.from_catalog(sub.plan), fee_bps=sub.fee_bps, tax_bps=sub.tax_bps,
                          usage_queries=queries, spend_cap=sub.spend_cap)
    assert sub.current_period_end is not None
    start, end = sub.current_period_end, subscriptions.period_end(sub, n)
    order = Order(
        id=new_order_id(), buyer_org=sub.buyer_org, buyer_sub=sub.buyer_sub, idempotency_key=key,
        request_hash=sub.request_hash, quote_id=None, product_id=sub.product_id, version=sub.version,
        provider_org=sub.provider_org, plan_id=sub.plan_id, plan_kind=str(sub.plan.get("kind")),
        purpose=sub.purpose, currency=sub.currency, gross=priced.gross, platform_fee=priced.platform_fee,
        provider_share=priced.provider_share, fee_bps=sub.fee_bps,
        lines=[line.as_dict() for line in priced.lines],
        access={**priced.access.as_dict(), "query_quota": priced.query_quota, "usage_queries": queries,
                "epsilon_budget": epsilon},
        status=PENDING, payment_attempts=0, created_at=now, updated_at=now, billing_reason=CYCLE,
        subscription_id=sub.id, period_start=start, period_end=end, tax=priced.tax, tax_bps=priced.tax_bps,
        offer_id=sub.offer_id,
    )
    try:
        async with ctx.sessionmaker() as s, s.begin():
            moved = await s.execute(update(Subscription).where(
                Subscription.id == sub.id, Subscription.usage_billed_seq == sub.usage_billed_seq)
                .values(usage_billed_seq=last_seq, updated_at=now))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another renewal of this subscription won: it bills this usage
            s.add(order)
            await s.flush()
            await record_event(s, service="orders", action="orders.order.created", subject_type="order",
                               subject_id=order.id, actor=None,
                               details={"subscription_id": sub.id, "billing_reason": CYCLE,
                                        "amount": order.gross, "currency": order.currency,
                                        "period_start": start.isoformat(), "period_end": end.isoformat(),
                                        "usage_queries": queries})
    except IntegrityError:
        return None
    return order


def invoice_matches(order: Order, invoice: InvoiceView) -> bool:
    return invoice.total == order.gross and invoice.currency == order.currency


async def _bill(ctx: OrdersContext, sub: Subscription, order: Order) -> str:
    """Steps 2 and 3: usage items, the invoice, its payment, the outcome (never raises on a
    decline: a failed renewal is a state, not an error)."""
    stripe = billing.stripe_billing(ctx)
    customer = await billing.customer_for(ctx, sub.buyer_org)
    assert sub.stripe_subscription_id is not None
    declined: PaymentDeclined | None = None
    async with billing.invoice_lease(ctx, sub.buyer_org):
        if order.stripe_invoice_id is None:
            added = await stripe.pending_lines(customer, order.id)
            for i, line in enumerate(order.lines):
                if line["code"] != "base" and i not in added:
                    await stripe.add_invoice_item(
                        customer_id=customer, stripe_subscription_id=sub.stripe_subscription_id,
                        amount=int(line["amount"]), currency=sub.currency,
                        description=str(line["description"]), order_id=order.id, line=i)
            invoice = await stripe.create_invoice(customer_id=customer,
                                                  stripe_subscription_id=sub.stripe_subscription_id,
                                                  key=f"{order.id}-invoice")
            async with ctx.sessionmaker() as s, s.begin():
                await s.execute(update(Order).where(Order.id == order.id)
                                .values(stripe_invoice_id=invoice.id, updated_at=utcnow()))
        else:
            invoice = await stripe.retrieve_invoice(order.stripe_invoice_id)
        if not invoice_matches(order, invoice):
            await stripe.void_invoice(invoice.id)
            await billing.anomaly(ctx, order, "amount_mismatched", stripe_invoice_id=invoice.id,
                                  invoice_total=invoice.total, expected=order.gross)
            error = {"code": "invoice_mismatch", "decline_code": None,
                     "message": f"Stripe's invoice totals {invoice.total}, not {order.gross}."}
            return await billing.fail_without_payment(ctx, order, error, "billing-clock")
        if invoice.status in ("draft", "open"):
            try:
                invoice = await stripe.pay_invoice(invoice.id)
            except PaymentDeclined as exc:
                declined, invoice = exc, await stripe.retrieve_invoice(invoice.id)
    return await billing.settle_invoice(ctx, order, invoice, declined, "billing-clock")


async def renew(ctx: OrdersContext, subscription_id: str, *, force: bool = False,
                now: datetime | None = None) -> Order | None:
    """Bill the subscription's next period if it is due (or now, with ``force``)."""
    now = now or utcnow()
    sub = await _reload(ctx, subscription_id)
    if sub.status != ACTIVE or sub.cancel_at_period_end or sub.current_period_end is None:
        if force:
            raise Conflict(f"Subscription {sub.id} is {sub.status}"
                           f"{' and ends at its period end' if sub.cancel_at_period_end else ''}; only "
                           "active subscriptions renew.", problem="subscription-not-renewable",
                           status_now=sub.status)
        return None
    if not force and sub.current_period_end > now:
        return None
    order = await _renewal_order(ctx, sub, now)
    if order is None or order.status not in (PENDING,):
        return order
    await _bill(ctx, await _reload(ctx, sub.id), order)
    async with ctx.sessionmaker() as s:
        return await s.get(Order, order.id)


# --- the clock -------------------------------------------------------------------------------

async def _ids(ctx: OrdersContext, *where: object) -> list[str]:
    async with ctx.sessionmaker() as s:
        return list((await s.execute(select(Subscription.id).where(*where)  # type: ignore[arg-type]
                                     .order_by(Subscription.current_period_end).limit(100))).scalars())


async def run_clock(ctx: OrdersContext, now: datetime | None = None) -> dict[str, int]:
    """One tick: renewals due, periods ending by request, grace periods run out, and
    cancellations still to tell Stripe. Returns how many of each it did."""
    now = now or utcnow()
    done: dict[str, int] = {}

    def count(what: str) -> None:
        done[what] = done.get(what, 0) + 1

    for sub_id in await _ids(ctx, Subscription.status == ACTIVE, Subscription.current_period_end <= now):
        try:
            sub = await _reload(ctx, sub_id)
            if sub.cancel_at_period_end:
                await _end_at_period_end(ctx, sub)
                count("subscription_ended")
            elif (order := await renew(ctx, sub_id, now=now)) is not None:
                count(f"renewal_{order.status}")
        except ProblemError as exc:
            logger.warning("billing clock could not renew %s: %s", sub_id, exc.detail)
            count("renewal_error")
    for sub_id in await _ids(ctx, Subscription.status == PAST_DUE, Subscription.grace_until <= now):
        async with ctx.sessionmaker() as s, s.begin():
            overdue = await locked(s, Subscription, sub_id)
            if overdue is not None and overdue.status == PAST_DUE:
                await subscriptions.hold_overdue(s, overdue)
                count("subscription_held")
    for sub_id in await _ids(ctx, Subscription.status == CANCELED, Subscription.stripe_canceled.is_(False)):
        try:
            await _cancel_at_stripe(ctx, await _reload(ctx, sub_id))
            count("stripe_canceled")
        except ProblemError as exc:
            logger.warning("billing clock could not cancel %s at Stripe: %s", sub_id, exc.detail)
    return done


async def _end_at_period_end(ctx: OrdersContext, sub: Subscription) -> None:
    async with ctx.sessionmaker() as s, s.begin():
        ending = await locked(s, Subscription, sub.id)
        if ending is not None and ending.status == ACTIVE:
            await subscriptions.transition(s, ending, CANCELED, None,
                                           details={"by": "billing-clock", "at_period_end": True})
    await _cancel_at_stripe(ctx, await _reload(ctx, sub.id))


async def _cancel_at_stripe(ctx: OrdersContext, sub: Subscription) -> None:
    """Tell Stripe (no more invoices) and void the invoices of cancelled orders."""
    stripe = billing.stripe_billing(ctx)
    if sub.stripe_subscription_id:
        await stripe.cancel_subscription(sub.stripe_subscription_id)
    async with ctx.sessionmaker() as s:
        open_invoices = (await s.execute(select(Order.stripe_invoice_id).where(
            Order.subscription_id == sub.id, Order.status == "cancelled",
            Order.stripe_invoice_id.is_not(None)))).scalars().all()
    for invoice_id in open_invoices:
        assert invoice_id is not None
        await stripe.void_invoice(invoice_id)
    async with ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Subscription).where(Subscription.id == sub.id).values(stripe_canceled=True))


# --- plan changes and spending caps -------------------------------------------------------------

async def _current_paid_order(ctx: OrdersContext, sub: Subscription, now: datetime) -> Order | None:
    async with ctx.sessionmaker() as s:
        return (await s.execute(select(Order).where(
            Order.subscription_id == sub.id, Order.status.in_((PAID, FULFILLED)),
            Order.billing_reason.in_((subscriptions.CREATE, CYCLE)), Order.valid_from <= now,
            Order.valid_until > now).order_by(Order.valid_from.desc()).limit(1))).scalar_one_or_none()


async def change_plan(ctx: OrdersContext, principal: Principal, subscription_id: str,
                      plan_id: str) -> Subscription:
    """Move to another plan of the same version now, prorated: an upgrade charges the
    difference for the rest of the period, a downgrade refunds it."""
    sub = await buyers_subscription(ctx, principal, subscription_id)
    if sub.status != ACTIVE or sub.current_period_start is None or sub.current_period_end is None:
        raise Conflict(f"Subscription {sub.id} is {sub.status}; only active subscriptions change plan.",
                       problem="subscription-not-active", status_now=sub.status)
    if plan_id == sub.plan_id:
        raise Conflict(f"Subscription {sub.id} is on plan {plan_id} already.", problem="no-state-change")
    version = await ctx.catalog.product_version(sub.product_id, sub.version)
    require_listed(version)
    new_plan = find_plan(version, plan_id)
    new_terms = PlanTerms.from_catalog(new_plan)
    if require_recurring(new_terms) != sub.plan["period"] or new_terms.currency != sub.currency:
        raise RuleViolation(f"Plan {plan_id} bills per {new_terms.period} in {new_terms.currency}; a plan "
                            f"change keeps the period ({sub.plan['period']}) and currency ({sub.currency}). "
                            "Cancel and subscribe anew instead.", rule="plan-change-same-period")
    now = utcnow()
    credit, charge, (unused, total) = proration(int(sub.plan["price"]), new_terms.price,
                                                sub.current_period_start, sub.current_period_end, now)
    allowance = period_allowance(new_terms, sub.spend_cap if new_terms.kind == "metered" else None)
    prorated = None if allowance is None else allowance * unused // total
    if charge > credit:
        await _upgrade(ctx, sub, new_plan, new_terms, credit, charge, prorated, now)
    else:
        await _downgrade(ctx, sub, new_plan, credit - charge, prorated, now)
    await _switch_stripe_plan(ctx, await _reload(ctx, sub.id))
    return await _reload(ctx, sub.id)


def _change_order(sub: Subscription, new_plan: dict[str, Any], new_terms: PlanTerms, credit: int, charge: int,
                  prorated: int | None, now: datetime) -> Order:
    """The order of a plan upgrade: the unused time on the old plan credited, the rest of the
    period on the new one charged."""
    lines = [Line("proration_credit", f"Unused time on {sub.plan.get('name') or sub.plan_id}", 1, -credit,
                  -credit),
             Line("proration_charge", f"Remaining time on {new_plan.get('name') or new_terms.id}", 1, charge,
                  charge)]
    priced = total_of(new_terms, lines, fee_bps=sub.fee_bps, tax_bps=sub.tax_bps, periods=1, quantity=0,
                      access=Access(str(sub.plan["period"]), 1), quota=prorated)
    return Order(
        id=new_order_id(), buyer_org=sub.buyer_org, buyer_sub=sub.buyer_sub,
        idempotency_key=f"{sub.id}:change:{secrets.token_hex(6)}", request_hash=sub.request_hash,
        quote_id=None,
        product_id=sub.product_id, version=sub.version, provider_org=sub.provider_org, plan_id=new_terms.id,
        plan_kind=new_terms.kind, purpose=sub.purpose, currency=sub.currency, gross=priced.gross,
        platform_fee=priced.platform_fee, provider_share=priced.provider_share, fee_bps=sub.fee_bps,
        lines=[line.as_dict() for line in lines],
        access={"unit": sub.plan["period"], "count": 1, "query_quota": prorated, "new_plan": new_plan,
                "catalog_plan_id": new_terms.id},
        status=PENDING, payment_attempts=0, created_at=now, updated_at=now, billing_reason=UPDATE,
        subscription_id=sub.id, period_start=now, period_end=sub.current_period_end, tax=priced.tax,
        tax_bps=priced.tax_bps)


async def _upgrade(ctx: OrdersContext, sub: Subscription, new_plan: dict[str, Any], new_terms: PlanTerms,
                   credit: int, charge: int, prorated: int | None, now: datetime) -> None:
    """Charge the prorated difference now with the saved card; the order's payment moves
    the subscription and its entitlement to the new plan (``subscriptions._period_paid``)."""
    customer = await billing.customer_for(ctx, sub.buyer_org)
    async with ctx.sessionmaker() as s:
        saved = await s.get(BillingCustomer, sub.buyer_org)
    method = saved.default_payment_method if saved else None
    if method is None:
        raise Conflict(f"Subscription {sub.id} has no saved payment method; add one with POST "
                       f"/v1/subscriptions/{sub.id}/payment-method.", problem="payment-method-missing")
    order = _change_order(sub, new_plan, new_terms, credit, charge, prorated, now)
    # Committed before Stripe is charged, so the charge always has its order.
    async with ctx.sessionmaker() as s, s.begin():
        s.add(order)
        await s.flush()
        await record_event(s, service="orders", action="orders.order.created", subject_type="order",
                           subject_id=order.id, actor=subscriptions.buyer_actor(sub),
                           details={"subscription_id": sub.id, "billing_reason": UPDATE,
                                    "amount": order.gross, "to_plan": new_terms.id})
    intent, declined = None, None
    try:
        intent = await billing.stripe_billing(ctx).charge_saved_method(
            customer_id=customer, payment_method=method, amount=order.gross, currency=order.currency,
            order_id=order.id, key=f"{order.id}-pi")
    except PaymentDeclined as exc:
        declined = exc
    outcome = await billing.settle_payment(ctx, order, intent, declined, "stripe-confirm")
    await raise_if_failed(ctx, sub, order, outcome)


async def _downgrade(ctx: OrdersContext, sub: Subscription, new_plan: dict[str, Any], credit: int,
                     prorated: int | None, now: datetime) -> None:
    """Refund the unused difference on the current period's order (access kept), then
    move the subscription and its entitlement to the new plan."""
    current = await _current_paid_order(ctx, sub, now)
    if credit > 0 and current is not None:
        amount = min(credit + tax_of(credit, sub.tax_bps), current.gross - current.refunded_amount)
        if amount > 0:
            ask = refunds.RefundAsk(reason=f"Plan change to {new_plan.get('name') or new_plan['id']} "
                                    "(unused time, prorated)", amount=amount)
            who = Who(system="plan-change", on_behalf=subscriptions.buyer_actor(sub))
            async with ctx.sessionmaker() as s, s.begin():
                decision = await refunds.decide(s, current.id, who, ask)
            if decision is not None:
                await refunds.carry_out(ctx.sessionmaker, ctx.gateway, decision.refund, source="plan-change")
    async with ctx.sessionmaker() as s, s.begin():
        row = await locked(s, Subscription, sub.id)
        assert row is not None
        await s.execute(update(Subscription).where(Subscription.id == sub.id).values(
            plan=new_plan, plan_id=str(new_plan["id"]), updated_at=utcnow()))
        await record_event(s, service="orders", action="orders.subscription.plan_changed",
                           subject_type="subscription", subject_id=sub.id,
                           actor=subscriptions.buyer_actor(sub),
                           details={"from_plan": sub.plan_id, "to_plan": new_plan["id"], "credit": credit})
        change: dict[str, Any] = {"plan_id": str(new_plan["id"])}
        if prorated is None:
            change["unlimited_queries"] = True
        else:
            change["query_allowance"] = prorated
        await subscriptions.change_entitlement(s, row, f"plan:{sub.id}:{secrets.token_hex(6)}",
                                               "plan changed", **change)


async def _switch_stripe_plan(ctx: OrdersContext, sub: Subscription) -> None:
    """Make the Stripe subscription bill the subscription's (new) plan from the next period."""
    if sub.stripe_subscription_id is None or sub.stripe_plan_id == billing.plan_key(sub):
        return
    customer = await billing.customer_for(ctx, sub.buyer_org)
    plan = await billing.ensure_plan(ctx, sub, sub.product_id)
    async with billing.invoice_lease(ctx, sub.buyer_org):
        await billing.stripe_billing(ctx).change_plan(sub.stripe_subscription_id, customer, plan)
    async with ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Subscription).where(Subscription.id == sub.id).values(stripe_plan_id=plan))


async def set_spend_cap(ctx: OrdersContext, principal: Principal, subscription_id: str,
                        spend_cap: int | None) -> Subscription:
    """Set or lift the buyer's spending cap; the rest of this period's allowance follows."""
    sub = await buyers_subscription(ctx, principal, subscription_id)
    if sub.status == CANCELED:
        raise Conflict(f"Subscription {sub.id} is canceled.", problem="subscription-canceled")
    allowance = check_spend_cap(PlanTerms.from_catalog(sub.plan), spend_cap)
    usage = await _usage(ctx, sub)
    used = usage[0] if usage else 0
    async with ctx.sessionmaker() as s, s.begin():
        row = await locked(s, Subscription, sub.id)
        assert row is not None
        await s.execute(update(Subscription).where(Subscription.id == sub.id)
                        .values(spend_cap=spend_cap, updated_at=utcnow()))
        row.spend_cap = spend_cap
        await record_event(s, service="orders", action="orders.subscription.spend_cap_changed",
                           subject_type="subscription", subject_id=sub.id, actor=buyer_actor_of(principal),
                           details={"from": sub.spend_cap, "to": spend_cap, "allowance": allowance})
        change: dict[str, Any] = {"spend_cap": subscriptions.spend_cap_note(row)}
        if allowance is None:
            change["unlimited_queries"] = True
        else:
            change["query_allowance"] = max(0, allowance - used)
        await subscriptions.change_entitlement(s, row, f"cap:{sub.id}:{secrets.token_hex(6)}",
                                               "spending cap changed", **change)
    return await _reload(ctx, sub.id)
