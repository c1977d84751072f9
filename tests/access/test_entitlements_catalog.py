"""Against the real catalog app: the internal API's shape is what access expects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.access.catalog_client import CatalogClient
from tests.access.entitlement_support import (  # noqa: F401
    Market,
    market_fixture,
    problem_type,
    use_catalog,
)
from tests.catalog.conftest import create_listed, spec
from tests.conftest import AppFactory
from tests.support import RunningApp, TestKeys


@pytest.fixture
async def catalog(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    async with service_app("catalog") as svc:
        yield svc


async def test_grant_and_token_against_the_real_catalog(
    market: Market, catalog: RunningApp, test_keys: TestKeys
) -> None:
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])

    async def catalog_token() -> str:  # the catalog here trusts the test key, not access's
        return test_keys.token(roles=["service"], org=None, sub="svc-access")

    use_catalog(market.svc, CatalogClient(
        "http://catalog.test", httpx.AsyncClient(transport=httpx.ASGITransport(app=catalog.app)),
        catalog_token, status_cache_seconds=0))
    provider_headers = {"Authorization": "Bearer " + test_keys.token(roles=["provider"],
                                                                     org=provider.org_id)}
    product = await create_listed(catalog, provider_headers, spec(slug="access-integration"))
    version = (await catalog.client.get(f"/internal/v1/products/{product['id']}/versions/1",
                                        headers={"Authorization": f"Bearer {await catalog_token()}"})).json()
    plan_id = version["plans"][0]["id"]

    ent = await market.grant(buyer, product["id"], plan_id=plan_id)
    assert ent["audience"] == "https://data.provider-a.example"
    assert ent["grade"] == "L1_public"
    assert ent["provider_org"] == provider.org_id
    assert ent["limits"]["query_quota"] == 10000
    issued = await market.token(buyer, ent["id"])
    assert issued["audience"] == "https://data.provider-a.example"

    # The catalog suspends the product: access asks the catalog before every token.
    regulator = {"Authorization": "Bearer " + test_keys.token(roles=["regulator"], org="org_regulator")}
    resp = await catalog.client.post(f"/v1/products/{product['id']}/suspend",
                                     json={"reason": "complaint under investigation"}, headers=regulator)
    assert resp.status_code == 200, resp.text
    refused = await market.client.post(f"/v1/entitlements/{ent['id']}/tokens", headers=buyer.headers)
    assert refused.status_code == 403
    assert problem_type(refused) == "product-not-listed"
    assert refused.json()["product_status"] == "suspended"
    # Reinstated, it gives tokens again: the refusal was the suspension's.
    resp = await catalog.client.post(f"/v1/products/{product['id']}/reinstate",
                                     json={"reason": "complaint unfounded"}, headers=regulator)
    assert resp.status_code == 200, resp.text
    assert (await market.token(buyer, ent["id"]))["audience"] == "https://data.provider-a.example"
