"""Orders: Idempotency-Key, declared purpose, free plans, visibility, cancellation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from services.orders.models import Order, PaymentAttempt, Quote
from services.orders.payments import PaymentGateway
from shared.db import utcnow
from tests.orders.conftest import Harness
from tests.orders.fakes import product_version


async def test_free_plan_is_paid_at_once_and_fulfilled_by_the_entitlement_command(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    resp = await orders.order(quote["id"], purpose="statistics")
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["id"].startswith("ord_") and order["status"] == "paid"
    assert order["payment"]["payment_intent_id"] is None
    done = await orders.wait_status(order["id"], "fulfilled")
    ent = orders.access.entitlements[order["id"]]
    assert done["entitlement_id"] == ent["id"]
    assert {k: ent[k] for k in ("order_id", "buyer_org", "product_id", "version", "plan_id", "purpose")} == {
        "order_id": order["id"], "buyer_org": "org_buyer_a", "product_id": "prd_mobility", "version": 1,
        "plan_id": "plan_free", "purpose": "statistics"}
    assert ent["valid_from"].endswith("Z") and ent["valid_until"] > ent["valid_from"]
    actions = [e.action for e in await orders.events() if e.subject.id == order["id"]]
    assert actions == ["orders.order.created", "orders.order.paid", "orders.order.fulfilled"]


async def test_same_key_and_body_returns_the_same_order(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    first = await orders.order(quote["id"], key="key-1")
    again = await orders.order(quote["id"], key="key-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_same_key_with_a_different_body_is_refused(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    assert (await orders.order(quote["id"], key="key-2")).status_code == 201
    resp = await orders.order(quote["id"], key="key-2", purpose="statistics")
    assert resp.status_code == 422
    assert resp.json()["rule"] == "idempotency-key-reused"


async def test_keys_are_per_buyer_organisation(orders: Harness) -> None:
    qa = await orders.quote("plan_free")
    qb = await orders.quote("plan_free", buyer=orders.buyer("org_buyer_b"))
    a = await orders.order(qa["id"], key="shared-key")
    b = await orders.order(qb["id"], key="shared-key", buyer=orders.buyer("org_buyer_b"))
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


async def test_missing_idempotency_key_is_a_400_problem(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    resp = await orders.client.post("/v1/orders", json={"quote_id": quote["id"], "purpose": "research"},
                                    headers=orders.buyer())
    assert resp.status_code == 400 and "Idempotency-Key" in resp.json()["detail"]


async def test_a_purpose_the_product_does_not_allow_is_refused_naming_the_allowed_ones(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    resp = await orders.order(quote["id"], purpose="marketing")
    assert resp.status_code == 422
    body = resp.json()
    assert body["rule"] == "purpose-allowed" and body["allowed_purposes"] == ["research", "statistics"]
    assert "research, statistics" in body["detail"]


async def test_a_quote_is_good_for_one_order_only_for_its_buyer_and_until_it_expires(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    assert (await orders.order(quote["id"], buyer=orders.buyer("org_buyer_b"))).status_code == 404
    assert (await orders.order(quote["id"])).status_code == 201
    reuse = await orders.order(quote["id"])
    assert reuse.status_code == 409 and reuse.json()["type"].endswith("quote-used")
    old = await orders.quote("plan_free")
    async with orders.ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Quote).where(Quote.id == old["id"])
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = await orders.order(old["id"])
    assert expired.status_code == 422 and expired.json()["rule"] == "quote-expired"


async def test_product_suspended_after_the_quote_cannot_be_ordered(orders: Harness) -> None:
    quote = await orders.quote("plan_free")
    orders.product["status"] = "suspended"
    orders.ctx.catalog.forget()  # as if catalog_cache_seconds had passed (tests/orders/test_catalog_cache.py)
    resp = await orders.order(quote["id"])
    assert resp.status_code == 422 and resp.json()["rule"] == "product-listed"


async def test_a_buyer_cannot_see_or_pay_another_buyers_order(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    other = orders.buyer("org_buyer_b")
    assert (await orders.client.get(f"/v1/orders/{order['id']}", headers=other)).status_code == 404
    pay = await orders.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                   headers=other)
    assert pay.status_code == 404
    cancel = await orders.client.post(f"/v1/orders/{order['id']}/cancel", headers=other)
    assert cancel.status_code == 404
    listed = await orders.client.get("/v1/orders", headers=other)
    assert listed.json()["items"] == []
    own = await orders.client.get("/v1/orders", headers=orders.buyer())  # the control
    assert [o["id"] for o in own.json()["items"]] == [order["id"]]
    assert (await orders.get(order["id"]))["status"] == "pending_payment"


async def test_providers_see_orders_for_their_products_and_regulators_see_all(orders: Harness) -> None:
    order = await orders.placed("plan_free")
    mine = await orders.client.get("/v1/orders", headers=orders.provider())
    assert [o["id"] for o in mine.json()["items"]] == [order["id"]]
    assert mine.json()["items"][0]["payment"]["client_secret"] is None
    other = await orders.client.get(f"/v1/orders/{order['id']}", headers=orders.provider("org_other"))
    assert other.status_code == 404
    reg = await orders.client.get("/v1/orders", headers=orders.regulator())
    assert [o["id"] for o in reg.json()["items"]] == [order["id"]]


async def test_listing_pages_newest_first_and_filters_by_status(orders: Harness) -> None:
    ids = [(await orders.placed("plan_free"))["id"] for _ in range(3)]
    pending = await orders.placed("plan_monthly")
    page1 = await orders.client.get("/v1/orders?limit=2", headers=orders.buyer())
    page2 = await orders.client.get(f"/v1/orders?limit=2&cursor={page1.json()['next_cursor']}",
                                    headers=orders.buyer())
    seen = [o["id"] for o in page1.json()["items"] + page2.json()["items"]]
    assert seen == [pending["id"], *reversed(ids)] and page2.json()["next_cursor"] is None
    only = await orders.client.get("/v1/orders?status=pending_payment", headers=orders.buyer())
    assert [o["id"] for o in only.json()["items"]] == [pending["id"]]
    bad = await orders.client.get("/v1/orders?cursor=!!", headers=orders.buyer())
    assert bad.status_code == 400


async def test_buyer_cancels_an_unpaid_order_and_its_payment_intent(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    resp = await orders.client.post(f"/v1/orders/{order['id']}/cancel", headers=orders.buyer())
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    intent = await orders.ctx.gateway.retrieve(order["payment"]["payment_intent_id"])
    assert intent.status == "canceled"
    pay = await orders.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                                   headers=orders.buyer())
    assert pay.status_code == 409


async def test_a_paid_order_cannot_be_cancelled(orders: Harness) -> None:
    order = await orders.placed("plan_free")
    resp = await orders.client.post(f"/v1/orders/{order['id']}/cancel", headers=orders.buyer())
    assert resp.status_code == 409 and resp.json()["status_now"] in ("paid", "fulfilled")


async def test_concurrent_orders_with_the_same_key_make_one_order_and_one_payment_intent(
    orders: Harness,
) -> None:
    quote = await orders.quote("plan_monthly")
    created: list[str] = []
    real_create = orders.ctx.gateway.create_intent

    async def counting_create(**kw: Any) -> Any:
        intent = await real_create(**kw)
        created.append(intent.id)
        return intent

    orders.ctx.gateway.create_intent = counting_create  # type: ignore[method-assign]
    responses = await asyncio.gather(*(orders.order(quote["id"], key="same-key") for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    intents = {r.json()["payment"]["payment_intent_id"] for r in responses}
    assert len(ids) == 1 and len(intents) == 1 and None not in intents
    assert created == list(intents)
    async with orders.ctx.sessionmaker() as s:
        attempts = (await s.execute(select(PaymentAttempt))).scalars().all()
        assert [a.payment_intent_id for a in attempts] == created
        assert len((await s.execute(select(Order))).scalars().all()) == 1


async def test_stripe_down_leaves_the_order_and_the_same_key_finishes_it(orders: Harness) -> None:
    working = orders.ctx.gateway
    orders.ctx.gateway = PaymentGateway("sk_test_x", "http://127.0.0.1:9", timeout=2)
    quote = await orders.quote("plan_monthly")
    try:
        down = await orders.order(quote["id"], key="stripe-down")
    finally:
        await orders.ctx.gateway.aclose()
        orders.ctx.gateway = working
    assert down.status_code == 503
    problem = down.json()
    assert problem["type"].endswith("payment-provider-unavailable") and "same Idempotency-Key" in problem["detail"]
    again = await orders.order(quote["id"], key="stripe-down")
    assert again.status_code == 200 and again.json()["id"] == problem["order_id"]
    assert again.json()["payment"]["payment_intent_id"].startswith("pi_")


async def test_the_entitlement_command_carries_the_privacy_budget_the_order_bought(orders: Harness) -> None:
    quote = await orders.quote("plan_free")  # the product's default epsilon 1.0 (no plan epsilon)
    order = (await orders.order(quote["id"], purpose="statistics")).json()
    await orders.wait_status(order["id"], "fulfilled")
    [grant] = [g for g in orders.access.grant_requests if g["order_id"] == order["id"]]
    assert grant["epsilon_budget"] == 1.0 and grant["query_quota"] == 100


async def test_overseers_filter_orders_by_provider_and_buyer(orders: Harness) -> None:
    """The catalog calls the provider filter `provider`; orders uses the same name. An unknown
    name (the `provider_org` a regulator once typed) is a 422, never every order."""
    orders.catalog.add(product_version("prd_other", provider_org="org_provider_b"))
    mine = await orders.placed("plan_free")
    quote = await orders.client.post("/v1/quotes", json={"product_id": "prd_other", "version": 1,
                                                         "plan_id": "plan_free"},
                                     headers=orders.buyer("org_buyer_b"))
    theirs = (await orders.order(quote.json()["id"], buyer=orders.buyer("org_buyer_b"))).json()
    reg = orders.regulator()

    async def ids(query: str) -> list[str]:
        resp = await orders.client.get(f"/v1/orders?{query}", headers=reg)
        assert resp.status_code == 200, resp.text
        return [o["id"] for o in resp.json()["items"]]

    assert await ids("provider=org_provider_b") == [theirs["id"]]
    assert await ids("provider=org_provider") == [mine["id"]]
    assert await ids("buyer=org_buyer_b") == [theirs["id"]]
    assert sorted(await ids("limit=10")) == sorted([mine["id"], theirs["id"]])  # the control
    wrong = await orders.client.get("/v1/orders?provider_org=org_provider_b", headers=reg)
    assert wrong.status_code == 422, wrong.text
    assert wrong.headers["content-type"] == "application/problem+json"
    assert "provider_org" in wrong.json()["detail"] and "provider" in wrong.json()["detail"]
    # A provider filtering on another provider sees nothing of theirs.
    other = await orders.client.get("/v1/orders?provider=org_provider_b", headers=orders.provider())
    assert other.json()["items"] == []
