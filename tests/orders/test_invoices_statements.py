"""Invoices with VAT as a Stripe TaxRate, provider statements and payouts, and the buyer's and
provider's money views — every figure equal to the ledger (issue 12)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from services.orders import statements
from services.orders.models import LedgerEntry, Payout
from shared.auth import Principal
from tests.conftest import DatabaseFactory
from tests.orders.conftest import Harness, start_orders
from tests.orders.test_refunds_ledger import paid_order
from tests.support import TestKeys


@pytest.fixture
async def vat(database_url: DatabaseFactory, test_keys: TestKeys, localstripe: str) -> AsyncIterator[Harness]:
    """Orders charging 20% VAT."""
    async with start_orders(database_url("orders"), test_keys, localstripe, vat_bps=2000) as h:
        yield h


async def ledger_sum(h: Harness, order_id: str, **where: str) -> int:
    async with h.ctx.sessionmaker() as s:
        amounts = (await s.execute(select(LedgerEntry.amount).where(
            LedgerEntry.order_id == order_id, *(getattr(LedgerEntry, k) == v for k, v in where.items()))))
    return sum(amounts.scalars())


async def test_invoice_totals_equal_the_ledger_and_stripes_invoices(vat: Harness) -> None:
    one_off = await paid_order(vat, "plan_once_jpy")
    assert one_off["price"]["total"] == 6000 and one_off["price"]["tax"] == 1000
    sub = await vat.subscribe("plan_monthly")
    await vat.renew(sub["id"])
    refund = await vat.client.post(f"/v1/orders/{one_off['id']}/refund",
                                   json={"reason": "goodwill", "amount": 1200},
                                   headers={**vat.provider(), "Idempotency-Key": "g-1"})
    assert refund.status_code == 200, refund.text
    listed = await vat.client.get("/v1/invoices", headers=vat.buyer())
    docs = listed.json()["items"]
    assert len(docs) == 3 and [d["number"] for d in docs] == sorted((d["number"] for d in docs), reverse=True)
    for doc in docs:
        assert doc["total"] == await ledger_sum(vat, doc["order_id"], kind="charge")
        assert doc["tax"] == await ledger_sum(vat, doc["order_id"], kind="tax")
        assert doc["subtotal"] == doc["platform_fee"] + doc["provider_share"]
        assert doc["refunded"] == -await ledger_sum(vat, doc["order_id"], kind="refund_reversal", account="gross")
        assert doc["balance"] == await ledger_sum(vat, doc["order_id"], account="gross")
    subscription_docs = [d for d in docs if d["subscription_id"]]
    assert {d["total"] for d in subscription_docs} == {5880}  # 4900 + 20% VAT
    assert all(d["tax_rate"]["stripe_tax_rate_id"].startswith("txr_") for d in subscription_docs)
    stripe_totals = await vat.ctx.gateway.client.v1.invoices.list_async(
        {"subscription": sub["stripe_subscription_id"]})
    assert sorted(int(i.total) for i in stripe_totals.data) == [5880, 5880]
    refunded_doc = next(d for d in docs if d["order_id"] == one_off["id"])
    assert refunded_doc["credit_notes"][0]["amount"] == 1200 and refunded_doc["balance"] == 4800


async def test_an_invoice_renders_as_html_and_only_for_its_parties(vat: Harness) -> None:
    order = await paid_order(vat, "plan_once_jpy")
    number = (await vat.client.get(f"/v1/invoices?order_id={order['id']}", headers=vat.buyer())).json()[
        "items"][0]["number"]
    page = await vat.client.get(f"/v1/invoices/{number}/html", headers=vat.buyer())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"Invoice {number}" in page.text and "VAT 20%" in page.text and "6000 JPY" in page.text
    assert (await vat.client.get(f"/v1/invoices/{number}", headers=vat.provider())).status_code == 200
    for stranger in (vat.buyer("org_buyer_b"), vat.provider("org_other")):
        assert (await vat.client.get(f"/v1/invoices/{number}", headers=stranger)).status_code == 404
    assert (await vat.client.get("/v1/invoices/SL-bogus", headers=vat.buyer())).status_code == 404


async def test_a_statement_and_the_money_views_add_up_to_the_ledger(orders: Harness) -> None:
    eur = await paid_order(orders)
    await paid_order(orders, "plan_once_jpy")
    await orders.client.post(f"/v1/orders/{eur['id']}/refund", json={"reason": "partial", "amount": 900},
                             headers={**orders.provider(), "Idempotency-Key": "p-1"})
    period = datetime.now(UTC).strftime("%Y-%m")
    statement = await orders.client.get(f"/v1/providers/me/statements?period={period}", headers=orders.provider())
    lines = {line["currency"]: line for line in statement.json()["lines"]}
    assert lines["EUR"] == {"currency": "EUR", "sales": 4900, "refunds": 900, "tax": 0, "platform_fees": 400,
                            "earnings": 3600, "paid_out": 0, "balance": 3600, "orders": 1}
    assert lines["JPY"]["earnings"] == 4500
    spending = await orders.client.get("/v1/buyers/me/spending?group_by=period,product,plan",
                                       headers=orders.buyer())
    rows = {(r["plan_id"], r["currency"]): r for r in spending.json()["rows"]}
    assert rows[("plan_monthly", "EUR")]["net"] == 4000 and rows[("plan_monthly", "EUR")]["period"] == period
    assert rows[("plan_once_jpy", "JPY")]["charged"] == 5000
    earnings = await orders.client.get("/v1/providers/me/earnings/summary?group_by=product",
                                       headers=orders.provider())
    assert {(r["currency"], r["provider_earnings"]) for r in earnings.json()["rows"]} == {("EUR", 3600),
                                                                                         ("JPY", 4500)}
    bad = await orders.client.get("/v1/buyers/me/spending?group_by=colour", headers=orders.buyer())
    assert bad.status_code == 422 and bad.json()["rule"] == "group-by"
    other = await orders.client.get("/v1/buyers/me/spending", headers=orders.buyer("org_buyer_b"))
    assert other.json()["rows"] == []


async def test_a_payout_pays_a_closed_months_balance_once_with_a_stripe_payout(orders: Harness) -> None:
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1))
    async with orders.ctx.sessionmaker() as s, s.begin():  # sales booked last month
        for currency in ("EUR", "JPY"):
            sale = f"ord_{uuid.uuid4().hex[:20]}"
            for kind, account, amount in (("charge", "gross", 10000), ("platform_fee", "platform", 1000),
                                          ("provider_earning", "provider", 9000)):
                s.add(LedgerEntry(order_id=sale, kind=kind, account=account, buyer_org="org_buyer_a",
                                  provider_org="org_provider", currency=currency, amount=amount,
                                  created_at=last_month))
    period = last_month.strftime("%Y-%m")
    body = {"provider_org": "org_provider", "currency": "EUR", "period": period}
    paid = await orders.client.post("/v1/payouts", json=body, headers=orders.operator())
    assert paid.status_code == 201, paid.text
    assert (paid.json()["amount"], paid.json()["status"]) == (9000, "paid")
    stripe_payout = await orders.ctx.gateway.client.v1.payouts.retrieve_async(paid.json()["stripe_payout_id"])
    assert (stripe_payout.amount, stripe_payout.currency) == (9000, "eur")
    again = await orders.client.post("/v1/payouts", json=body, headers=orders.operator())
    assert again.status_code == 200 and again.json()["id"] == paid.json()["id"]
    jpy = await orders.client.post("/v1/payouts", json={**body, "currency": "JPY"}, headers=orders.operator())
    assert jpy.json()["status"] == "recorded" and jpy.json()["stripe_payout_id"] is None
    statement = await orders.client.get(f"/v1/providers/me/statements?period={period}", headers=orders.provider())
    assert {line["currency"]: line["balance"] for line in statement.json()["lines"]} == {"EUR": 9000, "JPY": 9000}
    ledger = (await orders.client.get("/v1/ledger", headers=orders.regulator())).json()["totals"]
    eur = next(t for t in ledger if t["currency"] == "EUR")
    assert eur["paid_out"] == 9000 and eur["reconciles"]
    now = datetime.now(UTC).strftime("%Y-%m")
    for bad, rule in (({"period": now}, "period-closed"), ({"currency": "XXX"}, "currency-supported")):
        refused = await orders.client.post("/v1/payouts", json={**body, **bad}, headers=orders.operator())
        assert refused.status_code == 422 and refused.json()["rule"] == rule
    assert (await orders.client.post("/v1/payouts", json=body, headers=orders.provider())).status_code == 403
    mine = await orders.client.get("/v1/payouts", headers=orders.provider())
    assert {p["currency"] for p in mine.json()} == {"EUR", "JPY"}


async def test_a_payout_decided_by_another_request_meanwhile_is_the_one_returned(
        orders: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a payout's insert cannot win: another operator request decides the same
    provider, currency and month after this one looked for it (simulated by inserting that
    payout in this request's own transaction while the balance is summed). The unique
    (provider, currency, period) refuses the insert; only its savepoint is rolled back, and the
    payout that won is returned in a transaction that still works. Before the fix the row was
    added outside the savepoint, so the refused flush ended the whole transaction and the
    fallback's read failed (a 500 for the second operator)."""
    period = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    won = Payout(id="po_won", provider_org="org_provider", currency="EUR", period=period, amount=9000,
                 status="pending", created_by={"sub": "other-operator"}, created_at=datetime.now(UTC))

    async def balance_while_another_decides(session: Any, provider_org: str, currency: str, end: Any) -> int:
        values = {c.key: getattr(won, c.key) for c in Payout.__table__.columns}
        await session.execute(insert(Payout).values(values))
        return 9000

    monkeypatch.setattr(statements, "_balance_owed", balance_while_another_decides)
    operator = Principal("op", "op", None, frozenset({"operator"}), None, {})
    async with orders.ctx.sessionmaker() as s, s.begin():
        payout = await statements.decide_payout(s, operator, "org_provider", "EUR", period)
        assert payout.id == "po_won"
        still = (await s.execute(select(Payout.id).where(Payout.period == period))).scalars().all()
    assert still == ["po_won"]
