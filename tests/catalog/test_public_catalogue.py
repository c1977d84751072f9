"""The public DCAT-AP catalogue for harvesters (data.europa.eu, CKAN's dcat harvester): no token,
listed products only, publishers named, cacheable (ETag / If-None-Match → 304), rate-limited."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.conftest import AppFactory
from tests.support import RunningApp


async def test_harvesters_read_it_without_a_token_and_see_named_publishers(
    catalog: RunningApp, tokens: Tokens
) -> None:
    listed = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    draft = (await create(catalog, tokens.provider_a, spec(slug="draft-only")))["id"]
    resp = await catalog.client.get("/v1/catalog.jsonld")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/ld+json")
    doc = resp.json()
    ids = [d["dct:identifier"] for d in doc["dcat:dataset"]]
    assert listed in ids and draft not in ids
    publisher = doc["dcat:dataset"][0]["dct:publisher"]
    assert publisher["foaf:name"] == spec()["rights"]["operating_right_holder"]
    assert publisher["@id"].startswith("urn:sluice:org:")


async def test_it_is_cacheable_with_an_etag(catalog: RunningApp, tokens: Tokens) -> None:
    await create_listed(catalog, tokens.provider_a, spec())
    first = await catalog.client.get("/v1/catalog.jsonld")
    etag = first.headers["etag"]
    assert etag.startswith('"') and "max-age" in first.headers["cache-control"]
    again = await catalog.client.get("/v1/catalog.jsonld", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    # A newly listed product changes the document, so the old validator no longer matches.
    await create_listed(catalog, tokens.provider_a, spec(slug="second", title="Second"))
    changed = await catalog.client.get("/v1/catalog.jsonld", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


@pytest.fixture
async def strict_catalog(service_app: AppFactory) -> AsyncIterator[RunningApp]:
    async with service_app("catalog", public_url="https://catalog.example",
                           public_catalog_requests_per_minute=3) as svc:
        yield svc


async def test_it_is_rate_limited_per_client(strict_catalog: RunningApp) -> None:
    answers = [(await strict_catalog.client.get("/v1/catalog.jsonld")).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = await strict_catalog.client.get("/v1/catalog.jsonld")
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"].endswith("/too-many-requests")
