"""Catalog service: products, versions, review, suspension, search, DCAT."""

from __future__ import annotations

from typing import Any

from sluice.transport import JSON, Transport


class CatalogApi(Transport):
    def create_product(self, spec: JSON) -> JSON:
        """A new draft from a product document (provider)."""
        return self.post("catalog", "/v1/products", spec)

    def update_product(self, product_id: str, spec: JSON) -> JSON:
        """Replace the working draft (a published product gets a draft of its next version)."""
        return self.put("catalog", f"/v1/products/{product_id}", spec)

    def get_draft(self, product_id: str) -> JSON:
        return self.get("catalog", f"/v1/products/{product_id}/draft")

    def submit_product(self, product_id: str) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/submit")

    def retire_product(self, product_id: str, reason: str | None = None) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/retire", {"reason": reason})

    def get_product(self, product_id: str) -> JSON:
        return self.get("catalog", f"/v1/products/{product_id}")

    def list_versions(self, product_id: str, **params: Any) -> JSON:
        """One page of published versions, oldest first (``limit``, ``cursor``)."""
        return self.get("catalog", f"/v1/products/{product_id}/versions", params)

    def get_version(self, product_id: str, version: int) -> JSON:
        return self.get("catalog", f"/v1/products/{product_id}/versions/{version}")

    def search_products(self, q: str | None = None, **filters: Any) -> JSON:
        """One page of ``GET /v1/products`` (``status=`` for drafts etc., ``cursor`` to page)."""
        return self.get("catalog", "/v1/products", {"q": q, **filters})

    def dcat_catalog(self, **params: Any) -> JSON:
        """The listed products as one DCAT-AP JSON-LD catalogue page."""
        return self.get("catalog", "/v1/catalog.jsonld", params)

    # --- review and oversight (regulator, operator) ------------------------------------------
    def review_queue(self, **params: Any) -> JSON:
        return self.get("catalog", "/v1/review-queue", params)

    def approve_product(self, product_id: str, note: str) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/approve", {"note": note})

    def reject_product(self, product_id: str, reason: str) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/reject", {"reason": reason})

    def suspend_product(self, product_id: str, reason: str) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/suspend", {"reason": reason})

    def reinstate_product(self, product_id: str, reason: str) -> JSON:
        return self.post("catalog", f"/v1/products/{product_id}/reinstate", {"reason": reason})
