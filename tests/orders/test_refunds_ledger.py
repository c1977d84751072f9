"""Refunds, the append-only ledger, earnings, and delivery of entitlement commands."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from services.orders.models import LedgerEntry, Order
from tests.orders.conftest import Harness


async def paid_order(h: Harness, plan: str = "plan_monthly", **kw: object) -> dict[str, object]:
    order = await h.placed(plan, **kw)
    resp = await h.client.post(f"/v1/orders/{order['id']}/pay", json={"payment_method": "pm_card_visa"},
                               headers=kw.get("buyer") or h.buyer())  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    await h.wait_status(str(order["id"]), "fulfilled")
    return order


async def test_operator_refund_reverses_the_ledger_and_revokes_the_entitlement(orders: Harness) -> None:
    order = await paid_order(orders)
    resp = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "wrong data"},
                                    headers=orders.operator())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "refunded" and body["refund_reason"] == "wrong data"
    async with orders.ctx.sessionmaker() as s:
        refund_id = (await s.get(Order, order["id"])).stripe_refund_id  # type: ignore[union-attr]
        entries = (await s.execute(select(LedgerEntry.kind, LedgerEntry.account, LedgerEntry.amount)
                                   .where(LedgerEntry.order_id == order["id"]))).all()
    assert refund_id and refund_id.startswith("re_")
    assert sorted(entries) == sorted([("charge", "gross", 4900), ("platform_fee", "platform", 490),
                                      ("provider_earning", "provider", 4410),
                                      ("refund_reversal", "gross", -4900),
                                      ("refund_reversal", "platform", -490),
                                      ("refund_reversal", "provider", -4410)])
    for _ in range(100):
        if orders.access.revocations:
            break

        await asyncio.sleep(0.05)
    assert orders.access.revocations == [order["id"]]
    assert orders.access.entitlements[str(order["id"])]["status"] == "revoked"
    again = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "again"},
                                     headers=orders.operator())
    assert again.status_code == 200 and again.json()["refund_reason"] == "wrong data"


async def test_only_the_products_provider_or_an_operator_may_refund(orders: Harness) -> None:
    order = await orders.placed("plan_free")
    await orders.wait_status(order["id"], "fulfilled")
    buyer = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "please"},
                                     headers=orders.buyer())
    assert buyer.status_code == 403
    stranger = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "mine?"},
                                        headers=orders.provider("org_other"))
    assert stranger.status_code == 404
    own = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "goodwill"},
                                   headers=orders.provider())
    assert own.status_code == 200 and own.json()["status"] == "refunded"


async def test_an_unpaid_order_cannot_be_refunded(orders: Harness) -> None:
    order = await orders.placed("plan_monthly")
    resp = await orders.client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "nothing paid"},
                                    headers=orders.operator())
    assert resp.status_code == 409 and resp.json()["status_now"] == "pending_payment"


async def test_ledger_totals_reconcile_with_orders_per_currency(orders: Harness) -> None:
    eur = await paid_order(orders)
    await paid_order(orders, "plan_once_jpy")
    await paid_order(orders, "plan_monthly", periods=2)
    await orders.client.post(f"/v1/orders/{eur['id']}/refund", json={"reason": "refund one"},
                             headers=orders.operator())
    await orders.placed("plan_monthly")  # unpaid: not in the ledger
    resp = await orders.client.get("/v1/ledger", headers=orders.regulator())
    assert resp.status_code == 200
    totals = {t["currency"]: t for t in resp.json()["totals"]}
    assert totals["EUR"]["gross"] == 9800 and totals["EUR"]["refunded"] == 4900
    assert totals["JPY"] == {"currency": "JPY", "gross": 5000, "platform_fees": 500,
                             "provider_earnings": 4500, "refunded": 0, "orders": 1, "tax": 0, "paid_out": 0,
                             "reconciles": True}
    assert all(t["reconciles"] for t in totals.values())
    async with orders.ctx.sessionmaker() as s:
        kept = (await s.execute(select(Order.currency, func.sum(Order.gross))
                                .where(Order.status.in_(("paid", "fulfilled"))).group_by(Order.currency))).all()
    assert {c: t["gross"] for c, t in totals.items()} == dict(kept)
    page = await orders.client.get("/v1/ledger?limit=4", headers=orders.operator())
    assert len(page.json()["items"]) == 4 and page.json()["next_cursor"]
    assert (await orders.client.get("/v1/ledger", headers=orders.provider())).status_code == 403


async def test_providers_see_only_their_own_earnings(orders: Harness) -> None:
    await paid_order(orders)
    mine = await orders.client.get("/v1/providers/me/earnings", headers=orders.provider())
    assert mine.status_code == 200
    assert mine.json()["totals"][0]["provider_earnings"] == 4410
    assert {e["provider_org"] for e in mine.json()["items"]} == {"org_provider"}
    other = await orders.client.get("/v1/providers/me/earnings", headers=orders.provider("org_other"))
    assert other.json() == {"provider_org": "org_other", "totals": [], "items": [], "next_cursor": None}
    assert (await orders.client.get("/v1/providers/me/earnings", headers=orders.buyer())).status_code == 403


async def test_the_ledger_refuses_updates_and_deletes(orders: Harness) -> None:
    await paid_order(orders)
    for statement in ("UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with orders.ctx.sessionmaker() as s, s.begin():
                await s.execute(text(statement))


async def test_while_access_is_down_the_order_stays_paid_and_the_grant_is_retried_until_it_lands(
        orders: Harness) -> None:
    orders.access.fail_with = 503
    order = await orders.placed("plan_free")

    async def refused_attempts() -> int:
        return orders.access.grant_attempts.count(order["id"])

    # Access refused the grant, and the relay tried again: the order waits, paid, meanwhile.
    for _ in range(200):
        if await refused_attempts() >= 2:
            break
        await asyncio.sleep(0.05)
    assert await refused_attempts() >= 2, "the grant was not retried while access was down"
    assert (await orders.get(order["id"]))["status"] == "paid"
    assert orders.access.grant_requests == []
    orders.access.fail_with = None
    done = await orders.wait_status(order["id"], "fulfilled")
    assert done["entitlement_id"] == orders.access.entitlements[order["id"]]["id"]
    # Delivered once: after it landed, the grant is not sent again (several relay polls later).
    await asyncio.sleep(0.5)
    assert [g["order_id"] for g in orders.access.grant_requests] == [order["id"]]
    assert orders.access.grant_requests[0]["product_id"] == orders.product["product_id"]
