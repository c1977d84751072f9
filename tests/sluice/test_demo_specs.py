"""The demo's products pass the catalog's rules (so `make demo` keeps working)."""

from __future__ import annotations

from sluice.demo import product_specs
from tests.conftest import AppFactory
from tests.support import TestKeys


async def test_demo_products_are_accepted_and_listed_or_reviewed(
    service_app: AppFactory, test_keys: TestKeys
) -> None:
    provider = {"Authorization": "Bearer " + test_keys.token(roles=["provider"], org="org_p", sub="cli_p")}
    transit, health = product_specs("http://127.0.0.1:8010", "test")
    async with service_app("catalog") as catalog:
        states = []
        for spec in (transit, health):
            created = await catalog.client.post("/v1/products", json=spec, headers=provider)
            assert created.status_code == 201, created.text
            submitted = await catalog.client.post(f"/v1/products/{created.json()['id']}/submit",
                                                  headers=provider)
            assert submitted.status_code == 200, submitted.text
            states.append(submitted.json().get("pending_draft") or submitted.json()["status"])
    assert states == ["listed", "in_review"]
