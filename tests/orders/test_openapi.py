"""The OpenAPI document describes every orders endpoint with a summary and its problems."""

from __future__ import annotations

from tests.orders.conftest import Harness


async def test_every_operation_has_a_summary_and_documents_its_errors(orders: Harness) -> None:
    spec = (await orders.client.get("/openapi.json")).json()
    ops = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()
           if path.startswith("/v1/") and path != "/v1/me"}
    assert len(ops) >= 11
    for (path, method), op in ops.items():
        assert op.get("summary"), (method, path)
        codes = set(op["responses"])
        if path != "/v1/webhooks/stripe":
            assert {"401", "403"} <= codes, (method, path, codes)
        else:
            assert "400" in codes
    order_create = spec["paths"]["/v1/orders"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in order_create["parameters"])
