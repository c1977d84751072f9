"""The Stripe webhook endpoint, with payloads signed by the tests themselves."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import stripe
from sqlalchemy import select

from services.orders.models import LedgerEntry, PaymentAttempt, StripeEvent
from shared.outbox import outbox
from tests.orders.conftest import WEBHOOK_SECRET, Harness


def event(event_id: str, etype: str, order: dict[str, Any], *, amount: int | None = None,
          pi: str | None = None, created: int | None = None) -> bytes:
    obj = {"id": pi or order["payment"]["payment_intent_id"], "object": "payment_intent",
           "amount": order["price"]["total"] if amount is None else amount,
           "currency": order["price"]["currency"].lower(),
           "status": "succeeded" if etype.endswith("succeeded") else "requires_payment_method",
           "metadata": {"order_id": order["id"]}}
    if etype.endswith("payment_failed"):
        obj["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
    return json.dumps({"id": event_id, "object": "event", "type": etype, "api_version": "2017-08-15",
                       "created": created or int(time.time()), "data": {"object": obj}}).encode()


async def deliver(h: Harness, payload: bytes, secret: str = WEBHOOK_SECRET, *,
                  signature: str | None = None) -> Any:
    sig = signature or stripe.WebhookSignature.generate_signature_header(payload.decode(), secret)
    return await h.client.post("/v1/webhooks/stripe", content=payload,
                               headers={"Stripe-Signature": sig, "Content-Type": "application/json"})


async def grants(h: Harness, order_id: str) -> int:
    async with h.ctx.sessionmaker() as s:
        rows = (await s.execute(select(outbox.c.id).where(outbox.c.message_id == f"grant:{order_id}"))).all()
    return len(rows)


async def test_a_bad_signature_is_refused_and_changes_nothing(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    payload = event("evt_bad", "payment_intent.succeeded", order)
    wrong = await deliver(orders, payload, secret="whsec_someone_else")
    assert wrong.status_code == 400 and wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["type"].endswith("webhook-signature-invalid")
    good_sig = stripe.WebhookSignature.generate_signature_header(payload.decode(), WEBHOOK_SECRET)
    tampered = payload.replace(b'"amount": 4900', b'"amount": 1')
    assert (await deliver(orders, tampered, signature=good_sig)).status_code == 400
    missing = await orders.client.post("/v1/webhooks/stripe", content=payload)
    assert missing.status_code == 400
    assert (await orders.get(order["id"]))["status"] == "pending_payment"
    async with orders.ctx.sessionmaker() as s:
        assert (await s.execute(select(StripeEvent))).scalars().all() == []


async def test_a_replayed_event_signed_long_ago_is_refused_and_changes_nothing(orders: Harness) -> None:
    """An attacker who captured a genuine delivery (body and signature) replays it later:
    Stripe's signature covers the timestamp, and one older than five minutes is refused."""
    order = await orders.placed("plan_monthly")
    payload = event("evt_replayed", "payment_intent.succeeded", order)
    captured = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), WEBHOOK_SECRET, timestamp=int(time.time()) - 10 * 60)
    replayed = await deliver(orders, payload, signature=captured)
    assert replayed.status_code == 400, replayed.text
    assert replayed.json()["type"].endswith("webhook-signature-invalid")
    assert (await orders.get(order["id"]))["status"] == "pending_payment"
    async with orders.ctx.sessionmaker() as s:
        assert (await s.execute(select(StripeEvent))).scalars().all() == []
    # The control: the same body, signed now, is a genuine delivery and pays the order.
    fresh = await deliver(orders, payload)
    assert fresh.status_code == 200 and fresh.json()["outcome"] == "paid"


