"""What the orders flows need at run time, built once in the app lifespan
(``services/orders/runtime.py``) and handed to domain code as one typed object."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders.catalog_client import CatalogClient
from services.orders.payments import PaymentGateway
from services.orders.settings import OrdersSettings
from shared.service_auth import TokenSource


@dataclass
class OrdersContext:
    settings: OrdersSettings
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: CatalogClient
    gateway: PaymentGateway
    #: The client and this service's token for calls to the catalog, access and audit services.
    outbound: httpx.AsyncClient
    token: TokenSource | None
