"""Regression tests for the money defects of issue 12 (each failed on the code before its fix)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import select

from services.orders.models import LedgerEntry, Order
from services.orders.pricing import PlanTerms, price_plan
from services.orders.reconciler import reconcile_once
from shared.errors import RuleViolation, ServiceUnavailable
from tests.orders.conftest import WEBHOOK_SECRET, Harness
from tests.orders.fakes import PLANS, product_version
from tests.orders.test_refunds_ledger import paid_order


async def stripe_refunds(h: Harness, payment_intent_id: str) -> list[int]:
    listed = await h.ctx.gateway.client.v1.refunds.list_async({"payment_intent": payment_intent_id})
    return [int(r.amount) for r in listed.data]


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# --- refund racing fulfilment ---------------------------------------------------------------

async def test_a_refund_is_decided_before_stripe_is_called_and_wins_over_a_grant_in_flight(
    orders: Harness,
) -> None:
    orders.access.hold_grants = asyncio.Event()
    order = await orders.placed("plan_once_jpy")
    paid = await orders.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                    headers=orders.buyer())
    assert paid.json()["status"] == "paid"

    async def grant_in_flight() -> bool:
        return any(g["order_id"] == order["id"] for g in orders.access.grant_requests)

    await wait_for(grant_in_flight)
    real_refund = orders.ctx.gateway.refund
    seen_while_at_stripe: list[str] = []

    async def refund_while_fulfilment_lands(*args: Any, **kwargs: Any) -> Any:
        seen_while_at_stripe.append((await orders.get(order["id"]))["status"])
        assert orders.access.hold_grants is not None
        orders.access.hold_grants.set()  # the grant answers; the relay tries paid -> fulfilled now

        async def relay_done() -> bool:
            async with orders.ctx.sessionmaker() as s:
                row = await s.get(Order, order["id"])
            return row is not None and row.entitlement_id is not None

        await wait_for(relay_done)
        return await real_refund(*args, **kwargs)

    orders.ctx.gateway.refund = refund_while_fulfilment_lands  # type: ignore[method-assign]
    resp = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "changed my mind"},
                                    headers=orders.provider())
    assert resp.status_code == 200, resp.text
    assert seen_while_at_stripe == ["refund_pending"]  # decided (and committed) before Stripe
    assert resp.json()["status"] == "refunded"
    assert await stripe_refunds(orders, order["payment"]["payment_intent_id"]) == [5000]
    async with orders.ctx.sessionmaker() as s:
        amounts = (await s.execute(select(LedgerEntry.amount).where(
            LedgerEntry.order_id == order["id"], LedgerEntry.kind == "refund_reversal",
            LedgerEntry.account == "gross"))).scalars().all()
    assert amounts == [-5000]

    async def revoked() -> bool:
        return order["id"] in orders.access.revocations

    await wait_for(revoked)
    assert orders.access.entitlements[order["id"]]["status"] == "revoked"


async def test_a_refund_whose_stripe_answer_was_lost_is_finished_by_a_retry_without_refunding_twice(
    orders: Harness,
) -> None:
    order = await paid_order(orders, "plan_once_jpy")
    real_refund = orders.ctx.gateway.refund

    async def answer_lost(*args: Any, **kwargs: Any) -> Any:
        await real_refund(*args, **kwargs)  # Stripe refunds ...
        raise ServiceUnavailable("The payment provider timed out.",  # ... but we never hear back
                                 problem="payment-provider-unavailable")

    orders.ctx.gateway.refund = answer_lost  # type: ignore[method-assign]
    first = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "duplicate"},
                                     headers=orders.operator())
    assert first.status_code == 503
    orders.ctx.gateway.refund = real_refund  # type: ignore[method-assign]
    again = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "duplicate"},
                                     headers=orders.operator())
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "refunded"
    assert await stripe_refunds(orders, str(order["payment"]["payment_intent_id"])) == [5000]


# --- free unlimited metered access ----------------------------------------------------------

METERED_PER_QUERY = {**PLANS["plan_metered"], "id": "plan_per_query", "price": 0, "tiers": [],
                     "price_per_query": 13, "included_queries": 0, "query_quota": None}


def test_a_metered_plan_without_included_queries_cannot_be_bought_with_quantity_zero() -> None:
    for plan in (METERED_PER_QUERY, {**METERED_PER_QUERY, "price": 500}):
        try:
            priced = price_plan(PlanTerms.from_catalog(plan), quantity=0, fee_bps=1000)
        except RuleViolation as refused:
            assert refused.extra["rule"] == "metered-quantity-required"
        else:
            raise AssertionError(f"priced {priced.gross} with quota {priced.query_quota}")


def test_a_metered_bundle_never_has_an_unlimited_quota() -> None:
    priced = price_plan(PlanTerms.from_catalog(METERED_PER_QUERY), quantity=10, fee_bps=1000)
    assert (priced.gross, priced.query_quota) == (130, 10)


async def test_quoting_quantity_zero_on_a_per_query_plan_is_a_422_naming_the_rule(orders: Harness) -> None:
    version = product_version("prd_per_query")
    version["plans"] = [METERED_PER_QUERY]
    orders.catalog.add(version)
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_per_query", "version": 1,
                                                        "plan_id": "plan_per_query", "quantity": 0},
                                    headers=orders.buyer())
    assert resp.status_code == 422
    assert resp.json()["rule"] == "metered-quantity-required"


# --- ledger totals per order ----------------------------------------------------------------

async def test_ledger_totals_with_order_id_cover_only_that_order(orders: Harness) -> None:
    first = await paid_order(orders)
    await paid_order(orders, "plan_once_jpy")
    await paid_order(orders)
    resp = await orders.client.get(f"/v1/ledger?order_id={first['id']}", headers=orders.regulator())
    assert resp.status_code == 200
    assert resp.json()["totals"] == [{"currency": "EUR", "gross": 4900, "platform_fees": 490,
                                      "provider_earnings": 4410, "refunded": 0, "orders": 1,
                                      "tax": 0, "paid_out": 0, "reconciles": True}]
    assert {e["order_id"] for e in resp.json()["items"]} == {first["id"]}


# --- webhook timestamps ---------------------------------------------------------------------

def signed(payload: bytes, timestamp: int) -> str:
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def test_a_correctly_signed_webhook_dated_in_the_future_is_refused(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    payload = json.dumps({
        "id": "evt_future", "object": "event", "type": "payment_intent.succeeded",
        "created": int(time.time()), "api_version": "2017-08-15",
        "data": {"object": {"id": order["payment"]["payment_intent_id"], "object": "payment_intent",
                            "amount": 4900, "currency": "eur", "status": "succeeded",
                            "metadata": {"order_id": order["id"]}}}}).encode()
    future = await orders.client.post(
        "/v1/webhooks/stripe", content=payload,
        headers={"Stripe-Signature": signed(payload, int(time.time()) + 3600),
                 "Content-Type": "application/json"})
    assert future.status_code == 400
    assert future.json()["type"].endswith("webhook-signature-invalid")
    assert "future" in future.json()["detail"]
    assert (await orders.get(order["id"]))["status"] == "pending_payment"
    now = await orders.client.post(
        "/v1/webhooks/stripe", content=payload,
        headers={"Stripe-Signature": signed(payload, int(time.time()) + 5),
                 "Content-Type": "application/json"})
    assert now.status_code == 200 and now.json()["outcome"] == "paid"  # within the tolerance


# --- superseded product versions ------------------------------------------------------------

async def test_a_superseded_version_cannot_be_quoted_after_a_price_rise(orders: Harness) -> None:
    raised = product_version(version=2)
    for plan in raised["plans"]:
        plan["price"] = plan["price"] * 2
    orders.catalog.add(raised)
    old = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                       "plan_id": "plan_monthly"}, headers=orders.buyer())
    assert old.status_code == 422
    assert old.json()["rule"] == "version-current" and old.json()["latest_version"] == 2
    current = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 2,
                                                           "plan_id": "plan_monthly"}, headers=orders.buyer())
    assert current.status_code == 201 and current.json()["price"]["total"] == 9800


async def test_a_quote_made_before_the_price_rise_can_still_be_ordered_while_it_is_valid(
    orders: Harness,
) -> None:
    quote = await orders.quote("plan_monthly")
    orders.catalog.add(product_version(version=2))
    resp = await orders.order(quote["id"])
    assert resp.status_code == 201 and resp.json()["price"]["total"] == 4900


# --- failed payments in the audit log (issue 14) ----------------------------------------------

async def test_a_declined_payment_is_audited_as_a_failure_by_the_buyer(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    declined = await orders.client.post(f"/v1/orders/{order['id']}/pay",
                                        json={"payment_method": "pm_card_chargeCustomerFail"},
                                        headers=orders.buyer())
    assert declined.status_code == 402
    events = [e for e in await orders.events("orders.order.payment_failed") if e.subject.id == order["id"]]
    assert len(events) == 1
    assert events[0].outcome == "failure"
    assert (events[0].actor.sub, events[0].actor.org, events[0].actor.role) == (
        "cli_org_buyer_a", "org_buyer_a", "buyer")


async def test_a_failure_reported_by_webhook_is_audited_as_a_failure_of_the_buyers_payment(
    orders: Harness,
) -> None:
    order = await orders.placed("plan_monthly")
    payload = json.dumps({
        "id": "evt_failed", "object": "event", "type": "payment_intent.payment_failed",
        "created": int(time.time()), "api_version": "2017-08-15",
        "data": {"object": {"id": order["payment"]["payment_intent_id"], "object": "payment_intent",
                            "amount": 4900, "currency": "eur", "status": "requires_payment_method",
                            "last_payment_error": {"code": "card_declined", "message": "Declined."},
                            "metadata": {"order_id": order["id"]}}}}).encode()
    resp = await orders.client.post("/v1/webhooks/stripe", content=payload, headers={
        "Stripe-Signature": signed(payload, int(time.time())), "Content-Type": "application/json"})
    assert resp.json()["outcome"] == "payment_failed"
    events = [e for e in await orders.events("orders.order.payment_failed") if e.subject.id == order["id"]]
    assert events[0].outcome == "failure" and events[0].details["by"] == "stripe-webhook"
    assert (events[0].actor.org, events[0].actor.role) == ("org_buyer_a", "buyer")


async def test_a_refund_stranded_while_stripe_was_down_is_finished_by_the_reconciler(orders: Harness) -> None:
    order = await paid_order(orders, "plan_once_jpy")
    real_refund = orders.ctx.gateway.refund

    async def stripe_down(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable("Stripe is down.", problem="payment-provider-unavailable")

    orders.ctx.gateway.refund = stripe_down  # type: ignore[method-assign]
    first = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "outage"},
                                     headers=orders.operator())
    assert first.status_code == 503 and first.json()["refund_id"].startswith("rf_")
    assert (await orders.get(str(order["id"])))["status"] == "refund_pending"
    orders.ctx.gateway.refund = real_refund  # type: ignore[method-assign]
    assert await reconcile_once(orders.ctx) == {"refund_succeeded": 1}
    assert (await orders.get(str(order["id"])))["status"] == "refunded"
    assert await stripe_refunds(orders, str(order["payment"]["payment_intent_id"])) == [5000]
