"""The typed runtime (shared/runtime.py): what a lifespan builds, and how tests replace it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.catalog.app import create_app as create_catalog
from services.catalog.ratelimit import RateLimiter
from services.catalog.runtime import CatalogState, get_catalog_state
from services.catalog.settings import CatalogSettings
from shared.app import default_service_token
from shared.runtime import Runtime, runtime_of
from tests.conftest import AppFactory


async def test_a_stopped_app_has_no_runtime() -> None:
    app = create_catalog(CatalogSettings(database_url="sqlite+aiosqlite://"))
    with pytest.raises(RuntimeError, match="not running"):
        runtime_of(app)


async def test_the_lifespan_builds_the_runtime_and_the_service_state(service_app: AppFactory) -> None:
    async with service_app("catalog") as svc:
        runtime = runtime_of(svc.app)
        assert isinstance(runtime, Runtime)
        assert runtime.service_token is None  # no client secret in the test settings
        assert runtime.state(CatalogState).settings is runtime.settings
        with pytest.raises(RuntimeError, match="no Runtime"):
            runtime.state(Runtime)


async def test_a_start_time_builder_is_replaced_through_dependency_overrides(
        service_app: AppFactory) -> None:
    async def token() -> str:
        return "test-token"

    async with service_app("catalog") as first:
        app = first.app
    app.dependency_overrides[default_service_token] = lambda runtime: token
    async with app.router.lifespan_context(app):
        assert runtime_of(app).service_token is token


async def test_a_request_dependency_on_the_service_state_is_replaced_through_overrides(
        service_app: AppFactory) -> None:
    """A test swaps a collaborator (here the public catalogue's rate limiter) without touching
    the running app: the routers reach it only through the dependency."""
    async with service_app("catalog", public_url="https://catalog.example") as svc:
        strict = replace(svc.state(CatalogState), public_catalog_limiter=RateLimiter(1))

        async def override() -> CatalogState:
            return strict

        svc.app.dependency_overrides[get_catalog_state] = override
        assert (await svc.client.get("/v1/catalog.jsonld")).status_code == 200
        refused = await svc.client.get("/v1/catalog.jsonld")
        assert refused.status_code == 429
        svc.app.dependency_overrides.clear()
        assert (await svc.client.get("/v1/catalog.jsonld")).status_code == 200
