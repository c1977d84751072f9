"""Usage records: idempotent, atomic against quota and privacy budget, visible
to the right parties only."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.access.entitlement_support import Deal, deal_fixture, market_fixture, problem_type  # noqa: F401


async def entitlement(deal: Deal) -> dict[str, Any]:
    resp = await deal.market.client.get(f"/v1/entitlements/{deal.ent['id']}", headers=deal.buyer.headers)
    return dict(resp.json())


async def test_usage_is_recorded_with_billing_fields(deal: Deal) -> None:
    rec = await deal.market.usage(deal.ent, epsilon=0.1)
    assert rec["entitlement_id"] == deal.ent["id"]
    assert (rec["product_id"], rec["version"], rec["plan_id"], rec["plan_kind"]) == (
        deal.product_id, 1, "plan_monthly", "subscription")
    assert (rec["buyer_org"], rec["provider_org"]) == (deal.buyer.org_id, deal.provider.org_id)
    assert rec["query_number"] == 1
    usage = (await entitlement(deal))["usage"]
    assert usage["queries_used"] == 1 and usage["queries_remaining"] == 99
    assert usage["epsilon_used"] == pytest.approx(0.1)


async def test_repeated_usage_id_is_200_and_counts_once(deal: Deal) -> None:
    m = deal.market
    body = {"usage_id": str(uuid.uuid4()), "entitlement_id": deal.ent["id"], "jti": "j1",
            "product_id": deal.product_id, "rows_returned": 5, "epsilon_spent": 0.2,
            "occurred_at": datetime.now(UTC).isoformat()}
    first = await m.client.post("/v1/usage", json=body, headers=m.service)
    again = await m.client.post("/v1/usage", json=body, headers=m.service)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert (await entitlement(deal))["usage"]["queries_used"] == 1
    changed = await m.client.post("/v1/usage", json={**body, "rows_returned": 6}, headers=m.service)
    assert changed.status_code == 409
    assert problem_type(changed) == "usage-id-reused"


async def test_usage_beyond_quota_or_budget_is_409_and_not_recorded(deal: Deal) -> None:
    m = deal.market
    await m.set_entitlement(deal.ent["id"], query_quota=1)
    await m.usage(deal.ent)
    over = await m.usage(deal.ent, expect=409)
    assert over["type"].endswith("usage-exceeds-limits")
    await m.set_entitlement(deal.ent["id"], query_quota=None)
    await m.usage(deal.ent, epsilon=0.9)
    await m.usage(deal.ent, epsilon=0.2, expect=409)
    usage = (await entitlement(deal))["usage"]
    assert usage["queries_used"] == 2
    assert usage["epsilon_used"] == pytest.approx(0.9)


async def test_the_products_provider_may_report_others_get_404(deal: Deal) -> None:
    m = deal.market
    await m.usage(deal.ent, headers=deal.provider.headers)
    other = await m.party(["provider"])
    resp = await m.usage(deal.ent, headers=other.headers, expect=404)
    assert resp["type"].endswith("entitlement-not-found")
    await m.usage(deal.ent, headers=deal.buyer.headers, expect=403)


async def test_product_must_match_the_entitlement(deal: Deal) -> None:
    resp = await deal.market.client.post("/v1/usage", json={
        "usage_id": str(uuid.uuid4()), "entitlement_id": deal.ent["id"], "jti": "j",
        "product_id": "prd_other", "rows_returned": 1, "epsilon_spent": 0,
        "occurred_at": datetime.now(UTC).isoformat()}, headers=deal.market.service)
    assert resp.status_code == 422
    assert problem_type(resp) == "product-mismatch"


async def test_negative_or_naive_values_are_validation_errors(deal: Deal) -> None:
    resp = await deal.market.client.post("/v1/usage", json={
        "usage_id": "u1", "entitlement_id": deal.ent["id"], "jti": "j",
        "product_id": deal.product_id, "rows_returned": -1, "epsilon_spent": -0.5,
        "occurred_at": "2026-11-28T10:00:00"}, headers=deal.market.service)
    assert resp.status_code == 422
    fields = {e["field"] for e in resp.json()["errors"]}
    assert {"rows_returned", "epsilon_spent", "occurred_at"} <= fields


async def test_usage_is_readable_by_its_buyer_provider_and_regulators_only(deal: Deal) -> None:
    m = deal.market
    await m.usage(deal.ent)
    regulator = await m.party(["regulator"])
    outsider_buyer = await m.party(["buyer"])
    outsider_provider = await m.party(["provider"])
    for party, n in ((deal.buyer, 1), (deal.provider, 1), (regulator, 1),
                     (outsider_buyer, 0), (outsider_provider, 0)):
        resp = await m.client.get("/v1/usage", params={"entitlement_id": deal.ent["id"]},
                                  headers=party.headers)
        assert resp.status_code == 200
        assert len(resp.json()["items"]) == n


async def test_usage_pages_with_a_cursor(deal: Deal) -> None:
    m = deal.market
    for _ in range(3):
        await m.usage(deal.ent)
    page = (await m.client.get("/v1/usage", params={"limit": 2}, headers=deal.buyer.headers)).json()
    assert [r["query_number"] for r in page["items"]] == [1, 2]
    rest = (await m.client.get("/v1/usage", params={"limit": 2, "cursor": page["next_cursor"]},
                               headers=deal.buyer.headers)).json()
    assert [r["query_number"] for r in rest["items"]] == [3]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(("quota", "epsilon_each", "expected"), [
    pytest.param(30, 0.01, 30, id="quota-binds"),
    pytest.param(1000, 0.05, 20, id="epsilon-binds"),
])
async def test_fifty_concurrent_reports_never_overspend(
    deal: Deal, quota: int, epsilon_each: float, expected: int
) -> None:
    m = deal.market
    await m.set_entitlement(deal.ent["id"], query_quota=quota)

    async def report() -> int:
        resp = await m.client.post("/v1/usage", json={
            "usage_id": str(uuid.uuid4()), "entitlement_id": deal.ent["id"],
            "jti": secrets.token_hex(4), "product_id": deal.product_id, "rows_returned": 1,
            "epsilon_spent": epsilon_each, "occurred_at": datetime.now(UTC).isoformat()},
            headers=m.service)
        return resp.status_code

    codes = await asyncio.gather(*(report() for _ in range(50)))
    assert sorted(set(codes)) == [201, 409], codes
    assert codes.count(201) == expected
    usage = (await entitlement(deal))["usage"]
    assert usage["queries_used"] == expected <= quota
    assert usage["epsilon_used"] <= 1.0 + 1e-9
    assert usage["epsilon_used"] == pytest.approx(expected * epsilon_each)
    records = (await m.client.get("/v1/usage", params={"entitlement_id": deal.ent["id"], "limit": 100},
                                  headers=m.service)).json()["items"]
    assert sorted(r["query_number"] for r in records) == list(range(1, expected + 1))


async def test_concurrent_repeats_of_one_usage_id_count_once(deal: Deal) -> None:
    m = deal.market
    body = {"usage_id": str(uuid.uuid4()), "entitlement_id": deal.ent["id"], "jti": "j",
            "product_id": deal.product_id, "rows_returned": 1, "epsilon_spent": 0.01,
            "occurred_at": datetime.now(UTC).isoformat()}
    codes = await asyncio.gather(*(m.client.post("/v1/usage", json=body, headers=m.service)
                                   for _ in range(10)))
    assert sorted(r.status_code for r in codes) == [200] * 9 + [201]
    assert (await entitlement(deal))["usage"]["queries_used"] == 1
