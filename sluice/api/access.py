"""Access service: entitlements, data-access tokens, usage and the revocation feed."""

from __future__ import annotations

from typing import Any

from sluice.transport import JSON, Transport


class AccessApi(Transport):
    def entitlements_page(self, **params: Any) -> JSON:
        """One page (``product_id``, ``order_id``, ``buyer``, ``provider``, ``limit``, ``cursor``)."""
        return self.get("access", "/v1/entitlements", params)

    def list_entitlements(self, **filters: Any) -> list[JSON]:
        """Every entitlement you may see (all pages)."""
        return list(self.pages(self.url("access", "/v1/entitlements"), filters))

    def get_entitlement(self, entitlement_id: str) -> JSON:
        return self.get("access", f"/v1/entitlements/{entitlement_id}")

    def suspend_entitlement(self, entitlement_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/entitlements/{entitlement_id}/suspend", {"reason": reason})

    def reinstate_entitlement(self, entitlement_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/entitlements/{entitlement_id}/reinstate", {"reason": reason})

    def revoke_entitlement(self, entitlement_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/entitlements/{entitlement_id}/revoke", {"reason": reason})

    def revoke_order_entitlement(self, order_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/entitlements/by-order/{order_id}/revoke", {"reason": reason})

    def suspend_product_entitlements(self, product_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/products/{product_id}/suspend-entitlements", {"reason": reason})

    def reinstate_product_entitlements(self, product_id: str, reason: str) -> JSON:
        return self.post("access", f"/v1/products/{product_id}/reinstate-entitlements",
                         {"reason": reason})

    def issue_data_token(self, entitlement_id: str, expires_in: int | None = None) -> JSON:
        """A short-lived data-access token for your entitlement (buyer)."""
        body = {"expires_in": expires_in} if expires_in else None
        return self.post("access", f"/v1/entitlements/{entitlement_id}/tokens", body)

    def usage(self, **params: Any) -> JSON:
        """Answered queries (``entitlement_id``, ``limit``, ``cursor``)."""
        return self.get("access", "/v1/usage", params)

    def revocations(self, **params: Any) -> JSON:
        """The revocation feed (``since`` = the previous answer's ``next_cursor``)."""
        return self.get("access", "/v1/revocations", params)
