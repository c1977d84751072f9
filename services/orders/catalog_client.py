"""Reads pinned product versions from the catalog's internal API (docs/contracts.md).

Quotes and orders read the version they pin on every request; at hundreds of orders a
second that call was the largest single cost of an order after the database. A version's
terms never change once published (plans, usage policy, guardrails); only the product's
``status`` and ``latest_version`` in the answer do. :meth:`CatalogClient.pinned_version`
therefore keeps each answer for ``cache_seconds`` (2 s by default, ``0`` turns it off): a
suspension, retirement or new version stops new quotes and orders of the old terms within
that bound, as a catalog round trip a moment earlier would have. Concurrent misses for the
same version share one catalog call. Errors are never cached. Other readers (offers,
renewals) keep :meth:`CatalogClient.product_version`, which always asks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import NotFound, ServiceUnavailable
from shared.service_auth import ServiceTokenProvider, TokenSource

#: Entries kept at most (versions being ordered at the same moment); the oldest go first.
CACHE_MAX_ENTRIES = 4096


class CatalogClient:
    """``GET {catalog}/internal/v1/products/{id}/versions/{version}`` with the service token."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: TokenSource | None, *,
                 cache_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.cache_seconds = cache_seconds
        #: Injectable so tests can move time past the bound without sleeping.
        self.clock = clock
        self._cache: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def pinned_version(self, product_id: str, version: int) -> dict[str, Any]:
        """:meth:`product_version`, answered from memory when asked less than
        ``cache_seconds`` ago (see the module docstring for the bound). The caller gets its own
        shallow copy; it must not change nested values."""
        if self.cache_seconds <= 0:
            return await self.product_version(product_id, version)
        key = (product_id, version)
        body = self._fresh(key)
        if body is None:
            # One catalog call per version at a time: a burst of orders shares it.
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = asyncio.Lock()
            async with lock:
                body = self._fresh(key)
                if body is None:
                    asked = self.clock()  # the answer is as old as the question, not the reply
                    body = await self.product_version(product_id, version)
                    if len(self._cache) >= CACHE_MAX_ENTRIES:
                        oldest = next(iter(self._cache))
                        del self._cache[oldest]
                        self._locks.pop(oldest, None)
                    self._cache.pop(key, None)  # re-inserted last: the dict stays oldest first
                    self._cache[key] = (asked, body)
            if not lock.locked():  # nobody else waits on it: unknown ids leave nothing behind
                self._locks.pop(key, None)
        return dict(body)

    def _fresh(self, key: tuple[str, int]) -> dict[str, Any] | None:
        cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] < self.cache_seconds:
            return cached[1]
        return None

    def forget(self, product_id: str | None = None) -> None:
        """Drop cached versions (of one product, or all)."""
        for key in [k for k in self._cache if product_id is None or k[0] == product_id]:
            del self._cache[key]

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
