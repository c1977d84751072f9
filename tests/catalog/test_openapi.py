"""The catalog's OpenAPI document is complete: every route has a summary and documents its errors."""

from __future__ import annotations

from tests.support import RunningApp


async def test_every_catalog_operation_has_a_summary_and_problem_responses(catalog: RunningApp) -> None:
    doc = (await catalog.client.get("/openapi.json")).json()
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
           if path.startswith(("/v1/products", "/v1/review-queue", "/v1/catalog", "/internal/"))]
    assert len(ops) >= 15
    for path, method, op in ops:
        assert op.get("summary"), (method, path)
        # Every route needs a token (401) except the public DCAT-AP catalogue, rate-limited (429).
        assert ("429" if path == "/v1/catalog.jsonld" else "401") in op["responses"], (method, path)
    spec = doc["components"]["schemas"]["ProductSpec"]
    assert "schema" in spec["properties"] and "plans" in spec["properties"]
