"""Partial and pro-rata refunds: minor units, never more than captured, access kept,
shortened or ended as the provider decides, in the ledger (issue 12)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from services.orders.models import LedgerEntry, Refund
from tests.orders.conftest import Harness
from tests.orders.test_money_defects import stripe_refunds
from tests.orders.test_refunds_ledger import paid_order


async def refund(h: Harness, order_id: str, body: dict[str, Any], *, key: str | None = "r-1",
                 headers: dict[str, str] | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return await h.client.post(f"/v1/orders/{order_id}/refund", json={"reason": "partial", **body},
                               headers={**(headers or h.provider()), **extra})


async def ledger_by_account(h: Harness, order_id: str) -> dict[str, int]:
    async with h.ctx.sessionmaker() as s:
        rows = await s.execute(select(LedgerEntry.account, func.sum(LedgerEntry.amount))
                               .where(LedgerEntry.order_id == order_id).group_by(LedgerEntry.account))
    return {str(a): int(t) for a, t in rows}


async def test_a_partial_refund_gives_back_exactly_that_and_keeps_access(orders: Harness) -> None:
    order = await paid_order(orders)
    resp = await refund(orders, str(order["id"]), {"amount": 1000})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["status"], body["refunded_amount"]) == ("fulfilled", 1000)
    assert await stripe_refunds(orders, str(order["payment"]["payment_intent_id"])) == [1000]
    assert await ledger_by_account(orders, str(order["id"])) == {"gross": 3900, "platform": 390, "provider": 3510}
    assert orders.access.revocations == [] and orders.access.changes == []
    again = await refund(orders, str(order["id"]), {"amount": 1000})  # a retry with the same key
    assert again.json()["refunded_amount"] == 1000
    assert await stripe_refunds(orders, str(order["payment"]["payment_intent_id"])) == [1000]


async def test_refunds_beyond_what_was_captured_or_below_one_are_refused_and_change_nothing(
    orders: Harness,
) -> None:
    order = await paid_order(orders)
    await refund(orders, str(order["id"]), {"amount": 4000}, key="first")
    over = await refund(orders, str(order["id"]), {"amount": 901}, key="second")
    assert over.status_code == 422 and over.json()["rule"] == "refund-within-captured"
    assert (over.json()["captured"], over.json()["refunded"], over.json()["refundable"]) == (4900, 4000, 900)
    for bad in ({"amount": -5}, {"amount": 0}, {"amount": 10**12}):
        resp = await refund(orders, str(order["id"]), bad, key="third")
        assert resp.status_code == 422 and resp.headers["content-type"] == "application/problem+json"
    no_key = await refund(orders, str(order["id"]), {"amount": 100}, key=None)
    assert no_key.status_code == 400 and no_key.json()["type"].endswith("idempotency-key-missing")
    got = await orders.get(str(order["id"]))
    assert (got["status"], got["refunded_amount"]) == ("fulfilled", 4000)
    assert sorted(await stripe_refunds(orders, str(order["payment"]["payment_intent_id"]))) == [4000]
    async with orders.ctx.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(Refund))).scalar_one() == 1


async def test_partial_refunds_that_add_up_to_everything_reverse_every_account_exactly(orders: Harness) -> None:
    order = await paid_order(orders, "plan_once_jpy")  # 5000 JPY, fee 500
    for i, amount in enumerate((1, 333, 1666)):
        assert (await refund(orders, str(order["id"]), {"amount": amount}, key=f"k{i}")).status_code == 200
    last = await refund(orders, str(order["id"]), {}, key=None)  # the rest: a full refund, no key needed
    assert last.json()["status"] == "refunded" and last.json()["refunded_amount"] == 5000
    assert await ledger_by_account(orders, str(order["id"])) == {"gross": 0, "platform": 0, "provider": 0}
    async with orders.ctx.sessionmaker() as s:
        reversals = (await s.execute(select(LedgerEntry.amount).where(
            LedgerEntry.order_id == order["id"], LedgerEntry.kind == "refund_reversal"))).scalars().all()
    assert all(amount <= 0 for amount in reversals)
    await orders.delivered()
    assert orders.access.revocations == [order["id"]]


async def test_a_pro_rata_refund_gives_back_the_unused_share_and_ends_access_now(orders: Harness) -> None:
    order = await paid_order(orders, "plan_once_jpy")  # 90 days, just begun
    resp = await refund(orders, str(order["id"]), {"pro_rata": True})
    assert resp.status_code == 200, resp.text
    refunded = resp.json()["refunded_amount"]
    assert 4990 <= refunded < 5000 and resp.json()["status"] == "fulfilled"
    await orders.delivered()
    change = orders.access.changes[-1]
    assert change["change_id"].startswith("refund:rf_")
    ends = datetime.fromisoformat(resp.json()["valid_until"])
    assert datetime.fromisoformat(change["valid_until"]) == ends
    assert (ends - datetime.fromisoformat(resp.json()["updated_at"])).total_seconds() <= 1  # now


async def test_a_shortening_refund_cuts_the_refunded_share_off_the_window(orders: Harness) -> None:
    order = await paid_order(orders, "plan_once_jpy")
    resp = await refund(orders, str(order["id"]), {"amount": 2500, "access": "shorten"})
    body = resp.json()
    days = (datetime.fromisoformat(body["valid_until"]) - datetime.fromisoformat(body["valid_from"])).days
    assert days == 45  # half the money back, half of 90 days left
    await orders.delivered()
    assert orders.access.changes[-1]["valid_until"][:19] == body["valid_until"][:19]
    full_keep = await refund(orders, str(order["id"]), {"amount": 2500, "access": "keep"}, key="all")
    assert full_keep.status_code == 422 and full_keep.json()["rule"] == "refund-full-ends-access"
