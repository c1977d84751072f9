"""Orders service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.orders.fulfilment import AUDIT_WAKE_DELAY, FULFILMENT_RELAY, STRIPE_REFUND_RELAY, outbound
from services.orders.order_lane import OrderLane
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
from services.orders.runtime import orders_state
from services.orders.settings import OrdersSettings
from shared.app import create_service_app
from shared.audit_relay import audit_relay

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


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    """The orders app (tests serve the catalog and access services it calls from in-process
    fakes by overriding ``services.orders.runtime.outbound_client`` and the service token,
    ``shared.app.default_service_token``, in ``app.dependency_overrides``)."""
    settings = settings or OrdersSettings()
    return create_service_app(
        settings,
        title="Sluice orders",
        description=DESCRIPTION,
        routers=[quotes.router, orders.router, subscriptions.router, offers.router, invoices.router,
                 webhooks.router, ledger.router, statements.router],
        lifespan_steps=[orders_state, reconciler],
        relays=[audit_relay(client=outbound, wake_delay=AUDIT_WAKE_DELAY), FULFILMENT_RELAY,
                STRIPE_REFUND_RELAY],
        # POST /v1/orders and /v1/quotes, before FastAPI's routing and dependency solving (order_lane.py).
        inner_middleware=[OrderLane],
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
