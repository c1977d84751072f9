"""The privacy budget reaches the catalog: one source of truth (the dataservice's ledger),
reported through the outbox, shown as a copy with its as-of time."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select

from services.dataservice.budget_report import REPORT_DELIVERY
from services.dataservice.models import outbox
from services.dataservice.runtime import DataServiceState
from shared.outbox import OutboxMessage, OutboxRelay
from tests.catalog.conftest import ORG_A, create, l3_spec
from tests.conftest import AppFactory
from tests.dataservice.conftest import HEALTH, TokenFactory, query
from tests.support import RunningApp, TestKeys

COUNT = {"select": ["district"], "aggregates": [{"fn": "count"}], "group_by": ["district"]}


async def _reports(ds: RunningApp) -> list[dict[str, Any]]:
    async with ds.db.sessionmaker() as s:
        rows = (await s.execute(select(outbox.c.payload).where(outbox.c.destination == "catalog")
                                .order_by(outbox.c.id))).scalars().all()
    return list(rows)


async def test_charged_products_are_reported_once_per_flush(ds: RunningApp, data_token: TokenFactory) -> None:
    for _ in range(3):
        assert (await query(ds, data_token(), {**COUNT, "epsilon": 0.2})).status_code == 200
    assert await ds.state(DataServiceState).budget_reporter.flush() == 1
    [report] = await _reports(ds)
    assert report["product_id"] == HEALTH
    body = report["report"]
    assert (body["epsilon_total"], body["epsilon_spent"], body["period"]) == (100.0, 0.6, body["period"])
    assert body["as_of"].endswith("Z") and "renews_at" in body
    assert await ds.state(DataServiceState).budget_reporter.flush() == 0  # nothing changed since


def _message(i: int, product: str, spent: float) -> OutboxMessage:
    return OutboxMessage(i, "privacy_budget_report", f"m{i}", {"product_id": product, "report": {
        "epsilon_spent": spent}}, 0)


async def test_a_batch_sends_only_the_newest_report_per_product_and_drops_refusals() -> None:
    sent: list[tuple[str, float]] = []

    def catalog(request: httpx.Request) -> httpx.Response:
        product = request.url.path.split("/")[3]
        sent.append((product, json.loads(request.content)["epsilon_spent"]))
        return httpx.Response(404 if product == "prd_gone" else 200, json={})

    async def token() -> str:
        return "svc"

    async with httpx.AsyncClient(transport=httpx.MockTransport(catalog)) as http:
        deliver = REPORT_DELIVERY.deliverer(http, "http://catalog.test", token)
        await deliver([_message(1, "prd_a", 0.1), _message(2, "prd_gone", 0.1), _message(3, "prd_a", 0.3)])
    assert sorted(sent) == [("prd_a", 0.3), ("prd_gone", 0.1)]


async def test_the_catalog_shows_what_remains_after_queries(
    service_app: AppFactory, demo_data_url: str, test_keys: TestKeys
) -> None:
    provider = {"Authorization": "Bearer " + test_keys.token(roles=["provider"], org=ORG_A)}
    async with service_app("catalog") as cat:
        product = await create(cat, provider, l3_spec())
        async with service_app("dataservice", data_url=demo_data_url,
                               demo_health_product_id=product["id"]) as ds:
            token = test_keys.token(typ="at+jwt", aud=ds.settings.token_audience, scope="query",
                                    ent="ent_r", product=product["id"], version=1, purpose="research",
                                    grade="L3_sensitive", limits={"epsilon_budget": None})
            resp = await query(ds, token, {**COUNT, "epsilon": 0.5})
            assert resp.status_code == 200, resp.text
            await ds.state(DataServiceState).budget_reporter.flush()

            async def provider_token() -> str:
                return provider["Authorization"].split()[1]

            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cat.app),
                                         base_url="http://catalog") as to_catalog:
                relay = OutboxRelay(ds.db.sessionmaker, "catalog",
                                    REPORT_DELIVERY.deliverer(to_catalog, "http://catalog", provider_token))
                assert await relay.run_once() == 1
        shown = (await cat.client.get(f"/v1/products/{product['id']}", headers=provider)).json()
    budget = shown["privacy_budget"]
    assert (budget["epsilon_total"], budget["epsilon_spent"], budget["epsilon_remaining"]) == (10.0, 0.5, 9.5)
    assert budget["source"] == "data service report"
