"""The catalog version cache of quotes and orders (services/orders/catalog_client.py): a
status change stops new quotes and orders within ``catalog_cache_seconds``, measured on a
clock the test moves (no sleeping, no timing asserts)."""

from __future__ import annotations

import asyncio

from tests.conftest import DatabaseFactory
from tests.orders.conftest import Harness, start_orders
from tests.support import TestKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_clock(orders: Harness) -> Clock:
    clock = Clock()
    orders.ctx.catalog.clock = clock
    orders.ctx.catalog.forget()
    return clock


async def test_a_suspension_stops_new_quotes_and_orders_once_the_bound_has_passed(orders: Harness) -> None:
    clock = fake_clock(orders)
    bound = orders.ctx.settings.catalog_cache_seconds
    assert bound > 0
    quote = await orders.quote("plan_free")
    calls = orders.catalog.calls
    orders.product["status"] = "suspended"
    # Within the bound the version read a moment ago is reused: no catalog call.
    clock.now += bound / 2
    again = await orders.quote("plan_free")
    assert orders.catalog.calls == calls
    # Past the bound the suspension is seen: no new quote, no order of the quotes made before.
    clock.now += bound
    refused = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                           "plan_id": "plan_free"}, headers=orders.buyer())
    assert refused.status_code == 422 and refused.json()["rule"] == "product-listed"
    for q in (quote, again):
        resp = await orders.order(q["id"])
        assert resp.status_code == 422 and resp.json()["rule"] == "product-listed"
    # Reinstated: orderable again once the bound has passed once more.
    orders.product["status"] = "listed"
    clock.now += bound
    assert (await orders.order(quote["id"])).status_code == 201


async def test_a_new_version_stops_quotes_of_the_old_one_once_the_bound_has_passed(orders: Harness) -> None:
    from tests.orders.fakes import product_version

    clock = fake_clock(orders)
    await orders.quote("plan_free")
    orders.catalog.add(product_version(version=2))
    clock.now += orders.ctx.settings.catalog_cache_seconds
    old = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                       "plan_id": "plan_free"}, headers=orders.buyer())
    assert old.status_code == 422 and old.json()["rule"] == "version-current"


async def test_concurrent_misses_share_one_catalog_call_and_errors_are_not_cached(orders: Harness) -> None:
    fake_clock(orders)
    calls = orders.catalog.calls
    await asyncio.gather(*(orders.quote("plan_free") for _ in range(5)))
    assert orders.catalog.calls == calls + 1
    orders.catalog.refuse[("prd_mobility", 1)] = 404
    orders.ctx.catalog.forget("prd_mobility")
    missing = await orders.client.post("/v1/quotes", json={"product_id": "prd_mobility", "version": 1,
                                                           "plan_id": "plan_free"}, headers=orders.buyer())
    assert missing.status_code == 404
    del orders.catalog.refuse[("prd_mobility", 1)]
    assert (await orders.quote("plan_free"))["product_id"] == "prd_mobility"  # the 404 was not kept


async def test_the_cache_can_be_turned_off(orders: Harness) -> None:
    orders.ctx.catalog.cache_seconds = 0
    quote = await orders.quote("plan_free")
    orders.product["status"] = "suspended"
    resp = await orders.order(quote["id"])
    assert resp.status_code == 422 and resp.json()["rule"] == "product-listed"


async def test_the_setting_reaches_the_client(database_url: DatabaseFactory, test_keys: TestKeys,
                                              localstripe: str) -> None:
    async with start_orders(database_url("orders"), test_keys, localstripe, catalog_cache_seconds=7) as h:
        assert h.ctx.catalog.cache_seconds == 7