async def test_the_same_event_delivered_five_times_pays_once(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    payload = event("evt_once", "payment_intent.succeeded", order)
    responses = await asyncio.gather(*(deliver(orders, payload) for _ in range(5)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["duplicate"] * 4 + ["paid"]
    assert (await orders.wait_status(order["id"], "fulfilled"))["payment"]["payment_intent_id"]
    assert await grants(orders, order["id"]) == 1
    async with orders.ctx.sessionmaker() as s:
        entries = (await s.execute(select(LedgerEntry).where(LedgerEntry.order_id == order["id"]))).scalars()
        assert sorted((e.kind, e.amount) for e in entries) == [
            ("charge", 4900), ("platform_fee", 490), ("provider_earning", 4410)]
    paid_events = [e for e in await orders.events("orders.order.paid") if e.subject.id == order["id"]]
    assert len(paid_events) == 1 and paid_events[0].details["by"] == "stripe-webhook"
    assert paid_events[0].actor.sub is None


async def test_a_failure_delivered_after_the_success_changes_nothing(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    now = int(time.time())
    ok = await deliver(orders, event("evt_2", "payment_intent.succeeded", order, created=now))
    late = await deliver(orders, event("evt_1", "payment_intent.payment_failed", order, created=now - 5))
    assert ok.json()["outcome"] == "paid" and late.json()["outcome"] == "no_change"
    assert (await orders.get(order["id"]))["status"] in ("paid", "fulfilled")


async def test_a_failure_then_a_success_of_the_same_attempt_ends_paid(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    failed = await deliver(orders, event("evt_f", "payment_intent.payment_failed", order))
    assert failed.json()["outcome"] == "payment_failed"
    got = await orders.get(order["id"])
    assert got["status"] == "payment_failed" and got["payment"]["last_error"]["code"] == "card_declined"
    ok = await deliver(orders, event("evt_s", "payment_intent.succeeded", order))
    assert ok.json()["outcome"] == "paid"


async def test_an_amount_that_differs_from_the_order_is_not_accepted_as_payment(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    resp = await deliver(orders, event("evt_low", "payment_intent.succeeded", order, amount=100))
    assert resp.json()["outcome"] == "amount_mismatch"
    assert (await orders.get(order["id"]))["status"] == "pending_payment"
    anomalies = await orders.events("orders.payment.amount_mismatched")
    assert anomalies and anomalies[0].outcome == "failure"


async def test_events_for_unknown_payment_intents_and_other_types_are_acknowledged(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    unknown = await deliver(orders, event("evt_u", "payment_intent.succeeded", order, pi="pi_not_ours"))
    other = await deliver(orders, event("evt_o", "charge.refunded", order))
    assert unknown.status_code == other.status_code == 200
    assert unknown.json()["outcome"] == "unknown_payment_intent" and other.json()["outcome"] == "ignored"
    assert (await orders.get(order["id"]))["status"] == "pending_payment"


async def test_a_second_successful_payment_for_a_paid_order_is_refunded_automatically(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    paid = await orders.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                    headers=orders.buyer())
    assert paid.json()["status"] == "paid"
    # A second attempt of the same order that also took money (e.g. two browser tabs).
    second = await orders.ctx.gateway.create_intent(order_id=order["id"], attempt=9, amount=4900,
                                                    currency="EUR", metadata={})
    async with orders.ctx.sessionmaker() as s, s.begin():
        s.add(PaymentAttempt(payment_intent_id=second.id, order_id=order["id"], attempt=9, amount=4900,
                             currency="EUR"))
    await orders.ctx.gateway.confirm(second.id, "pm_card_visa")
    resp = await deliver(orders, event("evt_dup", "payment_intent.succeeded", order, pi=second.id))
    assert resp.json()["outcome"] == "duplicate_payment"
    for _ in range(100):
        refunded = [e for e in await orders.events("orders.payment.refunded")
                    if e.details["payment_intent_id"] == second.id]
        if refunded:
            break
        await asyncio.sleep(0.05)
    assert refunded and refunded[0].details["stripe_refund_id"].startswith("re_")
    refunds = await orders.ctx.gateway.client.v1.refunds.list_async({"payment_intent": second.id})
    assert [r.amount for r in refunds.data] == [4900]
    assert (await orders.get(order["id"]))["status"] in ("paid", "fulfilled")
    async with orders.ctx.sessionmaker() as s:
        booked = (await s.execute(select(LedgerEntry).where(LedgerEntry.order_id == order["id"]))).scalars().all()
    assert len(booked) == 3  # the duplicate was never revenue
