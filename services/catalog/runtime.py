"""The catalog service's typed state (its caches and the public catalogue's rate limiter):
built by the :func:`catalog_state` lifespan step, reached by routers through :data:`Catalog`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from services.catalog.cache import PublicViewCache, TtlCache
from services.catalog.ratelimit import RateLimiter
from services.catalog.settings import CatalogSettings
from shared.runtime import runtime_of


@dataclass
class CatalogState:
    settings: CatalogSettings
    #: Public product views by id (dropped after a commit that changes the product).
    public_views: PublicViewCache
    #: Facet counts of listed-product searches (may lag by their TTL).
    facets: TtlCache
    #: Per-client token buckets for the unauthenticated DCAT-AP catalogue.
    public_catalog_limiter: RateLimiter

    @property
    def base_url(self) -> str:
        return str(self.settings.public_url).rstrip("/")


@contextlib.asynccontextmanager
async def catalog_state(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: build the :class:`CatalogState`."""
    runtime = runtime_of(app)
    settings = runtime.settings
    assert isinstance(settings, CatalogSettings)
    runtime.set_state(CatalogState(
        settings=settings,
        public_views=PublicViewCache(settings.public_view_cache_seconds,
                                     settings.public_view_cache_entries),
        facets=TtlCache(settings.search_facet_cache_seconds),
        public_catalog_limiter=RateLimiter(settings.public_catalog_requests_per_minute),
    ))
    yield


async def get_catalog_state(request: Request) -> CatalogState:
    return runtime_of(request.app).state(CatalogState)


#: The catalog's state, for routers.
Catalog = Annotated[CatalogState, Depends(get_catalog_state)]
