"""Subscriptions that renew, through the real stripe SDK against localstripe (issue 12)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from services.orders.models import LedgerEntry
from services.orders.renewals import run_clock
from tests.orders.conftest import Harness


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def stripe_subscription(h: Harness, stripe_id: str) -> dict[str, object]:
    return dict((await h.ctx.gateway.client.v1.subscriptions.retrieve_async(stripe_id)).to_dict())


async def stripe_invoices(h: Harness, stripe_id: str) -> list[tuple[str, int]]:
    listed = await h.ctx.gateway.client.v1.invoices.list_async({"subscription": stripe_id, "limit": 50})
    return sorted((str(i.status), int(i.total)) for i in listed.data)


async def test_a_subscription_pays_its_first_period_and_grants_access_for_that_period(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    assert sub["status"] == "active" and sub["periods_paid"] == 1
    assert sub["stripe_subscription_id"].startswith("sub_")
    first = (await orders.orders_of(sub["id"]))[0]
    assert (first["billing_reason"], first["price"]["total"]) == ("subscription_create", 4900)
    await orders.wait_status(first["id"], "fulfilled")
    grant = orders.access.entitlements[first["id"]]
    assert (grant["valid_from"][:19], grant["valid_until"][:19]) == (
        sub["current_period_start"][:19], sub["current_period_end"][:19])
    assert grant["query_quota"] == 10000
    assert (await stripe_subscription(orders, sub["stripe_subscription_id"]))["status"] == "active"
    assert await stripe_invoices(orders, sub["stripe_subscription_id"]) == [("paid", 4900)]


async def test_a_renewal_bills_the_next_period_and_extends_the_same_entitlement(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    renewed = await orders.renew(sub["id"])
    assert renewed["status"] == "active" and renewed["periods_paid"] == 2
    assert renewed["current_period_start"] == sub["current_period_end"]
    first, second = await orders.orders_of(sub["id"])
    assert second["billing_reason"] == "subscription_cycle" and second["quote_id"] is None
    await orders.wait_status(second["id"], "fulfilled")
    assert len(orders.access.entitlements) == 1  # one entitlement, moved to the new period
    ent = orders.access.entitlements[first["id"]]
    assert at(ent["valid_until"]) == at(renewed["current_period_end"])
    assert at(ent["valid_from"]) == at(sub["current_period_end"])
    assert [c["change_id"] for c in orders.access.changes] == [f"period:{second['id']}"]
    assert orders.access.changes[0]["epsilon_allowance"] == 1.0  # L3: each period's privacy budget
    assert await stripe_invoices(orders, sub["stripe_subscription_id"]) == [("paid", 4900), ("paid", 4900)]
    async with orders.ctx.sessionmaker() as s:
        charges = (await s.execute(select(LedgerEntry.order_id, LedgerEntry.amount).where(
            LedgerEntry.kind == "charge"))).all()
    assert sorted(charges) == sorted([(first["id"], 4900), (second["id"], 4900)])


async def test_a_failed_renewal_gives_a_grace_period_then_a_hold_then_paying_restores_access(
    orders: Harness,
) -> None:
    sub = await orders.subscribe("plan_monthly")
    first = (await orders.orders_of(sub["id"]))[0]
    await orders.wait_status(first["id"], "fulfilled")
    # The buyer saves a card that will be declined at the next renewal.
    saved = await orders.client.post(f"/v1/subscriptions/{sub['id']}/payment-method",
                                     json={"payment_method": "pm_card_chargeCustomerFail"}, headers=orders.buyer())
    assert saved.status_code == 200 and saved.json()["status"] == "active"  # nothing owed yet

    past_due = await orders.renew(sub["id"])
    assert past_due["status"] == "past_due" and past_due["grace_until"]
    renewal = (await orders.orders_of(sub["id"]))[1]
    assert renewal["status"] == "payment_failed"
    assert renewal["payment"]["last_error"]["code"] == "card_declined"
    await orders.delivered()
    ent = orders.access.entitlements[first["id"]]
    assert at(ent["valid_until"]) == at(past_due["grace_until"])  # access lasts through the grace period

    assert await run_clock(orders.ctx, now=at(past_due["grace_until"]) + timedelta(seconds=1)) == {
        "subscription_held": 1}
    assert (await orders.subscription(sub["id"]))["status"] == "suspended"
    await orders.delivered()
    assert orders.access.entitlements[first["id"]]["billing_hold"] is True
    events = [e.action for e in await orders.events("orders.subscription.") if e.subject.id == sub["id"]]
    assert events == ["orders.subscription.created", "orders.subscription.activated",
                      "orders.subscription.renewal_failed", "orders.subscription.suspended"]

    paid = await orders.client.post(f"/v1/subscriptions/{sub['id']}/payment-method",
                                    json={"payment_method": "pm_card_visa"}, headers=orders.buyer())
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "active" and paid.json()["periods_paid"] == 2
    await orders.wait_status(renewal["id"], "fulfilled")
    ent = orders.access.entitlements[first["id"]]
    assert ent["billing_hold"] is False and at(ent["valid_until"]) == at(paid.json()["current_period_end"])


async def test_a_declined_first_payment_leaves_the_subscription_incomplete_and_retryable(
    orders: Harness,
) -> None:
    declined = await orders.subscribe("plan_monthly", payment_method="pm_card_chargeCustomerFail", expect=402)
    assert declined["card_error"]["code"] == "card_declined"
    sub_id = declined["subscription_id"]
    assert (await orders.subscription(sub_id))["status"] == "incomplete"
    assert orders.access.entitlements == {}
    retried = await orders.client.post(f"/v1/subscriptions/{sub_id}/payment-method",
                                       json={"payment_method": "pm_card_visa"}, headers=orders.buyer())
    assert retried.status_code == 200 and retried.json()["status"] == "active"


async def test_cancelling_ends_the_subscription_at_its_period_end_and_at_stripe(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    other = await orders.client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=orders.buyer("org_buyer_b"))
    assert other.status_code == 404
    cancelled = await orders.client.post(f"/v1/subscriptions/{sub['id']}/cancel", headers=orders.buyer())
    assert cancelled.json()["cancel_at_period_end"] is True and cancelled.json()["status"] == "active"
    assert await run_clock(orders.ctx, now=at(sub["current_period_end"]) - timedelta(seconds=1)) == {}
    assert await run_clock(orders.ctx, now=at(sub["current_period_end"]) + timedelta(seconds=1)) == {
        "subscription_ended": 1}
    ended = await orders.subscription(sub["id"])
    assert ended["status"] == "canceled" and ended["periods_paid"] == 1
    assert len(await orders.orders_of(sub["id"])) == 1  # never renewed
    assert (await stripe_subscription(orders, sub["stripe_subscription_id"]))["status"] == "canceled"


async def test_an_upgrade_charges_the_prorated_difference_and_a_downgrade_refunds_it(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    up = await orders.client.post(f"/v1/subscriptions/{sub['id']}/change-plan", json={"plan_id": "plan_premium"},
                                  headers=orders.buyer())
    assert up.status_code == 200, up.text
    assert up.json()["plan_id"] == "plan_premium"
    change = (await orders.orders_of(sub["id"]))[1]
    credit, charge = (line["amount"] for line in change["price"]["lines"])
    # Both sides prorate the same unused share of the period (just begun: nearly all of it).
    assert 4890 <= -credit <= 4900 and 9880 <= charge <= 9900
    assert abs(charge * 4900 + credit * 9900) <= 9900  # the same share, to a rounding
    assert change["price"]["total"] == charge + credit and change["status"] in ("paid", "fulfilled")
    stripe_sub = await stripe_subscription(orders, sub["stripe_subscription_id"])
    assert stripe_sub["plan"]["amount"] == 9900  # renewals bill the new plan
    pending = await orders.ctx.gateway.client.v1.invoice_items.list_async({"customer": stripe_sub["customer"]})
    assert pending.data == []  # localstripe's own "unused time" credits were removed

    down = await orders.client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                    json={"plan_id": "plan_monthly"}, headers=orders.buyer())
    assert down.status_code == 200 and down.json()["plan_id"] == "plan_monthly"
    refunded = sum(o["refunded_amount"] for o in await orders.orders_of(sub["id"]))
    assert 4880 <= refunded <= 4900  # the premium difference for the rest of the period, back
    await orders.delivered()
    assert orders.access.changes[-1]["plan_id"] == "plan_monthly"


async def test_a_plan_change_to_another_period_or_by_another_buyer_is_refused(orders: Harness) -> None:
    sub = await orders.subscribe("plan_monthly")
    yearly = await orders.client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                      json={"plan_id": "plan_once_jpy"}, headers=orders.buyer())
    assert yearly.status_code == 422 and yearly.json()["rule"] == "subscription-plan-renews"
    stranger = await orders.client.post(f"/v1/subscriptions/{sub['id']}/change-plan",
                                        json={"plan_id": "plan_premium"}, headers=orders.buyer("org_buyer_b"))
    assert stranger.status_code == 404


async def test_metered_usage_is_billed_after_the_period_and_the_cap_sets_the_allowance(orders: Harness) -> None:
    # plan_metered: 1000 base per month, 1000 included queries, then 5 each up to 1000, then 3.
    sub = await orders.subscribe("plan_metered", spend_cap=4000)
    first = (await orders.orders_of(sub["id"]))[0]
    await orders.wait_status(first["id"], "fulfilled")
    # 4000 cap - 1000 base = 3000 for usage = 600 billable queries at 5, plus the 1000 included.
    assert orders.access.entitlements[first["id"]]["query_quota"] == 1600
    orders.access.record_queries(first["id"], 1500)
    await orders.renew(sub["id"])
    renewal = (await orders.orders_of(sub["id"]))[1]
    assert [(line["code"], line["amount"]) for line in renewal["price"]["lines"]] == [
        ("base", 1000), ("previous_usage_tier_1", 500 * 5)]
    assert await stripe_invoices(orders, sub["stripe_subscription_id"]) == [("paid", 1000), ("paid", 3500)]
    await orders.delivered()
    change = orders.access.changes[-1]
    assert change["query_allowance"] == 1600 and change["spend_cap"]["amount"] == 4000
    # The next period bills only the queries made since.
    orders.access.record_queries(first["id"], 1100)
    await orders.renew(sub["id"])
    third = (await orders.orders_of(sub["id"]))[2]
    assert third["price"]["total"] == 1000 + 100 * 5
    raised = await orders.client.patch(f"/v1/subscriptions/{sub['id']}", json={"spend_cap": 9000},
                                       headers=orders.buyer())
    assert raised.status_code == 200 and raised.json()["spend_cap"] == 9000
    too_low = await orders.client.patch(f"/v1/subscriptions/{sub['id']}", json={"spend_cap": 500},
                                        headers=orders.buyer())
    assert too_low.status_code == 422 and too_low.json()["rule"] == "spend-cap-covers-base-fee"


async def test_a_prepaid_order_cannot_use_a_subscription_quote_and_vice_versa(orders: Harness) -> None:
    quote = await orders.quote("plan_monthly", mode="subscription")
    as_order = await orders.order(quote["id"])
    assert as_order.status_code == 422 and as_order.json()["rule"] == "quote-mode"
    prepaid = await orders.quote("plan_monthly")
    resp = await orders.client.post("/v1/subscriptions", json={
        "quote_id": prepaid["id"], "purpose": "research", "payment_method": "pm_card_visa"},
        headers={**orders.buyer(), "Idempotency-Key": "k-1"})
    assert resp.status_code == 422 and resp.json()["rule"] == "quote-mode"
    once = await orders.client.post("/v1/quotes", json={
        "product_id": "prd_mobility", "version": 1, "plan_id": "plan_once_jpy", "mode": "subscription"},
        headers=orders.buyer())
    assert once.status_code == 422 and once.json()["rule"] == "subscription-plan-renews"


async def test_a_card_declined_for_a_new_subscription_does_not_replace_the_working_card(orders: Harness) -> None:
    working = await orders.subscribe("plan_monthly")
    await orders.subscribe("plan_premium", payment_method="pm_card_chargeCustomerFail", expect=402)
    renewed = await orders.renew(working["id"])  # charged to the card that worked
    assert renewed["status"] == "active" and renewed["periods_paid"] == 2
