"""Quotes: priced, pinned to the catalog version, for one buyer organisation, for 15 minutes."""

from __future__ import annotations

from datetime import datetime

from tests.orders.conftest import Harness
from tests.orders.fakes import product_version


async def test_quote_is_a_priced_breakdown_pinned_to_the_version(orders: Harness) -> None:
    quote = await orders.quote("plan_monthly", periods=3)
    assert quote["id"].startswith("quo_")
    assert (quote["product_id"], quote["version"], quote["provider_org"]) == ("prd_mobility", 1, "org_provider")
    assert quote["price"] == {
        "currency": "EUR", "total": 14700, "platform_fee": 1470, "provider_share": 13230, "fee_bps": 1000,
        "total_display": "147.00", "subtotal": 14700, "tax": 0, "tax_bps": 0,
        "lines": [{"code": "base", "description": "Subscription per month", "quantity": 3,
                   "unit_price": 4900, "amount": 14700}],
    }
    assert quote["allowed_purposes"] == ["research", "statistics"]
    ttl = datetime.fromisoformat(quote["expires_at"]) - datetime.fromisoformat(quote["created_at"])
    assert ttl.total_seconds() == 900


async def test_metered_quote_lists_tiers_and_jpy_has_no_decimals(orders: Harness) -> None:
    metered = await orders.quote("plan_metered", quantity=2500)
    assert [line["code"] for line in metered["price"]["lines"]] == ["base", "usage_tier_1", "usage_tier_2"]
    assert metered["price"]["total"] == 1000 + 1000 * 5 + 500 * 3
    jpy = await orders.quote("plan_once_jpy")
    assert jpy["price"]["total_display"] == "5000" and jpy["access"] == {
        "unit": "day", "count": 90, "query_quota": None, "epsilon_budget": 1.0}  # the product's default


async def test_a_product_that_is_not_listed_cannot_be_quoted(orders: Harness) -> None:
    orders.catalog.add(product_version("prd_suspended", status="suspended"))
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_suspended", "version": 1,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["rule"] == "product-listed"


async def test_a_retired_product_is_said_to_be_gone_for_good(orders: Harness) -> None:
    """A retired product never comes back: the refusal must not tell the buyer to wait."""
    orders.catalog.add(product_version("prd_retired", status="retired"))
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_retired", "version": 1,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 422
    assert "for good" in resp.json()["detail"] and "listed again" not in resp.json()["detail"]


async def test_unknown_version_is_404_and_unknown_plan_names_the_plans(orders: Harness) -> None:
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 9,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 404
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                        "plan_id": "plan_gold"}, headers=orders.buyer())
    assert resp.status_code == 422 and "plan_monthly" in resp.json()["detail"]


async def test_only_buyers_get_quotes_and_only_their_own(orders: Harness) -> None:
    body = {"product_id": "prd_mobility", "version": 1, "plan_id": "plan_free"}
    assert (await orders.client.post("/v1/quotes", json=body)).status_code == 401
    assert (await orders.client.post("/v1/quotes", json=body, headers=orders.provider())).status_code == 403
    quote = await orders.quote("plan_free")
    mine = await orders.client.get(f"/v1/quotes/{quote['id']}", headers=orders.buyer())
    assert mine.status_code == 200
    theirs = await orders.client.get(f"/v1/quotes/{quote['id']}", headers=orders.buyer("org_buyer_b"))
    assert theirs.status_code == 404


async def test_catalog_down_is_a_503_problem(orders: Harness) -> None:
    orders.ctx.catalog.base_url = "http://127.0.0.1:1"  # nothing listens there
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 503 and resp.json()["type"].endswith("catalog-unavailable")


async def test_the_quote_prices_the_privacy_budget_per_period_like_the_quota(orders: Harness) -> None:
    version = product_version("prd_private")
    monthly = next(p for p in version["plans"] if p["id"] == "plan_monthly")
    monthly["epsilon"] = 2.0
    orders.catalog.add(version)
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_private", "version": 1,
                                                        "plan_id": "plan_monthly", "periods": 3},
                                    headers=orders.buyer())
    assert resp.status_code == 201, resp.text
    assert resp.json()["access"]["epsilon_budget"] == 6.0  # 2.0 per month, three months
    assert resp.json()["price"]["total"] == 14700
