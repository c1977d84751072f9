"""Reads pinned product versions from the catalog's internal API (docs/contracts.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import NotFound, ServiceUnavailable
from shared.service_auth import ServiceTokenProvider, TokenSource


class CatalogClient:
    """``GET {catalog}/internal/v1/products/{id}/versions/{version}`` with the service token."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: TokenSource | None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def product_version(self, product_id: str, version: int) -> dict[str, Any]:
        if self.token is None:
            raise ServiceUnavailable(
                "The orders service has no service credentials to read the catalog; the operator "
                "must set SLUICE_ORDERS_SERVICE_CLIENT_SECRET. Retry later.",
                problem="catalog-unavailable",
            )
        # Quoted: an id is one path segment, whatever it holds (it cannot climb to another route).
        url = f"{self.base_url}/internal/v1/products/{quote(product_id, safe='')}/versions/{version}"
        try:
            token = await self.token()
            resp = await self.http.get(url, headers={"Authorization": f"Bearer {token}"})
            if resp.status_code == 401 and isinstance(self.token, ServiceTokenProvider):
                self.token.invalidate()
                resp = await self.http.get(
                    url, headers={"Authorization": f"Bearer {await self.token()}"}
                )
        except (httpx.HTTPError, RuntimeError) as exc:
            raise ServiceUnavailable(
                f"The catalog could not be reached ({type(exc).__name__}); retry in a moment.",
                problem="catalog-unavailable",
            ) from exc
        if resp.status_code in (400, 404, 422):
            # The catalog refused the reference itself (no such product or version, or a
            # version number it cannot hold): the buyer's mistake, not an outage.
            raise NotFound(
                f"Product {product_id} has no version {version} in the catalog; "
                "look up published versions in the catalog.",
                problem="product-version-not-found",
            )
        if resp.status_code != 200:
            raise ServiceUnavailable(
                f"The catalog answered {resp.status_code}; retry in a moment.",
                problem="catalog-unavailable",
            )
        body: dict[str, Any] = resp.json()
        return body
