"""The catalog's internal API, as the access service uses it (docs/contracts.md).

Access reads the pinned product version when it creates an entitlement, and the
product's current status every time it issues a data-access token. Status reads
are cached for a few seconds only, so a catalog suspension stops new tokens
almost at once; when the catalog cannot be reached, token issue is refused
(503) rather than done blindly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import RuleViolation, ServiceUnavailable
from shared.service_auth import TokenSource


@dataclass(frozen=True)
class ProductStatus:
    product_id: str
    status: str
    provider_org: str | None


class CatalogClient:
    """Calls ``{catalog}/internal/v1/...`` with the access service's own token.

    ``http`` is injectable: tests point it at a fake catalog app.
    """

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        token_source: TokenSource,
        *,
        status_cache_seconds: float = 3.0,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.token_source = token_source
        self.status_cache_seconds = status_cache_seconds
        self.timeout = timeout
        self._status: dict[str, tuple[float, ProductStatus]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _get(self, path: str) -> httpx.Response:
        token = await self.token_source()
        try:
            return await self.http.get(
                f"{self.base_url}{path}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"The catalog at {self.base_url} could not be reached ({type(exc).__name__}); "
                "retry in a moment.",
                problem="catalog-unavailable",
                title="Catalog unavailable",
                headers={"Retry-After": "5"},
            ) from exc

    @staticmethod
    def _unavailable(resp: httpx.Response, what: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The catalog answered {resp.status_code} when asked for {what}; retry in a moment.",
            problem="catalog-unavailable",
            title="Catalog unavailable",
            headers={"Retry-After": "5"},
        )

    async def product_version(self, product_id: str, version: int) -> dict[str, Any]:
        """The frozen version plus the product's current status."""
        resp = await self._get(f"/internal/v1/products/{quote(product_id, safe='')}/versions/{version}")
        if resp.status_code in (404, 422):  # no such version, or a number no version can have
            raise RuleViolation(
                f"The catalog has no version {version} of product {product_id}; an entitlement "
                "can only pin a published version.",
                problem="unknown-product-version",
                rule="entitlement-pins-a-published-version",
            )
        if resp.status_code != 200:
            raise self._unavailable(resp, f"product {product_id} version {version}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise self._unavailable(resp, f"product {product_id} version {version}") from exc
        if not isinstance(body, dict):
            raise self._unavailable(resp, f"product {product_id} version {version}")
        self._remember(ProductStatus(product_id, str(body.get("status", "")),
                                     body.get("provider_org")))
        return body

    def _remember(self, status: ProductStatus) -> None:
        self._status[status.product_id] = (time.monotonic(), status)

    async def product_status(self, product_id: str) -> ProductStatus | None:
        """The product's current status (cached ``status_cache_seconds``);
        ``None`` when the catalog does not know the product."""
        cached = self._status.get(product_id)
        if cached is not None and time.monotonic() - cached[0] < self.status_cache_seconds:
            return cached[1]
        # One request per product at a time: a burst of token requests for the
        # same product shares one catalog round trip.
        lock = self._locks.setdefault(product_id, asyncio.Lock())
        async with lock:
            cached = self._status.get(product_id)
            if cached is not None and time.monotonic() - cached[0] < self.status_cache_seconds:
                return cached[1]
            resp = await self._get(f"/internal/v1/products/{quote(product_id, safe='')}")
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise self._unavailable(resp, f"product {product_id}")
            try:
                body = resp.json()
                status = ProductStatus(product_id, str(body["status"]), body.get("provider_org"))
            except (ValueError, KeyError, TypeError) as exc:
                raise self._unavailable(resp, f"product {product_id}") from exc
            self._remember(status)
            return status

    def forget(self, product_id: str) -> None:
        """Drop a cached status (after a suspension push from the catalog)."""
        self._status.pop(product_id, None)
