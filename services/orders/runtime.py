"""The orders service's typed state: built by a lifespan step, reached by routers through
:data:`Ctx` and by lifespan steps (relays, reconciler) through :func:`orders_context_of`.

The client the orders service calls the catalog, access (and, from its relays, audit) services
with is built by :func:`outbound_client` through :func:`shared.runtime.provide`: tests serve
those services from in-process fakes by overriding it, and the service token
(``shared.app.default_service_token``), in ``app.dependency_overrides`` before the lifespan
runs (no test-only ``create_app`` arguments).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request

from services.orders.catalog_client import CatalogClient
from services.orders.context import OrdersContext
from services.orders.payments import PaymentGateway
from services.orders.settings import OrdersSettings
from shared.runtime import Runtime, provide, runtime_of
from shared.tracing import instrument_client


def outbound_client(runtime: Runtime) -> httpx.AsyncClient:
    """The client for the catalog, access and audit services: the app's own."""
    return runtime.http


@contextlib.asynccontextmanager
async def orders_state(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step building the :class:`OrdersContext` (Stripe client, catalog client)."""
    runtime = runtime_of(app)
    settings = runtime.settings
    assert isinstance(settings, OrdersSettings)
    outbound = provide(app, outbound_client)
    instrument_client(app, outbound)
    token = runtime.service_token
    gateway = PaymentGateway(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base,
                             timeout=settings.stripe_timeout_seconds)
    runtime.set_state(OrdersContext(
        settings=settings,
        sessionmaker=runtime.db.sessionmaker,
        catalog=CatalogClient(outbound, settings.catalog_url, token,
                              cache_seconds=settings.catalog_cache_seconds),
        gateway=gateway,
        outbound=outbound,
        token=token,
    ))
    try:
        yield
    finally:
        await gateway.aclose()


def orders_context_of(app: FastAPI) -> OrdersContext:
    """The running app's :class:`OrdersContext` (for lifespan steps)."""
    return runtime_of(app).state(OrdersContext)


async def get_orders_context(request: Request) -> OrdersContext:
    return runtime_of(request.app).state(OrdersContext)


#: The orders context of the running app, for routers.
Ctx = Annotated[OrdersContext, Depends(get_orders_context)]
