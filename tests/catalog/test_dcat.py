"""DCAT-AP 3 JSON-LD for one product and for the paginated catalog."""

from __future__ import annotations

from typing import Any

from tests.catalog.conftest import Tokens, create, create_listed, spec
from tests.support import RunningApp

LD = {"Accept": "application/ld+json"}


async def test_product_as_dcat_dataset(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    resp = await catalog.client.get(f"/v1/products/{pid}", headers={**tokens.buyer, **LD})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/ld+json")
    doc = resp.json()
    assert doc["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    assert doc["@type"] == "dcat:Dataset"
    assert doc["@id"] == f"https://catalog.example/v1/products/{pid}"
    assert doc["dct:title"] == "Weather station readings"
    assert doc["dcat:keyword"] == ["weather", "climate"]
    assert doc["dcat:version"] == "1"
    assert doc["dct:accessRights"]["@id"].endswith("/access-right/PUBLIC")
    dist = doc["dcat:distribution"][0]
    assert dist["dcat:accessService"]["dcat:endpointURL"] == {"@id": "https://data.provider-a.example"}
    permission = doc["odrl:hasPolicy"]["odrl:permission"][0]
    purposes = next(c for c in permission["odrl:constraint"] if c["odrl:leftOperand"] == "odrl:purpose")
    assert purposes["odrl:rightOperand"] == ["research", "commercial"]
    assert doc["odrl:hasPolicy"]["odrl:prohibition"] == [{"odrl:action": {"@id": "odrl:sell"}}]
    plain = await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)
    assert plain.headers["content-type"] == "application/json"


async def test_catalog_pages_list_only_listed_products(catalog: RunningApp, tokens: Tokens) -> None:
    listed = [(await create_listed(catalog, tokens.provider_a, spec(slug=f"p-{i}", title=f"Product {i}")))["id"]
              for i in range(3)]
    await create(catalog, tokens.provider_a, spec(slug="draft-only"))
    seen: list[str] = []
    url = "/v1/catalog.jsonld?limit=2"
    pages = 0
    while url:
        doc: dict[str, Any] = (await catalog.client.get(url, headers=tokens.buyer)).json()
        assert doc["@type"] == "dcat:Catalog"
        seen += [d["dct:identifier"] for d in doc["dcat:dataset"]]
        nxt = doc["hydra:view"].get("hydra:next")
        url = nxt["@id"].removeprefix("https://catalog.example") if nxt else ""
        pages += 1
    assert pages == 2
    assert seen == listed


async def test_unpublished_product_has_no_dcat_description(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, spec()))["id"]
    resp = await catalog.client.get(f"/v1/products/{pid}", headers={**tokens.provider_a, **LD})
    assert resp.status_code == 422 and resp.json()["rule"] == "jsonld-needs-publication"
