"""Entitlements: granted from paid orders, visible to the right parties only."""

from __future__ import annotations

import httpx
from jose import jwt

from tests.access.entitlement_support import Deal, Market, deal_fixture, market_fixture, problem_type  # noqa: F401
from tests.access.fake_catalog import DATA_SERVICE_URL, plan


async def test_grant_fills_audience_grade_quota_and_guardrails_from_the_catalog(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id, plans=[plan(query_quota=500)],
                                            guardrails={"max_rows": 50, "min_group_size": 5,
                                                        "epsilon_budget": 2.5})
    ent = await market.grant(buyer, product_id)
    assert ent["id"].startswith("ent_")
    assert ent["status"] == "active"
    assert ent["audience"] == DATA_SERVICE_URL
    assert ent["grade"] == "L3_sensitive"
    assert ent["provider_org"] == provider.org_id
    assert ent["buyer_org"] == buyer.org_id
    assert ent["plan_kind"] == "subscription"
    assert ent["limits"] == {"max_rows": 50, "min_group_size": 5, "epsilon_budget": 2.5,
                             "query_quota": 500}
    assert ent["usage"]["queries_remaining"] == 500


async def test_grant_is_idempotent_by_order_id(deal: Deal) -> None:
    m = deal.market
    again = await m.grant(deal.buyer, deal.product_id, expect=200, order_id=deal.ent["order_id"])
    assert again["id"] == deal.ent["id"]
    listed = (await m.client.get("/v1/entitlements", params={"order_id": deal.ent["order_id"]},
                                 headers=m.service)).json()
    assert len(listed["items"]) == 1


async def test_same_order_with_other_terms_is_a_conflict(deal: Deal) -> None:
    resp = await deal.market.client.post("/v1/entitlements", json={
        "order_id": deal.ent["order_id"], "buyer_org": deal.buyer.org_id,
        "product_id": deal.product_id, "version": 1, "plan_id": "plan_monthly",
        "purpose": "marketing", "valid_from": deal.ent["valid_from"],
        "valid_until": deal.ent["valid_until"]}, headers=deal.market.service)
    assert resp.status_code == 409
    assert problem_type(resp) == "order-already-granted"


