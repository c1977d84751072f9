"""Data-access tokens (RFC 9068): claims, lifetime, and every refusal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import jwt

from tests.access.entitlement_support import Deal, deal_fixture, market_fixture, problem_type  # noqa: F401
from tests.access.fake_catalog import DATA_SERVICE_URL


async def decode(deal: Deal, token: str) -> dict[str, Any]:
    jwks = (await deal.market.client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return dict(jwt.decode(token, key, algorithms=["RS256"], audience=DATA_SERVICE_URL,
                      issuer=deal.market.svc.settings.token_issuer))


async def test_token_is_an_rfc9068_jwt_for_the_entitlements_data_service(deal: Deal) -> None:
    issued = await deal.market.token(deal.buyer, deal.ent["id"])
    assert issued["token_type"] == "Bearer"
    assert issued["audience"] == DATA_SERVICE_URL
    claims = await decode(deal, issued["access_token"])
    assert claims["aud"] == DATA_SERVICE_URL
    assert claims["sub"] == claims["client_id"] == deal.buyer.client_id
    assert claims["org"] == deal.buyer.org_id
    assert claims["scope"] == "query"
    assert claims["jti"] == issued["jti"]
    assert claims["exp"] - claims["iat"] == 900 == issued["expires_in"]
    assert (claims["ent"], claims["product"], claims["version"]) == (deal.ent["id"], deal.product_id, 1)
    assert (claims["purpose"], claims["grade"]) == ("research", "L3_sensitive")
    assert claims["limits"] == {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0,
                                "query_quota": 100}


async def test_token_cannot_be_used_as_a_platform_token(deal: Deal) -> None:
    issued = await deal.market.token(deal.buyer, deal.ent["id"])
    resp = await deal.market.client.get("/v1/entitlements",
                                        headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert resp.status_code == 401


async def test_shorter_lifetime_on_request_and_never_past_the_entitlement_end(deal: Deal) -> None:
    m = deal.market
    short = await m.token(deal.buyer, deal.ent["id"], expires_in=60)
    assert short["expires_in"] == 60
    ends = datetime.now(UTC) + timedelta(seconds=120)
    await m.set_entitlement(deal.ent["id"], valid_until=ends)
    capped = await m.token(deal.buyer, deal.ent["id"])
    claims = await decode(deal, capped["access_token"])
    assert claims["exp"] <= int(ends.timestamp())
    assert capped["expires_in"] <= 120
    too_long = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens",
                                   json={"expires_in": 3600}, headers=deal.buyer.headers)
    assert too_long.status_code == 422


async def test_another_buyer_gets_404_for_an_entitlement_not_theirs(deal: Deal) -> None:
    intruder = await deal.market.party(["buyer"])
    resp = await deal.market.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens",
                                         headers=intruder.headers)
    assert resp.status_code == 404
    assert problem_type(resp) == "entitlement-not-found"
    refused = await deal.market.events("access.data_token.refused")
    assert refused[-1].outcome == "denied"
    assert refused[-1].actor.org == intruder.org_id


async def test_providers_and_services_cannot_get_data_tokens(deal: Deal) -> None:
    m = deal.market
    for headers in (deal.provider.headers, m.service, m.operator):
        resp = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens", headers=headers)
        assert resp.status_code == 403


async def _refusal(deal: Deal) -> str:
    resp = await deal.market.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens",
                                         headers=deal.buyer.headers)
    assert resp.status_code == 403, resp.text
    assert resp.json()["entitlement_id"] == deal.ent["id"]
    assert resp.json()["detail"]
    return problem_type(resp)


async def test_revoked_entitlement_gets_no_token(deal: Deal) -> None:
    await deal.market.client.post(f"/v1/entitlements/by-order/{deal.ent['order_id']}/revoke",
                                  json={"reason": "refund"}, headers=deal.market.service)
    assert await _refusal(deal) == "entitlement-revoked"


async def test_suspended_entitlement_gets_no_token(deal: Deal) -> None:
    await deal.market.client.post(f"/v1/entitlements/{deal.ent['id']}/suspend",
                                  json={"reason": "review"}, headers=deal.market.operator)
    assert await _refusal(deal) == "entitlement-suspended"


async def test_expired_and_not_yet_valid_entitlements_get_no_token(deal: Deal) -> None:
    now = datetime.now(UTC)
    await deal.market.set_entitlement(deal.ent["id"], valid_until=now - timedelta(seconds=1))
    assert await _refusal(deal) == "entitlement-expired"
    await deal.market.set_entitlement(deal.ent["id"], valid_from=now + timedelta(hours=1),
                                      valid_until=now + timedelta(days=2))
    assert await _refusal(deal) == "entitlement-not-yet-valid"


async def test_quota_exhaustion_refuses_the_next_token(deal: Deal) -> None:
    m = deal.market
    await m.set_entitlement(deal.ent["id"], query_quota=2)
    await m.usage(deal.ent)
    await m.token(deal.buyer, deal.ent["id"])  # one query left
    await m.usage(deal.ent)
    assert await _refusal(deal) == "quota-exhausted"


async def test_spent_privacy_budget_refuses_the_next_token(deal: Deal) -> None:
    await deal.market.usage(deal.ent, epsilon=0.6)
    await deal.market.usage(deal.ent, epsilon=0.4)
    assert await _refusal(deal) == "epsilon-budget-exhausted"


async def test_product_no_longer_listed_in_the_catalog_gets_no_token(deal: Deal) -> None:
    deal.market.catalog.set_status(deal.product_id, "suspended")
    assert await _refusal(deal) == "product-not-listed"
    deal.market.catalog.set_status(deal.product_id, "listed")
    await deal.market.token(deal.buyer, deal.ent["id"])


async def test_a_retired_product_is_said_to_be_gone_for_good(deal: Deal) -> None:
    deal.market.catalog.set_status(deal.product_id, "retired")
    resp = await deal.market.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens",
                                         headers=deal.buyer.headers)
    assert problem_type(resp) == "product-not-listed"
    assert "for good" in resp.json()["detail"] and "listed again" not in resp.json()["detail"]


async def test_product_suspension_push_refuses_tokens(deal: Deal) -> None:
    await deal.market.client.post(f"/v1/products/{deal.product_id}/suspend-entitlements",
                                  json={"reason": "regulator"}, headers=deal.market.service)
    assert await _refusal(deal) == "product-suspended"


async def test_suspended_buyer_or_provider_organisation_gets_no_token(deal: Deal) -> None:
    m = deal.market
    # The buyer's platform token is still valid for up to 15 minutes after the
    # suspension: the data-token check must not rely on it.
    await m.client.post(f"/v1/organisations/{deal.provider.org_id}/suspend",
                        json={"reason": "licence withdrawn"}, headers=m.operator)
    assert await _refusal(deal) == "organisation-suspended"
    await m.client.post(f"/v1/organisations/{deal.provider.org_id}/reinstate",
                        json={"reason": "ok"}, headers=m.operator)
    await m.client.post(f"/v1/organisations/{deal.buyer.org_id}/suspend",
                        json={"reason": "sanctions"}, headers=m.operator)
    assert await _refusal(deal) == "organisation-suspended"


async def test_purpose_dropped_from_the_policy_gets_no_token(deal: Deal) -> None:
    await deal.market.set_entitlement(deal.ent["id"], usage_policy={"allowed_purposes": ["audit"]})
    assert await _refusal(deal) == "purpose-not-allowed"


async def test_unreachable_catalog_is_503_never_a_blind_token(deal: Deal) -> None:
    deal.market.catalog.down = True
    resp = await deal.market.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens",
                                         headers=deal.buyer.headers)
    assert resp.status_code == 503
    assert problem_type(resp) == "catalog-unavailable"
    assert resp.headers["retry-after"] == "5"


async def test_issue_and_refusal_are_audited(deal: Deal) -> None:
    m = deal.market
    issued = await m.token(deal.buyer, deal.ent["id"])
    ok = await m.events("access.data_token.issued")
    assert ok[-1].details["jti"] == issued["jti"]
    assert ok[-1].actor.sub == deal.buyer.client_id
    await m.client.post(f"/v1/entitlements/{deal.ent['id']}/suspend", json={"reason": "x"},
                        headers=m.operator)
    await _refusal(deal)
    refused = await m.events("access.data_token.refused")
    assert refused[-1].details["problem"] == "entitlement-suspended"


async def test_concurrent_issues_each_get_their_own_entitlement_and_see_a_revocation(deal: Deal) -> None:
    """Issues running together share one entitlement read on PostgreSQL (shared.hot_reads.GroupedRead):
    each still gets its own entitlement's token, another buyer's is still a 404, and a
    revocation committed before they ask refuses them all."""
    m = deal.market
    second = await m.grant(deal.buyer, deal.product_id)
    intruder = await m.party(["buyer"])
    asks = [(deal.buyer, deal.ent["id"], 201), (deal.buyer, second["id"], 201),
            (intruder, deal.ent["id"], 404), (deal.buyer, "ent_missing", 404)] * 3
    issued = await asyncio.gather(*(m.token(who, ent_id, expect=expect) for who, ent_id, expect in asks))
    for (_, ent_id, expect), out in zip(asks, issued, strict=True):
        if expect == 201:
            assert out["entitlement_id"] == ent_id
            assert (await decode(deal, out["access_token"]))["ent"] == ent_id
    await m.client.post(f"/v1/entitlements/{second['id']}/revoke", json={"reason": "refund"},
                        headers=m.service)
    refused = await asyncio.gather(*(m.client.post(f"/v1/entitlements/{second['id']}/tokens",
                                                   headers=deal.buyer.headers) for _ in range(4)))
    assert {(r.status_code, problem_type(r)) for r in refused} == {(403, "entitlement-revoked")}
    assert (await m.token(deal.buyer, deal.ent["id"]))["entitlement_id"] == deal.ent["id"]
