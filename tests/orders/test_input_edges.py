"""Inputs found by fuzzing: each is the client's mistake, so a 4xx problem, never a 500 or a 503."""

from __future__ import annotations

import pytest

from tests.orders.conftest import Harness

HUGE = 99999999999999999999999


async def test_a_version_beyond_any_integer_is_a_4xx_not_catalog_unavailable(orders: Harness) -> None:
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": HUGE,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "catalog-unavailable" not in resp.json()["type"]


async def test_a_catalog_refusing_the_reference_is_not_catalog_unavailable(orders: Harness) -> None:
    # The catalog answers 422 (a reference it refuses): the buyer's reference is wrong, the
    # catalog is not down.
    orders.catalog.refuse[("prd_mobility", 5)] = 422
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 5,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 404, resp.text
    assert resp.json()["type"].endswith("product-version-not-found")
    # The control: a catalog answering 500 is an outage.
    orders.catalog.refuse[("prd_mobility", 5)] = 500
    resp = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 5,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 503 and resp.json()["type"].endswith("catalog-unavailable")


@pytest.mark.parametrize("product_id", ["prd_\u001ax", "prd_\nx", "prd_\x00x", "prd_\u202ex", "prd x", "prd/x"])
async def test_a_control_character_in_a_product_id_is_a_422(orders: Harness, product_id: str) -> None:
    resp = await orders.client.post("/v1/quotes", json={"product_id": product_id, "version": 1,
                                                        "plan_id": "plan_free"}, headers=orders.buyer())
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert "product_id" in resp.text
