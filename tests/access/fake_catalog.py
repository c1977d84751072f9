"""A stand-in for the catalog's internal API (docs/contracts.md, exact shape),
served in-process to the access service in tests and as a tiny uvicorn app in
the benchmark."""

from __future__ import annotations

import secrets
from copy import deepcopy
from typing import Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

DATA_SERVICE_URL = "http://dataservice.test:8010"


def plan(**over: Any) -> dict[str, Any]:
    base = {"id": "plan_monthly", "name": "Monthly", "kind": "subscription", "currency": "EUR",
            "price": 4900, "period": "month", "price_per_query": 0, "included_queries": 0,
            "tiers": [], "query_quota": 100, "access_days": 30}
    base.update(over)
    return base


class FakeCatalog:
    def __init__(self) -> None:
        self.products: dict[str, dict[str, Any]] = {}
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        self.seen_tokens: list[str] = []
        self.down = False
        self.app = self._build()

    def add_product(
        self,
        provider_org: str,
        *,
        grade: str = "L3_sensitive",
        status: str = "listed",
        purposes: list[str] | None = None,
        max_duration_days: int = 365,
        plans: list[dict[str, Any]] | None = None,
        guardrails: dict[str, Any] | None = None,
        data_service_url: str = DATA_SERVICE_URL,
    ) -> str:
        product_id = "prd_" + secrets.token_hex(6)
        self.products[product_id] = {"product_id": product_id, "status": status,
                                     "provider_org": provider_org, "latest_version": 1}
        self.versions[(product_id, 1)] = {
            "product_id": product_id, "version": 1, "status": status,
            "provider_org": provider_org, "slug": f"slug-{product_id}", "title": "Mobility 2024",
            "grade": grade, "personal_data": "deidentified",
            "delivery": {"data_service_url": data_service_url, "mode": "aggregates"},
            "usage_policy": {"allowed_purposes": purposes or ["research"],
                             "max_duration_days": max_duration_days, "resale_allowed": False,
                             "territories": ["EU"]},
            "guardrails": guardrails if guardrails is not None else
            {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0},
            "plans": plans or [plan()],
        }
        return product_id

    def set_status(self, product_id: str, status: str) -> None:
        self.products[product_id]["status"] = status

    def _build(self) -> FastAPI:
        app = FastAPI()

        def guard(authorization: str | None) -> JSONResponse | None:
            if self.down:
                return JSONResponse({"detail": "down"}, status_code=503)
            if not authorization or not authorization.startswith("Bearer "):
                return JSONResponse({"detail": "no token"}, status_code=401)
            self.seen_tokens.append(authorization[7:])
            return None

        @app.get("/internal/v1/products/{product_id}/versions/{version}")
        async def version(product_id: str, version: int,
                          authorization: str | None = Header(default=None)) -> Any:
            refused = guard(authorization)
            if refused:
                return refused
            found = self.versions.get((product_id, version))
            if found is None:
                return JSONResponse({"detail": "no such version"}, status_code=404)
            body = deepcopy(found)
            body["status"] = self.products[product_id]["status"]
            return body

        @app.get("/internal/v1/products/{product_id}")
        async def product(product_id: str, authorization: str | None = Header(default=None)) -> Any:
            refused = guard(authorization)
            if refused:
                return refused
            found = self.products.get(product_id)
            if found is None:
                return JSONResponse({"detail": "no such product"}, status_code=404)
            return found

        return app
