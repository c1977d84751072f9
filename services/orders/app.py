"""Orders service app factory."""

from __future__ import annotations

from fastapi import FastAPI

from services.orders.settings import OrdersSettings
from shared.app import create_service_app

DESCRIPTION = """
Quotes, orders for a declared purpose, Stripe payments and the provider ledger.

Authenticate with a platform token from the access service (`POST /oauth/token`).
Errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: OrdersSettings | None = None) -> FastAPI:
    settings = settings or OrdersSettings()
    return create_service_app(
        settings,
        title="Sluice orders",
        description=DESCRIPTION,
        routers=[],
    )
