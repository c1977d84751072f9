"""Stripe Billing webhooks and the reconciler as the safety net for subscriptions (issue 12)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from services.orders.models import LedgerEntry, Order, StripeEvent, Subscription
from services.orders.renewals import _renewal_order, run_clock
from services.orders.stripe_billing import BillingGateway
from tests.orders.conftest import Harness
from tests.orders.test_money_defects import signed


async def events_for(h: Harness, order_id: str, want: int, timeout: float = 30.0) -> list[StripeEvent]:
    """The invoice webhooks stored so far, once ``want`` are in (or after ``timeout``: localstripe
    posts them from its own process, late on a loaded machine; waiting longer costs nothing when
    they come at once)."""
    deadline = time.monotonic() + timeout
    while True:
        async with h.ctx.sessionmaker() as s:
            rows = list((await s.execute(select(StripeEvent).where(StripeEvent.type.like("invoice.%")))).scalars())
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def post_event(h: Harness, event_id: str, etype: str, obj: dict[str, Any]) -> Any:
    payload = json.dumps({"id": event_id, "object": "event", "type": etype, "created": int(time.time()),
                          "api_version": "2017-08-15", "data": {"object": obj}}).encode()
    resp = await h.client.post("/v1/webhooks/stripe", content=payload, headers={
        "Stripe-Signature": signed(payload, int(time.time())), "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def pending_renewal(h: Harness, sub_id: str) -> Order:
    """A renewal order with its Stripe invoice made but not paid (as if the clock stopped there)."""
    async with h.ctx.sessionmaker() as s:
        sub = await s.get(Subscription, sub_id)
    assert sub is not None and sub.stripe_subscription_id is not None
    order = await _renewal_order(h.ctx, sub, datetime.now(sub.created_at.tzinfo))
    assert order is not None
    stripe = BillingGateway(h.ctx.gateway)
    customer = (await h.ctx.gateway.client.v1.subscriptions.retrieve_async(sub.stripe_subscription_id)).customer
    invoice = await stripe.create_invoice(customer_id=str(customer), stripe_subscription_id=sub.stripe_subscription_id,
                                          key=f"{order.id}-invoice")
    async with h.ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Order).where(Order.id == order.id).values(stripe_invoice_id=invoice.id))
        order.stripe_invoice_id = invoice.id
    return order


async def test_localstripes_invoice_webhooks_for_a_paid_subscription_change_nothing(orders_http: Harness) -> None:
    h = orders_http
    sub = await h.subscribe("plan_monthly")
    first = (await h.orders_of(sub["id"]))[0]
    rows = await events_for(h, first["id"], 1)
    assert [e.type for e in rows] == ["invoice.payment_succeeded"]
    assert rows[0].outcome in ("already_paid", "already_fulfilled")  # it changed nothing
    async with h.ctx.sessionmaker() as s:
        charges = (await s.execute(select(LedgerEntry).where(LedgerEntry.order_id == first["id"],
                                                             LedgerEntry.kind == "charge"))).scalars().all()
    assert len(charges) == 1


async def test_a_subscription_deleted_at_stripe_is_cancelled_here(orders_http: Harness) -> None:
    h = orders_http
    sub = await h.subscribe("plan_monthly")
    await h.ctx.gateway.client.v1.subscriptions.cancel_async(sub["stripe_subscription_id"])
    deadline = time.monotonic() + 30  # generous: localstripe posts its webhook in its own time
    while (await h.subscription(sub["id"]))["status"] != "canceled":
        assert time.monotonic() < deadline, "the customer.subscription.deleted webhook did not cancel it"
        await asyncio.sleep(0.1)


async def test_invoice_webhooks_fail_then_pay_a_renewal_once_each(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    order = await pending_renewal(orders, sub["id"])
    invoice = {"id": order.stripe_invoice_id, "object": "invoice", "total": order.gross, "currency": "eur",
               "payment_intent": "pi_failed_attempt", "subscription": sub["stripe_subscription_id"]}
    failed = await post_event(orders, "evt_inv_failed", "invoice.payment_failed", invoice)
    assert failed["outcome"] == "payment_failed"
    assert (await post_event(orders, "evt_inv_failed", "invoice.payment_failed", invoice))["outcome"] == "duplicate"
    assert (await orders.subscription(sub["id"]))["status"] == "past_due"
    paid = await post_event(orders, "evt_inv_paid", "invoice.payment_succeeded",
                            {**invoice, "payment_intent": "pi_second_attempt"})
    assert paid["outcome"] == "paid"
    assert (await orders.subscription(sub["id"]))["status"] == "active"
    unknown = await post_event(orders, "evt_inv_other", "invoice.payment_succeeded", {**invoice, "id": "in_nope"})
    assert unknown["outcome"] == "unknown_invoice"


async def test_the_reconciler_settles_a_renewal_paid_at_stripe_whose_answer_was_lost(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    order = await pending_renewal(orders, sub["id"])
    assert order.stripe_invoice_id is not None
    await orders.ctx.gateway.client.v1.invoices.pay_async(order.stripe_invoice_id)  # Stripe took the money
    assert (await orders.get(order.id))["status"] == "pending_payment"
    due = datetime.fromisoformat(sub["current_period_end"]) + timedelta(seconds=1)
    assert await run_clock(orders.ctx, now=due) == {"renewal_paid": 1}
    assert (await orders.subscription(sub["id"]))["periods_paid"] == 2
    invoices = await orders.ctx.gateway.client.v1.invoices.list_async({"subscription": sub["stripe_subscription_id"]})
    assert sorted(str(i.status) for i in invoices.data) == ["paid", "paid"]  # nothing billed twice