async def test_only_services_grant(deal: Deal) -> None:
    resp = await deal.market.client.post("/v1/entitlements", json={}, headers=deal.buyer.headers)
    assert resp.status_code in (403, 422)
    resp = await deal.market.client.post("/v1/entitlements", json={
        "order_id": "ord_x", "buyer_org": deal.buyer.org_id, "product_id": deal.product_id,
        "version": 1, "plan_id": "plan_monthly", "purpose": "research",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"},
        headers=deal.buyer.headers)
    assert resp.status_code == 403


async def test_purpose_outside_the_usage_policy_is_refused(deal: Deal) -> None:
    resp = await deal.market.client.post("/v1/entitlements", json={
        "order_id": "ord_bad", "buyer_org": deal.buyer.org_id, "product_id": deal.product_id,
        "version": 1, "plan_id": "plan_monthly", "purpose": "marketing",
        "valid_from": "2026-11-01T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
        headers=deal.market.service)
    assert resp.status_code == 422
    assert problem_type(resp) == "purpose-not-allowed"


async def test_unknown_version_plan_or_buyer_is_a_clear_422(deal: Deal) -> None:
    m = deal.market
    assert problem_type(await _post(m, deal, version=7)) == "unknown-product-version"
    assert problem_type(await _post(m, deal, plan_id="plan_gold")) == "unknown-plan"
    assert problem_type(await _post(m, deal, buyer_org=deal.provider.org_id)) == \
        "unknown-buyer-organisation"


async def _post(m: Market, deal: Deal, **over: object) -> httpx.Response:
    body = {"order_id": "ord_" + str(abs(hash(str(over))))[:10], "buyer_org": deal.buyer.org_id,
            "product_id": deal.product_id, "version": 1, "plan_id": "plan_monthly",
            "purpose": "research", "valid_from": "2026-11-01T00:00:00Z",
            "valid_until": "2026-12-01T00:00:00Z", **over}
    resp = await m.client.post("/v1/entitlements", json=body, headers=m.service)
    assert resp.status_code == 422, resp.text
    return resp


async def test_catalog_down_is_503_not_a_blind_grant(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id)
    market.catalog.down = True
    resp = await market.client.post("/v1/entitlements", json={
        "order_id": "ord_down", "buyer_org": buyer.org_id, "product_id": product_id,
        "version": 1, "plan_id": "plan_monthly", "purpose": "research",
        "valid_from": "2026-11-01T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"},
        headers=market.service)
    assert resp.status_code == 503
    assert problem_type(resp) == "catalog-unavailable"


async def test_access_calls_the_catalog_with_its_own_service_token(deal: Deal) -> None:
    token = deal.market.catalog.seen_tokens[-1]
    claims = jwt.get_unverified_claims(token)
    assert claims["sub"] == "svc-access"
    assert claims["roles"] == ["service"]
    assert await deal.market.svc.runtime.verifier.verify(token)


async def test_buyers_see_their_own_providers_their_products_regulators_all(deal: Deal) -> None:
    m = deal.market
    other_buyer = await m.party(["buyer"])
    other_provider = await m.party(["provider"])
    regulator = await m.party(["regulator"])

    async def ids(headers: dict[str, str]) -> list[str]:
        resp = await m.client.get("/v1/entitlements", headers=headers)
        assert resp.status_code == 200, resp.text
        return [e["id"] for e in resp.json()["items"]]

    mine = [deal.ent["id"]]
    assert await ids(deal.buyer.headers) == mine
    assert await ids(deal.provider.headers) == mine
    assert await ids(regulator.headers) == mine
    assert await ids(other_buyer.headers) == []
    assert await ids(other_provider.headers) == []
    for outsider in (other_buyer, other_provider):
        resp = await m.client.get(f"/v1/entitlements/{deal.ent['id']}", headers=outsider.headers)
        assert resp.status_code == 404
        assert problem_type(resp) == "entitlement-not-found"


async def test_refund_revokes_and_the_feed_shows_it(deal: Deal) -> None:
    m = deal.market
    before = await m.feed()
    url = f"/v1/entitlements/by-order/{deal.ent['order_id']}/revoke"
    resp = await m.client.post(url, json={"reason": "refund"}, headers=m.service)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "revoked"
    again = await m.client.post(url, json={"reason": "refund"}, headers=m.service)
    assert again.status_code == 200
    feed = await m.feed(before["next_cursor"])
    assert [(i["kind"], i["id"], i["event"], i["reason"]) for i in feed["items"]] == [
        ("entitlement", deal.ent["id"], "revoked", "refund")]
    assert len(await m.events("access.entitlement.revoked")) == 1


async def test_revoking_an_order_without_entitlement_is_404(market: Market) -> None:
    resp = await market.client.post("/v1/entitlements/by-order/ord_none/revoke",
                                     json={"reason": "refund"}, headers=market.service)
    assert resp.status_code == 404


async def test_buyers_and_providers_cannot_revoke_or_suspend(deal: Deal) -> None:
    m, ent_id = deal.market, deal.ent["id"]
    for url in (f"/v1/entitlements/{ent_id}/revoke", f"/v1/entitlements/{ent_id}/suspend",
                f"/v1/entitlements/by-order/{deal.ent['order_id']}/revoke",
                f"/v1/products/{deal.product_id}/suspend-entitlements"):
        for party in (deal.buyer, deal.provider):
            resp = await m.client.post(url, json={"reason": "x"}, headers=party.headers)
            assert resp.status_code == 403, url
    got = await m.client.get(f"/v1/entitlements/{ent_id}", headers=deal.buyer.headers)
    assert got.json()["status"] == "active"


async def test_regulator_suspends_and_reinstates_with_feed_entries(deal: Deal) -> None:
    m, ent_id = deal.market, deal.ent["id"]
    regulator = await m.party(["regulator"])
    resp = await m.client.post(f"/v1/entitlements/{ent_id}/suspend",
                               json={"reason": "complaint under review"}, headers=regulator.headers)
    assert resp.status_code == 200
    assert resp.json()["status"] == "suspended"
    assert resp.json()["suspended_by"] == ["entitlement"]
    twice = await m.client.post(f"/v1/entitlements/{ent_id}/suspend", json={"reason": "again"},
                                headers=regulator.headers)
    assert twice.status_code == 409
    resp = await m.client.post(f"/v1/entitlements/{ent_id}/reinstate",
                               json={"reason": "cleared"}, headers=regulator.headers)
    assert resp.json()["status"] == "active"
    events = [(i["id"], i["event"]) for i in (await m.feed())["items"]]
    assert events == [(ent_id, "suspended"), (ent_id, "reinstated")]


async def test_revoked_entitlement_cannot_be_reinstated(deal: Deal) -> None:
    m, ent_id = deal.market, deal.ent["id"]
    await m.client.post(f"/v1/entitlements/{ent_id}/revoke", json={"reason": "fraud"},
                        headers=m.operator)
    resp = await m.client.post(f"/v1/entitlements/{ent_id}/reinstate", json={"reason": "oops"},
                               headers=m.operator)
    assert resp.status_code == 409
    assert problem_type(resp) == "entitlement-revoked"


async def test_product_suspension_pushed_by_the_catalog_suspends_its_entitlements(deal: Deal) -> None:
    m = deal.market
    other = await m.grant(deal.buyer, deal.product_id)
    url = f"/v1/products/{deal.product_id}/suspend-entitlements"
    resp = await m.client.post(url, json={"reason": "regulator order 7"}, headers=m.service)
    assert resp.status_code == 200
    assert sorted(resp.json()["changed"]) == sorted([deal.ent["id"], other["id"]])
    again = await m.client.post(url, json={"reason": "regulator order 7"}, headers=m.service)
    assert again.json()["changed"] == []
    got = (await m.client.get(f"/v1/entitlements/{other['id']}", headers=deal.buyer.headers)).json()
    assert (got["status"], got["suspended_by"]) == ("suspended", ["product"])
    feed = (await m.feed())["items"]
    assert sorted(i["id"] for i in feed if i["event"] == "suspended") == \
        sorted([deal.ent["id"], other["id"]])
    resp = await m.client.post(f"/v1/products/{deal.product_id}/reinstate-entitlements",
                               json={"reason": "relisted"}, headers=m.service)
    assert len(resp.json()["changed"]) == 2
    assert [i["event"] for i in (await m.feed())["items"]][-2:] == ["reinstated", "reinstated"]


async def test_organisation_suspension_reaches_entitlements_and_the_feed(deal: Deal) -> None:
    m, ent_id = deal.market, deal.ent["id"]
    resp = await m.client.post(f"/v1/organisations/{deal.buyer.org_id}/suspend",
                               json={"reason": "sanctions"}, headers=m.operator)
    assert resp.status_code == 200
    got = await m.client.get(f"/v1/entitlements/{ent_id}", headers=m.operator)
    assert (got.json()["status"], got.json()["suspended_by"]) == ("suspended", ["organisation"])
    feed = await m.feed()
    assert [(i["id"], i["event"]) for i in feed["items"]] == [(ent_id, "suspended")]
    # Polling again adds nothing new.
    assert (await m.feed(feed["next_cursor"]))["items"] == []
    await m.client.post(f"/v1/organisations/{deal.buyer.org_id}/reinstate",
                        json={"reason": "lifted"}, headers=m.operator)
    later = await m.feed(feed["next_cursor"])
    assert [(i["id"], i["event"]) for i in later["items"]] == [(ent_id, "reinstated")]


async def test_on_organisation_status_changed_suspends_in_the_callers_transaction(deal: Deal) -> None:
    from services.access import entitlements, identity

    m = deal.market
    async with m.svc.db.sessionmaker() as s, s.begin():
        await identity.set_organisation_status(s, deal.provider.org_id, "suspended", "licence")
        changed = await entitlements.on_organisation_status_changed(
            s, deal.provider.org_id, "suspended", "licence")
    assert changed == [deal.ent["id"]]
    items = (await m.feed())["items"]
    assert [(i["id"], i["event"]) for i in items] == [(deal.ent["id"], "suspended")]
    assert "licence" in items[0]["reason"]


async def test_expired_entitlement_shows_as_expired(deal: Deal) -> None:
    from datetime import UTC, datetime, timedelta

    m = deal.market
    await m.set_entitlement(deal.ent["id"], valid_until=datetime.now(UTC) - timedelta(seconds=1))
    got = await m.client.get(f"/v1/entitlements/{deal.ent['id']}", headers=deal.buyer.headers)
    assert got.json()["status"] == "expired"


async def test_grant_is_audited_with_the_order(deal: Deal) -> None:
    granted = await deal.market.events("access.entitlement.granted")
    assert len(granted) == 1
    assert granted[0].subject.id == deal.ent["id"]
    assert granted[0].details["order_id"] == deal.ent["order_id"]
    assert granted[0].actor.role == "service"


async def test_quota_follows_the_order_periods_bundle_or_explicit_total(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id, plans=[
        plan(query_quota=100),
        plan(id="plan_metered", kind="metered", period=None, included_queries=250,
             query_quota=None, access_days=30)])
    three_months = await market.grant(buyer, product_id, valid_from="2026-01-31T00:00:00Z",
                                      valid_until="2026-04-30T00:00:00Z")
    assert three_months["limits"]["query_quota"] == 300
    metered = await market.grant(buyer, product_id, plan_id="plan_metered",
                                 valid_from="2026-11-01T00:00:00Z", valid_until="2026-12-01T00:00:00Z")
    assert metered["limits"]["query_quota"] == 250
    bundle = await market.grant(buyer, product_id, plan_id="plan_metered", query_quota=5000,
                                valid_from="2026-11-01T00:00:00Z", valid_until="2026-12-01T00:00:00Z")
    assert bundle["limits"]["query_quota"] == 5000


async def test_a_calendar_month_fits_a_30_day_policy(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id, max_duration_days=30)
    await market.grant(buyer, product_id, valid_from="2026-01-15T00:00:00Z",
                       valid_until="2026-02-15T00:00:00Z")
    too_long = await market.client.post("/v1/entitlements", json={
        "order_id": "ord_long", "buyer_org": buyer.org_id, "product_id": product_id, "version": 1,
        "plan_id": "plan_monthly", "purpose": "research", "valid_from": "2026-01-15T00:00:00Z",
        "valid_until": "2026-04-15T00:00:00Z", "query_quota": 10}, headers=market.service)
    assert too_long.status_code == 422
    assert problem_type(too_long) == "duration-exceeds-policy"


async def test_the_plan_sells_the_epsilon_and_its_default_per_query_rides_in_the_token(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id, plans=[plan(epsilon=2.0, query_epsilon=0.5)])
    ent = await market.grant(buyer, product_id)
    assert ent["limits"]["epsilon_budget"] == 2.0  # the plan's, not the product's default 1.0
    issued = await market.token(buyer, ent["id"])
    claims = jwt.get_unverified_claims(issued["access_token"])
    assert claims["limits"]["epsilon_budget"] == 2.0 and claims["limits"]["query_epsilon"] == 0.5


async def test_the_epsilon_an_order_bought_wins_over_the_plans(market: Market) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id, plans=[plan(epsilon=2.0)])
    ent = await market.grant(buyer, product_id, epsilon_budget=6.0)  # three periods of 2.0
    assert ent["limits"]["epsilon_budget"] == 6.0


async def test_overseers_filter_entitlements_by_buyer_and_provider(deal: Deal) -> None:
    """The same filter names as the catalog and orders (`buyer`, `provider`); the old
    `buyer_org` is refused with the name to use, never ignored."""
    m = deal.market

    async def ids(**params: str) -> list[str]:
        resp = await m.client.get("/v1/entitlements", params=params, headers=m.operator)
        assert resp.status_code == 200, resp.text
        return [e["id"] for e in resp.json()["items"]]

    assert await ids(buyer=deal.buyer.org_id) == [deal.ent["id"]]
    assert await ids(provider=deal.provider.org_id) == [deal.ent["id"]]
    assert await ids(buyer=deal.provider.org_id) == []
    assert await ids(provider="org_nobody") == []
    old = await m.client.get("/v1/entitlements", params={"buyer_org": "org_nobody"}, headers=m.operator)
    assert old.status_code == 422 and "did you mean 'buyer'" in old.json()["detail"]
