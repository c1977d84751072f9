"""A data service: schema and structured queries, with a data-access token (not the
platform token)."""

from __future__ import annotations

from typing import Any

from sluice.transport import JSON, Transport, as_object


class DataApi(Transport):
    def data_schema(self, data_service_url: str, data_token: str) -> JSON:
        """What the token's product exposes (columns, grade, mode)."""
        return as_object(self.request("GET", f"{data_service_url.rstrip('/')}/v1/schema",
                                      token=data_token))

    def query(self, data_service_url: str, data_token: str, query: JSON) -> JSON:
        return as_object(self.request("POST", f"{data_service_url.rstrip('/')}/v1/query",
                                      json=query, token=data_token))

    def privacy_budgets(self, **filters: Any) -> JSON:
        """Per product and release period: the privacy budget and who spent it (regulator,
        operator; platform token) — ``GET /v1/privacy/budgets`` of the data service."""
        return self.get("dataservice", "/v1/privacy/budgets", filters)

    def privacy_charges(self, **filters: Any) -> JSON:
        """One page of a product's privacy charges (``GET /v1/privacy/charges``)."""
        return self.get("dataservice", "/v1/privacy/charges", filters)
