"""The public product lane (services/catalog/public_lane.py) answers GET /v1/products/{id}
before routing: it must answer exactly what the route answers, and leave every other case
(tokens that do not verify, owners, regulators, JSON-LD, query parameters) to the route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.catalog import public_lane
from services.catalog.runtime import CatalogState
from tests.catalog.conftest import Tokens, create_listed, spec
from tests.conftest import AppFactory
from tests.support import RunningApp


@pytest.fixture
async def uncached(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    """The catalog without its public-view cache: every public GET reads the database."""
    async with service_app("catalog", public_url="https://catalog.example", public_view_cache_seconds=0) as svc:
        yield svc


class _Spy:
    """Counts the lane's answers (a wrapper around the real method)."""

    def __init__(self) -> None:
        self.answers = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    counter = _Spy()
    real = public_lane.PublicProductLane._public_body

    async def counted(self: Any, scope: Any, product_id: str) -> bytes | None:
        body = await real(self, scope, product_id)
        counter.answers += body is not None
        return body

    monkeypatch.setattr(public_lane.PublicProductLane, "_public_body", counted)
    return counter


async def test_the_lane_answers_the_routes_bytes_and_headers(catalog: RunningApp, tokens: Tokens,
                                                            spy: _Spy, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec(title="Grüße — données ✓")))["id"]
    via_lane = [await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer) for _ in range(2)]
    assert spy.answers == 2  # the database read, then the cache
    catalog.state(CatalogState).public_views.invalidate(pid)

    async def never(self: Any, scope: Any, product_id: str) -> None:
        return None

    monkeypatch.setattr(public_lane.PublicProductLane, "_public_body", never)
    via_route = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)
    assert via_route.status_code == 200
    for resp in via_lane:
        assert resp.status_code == 200
        assert resp.content == via_route.content
        assert resp.headers["content-type"] == via_route.headers["content-type"] == "application/json"
        assert resp.headers["content-length"] == via_route.headers["content-length"]
        assert resp.headers["x-request-id"]  # the middleware around the lane still runs


async def test_the_lane_leaves_everything_else_to_the_route(catalog: RunningApp, tokens: Tokens,
                                                            spy: _Spy) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)  # cached now
    spy.answers = 0
    no_token = await catalog.client.get(f"/v1/products/{pid}")
    assert no_token.status_code == 401 and no_token.headers["content-type"] == "application/problem+json"
    bad = await catalog.client.get(f"/v1/products/{pid}", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
    basic = await catalog.client.get(f"/v1/products/{pid}", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    unknown = await catalog.client.get(f"/v1/products/{pid}?page_size=5", headers=tokens.buyer)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "page_size"
    ld = await catalog.client.get(f"/v1/products/{pid}",
                                  headers={**tokens.buyer, "Accept": "application/ld+json"})
    assert ld.status_code == 200 and ld.headers["content-type"].startswith("application/ld+json")
    missing = await catalog.client.get("/v1/products/prd_does_not_exist", headers=tokens.buyer)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert spy.answers == 0
    # The owner sees its pending draft; a regulator sees the status reason: both from the route.
    resp = await catalog.client.put(f"/v1/products/{pid}", headers=tokens.provider_a, json=spec(title="Edited"))
    assert resp.status_code == 200, resp.text
    own = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.provider_a)
    assert own.json()["pending_draft"] == "draft"
    suspended = await catalog.client.post(f"/v1/products/{pid}/suspend", headers=tokens.regulator,
                                          json={"reason": "Attestation under investigation."})
    assert suspended.status_code == 200, suspended.text
    regulator = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.regulator)
    assert regulator.json()["status_reason"] == "Attestation under investigation."
    assert spy.answers == 0
    # The public, through the lane, sees the suspension at once (the route's invalidation).
    public = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)
    assert spy.answers == 1
    assert public.json()["status"] == "suspended" and public.json()["status_reason"] is None
    assert public.json()["pending_draft"] is None


async def test_lane_answers_are_counted_under_the_route_template(catalog: RunningApp, tokens: Tokens,
                                                                spy: _Spy) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    assert (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).status_code == 200
    assert spy.answers == 1
    metrics = (await catalog.client.get("/metrics")).text
    assert ('sluice_http_requests_total{method="GET",route="/v1/products/{product_id}",'
            'service="catalog",status="200"} 1.0') in metrics


async def test_concurrent_public_reads_each_get_their_own_product(uncached: RunningApp, tokens: Tokens) -> None:
    """On PostgreSQL concurrent reads are grouped into one statement (shared.hot_reads.GroupedRead):
    every request must still get its own product, an unknown one its 404, and a suspension
    committed before the requests asked must show in every one of them."""
    ids = [(await create_listed(uncached, tokens.provider_a, spec(slug=f"p-{i}", title=f"Product {i}")))["id"]
           for i in range(4)]
    resp = await uncached.client.post(f"/v1/products/{ids[0]}/suspend", headers=tokens.regulator,
                                      json={"reason": "Attestation under investigation."})
    assert resp.status_code == 200, resp.text
    paths = [f"/v1/products/{pid}" for pid in ids * 3] + ["/v1/products/prd_unknown"]
    answers = await asyncio.gather(*(uncached.client.get(p, headers=tokens.buyer) for p in paths))
    for path, answer in zip(paths, answers, strict=True):
        if path.endswith("prd_unknown"):
            assert answer.status_code == 404
            continue
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert path.endswith(body["id"])
        assert body["status"] == ("suspended" if body["id"] == ids[0] else "listed")
