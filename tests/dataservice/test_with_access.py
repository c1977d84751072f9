"""The dataservice against the real access service (in-process): a data token issued by
access for an entitlement is accepted, usage reaches access's ledger through the outbox
relay, and a revocation in access stops the token after one feed poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.dataservice.runtime import DataServiceState
from services.dataservice.usage import USAGE_DELIVERY
from shared.auth import JWKSKeySource
from shared.outbox import OutboxRelay
from tests.access.conftest import access  # noqa: F401 - fixture used by market
from tests.access.entitlement_support import Deal, deal_fixture, market_fixture  # noqa: F401
from tests.access.fake_catalog import DATA_SERVICE_URL
from tests.conftest import AppFactory
from tests.dataservice.conftest import bearer
from tests.support import RunningApp

BY_DISTRICT = {"select": ["district"], "aggregates": [{"fn": "count"}], "group_by": ["district"]}


@dataclass
class Linked:
    deal: Deal
    ds: RunningApp
    to_access: httpx.AsyncClient  # HTTP from the dataservice to the access service


@pytest.fixture
async def linked(deal: Deal, service_app: AppFactory, demo_data_url: str) -> AsyncIterator[Linked]:
    access_app = deal.market.svc
    # The demo mapping, with the L3 health product renamed to the catalog's product id.
    async with service_app("dataservice", data_url=demo_data_url, public_url=DATA_SERVICE_URL,
                           access_url=access_app.settings.public_url,
                           demo_health_product_id=deal.product_id) as ds, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=access_app.app),
                              base_url=access_app.settings.public_url) as to_access:
        ds.runtime.verifier.keys = JWKSKeySource(f"{access_app.settings.public_url}/.well-known/jwks.json",
                                                   to_access)
        yield Linked(deal, ds, to_access)


async def _data_token(linked: Linked) -> str:
    issued = await linked.deal.market.token(linked.deal.buyer, linked.deal.ent["id"])
    return str(issued["access_token"])


async def test_token_from_access_is_accepted_and_usage_reaches_its_ledger(linked: Linked) -> None:
    token = await _data_token(linked)
    resp = await linked.ds.client.post("/v1/query", json={**BY_DISTRICT, "epsilon": 0.1},
                                       headers=bearer(token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["epsilon_remaining"] == 0.9

    async def service_token() -> str:
        return linked.deal.market.service_token

    relay = OutboxRelay(linked.ds.db.sessionmaker, "access",
                        USAGE_DELIVERY.deliverer(linked.to_access, linked.deal.market.svc.settings.public_url,
                                        service_token))
    assert await relay.run_once() == 1
    ledger = await linked.deal.market.client.get(
        "/v1/usage", params={"entitlement_id": linked.deal.ent["id"]}, headers=linked.deal.market.service)
    assert ledger.status_code == 200, ledger.text
    [record] = ledger.json()["items"]
    assert record["epsilon_spent"] == 0.1
    assert record["suppressed_groups"] == resp.json()["suppressed_groups"]


async def test_revocation_in_access_stops_the_token_after_one_poll(linked: Linked) -> None:
    token = await _data_token(linked)
    assert (await linked.ds.client.post("/v1/query", json=BY_DISTRICT,
                                        headers=bearer(token))).status_code == 200
    revoked = await linked.deal.market.client.post(
        f"/v1/entitlements/{linked.deal.ent['id']}/revoke", json={"reason": "refund"},
        headers=linked.deal.market.service)
    assert revoked.status_code == 200, revoked.text

    async def service_token() -> str:
        return linked.deal.market.service_token

    poller = linked.ds.state(DataServiceState).revocation_poller
    poller.http, poller.token = linked.to_access, service_token
    assert await poller.poll_once() >= 1
    resp = await linked.ds.client.post("/v1/query", json=BY_DISTRICT, headers=bearer(token))
    assert resp.status_code == 401
    assert "revoked" in resp.json()["detail"]
