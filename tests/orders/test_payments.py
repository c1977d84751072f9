"""End to end against localstripe: real PaymentIntents, real (signed) webhooks over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time

import stripe
from sqlalchemy import select

from services.orders.models import StripeEvent
from services.orders.reconciler import reconcile_once
from tests.orders.conftest import Harness, register_webhook


async def stripe_js_pays(h: Harness, payment_intent_id: str, payment_method: str) -> None:
    """What Stripe.js does in the buyer's browser: confirm the intent with a payment method."""
    intents = h.ctx.gateway.client.v1.payment_intents
    await intents.update_async(payment_intent_id, {"payment_method": payment_method})
    # A decline is reported to the browser as an error; the orders service learns it from Stripe.
    with contextlib.suppress(stripe.CardError):
        await intents.confirm_async(payment_intent_id)


async def stripe_events(h: Harness, payment_intent_id: str, timeout: float = 8.0) -> list[StripeEvent]:
    deadline = time.monotonic() + timeout
    while True:
        async with h.ctx.sessionmaker() as s:
            rows = list((await s.execute(select(StripeEvent).where(
                StripeEvent.payment_intent_id == payment_intent_id))).scalars())
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def test_quote_order_pay_webhook_paid_fulfilled(orders_http: Harness) -> None:
    h = orders_http
    order = await h.placed("plan_monthly")
    assert order["status"] == "pending_payment"
    pi = order["payment"]["payment_intent_id"]
    assert order["payment"]["client_secret"].startswith(pi)
    intent = await h.ctx.gateway.retrieve(pi)
    assert (intent.amount, intent.currency, intent.metadata["order_id"]) == (4900, "EUR", order["id"])
    paid = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                               headers=h.buyer())
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    fulfilled = await h.wait_status(order["id"], "fulfilled")
    assert fulfilled["entitlement_id"] == h.access.entitlements[order["id"]]["id"]
    # localstripe's webhook arrives about a second later and changes nothing.
    events = await stripe_events(h, pi)
    assert [e.type for e in events] == ["payment_intent.succeeded"]
    assert events[0].outcome in ("already_paid", "already_fulfilled")  # it changed nothing
    again = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                headers=h.buyer())
    assert again.status_code == 200 and again.json()["status"] == "fulfilled"


async def test_a_browser_payment_is_applied_by_the_webhook(orders_http: Harness) -> None:
    h = orders_http
    order = await h.placed("plan_once_jpy")
    pi = order["payment"]["payment_intent_id"]
    await stripe_js_pays(h, pi, "pm_card_visa")
    done = await h.wait_status(order["id"], "fulfilled")
    assert done["price"]["total"] == 5000 and (await h.ctx.gateway.retrieve(pi)).currency == "JPY"
    events = await stripe_events(h, pi)
    assert [(e.type, e.outcome) for e in events] == [("payment_intent.succeeded", "paid")]
    paid = [e for e in await h.events("orders.order.paid") if e.subject.id == order["id"]]
    assert paid[0].details["by"] == "stripe-webhook"


async def test_a_declined_card_fails_with_the_card_error_then_a_good_card_succeeds(orders_http: Harness) -> None:
    h = orders_http
    order = await h.placed("plan_monthly")
    first_pi = order["payment"]["payment_intent_id"]
    declined = await h.client.post(f"/v1/orders/{order['id']}/pay",
                                   json={"payment_method": "pm_card_chargeCustomerFail"}, headers=h.buyer())
    assert declined.status_code == 402
    problem = declined.json()
    assert declined.headers["content-type"] == "application/problem+json"
    assert problem["card_error"]["code"] == "card_declined" and problem["order_status"] == "payment_failed"
    assert f"/v1/orders/{order['id']}/pay" in problem["detail"]
    failed = await h.get(order["id"])
    assert failed["status"] == "payment_failed" and failed["payment"]["last_error"]["code"] == "card_declined"
    retry = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                headers=h.buyer())
    assert retry.status_code == 200, retry.text
    body = retry.json()
    assert body["status"] == "paid" and body["payment"]["attempts"] == 2
    assert body["payment"]["payment_intent_id"] != first_pi
    await h.wait_status(order["id"], "fulfilled")
    # The first attempt's failure webhook arrives late and changes nothing.
    late = await stripe_events(h, first_pi)
    assert [(e.type, e.outcome) for e in late] == [("payment_intent.payment_failed", "no_change")]
    actions = [e.action for e in await h.events() if e.subject.id == order["id"]]
    assert actions == ["orders.order.created", "orders.payment.created", "orders.order.payment_failed",
                       "orders.order.payment_retried", "orders.payment.created", "orders.order.paid",
                       "orders.order.fulfilled"]


async def test_a_lost_webhook_is_repaired_by_the_reconciler(orders_http: Harness) -> None:
    h = orders_http
    await register_webhook(h.stripe_url, "http://127.0.0.1:9/lost")  # deliveries go nowhere
    ok = await h.placed("plan_monthly")
    bad = await h.placed("plan_monthly")
    await stripe_js_pays(h, ok["payment"]["payment_intent_id"], "pm_card_visa")
    await stripe_js_pays(h, bad["payment"]["payment_intent_id"], "pm_card_chargeCustomerFail")
    untouched = await h.placed("plan_monthly")
    await asyncio.sleep(1.5)  # localstripe has tried (and failed) to deliver
    assert (await h.get(ok["id"]))["status"] == "pending_payment"
    assert await reconcile_once(h.ctx, older_than_seconds=3600) == {}  # not stale yet
    outcomes = await reconcile_once(h.ctx, older_than_seconds=0)
    assert outcomes == {"paid": 1, "payment_failed": 1, "still_requires_payment_method": 1}
    await h.wait_status(ok["id"], "fulfilled")
    assert (await h.get(bad["id"]))["status"] == "payment_failed"
    assert (await h.get(untouched["id"]))["status"] == "pending_payment"
    by = {e.subject.id: e.details["by"] for e in await h.events("orders.order.p")}
    assert by[ok["id"]] == by[bad["id"]] == "reconciler"


async def test_an_unknown_payment_method_is_a_422_and_the_order_stays_payable(orders_http: Harness) -> None:
    h = orders_http
    order = await h.placed("plan_monthly")
    bad = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_does_not_exist"},
                              headers=h.buyer())
    assert bad.status_code == 422, bad.text
    assert bad.json()["rule"] == "payment-method-valid"
    assert (await h.get(order["id"]))["status"] == "pending_payment"
    good = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                               headers=h.buyer())
    assert good.status_code == 200 and good.json()["status"] == "paid"
