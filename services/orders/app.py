"""Orders service app factory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from services.orders.catalog_client import CatalogClient
from services.orders.context import OrdersContext
from services.orders.fulfilment import FULFILMENT_RELAY, STRIPE_REFUND_RELAY, outbound
from services.orders.payments import PaymentGateway
from services.orders.reconciler import reconciler
from services.orders.routers import (
    invoices,
    ledger,
    offers,
    orders,
    quotes,
    statements,
    subscriptions,
    webhooks,
)
from services.orders.settings import OrdersSettings
from shared.app import create_service_app
from shared.audit_relay import audit_relay, token_source_for
from shared.runtime import runtime_of
from shared.service_auth import TokenSource
from shared.tracing import instrument_client

DESCRIPTION = """
Quotes, orders for a declared purpose, Stripe payments and the provider ledger.

* **Quotes** (`POST /v1/quotes`, buyer): a priced breakdown valid for 15 minutes, pinned to a
  catalog version.
* **Orders** (`POST /v1/orders` with an `Idempotency-Key` header, buyer): free plans are `paid`
  at once; paid plans return a Stripe PaymentIntent `client_secret`, or pay server-side with
  `POST /v1/orders/{id}/pay`.
* **States** `pending_payment → paid → fulfilled`, `pending_payment → payment_failed → (retry)
  pending_payment`, `pending_payment|payment_failed → cancelled`, `paid|fulfilled → refunded`.
* **Ledger**: charge, platform fee and provider earning per paid order; reversals on refund.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Money is integer minor units of an ISO 4217 currency. Errors are RFC 9457
`application/problem+json`.
"""


def orders_runtime(outbound_http: httpx.AsyncClient | None, token_source: TokenSource | None):  # type: ignore[no-untyped-def]
    """Lifespan step building the :class:`OrdersContext` (Stripe client, catalog client)."""

    @contextlib.asynccontextmanager
    async def step(app: FastAPI) -> AsyncIterator[None]:
        settings: OrdersSettings = app.state.settings
        app.state.outbound_http = outbound_http or app.state.http
        instrument_client(app, app.state.outbound_http)
        if token_source is not None:  # this service's token, for its relays too
            runtime_of(app).service_token = token_source
        app.state.orders_token_source = token_source_for(app)
        gateway = PaymentGateway(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base,
                                 timeout=settings.stripe_timeout_seconds)
        app.state.orders = OrdersContext(
            settings=settings,
            sessionmaker=app.state.db.sessionmaker,
            catalog=CatalogClient(app.state.outbound_http, settings.catalog_url,
                                  app.state.orders_token_source,
                                  cache_seconds=settings.catalog_cache_seconds),
            gateway=gateway,
        )
        try:
            yield
        finally:
            await gateway.aclose()

    return step


def create_app(
    settings: OrdersSettings | None = None,
    *,
    outbound_http: httpx.AsyncClient | None = None,
    token_source: TokenSource | None = None,
) -> FastAPI:
    """``outbound_http`` and ``token_source`` replace the client and the service token used
    for the catalog and access services (tests serve those from in-process fakes)."""
    settings = settings or OrdersSettings()
    return create_service_app(
        settings,
        title="Sluice orders",
        description=DESCRIPTION,
        routers=[quotes.router, orders.router, subscriptions.router, offers.router, invoices.router,
                 webhooks.router, ledger.router, statements.router],
        lifespan_steps=[orders_runtime(outbound_http, token_source), reconciler],
        relays=[audit_relay(client=outbound), FULFILMENT_RELAY, STRIPE_REFUND_RELAY],
        openapi_tags=[
            {"name": "quotes", "description": "Priced offers pinned to a catalog version"},
            {"name": "orders", "description": "Orders, payment, cancellation and refunds"},
            {"name": "subscriptions", "description": "Renewing plans: periods, payment methods, plan "
             "changes, spending caps, cancellation"},
            {"name": "webhooks", "description": "Stripe webhook receiver"},
            {"name": "ledger", "description": "Money movements and provider earnings"},
            {"name": "offers", "description": "Private offers to one buyer organisation"},
            {"name": "invoices", "description": "Invoices and receipts (JSON, printable HTML)"},
            {"name": "statements", "description": "Provider statements and payouts; spending and "
             "earnings by month, product and plan"},
            {"name": "operations", "description": "Health, readiness and metrics"},
        ],
    )
